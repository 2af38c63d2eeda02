//! Access rules: ordered `(repository pattern, actions[, charts])` rules,
//! first match wins, no match grants nothing.
//!
//! Patterns are globs over repository names whose `*` stops at `/`
//! (`org1/*` matches `org1/repo1`, never `org1/a/b`); `**` spans segments
//! (`**` alone matches every repository, including the default `repo`).
//! Matching is case-sensitive, like ChartMuseum's namespaces.
//!
//! A rule's optional `charts` globs name the charts it lets its holder push
//! (and delete, which is push in ChartMuseum's scope model); pulls are not
//! restricted by them. `publish/` enforces them on what an upload carries.

use anyhow::{anyhow, ensure, Result};
use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
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
    /// Globs over chart names that push and delete are limited to; absent
    /// means every chart.
    #[serde(default)]
    pub charts: Option<Vec<String>>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    matcher: GlobMatcher,
    actions: ActionSet,
    charts: Option<ChartPatterns>,
}

/// Compiled chart-name globs, with their source text (minted into tokens).
#[derive(Debug, Clone)]
pub struct ChartPatterns {
    sources: Vec<String>,
    set: GlobSet,
}

impl ChartPatterns {
    /// Compiles `patterns`; `key` names them in errors (`…rules[1].charts`).
    ///
    /// # Errors
    /// The list is empty, or a pattern is empty, holds a `/` or is not a glob.
    pub fn compile(patterns: &[String], key: &str) -> Result<ChartPatterns> {
        ensure!(
            !patterns.is_empty(),
            "{key}: an empty list allows no chart; leave `charts` out to allow every chart"
        );
        let mut set = GlobSetBuilder::new();
        for (i, pattern) in patterns.iter().enumerate() {
            ensure!(!pattern.is_empty(), "{key}[{i}]: pattern is empty");
            ensure!(
                !pattern.contains('/'),
                "{key}[{i}]: {pattern:?} holds a '/'; chart names have none"
            );
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| anyhow!("{key}[{i}]: pattern {pattern:?}: {e}"))?;
            set.add(glob);
        }
        let set = set.build().map_err(|e| anyhow!("{key}: {e}"))?;
        Ok(ChartPatterns {
            sources: patterns.to_vec(),
            set,
        })
    }

    /// Whether `chart` matches one of the patterns.
    pub fn allows(&self, chart: &str) -> bool {
        self.set.is_match(chart)
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.sources
    }
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
            let charts = r
                .charts
                .as_deref()
                .map(|c| ChartPatterns::compile(c, &format!("{key}[{i}].charts")))
                .transpose()?;
            rules.push(Rule {
                matcher,
                actions,
                charts,
            });
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
                charts: None,
            })
            .collect();
        Acl::compile(&raw, key)
    }

    /// The first rule matching `repo`.
    fn rule_for(&self, repo: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matcher.is_match(repo))
    }

    /// What the first rule matching `repo` allows; nothing if none matches.
    pub fn actions_for(&self, repo: &str) -> ActionSet {
        self.rule_for(repo)
            .map_or(ActionSet::default(), |r| r.actions)
    }

    /// The charts the first rule matching `repo` limits push and delete to;
    /// `None` when it names none (every chart), or when no rule matches
    /// (which grants no push at all).
    pub fn charts_for(&self, repo: &str) -> Option<&ChartPatterns> {
        self.rule_for(repo).and_then(|r| r.charts.as_ref())
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
            charts: None,
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
                    charts: None,
                },
                RawRule {
                    repos: repos.into(),
                    actions: actions.iter().map(|s| s.to_string()).collect(),
                    charts: None,
                },
            ];
            format!("{:#}", Acl::compile(&raw, "accounts[0].rules").unwrap_err())
        };
        assert!(bad("org1/[", &["pull"]).contains("accounts[0].rules[1].repos"));
        assert!(bad("/org1", &["pull"]).contains("accounts[0].rules[1].repos"));
        assert!(bad("", &["pull"]).contains("accounts[0].rules[1].repos"));
        assert!(bad("org1/*", &["delete"]).contains("accounts[0].rules[1].actions"));
    }

    fn with_charts(charts: &[&str]) -> Result<Acl> {
        let raw = vec![
            RawRule {
                repos: "org1/public".into(),
                actions: vec!["pull".into(), "push".into()],
                charts: None,
            },
            RawRule {
                repos: "org1/*".into(),
                actions: vec!["pull".into(), "push".into()],
                charts: Some(charts.iter().map(|s| s.to_string()).collect()),
            },
        ];
        Acl::compile(&raw, "accounts[0].rules")
    }

    #[test]
    fn charts_are_the_first_matching_rules() {
        let a = with_charts(&["billing", "billing-*"]).unwrap();
        let charts = a.charts_for("org1/repo1").unwrap();
        assert_eq!(charts.patterns(), ["billing", "billing-*"]);
        for ok in ["billing", "billing-api", "billing-"] {
            assert!(charts.allows(ok), "{ok}");
        }
        for no in ["other", "billing2", "Billing", "xbilling", "api-billing"] {
            assert!(!charts.allows(no), "{no}");
        }
        // An earlier rule without charts wins for its repository; a
        // repository no rule matches has no chart list (and no push).
        assert!(a.charts_for("org1/public").is_none());
        assert!(a.charts_for("org2/repo1").is_none());
        // Charts never narrow the actions.
        assert!(a.allows("org1/repo1", Action::Pull));
        assert!(a.allows("org1/repo1", Action::Push));
    }

    #[test]
    fn bad_chart_patterns_are_named() {
        let err = |charts: &[&str]| format!("{:#}", with_charts(charts).unwrap_err());
        let e = err(&["billing", "a/b"]);
        assert!(e.contains("accounts[0].rules[1].charts[1]"), "{e}");
        let e = err(&["["]);
        assert!(e.contains("accounts[0].rules[1].charts[0]"), "{e}");
        let e = err(&["ok", ""]);
        assert!(e.contains("accounts[0].rules[1].charts[1]"), "{e}");
        let e = err(&[]);
        assert!(e.contains("accounts[0].rules[1].charts:"), "{e}");
    }

    #[test]
    fn charts_parse_from_toml() {
        let rule: RawRule =
            toml::from_str("repos = \"org1/*\"\nactions = [\"push\"]\ncharts = [\"billing-*\"]\n")
                .unwrap();
        assert_eq!(rule.charts, Some(vec!["billing-*".to_owned()]));
        let rule: RawRule = toml::from_str("repos = \"x\"\nactions = []\n").unwrap();
        assert_eq!(rule.charts, None);
    }
}
