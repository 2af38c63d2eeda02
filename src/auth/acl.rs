//! Access rules: ordered `(repository pattern, actions)` pairs, first match
//! wins, no match grants nothing.
//!
//! Patterns are globs over repository names whose `*` stops at `/`
//! (`org1/*` matches `org1/repo1`, never `org1/a/b`); `**` spans segments
//! (`**` alone matches every repository, including the default `repo`).
//! Matching is case-sensitive, like ChartMuseum's namespaces.

use anyhow::{anyhow, ensure, Result};
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use super::access::{Action, ActionSet};

/// One rule as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// A glob over repository names.
    pub repos: String,
    /// `pull` and/or `push`; an empty list denies the matching repositories.
    pub actions: Vec<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    matcher: GlobMatcher,
    actions: ActionSet,
}

/// An ordered list of rules.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// Compiles one repository pattern.
///
/// # Errors
/// The glob is malformed or could match a non-canonical name.
pub fn compile_pattern(pattern: &str) -> Result<GlobMatcher> {
    ensure!(!pattern.is_empty(), "pattern is empty");
    ensure!(
        !pattern.starts_with('/') && !pattern.ends_with('/') && !pattern.contains("//"),
        "pattern {pattern:?} has a leading, trailing or doubled '/'"
    );
    let glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| anyhow!("pattern {pattern:?}: {e}"))?;
    Ok(glob.compile_matcher())
}

impl Acl {
    /// Compiles `raw` rules; `key` names them in errors (`accounts[2].rules`).
    ///
    /// # Errors
    /// A pattern or an action is invalid; the message names the rule.
    pub fn compile(raw: &[RawRule], key: &str) -> Result<Acl> {
        let mut rules = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let matcher =
                compile_pattern(&r.repos).map_err(|e| anyhow!("{key}[{i}].repos: {e}"))?;
            let mut actions = ActionSet::default();
            for a in &r.actions {
                let action = Action::parse(a).ok_or_else(|| {
                    anyhow!("{key}[{i}].actions: unknown action {a:?}; use pull or push")
                })?;
                actions.insert(action);
            }
            rules.push(Rule { matcher, actions });
        }
        Ok(Acl { rules })
    }

    /// An ACL granting `actions` on every repository matching one of `patterns`.
    ///
    /// # Errors
    /// A pattern is invalid; the message names it under `key`.
    pub fn uniform(patterns: &[String], actions: ActionSet, key: &str) -> Result<Acl> {
        let raw: Vec<RawRule> = patterns
            .iter()
            .map(|p| RawRule {
                repos: p.clone(),
                actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
            })
            .collect();
        Acl::compile(&raw, key)
    }

    /// What the first rule matching `repo` allows; nothing if none matches.
    pub fn actions_for(&self, repo: &str) -> ActionSet {
        self.rules
            .iter()
            .find(|r| r.matcher.is_match(repo))
            .map_or(ActionSet::default(), |r| r.actions)
    }

    /// Whether `action` on `repo` is allowed.
    pub fn allows(&self, repo: &str, action: Action) -> bool {
        self.actions_for(repo).contains(action)
    }

    /// Whether the ACL has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Builds an ACL from `(pattern, actions)` pairs (tests only).
#[cfg(test)]
pub(crate) fn acl(rules: &[(&str, &[&str])]) -> Acl {
    let raw: Vec<RawRule> = rules
        .iter()
        .map(|(p, a)| RawRule {
            repos: p.to_string(),
            actions: a.iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    Acl::compile(&raw, "rules").unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stops_at_slash() {
        let a = acl(&[("org1/*", &["pull"])]);
        assert!(a.allows("org1/repo1", Action::Pull));
        assert!(!a.allows("org1/a/b", Action::Pull));
        assert!(!a.allows("org1", Action::Pull));
        assert!(!a.allows("org10/repo1", Action::Pull));
        assert!(!a.allows("ORG1/repo1", Action::Pull));
        assert!(!a.allows("org1/repo1", Action::Push));
    }

    #[test]
    fn double_star_spans_segments_and_the_default_namespace() {
        let a = acl(&[("**", &["pull", "push"])]);
        for repo in ["repo", "org1/repo1", "a/b/c"] {
            assert!(a.allows(repo, Action::Push), "{repo}");
        }
        let a = acl(&[("org1/**", &["pull"])]);
        assert!(a.allows("org1/a/b", Action::Pull));
        assert!(!a.allows("org2/a", Action::Pull));
    }

    #[test]
    fn first_match_wins_and_no_match_grants_nothing() {
        let a = acl(&[
            ("org1/secret", &[]),
            ("org1/*", &["pull", "push"]),
            ("*/*", &["pull"]),
        ]);
        assert!(a.actions_for("org1/secret").is_empty());
        assert!(a.allows("org1/repo1", Action::Push));
        assert!(a.allows("org2/repo2", Action::Pull));
        assert!(!a.allows("org2/repo2", Action::Push));
        assert!(a.actions_for("repo").is_empty());
        assert!(Acl::default().actions_for("org1/repo1").is_empty());
    }

    #[test]
    fn bad_rules_are_named() {
        let bad = |repos: &str, actions: &[&str]| {
            let raw = vec![
                RawRule {
                    repos: "ok/*".into(),
                    actions: vec!["pull".into()],
                },
                RawRule {
                    repos: repos.into(),
                    actions: actions.iter().map(|s| s.to_string()).collect(),
                },
            ];
            format!("{:#}", Acl::compile(&raw, "accounts[0].rules").unwrap_err())
        };
        assert!(bad("org1/[", &["pull"]).contains("accounts[0].rules[1].repos"));
        assert!(bad("/org1", &["pull"]).contains("accounts[0].rules[1].repos"));
        assert!(bad("", &["pull"]).contains("accounts[0].rules[1].repos"));
        assert!(bad("org1/*", &["delete"]).contains("accounts[0].rules[1].actions"));
    }
}
