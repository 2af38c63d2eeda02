//! The access vocabulary shared by the proxy and the issuer: actions,
//! repository names, scopes (`artifact-repository:org1/repo1:pull,push`) and
//! the `access` claim entries that grant them (docs/PROTOCOL.md §2.1, §2.6, §6).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::path;

/// The only resource type ChartMuseum's authorizer knows.
pub const RESOURCE_TYPE: &str = "artifact-repository";

/// The Docker/OCI resource type: one chart, named by its OCI repository
/// name (`org1/repo1/mychart`), as registry clients ask for it.
pub const OCI_RESOURCE_TYPE: &str = "repository";

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
    /// The OCI repository name (`org1/repo1/mychart`) when the request came
    /// through the registry API: one chart inside `namespace`.
    pub oci: Option<String>,
}

impl Scope {
    /// A scope on a ChartMuseum repository.
    pub fn repository(namespace: impl Into<String>, action: Action) -> Scope {
        Scope {
            namespace: namespace.into(),
            action,
            oci: None,
        }
    }
}

impl fmt::Display for Scope {
    /// ChartMuseum's form, or the Docker form for registry requests, where
    /// a push asks for `pull,push` as registries do (a push also reads).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.oci {
            None => write!(f, "{RESOURCE_TYPE}:{}:{}", self.namespace, self.action),
            Some(name) => match self.action {
                Action::Pull => write!(f, "{OCI_RESOURCE_TYPE}:{name}:pull"),
                Action::Push => write!(f, "{OCI_RESOURCE_TYPE}:{name}:pull,push"),
            },
        }
    }
}

/// A requested or granted scope: several actions on one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequest {
    /// Repository name.
    pub name: String,
    /// Actions requested or granted.
    pub actions: ActionSet,
    /// The OCI repository name for a Docker-form scope
    /// (`repository:org1/repo1/mychart:pull`); `name` is then its
    /// ChartMuseum repository.
    pub oci: Option<String>,
    /// On a grant: the chart patterns its push is limited to (the matched
    /// rule's `charts`). Always `None` on a request: the scope syntax has
    /// no way to ask for charts.
    pub charts: Option<Vec<String>>,
}

impl ScopeRequest {
    /// Parses `artifact-repository:<name>:<action>[,<action>...]` (docs/PROTOCOL.md §2.6)
    /// or the Docker form `repository:<repo>/<chart>:<actions>` (§10.3).
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
        let (repo, oci) = match kind {
            RESOURCE_TYPE => {
                check_repo_name(name, depth)?;
                (name.to_owned(), None)
            }
            OCI_RESOURCE_TYPE => (oci_namespace(name, depth)?, Some(name.to_owned())),
            _ => {
                return Err(format!(
                    "scope type must be {RESOURCE_TYPE} or {OCI_RESOURCE_TYPE}"
                ))
            }
        };
        let mut set = ActionSet::default();
        for a in actions.split(',') {
            let action = Action::parse(a).ok_or_else(|| format!("unknown action {a:?}"))?;
            set.insert(action);
        }
        Ok(ScopeRequest {
            name: repo,
            actions: set,
            oci,
            charts: None,
        })
    }
}

/// The ChartMuseum repository an OCI repository name lives in: its first
/// `depth` segments ([`DEFAULT_NAMESPACE`] at depth 0); the last segment is
/// the chart. Every segment must follow the OCI name grammar.
///
/// # Errors
/// A short description of what is wrong.
pub fn oci_namespace(name: &str, depth: usize) -> Result<String, String> {
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() != depth + 1 {
        return Err(format!(
            "repository name {name:?} has {} segment(s); this server's are <repository>/<chart> with {} in all",
            segments.len(),
            depth + 1
        ));
    }
    if let Some(bad) = segments.iter().find(|s| !path::is_oci_component(s)) {
        return Err(format!(
            "repository name {name:?}: {bad:?} is not a valid OCI name component"
        ));
    }
    Ok(if depth == 0 {
        DEFAULT_NAMESPACE.to_owned()
    } else {
        segments[..depth].join("/")
    })
}

impl fmt::Display for ScopeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.oci {
            None => write!(f, "{RESOURCE_TYPE}:{}:", self.name)?,
            Some(name) => write!(f, "{OCI_RESOURCE_TYPE}:{name}:")?,
        }
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
    /// Chart-name globs a push through this entry is limited to; absent
    /// means every chart. Enforced by chartgate only: ChartMuseum's own
    /// bearer mode ignores the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charts: Option<Vec<String>>,
}

impl AccessEntry {
    /// The entry granting `request`.
    pub fn from_request(request: &ScopeRequest) -> AccessEntry {
        let (kind, name) = match &request.oci {
            None => (RESOURCE_TYPE, &request.name),
            Some(name) => (OCI_RESOURCE_TYPE, name),
        };
        AccessEntry {
            kind: kind.to_owned(),
            name: name.clone(),
            actions: request
                .actions
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            charts: request.charts.clone(),
        }
    }
}

/// Whether `entries` grant `scope`: an entry whose actions list the action
/// exactly, and either of ChartMuseum's type whose name equals the
/// namespace exactly (the decision ChartMuseum's default JMESPath makes,
/// without its injectable expression, docs/PROTOCOL.md §2.5), or, for a
/// registry request, of the Docker type naming exactly its OCI repository.
/// A repository grant covers every chart in it; a chart grant never covers
/// its repository.
pub fn allows(entries: &[AccessEntry], scope: &Scope) -> bool {
    entries.iter().any(|e| grants(e, scope))
}

/// Whether one entry grants `scope` (the rule [`allows`] documents).
fn grants(e: &AccessEntry, scope: &Scope) -> bool {
    let names_it = match e.kind.as_str() {
        RESOURCE_TYPE => e.name == scope.namespace,
        OCI_RESOURCE_TYPE => scope.oci.as_deref() == Some(e.name.as_str()),
        _ => false,
    };
    names_it && e.actions.iter().any(|a| a == scope.action.as_str())
}

/// The chart patterns `scope` is limited to under `entries`: `None` when an
/// entry granting it names no charts (so every chart is allowed), else the
/// union of the granting entries' patterns (empty when none grants it).
pub fn granted_charts<'a>(entries: &'a [AccessEntry], scope: &Scope) -> Option<Vec<&'a str>> {
    let mut union = Vec::new();
    for e in entries.iter().filter(|e| grants(e, scope)) {
        union.extend(e.charts.as_ref()?.iter().map(String::as_str));
    }
    Some(union)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(ns: &str, action: Action) -> Scope {
        Scope::repository(ns, action)
    }

    fn oci_scope(ns: &str, chart: &str, action: Action) -> Scope {
        Scope {
            oci: Some(format!("{ns}/{chart}")),
            ..Scope::repository(ns, action)
        }
    }

    fn entry(kind: &str, name: &str, actions: &[&str]) -> AccessEntry {
        AccessEntry {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            charts: None,
        }
    }

    fn limited(name: &str, actions: &[&str], charts: &[&str]) -> AccessEntry {
        AccessEntry {
            charts: Some(charts.iter().map(|s| s.to_string()).collect()),
            ..entry(RESOURCE_TYPE, name, actions)
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
            "repository:org1/repo1/mychart/x:pull",
            "repository:org1/repo1/MyChart:pull",
            "repository:org1/repo1/my..chart:pull",
            "repository:org1/repo1/-x:pull",
            "registry:catalog:*",
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
    fn parses_docker_scopes_into_their_repository() {
        let s = ScopeRequest::parse("repository:org1/repo1/my-chart:pull,push", 2).unwrap();
        assert_eq!(s.name, "org1/repo1");
        assert_eq!(s.oci.as_deref(), Some("org1/repo1/my-chart"));
        assert_eq!(s.to_string(), "repository:org1/repo1/my-chart:pull,push");
        let entry = AccessEntry::from_request(&s);
        assert_eq!(
            (entry.kind.as_str(), entry.name.as_str()),
            ("repository", "org1/repo1/my-chart")
        );
        let s = ScopeRequest::parse("repository:mychart:pull", 0).unwrap();
        assert_eq!(
            (s.name.as_str(), s.oci.as_deref()),
            ("repo", Some("mychart"))
        );
    }

    #[test]
    fn chart_grants_cover_one_chart_and_repository_grants_all() {
        let chart = [entry(OCI_RESOURCE_TYPE, "org1/repo1/a", &["pull"])];
        assert!(allows(&chart, &oci_scope("org1/repo1", "a", Action::Pull)));
        assert!(!allows(&chart, &oci_scope("org1/repo1", "b", Action::Pull)));
        assert!(!allows(&chart, &oci_scope("org1/repo1", "a", Action::Push)));
        assert!(!allows(&chart, &scope("org1/repo1", Action::Pull)));
        let repo = [entry(RESOURCE_TYPE, "org1/repo1", &["push"])];
        assert!(allows(&repo, &oci_scope("org1/repo1", "b", Action::Push)));
        assert!(!allows(&repo, &oci_scope("org2/repo1", "b", Action::Push)));
    }

    #[test]
    fn docker_challenge_scopes_ask_for_pull_with_push() {
        assert_eq!(
            oci_scope("org1/repo1", "c", Action::Push).to_string(),
            "repository:org1/repo1/c:pull,push"
        );
        assert_eq!(
            oci_scope("org1/repo1", "c", Action::Pull).to_string(),
            "repository:org1/repo1/c:pull"
        );
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

    #[test]
    fn granted_charts_come_from_the_entries_that_grant() {
        let push = scope("org1/repo1", Action::Push);
        let one = [
            limited("org1/repo1", &["pull", "push"], &["billing", "billing-*"]),
            limited("org2/repo2", &["push"], &["other"]),
        ];
        assert_eq!(
            granted_charts(&one, &push),
            Some(vec!["billing", "billing-*"])
        );
        // An unrestricted entry for the same scope lifts the limit.
        let lifted = [
            limited("org1/repo1", &["push"], &["billing"]),
            entry(RESOURCE_TYPE, "org1/repo1", &["push"]),
        ];
        assert_eq!(granted_charts(&lifted, &push), None);
        // Entries that do not grant the scope do not count.
        let pull_only = [
            entry(RESOURCE_TYPE, "org1/repo1", &["pull"]),
            limited("org1/repo1", &["push"], &["billing"]),
        ];
        assert_eq!(granted_charts(&pull_only, &push), Some(vec!["billing"]));
        assert_eq!(granted_charts(&[], &push), Some(vec![]));
    }

    #[test]
    fn charts_ride_in_the_claim_only_when_set() {
        let mut s = ScopeRequest::parse("artifact-repository:org1/repo1:push", 2).unwrap();
        let plain = serde_json::to_value(AccessEntry::from_request(&s)).unwrap();
        assert!(plain.get("charts").is_none(), "{plain}");
        s.charts = Some(vec!["billing-*".into()]);
        let entry = AccessEntry::from_request(&s);
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["charts"], serde_json::json!(["billing-*"]));
        let back: AccessEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
        let old: AccessEntry = serde_json::from_value(
            serde_json::json!({"type": RESOURCE_TYPE, "name": "x", "actions": ["push"]}),
        )
        .unwrap();
        assert_eq!(old.charts, None);
    }
}
