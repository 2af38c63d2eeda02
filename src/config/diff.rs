//! What a reload changed, key by key, from the two files as parsed: the
//! keys a reload applies, and the keys bound at start that only a restart
//! applies (named in a warning, never dropped in silence). Accounts are
//! compared by id. A secret read through `{ env }` or `{ file }` is named
//! only when its reference changes; the signing key's id is compared by the
//! reload itself.

use toml::{Table, Value};

/// Top-level sections bound once at start (owned by `server/`).
const START_ONLY: &[&str] = &["listen", "tls", "log"];

/// The keys that differ between two configurations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Applied by the reload.
    pub applied: Vec<String>,
    /// Bound at start; they take effect after a restart.
    pub restart_only: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.restart_only.is_empty()
    }
}

/// Compares the running file `old` with the new `new`.
pub fn changes(old: &Table, new: &Table) -> Changes {
    let mut keys = Vec::new();
    walk("", old, new, &mut keys);
    let mut out = Changes::default();
    for key in keys {
        let section = key.split(['.', '[']).next().unwrap_or("");
        if START_ONLY.contains(&section) {
            out.restart_only.push(key);
        } else {
            out.applied.push(key);
        }
    }
    out
}

fn walk(prefix: &str, old: &Table, new: &Table, out: &mut Vec<String>) {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match (old.get(name), new.get(name)) {
            (Some(Value::Table(a)), Some(Value::Table(b))) => walk(&key, a, b, out),
            (Some(Value::Array(a)), Some(Value::Array(b))) if key == "accounts" => {
                accounts(a, b, out);
            }
            (a, b) if a != b => out.push(key),
            _ => {}
        }
    }
}

/// Accounts added, removed or changed, each named by id.
fn accounts(old: &[Value], new: &[Value], out: &mut Vec<String>) {
    let id = |v: &Value| v.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
    let mut ids: Vec<String> = old.iter().chain(new).map(id).collect();
    ids.sort();
    ids.dedup();
    for account in ids {
        let find = |list: &[Value]| list.iter().find(|v| id(v) == account).cloned();
        if find(old) != find(new) {
            out.push(format!("accounts[{account}]"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn names_each_changed_key_and_splits_by_lifetime() {
        let old = table(
            "[listen]\naddr = \"127.0.0.1:1\"\n[upstream]\nurl = \"http://a\"\n[auth]\nleeway = \"1s\"\n\
             [[accounts]]\nid = \"a\"\nrules = []\n[[accounts]]\nid = \"b\"\nrules = []\n",
        );
        let new = table(
            "[listen]\naddr = \"127.0.0.1:2\"\n[upstream]\nurl = \"http://b\"\n[auth]\nleeway = \"1s\"\n\
             [log]\nformat = \"json\"\n[[accounts]]\nid = \"b\"\nrules = [{ repos = \"x\", actions = [] }]\n\
             [[accounts]]\nid = \"c\"\nrules = []\n",
        );
        let c = changes(&old, &new);
        assert_eq!(
            c.applied,
            ["accounts[a]", "accounts[b]", "accounts[c]", "upstream.url"]
        );
        assert_eq!(c.restart_only, ["listen.addr", "log"]);
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let t = table("[listen]\naddr = \"127.0.0.1:1\"\n[[accounts]]\nid = \"a\"\n");
        assert!(changes(&t, &t.clone()).is_empty());
    }

    #[test]
    fn reordered_accounts_are_unchanged() {
        let a = table("[[accounts]]\nid = \"a\"\n[[accounts]]\nid = \"b\"\n");
        let b = table("[[accounts]]\nid = \"b\"\n[[accounts]]\nid = \"a\"\n");
        assert!(changes(&a, &b).is_empty());
    }
}
