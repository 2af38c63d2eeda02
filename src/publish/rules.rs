//! The publish decisions, in one place: which charts a principal may push
//! or delete (its rule's `charts`, or its token entries'), which
//! repositories are immutable, and what a delete of a version may do there.

use std::borrow::Cow;

use globset::GlobMatcher;

use super::lock::{Held, Locks};
use super::{Identity, PublishRefusal};
use crate::auth::access::{self, Scope};
use crate::auth::acl::ChartPatterns;
use crate::auth::authn::Principal;
use crate::config::PublishConfig;

/// The publish rules of a running gateway.
#[derive(Debug)]
pub struct Publisher {
    immutable: Vec<GlobMatcher>,
    locks: Locks,
}

/// The charts a principal may push into one repository.
#[derive(Debug)]
pub enum ChartRule<'a> {
    /// Every chart: no rule names charts.
    Any,
    /// The charts these patterns match.
    Only(Cow<'a, ChartPatterns>),
    /// None: the token's patterns do not compile.
    Nothing,
}

impl ChartRule<'_> {
    /// The rule of `principal` for `scope` (a push scope it holds): an
    /// account's first matching rule, or the union over the token entries
    /// granting the scope, where one unlimited entry lifts the limit.
    pub fn of<'a>(principal: &'a Principal, scope: &Scope) -> ChartRule<'a> {
        match principal {
            Principal::Account(account) => match account.acl.charts_for(&scope.namespace) {
                Some(patterns) => ChartRule::Only(Cow::Borrowed(patterns)),
                None => ChartRule::Any,
            },
            Principal::Token(claims) => match access::granted_charts(&claims.access, scope) {
                None => ChartRule::Any,
                Some(list) => {
                    let list: Vec<String> = list.into_iter().map(str::to_owned).collect();
                    match ChartPatterns::compile(&list, "token access charts") {
                        Ok(patterns) => ChartRule::Only(Cow::Owned(patterns)),
                        Err(_) => ChartRule::Nothing,
                    }
                }
            },
            // Anonymous access never pushes; admission decided that.
            Principal::Anonymous => ChartRule::Any,
        }
    }

    /// Whether `chart` may be pushed.
    pub fn allows(&self, chart: &str) -> bool {
        match self {
            ChartRule::Any => true,
            ChartRule::Only(patterns) => patterns.allows(chart),
            ChartRule::Nothing => false,
        }
    }
}

/// What a push or delete into one repository is checked against.
#[derive(Debug)]
pub struct Checks<'a> {
    charts: ChartRule<'a>,
    immutable: bool,
    /// The repository as scopes name it, for messages.
    repo: String,
}

impl Checks<'_> {
    /// Whether the repository is immutable.
    pub fn immutable(&self) -> bool {
        self.immutable
    }

    /// Whether the repository is immutable and this principal's rule names
    /// charts: neither means an upload needs no reading.
    pub fn needs_identity(&self) -> bool {
        self.immutable || !matches!(self.charts, ChartRule::Any)
    }

    /// Whether `chart` may be pushed here.
    ///
    /// # Errors
    /// The rule does not list it.
    pub fn chart(&self, chart: &str) -> Result<(), PublishRefusal> {
        if self.charts.allows(chart) {
            Ok(())
        } else {
            Err(PublishRefusal::ChartNotAllowed {
                chart: chart.to_owned(),
                repo: self.repo.clone(),
            })
        }
    }

    /// Whether `chart` at `version` may be deleted here: the chart must be
    /// allowed, and an immutable repository keeps released versions (only
    /// SemVer pre-releases, `1.2.0-rc.1`, may go).
    ///
    /// # Errors
    /// The chart is not allowed, or the version is released and immutable.
    pub fn delete(&self, chart: &str, version: &str) -> Result<(), PublishRefusal> {
        self.chart(chart)?;
        if self.immutable && is_release(version) {
            return Err(self.exists(chart, version));
        }
        Ok(())
    }

    /// The refusal for a version that may not change.
    pub fn exists(&self, chart: &str, version: &str) -> PublishRefusal {
        PublishRefusal::Immutable {
            chart: chart.to_owned(),
            version: version.to_owned(),
            repo: self.repo.clone(),
        }
    }
}

/// Whether `version` is a release, not a SemVer pre-release: no `-` before
/// any `+build` part.
pub fn is_release(version: &str) -> bool {
    let core = version.split('+').next().unwrap_or("");
    !core.contains('-')
}

impl Publisher {
    /// The rules of `config`.
    pub fn new(config: &PublishConfig) -> Publisher {
        Publisher {
            immutable: config.immutable.clone(),
            locks: Locks::default(),
        }
    }

    /// Whether `namespace` (a repository as scopes name it) is immutable.
    pub fn is_immutable(&self, namespace: &str) -> bool {
        self.immutable.iter().any(|m| m.is_match(namespace))
    }

    /// The checks for `principal` pushing or deleting under `scope`.
    pub fn checks<'a>(&self, principal: &'a Principal, scope: &Scope) -> Checks<'a> {
        Checks {
            charts: ChartRule::of(principal, scope),
            immutable: self.is_immutable(&scope.namespace),
            repo: scope.namespace.clone(),
        }
    }

    /// Serializes pushes of `chart` into `namespace` within this process.
    pub async fn lock(&self, namespace: &str, chart: &Identity) -> Held<'_> {
        self.locks.lock(format!("{namespace}\n{chart}")).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::access::{AccessEntry, Action, RESOURCE_TYPE};
    use crate::auth::account::Account;
    use crate::auth::acl::{Acl, RawRule};
    use crate::auth::token::Claims;

    fn account(charts: Option<&[&str]>) -> Principal {
        let acl = Acl::compile(
            &[RawRule {
                repos: "org1/*".into(),
                actions: vec!["pull".into(), "push".into()],
                charts: charts.map(|c| c.iter().map(|s| s.to_string()).collect()),
            }],
            "rules",
        )
        .unwrap();
        Principal::Account(Arc::new(Account {
            id: "ci".into(),
            secret: None,
            client_cn: None,
            expires: None,
            acl,
        }))
    }

    fn token(entries: &[(&str, Option<&[&str]>)]) -> Principal {
        let access: Vec<AccessEntry> = entries
            .iter()
            .map(|(name, charts)| AccessEntry {
                kind: RESOURCE_TYPE.into(),
                name: (*name).into(),
                actions: vec!["push".into()],
                charts: charts.map(|c| c.iter().map(|s| s.to_string()).collect()),
            })
            .collect();
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "iss": "chartgate", "sub": "ci", "aud": "gw", "exp": u64::MAX, "access": access,
        }))
        .unwrap();
        Principal::Token(Arc::new(claims))
    }

    fn publisher(immutable: &[&str]) -> Publisher {
        let config = crate::config::RawPublish {
            immutable: immutable.iter().map(|s| s.to_string()).collect(),
        }
        .validate()
        .unwrap();
        Publisher::new(&config)
    }

    fn push(repo: &str) -> Scope {
        Scope::repository(repo, Action::Push)
    }

    #[test]
    fn accounts_and_tokens_are_held_to_their_charts() {
        let p = publisher(&[]);
        let limited = [
            account(Some(&["billing", "billing-*"])),
            token(&[("org1/repo1", Some(&["billing", "billing-*"]))]),
        ];
        for principal in &limited {
            let checks = p.checks(principal, &push("org1/repo1"));
            assert!(checks.needs_identity());
            assert!(checks.chart("billing").is_ok());
            assert!(checks.chart("billing-api").is_ok());
            assert_eq!(
                checks.chart("other"),
                Err(PublishRefusal::ChartNotAllowed {
                    chart: "other".into(),
                    repo: "org1/repo1".into()
                })
            );
            assert!(checks.delete("other", "0.1.0-rc.1").is_err());
        }
        for principal in [account(None), token(&[("org1/repo1", None)])] {
            let checks = p.checks(&principal, &push("org1/repo1"));
            assert!(!checks.needs_identity());
            assert!(checks.chart("other").is_ok());
        }
        // A token entry for another repository does not limit this one.
        let t = token(&[("org1/repo1", None), ("org2/x", Some(&["billing"]))]);
        assert!(p.checks(&t, &push("org1/repo1")).chart("other").is_ok());
        // Patterns a token carries that do not compile allow nothing.
        let bad = token(&[("org1/repo1", Some(&["a/b"]))]);
        assert!(p.checks(&bad, &push("org1/repo1")).chart("a").is_err());
    }

    #[test]
    fn immutable_repositories_keep_released_versions() {
        let p = publisher(&["org1/stable", "acme/*"]);
        let principal = account(None);
        let checks = p.checks(&principal, &push("org1/stable"));
        assert!(checks.immutable() && checks.needs_identity());
        assert!(matches!(
            checks.delete("app", "1.0.0"),
            Err(PublishRefusal::Immutable { .. })
        ));
        assert!(checks.delete("app", "1.0.0+build-7").is_err());
        assert!(checks.delete("app", "1.1.0-rc.1").is_ok());
        assert!(p.is_immutable("acme/x"));
        assert!(!p.is_immutable("acme/x/y"));
        let open = p.checks(&principal, &push("org1/repo1"));
        assert!(!open.immutable() && !open.needs_identity());
        assert!(open.delete("app", "1.0.0").is_ok());
    }
}
