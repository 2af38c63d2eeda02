//! The access vocabulary shared by the proxy and the issuer: actions,
//! repository names, scopes (`artifact-repository:org1/repo1:pull,push`) and
//! the `access` claim entries that grant them (docs/PROTOCOL.md §2.1, §2.6, §6).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::path;

/// The only resource type ChartMuseum's authorizer knows.
pub const RESOURCE_TYPE: &str = "artifact-repository";

/// The namespace ChartMuseum checks when a route carries no repository.
pub const DEFAULT_NAMESPACE: &str = "repo";

/// What a request does to a repository. ChartMuseum has exactly these two;
/// `DELETE` maps to push, and there is no wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
}

impl Action {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
        }
    }

    /// Parses the exact, lowercase wire spelling.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of actions, kept in canonical order (pull before push).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionSet {
    pull: bool,
    push: bool,
}

impl ActionSet {
    /// The set holding every action.
    pub const ALL: ActionSet = ActionSet {
        pull: true,
        push: true,
    };

    /// Adds `action`.
    pub fn insert(&mut self, action: Action) {
        match action {
            Action::Pull => self.pull = true,
            Action::Push => self.push = true,
        }
    }

    /// Whether `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        match action {
            Action::Pull => self.pull,
            Action::Push => self.push,
        }
    }

    /// Actions in both sets.
    pub fn intersection(self, other: ActionSet) -> ActionSet {
        ActionSet {
            pull: self.pull && other.pull,
            push: self.push && other.push,
        }
    }

    /// Whether the set holds nothing.
    pub fn is_empty(self) -> bool {
        !self.pull && !self.push
    }

    /// The actions, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        [(self.pull, Action::Pull), (self.push, Action::Push)]
            .into_iter()
            .filter_map(|(on, a)| on.then_some(a))
    }
}

/// Checks a repository name as the issuer may grant it: [`DEFAULT_NAMESPACE`],
/// or exactly `depth` canonical path segments. Any other name can never match
/// a request, and names with `..`, empty segments or quote characters are the
/// raw material of the attacks in docs/PROTOCOL.md §2.5 and §3.3.
///
/// # Errors
/// A short description of what is wrong.
pub fn check_repo_name(name: &str, depth: usize) -> Result<(), String> {
    if name == DEFAULT_NAMESPACE {
        return Ok(());
    }
    let segments: Vec<&str> = name.split('/').collect();
    if let Some(err) = segments.iter().find_map(|s| path::check_segment(s).err()) {
        return Err(format!("repository name {name:?}: {err}"));
    }
    if segments.len() != depth {
        return Err(format!(
            "repository name {name:?} has {} segment(s); this server's repositories have {depth}",
            segments.len()
        ));
    }
    Ok(())
}

/// One required permission: `action` on repository `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The repository, already mapped to [`DEFAULT_NAMESPACE`] when empty.
    pub namespace: String,
    /// What the request does.
    pub action: Action,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{RESOURCE_TYPE}:{}:{}", self.namespace, self.action)
    }
}

/// A requested or granted scope: several actions on one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequest {
    /// Repository name.
    pub name: String,
    /// Actions requested or granted.
    pub actions: ActionSet,
}

impl ScopeRequest {
    /// Parses `artifact-repository:<name>:<action>[,<action>...]` (docs/PROTOCOL.md §2.6).
    ///
    /// The name may not contain `:`; unlike Docker image names, repository
    /// names never carry a `host:port`.
    ///
    /// # Errors
    /// A short description of what is wrong, safe to show the client.
    pub fn parse(s: &str, depth: usize) -> Result<ScopeRequest, String> {
        let mut parts = s.split(':');
        let (Some(kind), Some(name), Some(actions), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("scope {s:?} is not type:name:actions"));
        };
        if kind != RESOURCE_TYPE {
            return Err(format!("scope type must be {RESOURCE_TYPE}"));
        }
        check_repo_name(name, depth)?;
        let mut set = ActionSet::default();
        for a in actions.split(',') {
            let action = Action::parse(a).ok_or_else(|| format!("unknown action {a:?}"))?;
            set.insert(action);
        }
        Ok(ScopeRequest {
            name: name.to_owned(),
            actions: set,
        })
    }
}

impl fmt::Display for ScopeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{RESOURCE_TYPE}:{}:", self.name)?;
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

/// One entry of a token's `access` claim (docs/PROTOCOL.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// Resource type; only [`RESOURCE_TYPE`] grants anything.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name, matched exactly and case-sensitively.
    pub name: String,
    /// Granted actions; unknown strings grant nothing.
    pub actions: Vec<String>,
}

impl AccessEntry {
    /// The entry granting `request`.
    pub fn from_request(request: &ScopeRequest) -> AccessEntry {
        AccessEntry {
            kind: RESOURCE_TYPE.to_owned(),
            name: request.name.clone(),
            actions: request
                .actions
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
        }
    }
}

/// Whether `entries` grant `scope`: an entry of the right type whose name
/// equals the namespace exactly and whose actions list the action exactly.
/// The same decision ChartMuseum's default JMESPath makes, without its
/// injectable expression (docs/PROTOCOL.md §2.5).
pub fn allows(entries: &[AccessEntry], scope: &Scope) -> bool {
    entries.iter().any(|e| {
        e.kind == RESOURCE_TYPE
            && e.name == scope.namespace
            && e.actions.iter().any(|a| a == scope.action.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(ns: &str, action: Action) -> Scope {
        Scope {
            namespace: ns.to_owned(),
            action,
        }
    }

    fn entry(kind: &str, name: &str, actions: &[&str]) -> AccessEntry {
        AccessEntry {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scope_formats_like_chartmuseum() {
        assert_eq!(
            scope("org1/repo1", Action::Pull).to_string(),
            "artifact-repository:org1/repo1:pull"
        );
    }

    #[test]
    fn parses_the_seed_scopes() {
        let s = ScopeRequest::parse("artifact-repository:org1/repo1:pull,push", 2).unwrap();
        assert_eq!(s.name, "org1/repo1");
        assert_eq!(s.actions, ActionSet::ALL);
        assert_eq!(s.to_string(), "artifact-repository:org1/repo1:pull,push");
        let s = ScopeRequest::parse("artifact-repository:repo:push,pull,pull", 2).unwrap();
        assert_eq!(s.to_string(), "artifact-repository:repo:pull,push");
    }

    #[test]
    fn rejects_bad_scopes() {
        for bad in [
            "",
            "artifact-repository:org1/repo1",
            "artifact-repository:org1/repo1:pull:x",
            "repository:org1/repo1:pull",
            "artifact-repository:org1/repo1:",
            "artifact-repository:org1/repo1:delete",
            "artifact-repository:org1/repo1:*",
            "artifact-repository:org1/repo1:Pull",
            "artifact-repository:org1/../x:pull",
            "artifact-repository:org1//x:pull",
            "artifact-repository:org1/:pull",
            "artifact-repository:org1/repo'1:pull",
            "artifact-repository:org1:pull",
            "artifact-repository:org1/repo1/x:pull",
            "artifact-repository::pull",
        ] {
            assert!(ScopeRequest::parse(bad, 2).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn depth_zero_accepts_only_the_default_namespace() {
        assert!(ScopeRequest::parse("artifact-repository:repo:pull", 0).is_ok());
        assert!(ScopeRequest::parse("artifact-repository:other:pull", 0).is_err());
    }

    #[test]
    fn access_matches_exactly() {
        let granted = [entry(RESOURCE_TYPE, "org1/repo1", &["pull"])];
        assert!(allows(&granted, &scope("org1/repo1", Action::Pull)));
        for (ns, action) in [
            ("org1/repo1", Action::Push),
            ("org1/repo10", Action::Pull),
            ("org1", Action::Pull),
            ("org1/repo1/x", Action::Pull),
            ("ORG1/repo1", Action::Pull),
            ("org1/repo", Action::Pull),
        ] {
            assert!(!allows(&granted, &scope(ns, action)), "{ns} {action}");
        }
    }

    #[test]
    fn access_needs_the_right_type_and_exact_action() {
        let wrong_type = [entry("repository", "org1/repo1", &["pull"])];
        assert!(!allows(&wrong_type, &scope("org1/repo1", Action::Pull)));
        let odd_actions = [entry(RESOURCE_TYPE, "org1/repo1", &["PULL", "*", "pull "])];
        assert!(!allows(&odd_actions, &scope("org1/repo1", Action::Pull)));
    }

    #[test]
    fn actions_union_across_entries() {
        let granted = [
            entry(RESOURCE_TYPE, "org1/repo1", &["pull"]),
            entry(RESOURCE_TYPE, "org1/repo1", &["push"]),
        ];
        assert!(allows(&granted, &scope("org1/repo1", Action::Push)));
        assert!(allows(&granted, &scope("org1/repo1", Action::Pull)));
    }
}
