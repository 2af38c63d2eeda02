//! Trust policies: which external identities may publish, and what they
//! get. A policy names one issuer, the audience its tokens must carry, and
//! claim matchers; an id token that meets them all is granted the policy's
//! rules (the same form as an account's), under a subject that says which
//! policy and which identity (`github:acme/billing@refs/heads/main`).

use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::acl::Acl;

/// Which CI platform's claims a policy reads: it fixes the claims that may
/// be matched and how the identity is written in the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// GitHub Actions.
    GitHub,
    /// GitLab CI.
    GitLab,
    /// Anything else (a Kubernetes service account, ...): `sub` only.
    Generic,
}

impl Platform {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Platform> {
        match s {
            "github" => Some(Platform::GitHub),
            "gitlab" => Some(Platform::GitLab),
            "generic" => Some(Platform::Generic),
            _ => None,
        }
    }

    /// The claims a policy for this platform may match on.
    pub fn matchable(self) -> &'static [&'static str] {
        match self {
            Platform::GitHub => &[
                "repository",
                "repository_owner",
                "ref",
                "environment",
                "workflow_ref",
                "job_workflow_ref",
                "sub",
            ],
            Platform::GitLab => &["project_path", "ref", "ref_protected", "environment", "sub"],
            Platform::Generic => &["sub"],
        }
    }

    /// Claims of which a policy must match at least one: without one, a
    /// policy would trust every project the platform serves.
    pub fn identifying(self) -> &'static [&'static str] {
        match self {
            Platform::GitHub => &["repository", "repository_owner", "job_workflow_ref", "sub"],
            Platform::GitLab => &["project_path", "sub"],
            Platform::Generic => &["sub"],
        }
    }

    /// The claims the subject is written from: `<project>@<ref>`, or `sub`.
    fn identity_claims(self) -> Option<(&'static str, &'static str)> {
        match self {
            Platform::GitHub => Some(("repository", "ref")),
            Platform::GitLab => Some(("project_path", "ref")),
            Platform::Generic => None,
        }
    }
}

/// `aud`: one string or a list (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// The claims of an external id token, after its signature, `iss`, `aud`
/// and `exp` were checked ([`crate::auth::jws::verify`]).
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: Audience,
    pub exp: u64,
    pub iat: Option<u64>,
    pub nbf: Option<u64>,
    pub jti: Option<String>,
    /// Every other claim, for the matchers.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

impl IdClaims {
    /// A claim as text: strings as they are, booleans and numbers written
    /// out (GitLab sends `ref_protected` as `"true"`, others send `true`).
    pub fn text(&self, name: &str) -> Option<String> {
        if name == "sub" {
            return Some(self.sub.clone());
        }
        match self.other.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// One claim and the patterns its value may match (any of them).
#[derive(Debug, Clone)]
pub struct ClaimMatcher {
    pub claim: String,
    patterns: Vec<GlobMatcher>,
}

impl ClaimMatcher {
    /// Compiles `patterns` for `claim`: exact text, or globs whose `*`
    /// stops at `/` and `**` spans it, as repository rules are written.
    ///
    /// # Errors
    /// A pattern is empty or not a valid glob.
    pub fn new(claim: &str, patterns: &[String]) -> Result<ClaimMatcher, String> {
        if patterns.is_empty() {
            return Err("needs at least one value".to_owned());
        }
        let patterns = patterns
            .iter()
            .map(|p| {
                if p.is_empty() {
                    return Err("a value is empty".to_owned());
                }
                GlobBuilder::new(p)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map(|g| g.compile_matcher())
                    .map_err(|e| format!("{p:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ClaimMatcher {
            claim: claim.to_owned(),
            patterns,
        })
    }

    fn matches(&self, claims: &IdClaims) -> bool {
        claims
            .text(&self.claim)
            .is_some_and(|v| self.patterns.iter().any(|p| p.is_match(&v)))
    }
}

/// A validated trust policy.
#[derive(Debug)]
pub struct Policy {
    /// Written first in subjects (`<name>:<identity>`).
    pub name: String,
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must carry.
    pub audience: String,
    pub platform: Platform,
    pub matchers: Vec<ClaimMatcher>,
    /// What a matching identity may do, as an account's rules say it.
    pub acl: Acl,
    /// The longest life of what the identity is granted.
    pub max_ttl: Duration,
    /// Each token's `jti` may be exchanged once, and only exchanged.
    pub single_use: bool,
}

/// Longest subject written; longer identities are cut.
const MAX_SUBJECT: usize = 256;

impl Policy {
    /// Whether a verified token from this policy's issuer meets it.
    pub fn matches(&self, claims: &IdClaims) -> bool {
        claims.iss == self.issuer
            && claims.aud.contains(&self.audience)
            && self.matchers.iter().all(|m| m.matches(claims))
    }

    /// The subject of what a matching identity is granted.
    pub fn subject(&self, claims: &IdClaims) -> String {
        let identity = self
            .platform
            .identity_claims()
            .and_then(|(project, git_ref)| {
                let project = claims.text(project)?;
                Some(match claims.text(git_ref) {
                    Some(r) => format!("{project}@{r}"),
                    None => project,
                })
            })
            .unwrap_or_else(|| claims.sub.clone());
        let mut subject: String = format!("{}:{identity}", self.name)
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if subject.len() > MAX_SUBJECT {
            let cut = (0..=MAX_SUBJECT)
                .rev()
                .find(|&i| subject.is_char_boundary(i))
                .unwrap_or(0);
            subject.truncate(cut);
        }
        subject
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access::Action;
    use crate::auth::acl::acl;

    fn github_claims(repository: &str, git_ref: &str, environment: Option<&str>) -> IdClaims {
        let mut v = serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": format!("repo:{repository}:ref:{git_ref}"),
            "aud": "https://charts.example.com",
            "exp": 2_000_000_000u64,
            "iat": 1_000_000_000u64,
            "repository": repository,
            "repository_owner": repository.split('/').next().unwrap(),
            "ref": git_ref,
            "ref_protected": "true",
            "job_workflow_ref": format!("{repository}/.github/workflows/release.yml@{git_ref}"),
        });
        if let Some(env) = environment {
            v["environment"] = env.into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn policy(matchers: &[(&str, &[&str])]) -> Policy {
        Policy {
            name: "github".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "https://charts.example.com".into(),
            platform: Platform::GitHub,
            matchers: matchers
                .iter()
                .map(|(c, p)| {
                    let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
                    ClaimMatcher::new(c, &p).unwrap()
                })
                .collect(),
            acl: acl(&[("acme/charts", &["pull", "push"])]),
            max_ttl: Duration::from_secs(600),
            single_use: false,
        }
    }

    #[test]
    fn every_matcher_must_hold() {
        let p = policy(&[
            ("repository", &["acme/billing"]),
            ("ref", &["refs/heads/main", "refs/tags/v*"]),
        ]);
        assert!(p.matches(&github_claims("acme/billing", "refs/heads/main", None)));
        assert!(p.matches(&github_claims("acme/billing", "refs/tags/v1.2.0", None)));
        assert!(!p.matches(&github_claims("acme/billing", "refs/heads/dev", None)));
        assert!(!p.matches(&github_claims("acme/billingx", "refs/heads/main", None)));
        assert!(!p.matches(&github_claims("evil/billing", "refs/heads/main", None)));
        // `*` stops at '/': a tag pattern never matches a branch path.
        assert!(!p.matches(&github_claims("acme/billing", "refs/tags/v1/x", None)));
        assert!(p.acl.allows("acme/charts", Action::Push));
    }

    #[test]
    fn a_missing_claim_never_matches() {
        let p = policy(&[
            ("repository", &["acme/*"]),
            ("environment", &["production"]),
        ]);
        assert!(!p.matches(&github_claims("acme/billing", "refs/heads/main", None)));
        assert!(p.matches(&github_claims(
            "acme/billing",
            "refs/heads/main",
            Some("production")
        )));
        assert!(!p.matches(&github_claims(
            "acme/billing",
            "refs/heads/main",
            Some("staging")
        )));
    }

    #[test]
    fn issuer_and_audience_are_exact() {
        let p = policy(&[("repository", &["acme/billing"])]);
        let mut c = github_claims("acme/billing", "refs/heads/main", None);
        c.aud = Audience::Many(vec!["other".into(), "https://charts.example.com".into()]);
        assert!(p.matches(&c));
        c.aud = Audience::One("https://charts.example.com/".into());
        assert!(!p.matches(&c));
        let mut c = github_claims("acme/billing", "refs/heads/main", None);
        c.iss = "https://token.actions.githubusercontent.com/".into();
        assert!(!p.matches(&c));
    }

    #[test]
    fn booleans_and_strings_compare_as_text() {
        let c: IdClaims = serde_json::from_value(serde_json::json!({
            "iss": "i", "aud": "a", "exp": 1, "ref_protected": true, "n": 7
        }))
        .unwrap();
        assert_eq!(c.text("ref_protected").as_deref(), Some("true"));
        assert_eq!(c.text("n").as_deref(), Some("7"));
        assert_eq!(c.text("absent"), None);
    }

    #[test]
    fn subjects_name_the_policy_and_the_identity() {
        let p = policy(&[("repository", &["acme/billing"])]);
        assert_eq!(
            p.subject(&github_claims("acme/billing", "refs/heads/main", None)),
            "github:acme/billing@refs/heads/main"
        );
        let mut generic = policy(&[("sub", &["system:serviceaccount:ci:*"])]);
        generic.platform = Platform::Generic;
        generic.name = "k8s".into();
        let mut c = github_claims("x/y", "r", None);
        c.sub = "system:serviceaccount:ci:publisher\n".into();
        assert_eq!(
            generic.subject(&c),
            "k8s:system:serviceaccount:ci:publisher"
        );
        c.sub = "é".repeat(400);
        assert!(generic.subject(&c).len() <= MAX_SUBJECT);
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(ClaimMatcher::new("ref", &[]).is_err());
        assert!(ClaimMatcher::new("ref", &["".into()]).is_err());
        assert!(ClaimMatcher::new("ref", &["refs/[".into()]).is_err());
    }
}
