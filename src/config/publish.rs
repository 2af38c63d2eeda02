//! `[publish]`: the repositories whose chart versions are immutable,
//! compiled with the same glob rules as account rules' `repos`. Owned by
//! the gateway; a reload replaces it.

use anyhow::{anyhow, Result};
use globset::GlobMatcher;

use super::RawPublish;
use crate::auth::acl::compile_pattern;

/// The validated `[publish]` section.
#[derive(Debug, Clone, Default)]
pub struct PublishConfig {
    /// Repository patterns where a stored version is never overwritten and
    /// a released one never deleted.
    pub immutable: Vec<GlobMatcher>,
}

impl RawPublish {
    /// Compiles the patterns.
    ///
    /// # Errors
    /// A pattern is invalid; the message names it (`publish.immutable[1]`).
    pub fn validate(self) -> Result<PublishConfig> {
        let immutable = self
            .immutable
            .iter()
            .enumerate()
            .map(|(i, p)| compile_pattern(p).map_err(|e| anyhow!("publish.immutable[{i}]: {e}")))
            .collect::<Result<_>>()?;
        Ok(PublishConfig { immutable })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<PublishConfig> {
        toml::from_str::<RawPublish>(text)?.validate()
    }

    #[test]
    fn patterns_are_repository_globs() {
        let c = validate("immutable = [\"org1/stable\", \"acme/*\"]").unwrap();
        let is = |repo: &str| c.immutable.iter().any(|m| m.is_match(repo));
        assert!(is("org1/stable") && is("acme/x"));
        assert!(!is("org1/stable2") && !is("acme/x/y") && !is("org1/repo1"));
        assert!(validate("").unwrap().immutable.is_empty());
    }

    #[test]
    fn bad_patterns_and_keys_are_named() {
        let e = format!(
            "{:#}",
            validate("immutable = [\"ok/*\", \"/bad\"]").unwrap_err()
        );
        assert!(e.contains("publish.immutable[1]"), "{e}");
        assert!(validate("immutable = true").is_err());
        assert!(validate("mutable = []").is_err());
    }
}
