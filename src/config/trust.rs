//! `[[trust]]`: trust policies for trusted publishing, validated into
//! [`Policy`] values and the list of issuers whose keys the gateway
//! fetches. Owned by the gateway; a reload replaces them, and with them
//! every remembered identity and key cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Result};

use super::raw::{RawClaimValues, RawTrust};
use crate::auth::acl::Acl;
use crate::federation::fetch;
use crate::federation::policy::{ClaimMatcher, Platform, Policy};

/// Where one issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSource {
    pub issuer: String,
    /// Configured JWKS address; `None` means OIDC discovery.
    pub jwks_uri: Option<String>,
    /// CA bundle for its https; `None` means the system roots.
    pub ca_file: Option<PathBuf>,
}

/// The validated trust policies, in config order (the first match wins).
#[derive(Debug, Default)]
pub struct TrustConfig {
    pub policies: Vec<Arc<Policy>>,
    pub issuers: Vec<IssuerSource>,
}

impl TrustConfig {
    /// Whether any policy is configured.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// The longest `max_ttl` a policy may set.
const MAX_TTL_CAP: Duration = Duration::from_secs(3600);

/// Validates every policy.
///
/// # Errors
/// The first invalid key, as `trust[N].key`.
pub fn validate(raw: Vec<RawTrust>, base: &Path) -> Result<TrustConfig> {
    let mut config = TrustConfig::default();
    let mut sources: HashMap<String, IssuerSource> = HashMap::new();
    for (n, policy) in raw.into_iter().enumerate() {
        let key = format!("trust[{n}]");
        let (policy, source) = policy.validate(&key, base)?;
        ensure!(
            config.policies.iter().all(|p| p.name != policy.name),
            "{key}.name: {:?} is used by another policy",
            policy.name
        );
        match sources.get(&source.issuer) {
            Some(known) if *known != source => bail!(
                "{key}: policies for issuer {} must give the same jwks_uri and ca_file",
                source.issuer
            ),
            Some(_) => {}
            None => {
                sources.insert(source.issuer.clone(), source.clone());
                config.issuers.push(source);
            }
        }
        config.policies.push(Arc::new(policy));
    }
    Ok(config)
}

impl RawTrust {
    fn validate(self, key: &str, base: &Path) -> Result<(Policy, IssuerSource)> {
        ensure!(
            !self.name.is_empty()
                && self.name.len() <= 32
                && self
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{key}.name must be 1-32 characters of [a-z0-9-], got {:?}",
            self.name
        );
        fetch::check_url(&self.issuer).map_err(|e| anyhow!("{key}.issuer: {e}"))?;
        if let Some(uri) = &self.jwks_uri {
            fetch::check_url(uri).map_err(|e| anyhow!("{key}.jwks_uri: {e}"))?;
        }
        ensure!(
            !self.audience.is_empty(),
            "{key}.audience must not be empty"
        );
        let platform = Platform::parse(&self.provider).ok_or_else(|| {
            anyhow!(
                "{key}.provider must be github, gitlab or generic, got {:?}",
                self.provider
            )
        })?;
        ensure!(
            !self.max_ttl.is_zero() && self.max_ttl <= MAX_TTL_CAP,
            "{key}.max_ttl must be more than zero and at most 1h, got {:?}",
            self.max_ttl
        );
        let matchers = matchers(&self.claims, platform, key)?;
        ensure!(
            !self.rules.is_empty(),
            "{key}.rules: a policy must grant something"
        );
        let acl = Acl::compile(&self.rules, &format!("{key}.rules"))?;
        let ca_file = self.ca_file.map(|f| base.join(f));
        if let Some(f) = &ca_file {
            ensure!(f.is_file(), "{key}.ca_file: {} is not a file", f.display());
        }
        let source = IssuerSource {
            issuer: self.issuer.clone(),
            jwks_uri: self.jwks_uri,
            ca_file,
        };
        let policy = Policy {
            name: self.name,
            issuer: self.issuer,
            audience: self.audience,
            platform,
            matchers,
            acl,
            max_ttl: self.max_ttl,
            single_use: self.single_use,
        };
        Ok((policy, source))
    }
}

/// Compiles the claim matchers, allowing only `platform`'s claims and
/// requiring one that identifies a project or workload.
fn matchers(
    claims: &std::collections::BTreeMap<String, RawClaimValues>,
    platform: Platform,
    key: &str,
) -> Result<Vec<ClaimMatcher>> {
    let mut out = Vec::with_capacity(claims.len());
    for (claim, values) in claims {
        ensure!(
            platform.matchable().contains(&claim.as_str()),
            "{key}.claims.{claim}: not a claim this provider's policies match; use one of {}",
            platform.matchable().join(", ")
        );
        let values = match values {
            RawClaimValues::One(v) => vec![v.clone()],
            RawClaimValues::Flag(b) => vec![b.to_string()],
            RawClaimValues::Many(v) => v.clone(),
        };
        out.push(
            ClaimMatcher::new(claim, &values).map_err(|e| anyhow!("{key}.claims.{claim}: {e}"))?,
        );
    }
    ensure!(
        out.iter()
            .any(|m| platform.identifying().contains(&m.claim.as_str())),
        "{key}.claims must match at least one of {}: without one the policy trusts every project of the issuer",
        platform.identifying().join(", ")
    );
    Ok(out)
}
