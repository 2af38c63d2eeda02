//! `[auth]`: what the challenge announces, what the verifier requires, the
//! extra trusted keys, anonymous pull, the raw-token header, the password
//! cache and the failure limits. Owned by the gateway.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use hyper::header::HeaderName;

use super::raw::{RawAuth, RawSharedLimits};
use super::EnvLookup;
use crate::auth::access::{Action, ActionSet};
use crate::auth::acl::Acl;
use crate::auth::authn::AuthnOptions;
use crate::auth::challenge::is_quotable;
use crate::auth::key::parse_algorithm;
use crate::auth::keyset::KeyFile;
use crate::auth::limit::LimitOptions;

/// What the challenge announces and the verifier requires.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    pub token_cache_capacity: u64,
    pub trusted_keys: Vec<KeyFile>,
    pub key_refresh: Duration,
    pub anonymous_pull: Acl,
    pub authn: AuthnOptions,
    pub limits: LimitOptions,
    /// The Redis client and key prefix for failure counts shared by every
    /// replica, when configured.
    pub shared_limits: Option<(redis::Client, String)>,
}

/// Headers a raw-token header may not be: HTTP's own, and those the
/// gateway strips or sets.
fn is_reserved_header(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "authorization",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "cookie",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-request-id",
        "forwarded",
        "traceparent",
        "tracestate",
    ];
    RESERVED.contains(&name)
}

impl RawAuth {
    /// # Errors
    /// The first invalid `auth.*` key, by name.
    pub fn validate(self, base: &Path, env: EnvLookup<'_>) -> Result<AuthConfig> {
        self.check_announced()?;
        let audience = self
            .audience
            .clone()
            .unwrap_or_else(|| self.service.clone());
        ensure!(!audience.is_empty(), "auth.audience must not be empty");
        ensure!(
            self.token_cache_capacity > 0,
            "auth.token_cache_capacity must be at least 1"
        );
        ensure!(
            self.leeway <= Duration::from_secs(300),
            "auth.leeway must be at most 5m, got {:?}",
            self.leeway
        );
        ensure!(
            !self.key_refresh.is_zero(),
            "auth.key_refresh must be more than zero"
        );
        let mut trusted_keys = Vec::new();
        for (i, k) in self.trusted_keys.iter().enumerate() {
            let algorithm = parse_algorithm(&k.algorithm)
                .with_context(|| format!("auth.trusted_keys[{i}].algorithm"))?;
            trusted_keys.push(KeyFile {
                path: base.join(&k.file),
                algorithm,
            });
        }
        let mut pull_only = ActionSet::default();
        pull_only.insert(Action::Pull);
        let anonymous_pull = Acl::uniform(&self.anonymous_pull, pull_only, "auth.anonymous_pull")?;
        let authn = self.authn_options()?;
        let limits = self.limits()?;
        let shared_limits = self
            .shared_limits
            .as_ref()
            .map(|s| s.validate(base, env))
            .transpose()?;
        Ok(AuthConfig {
            realm: self.realm,
            service: self.service,
            issuer: self.issuer,
            audience,
            leeway: self.leeway,
            token_cache_capacity: self.token_cache_capacity,
            trusted_keys,
            key_refresh: self.key_refresh,
            anonymous_pull,
            authn,
            limits,
            shared_limits,
        })
    }

    /// The values that travel in every challenge and token.
    fn check_announced(&self) -> Result<()> {
        ensure!(
            self.realm.starts_with("http://") || self.realm.starts_with("https://"),
            "auth.realm must be an absolute http(s) URL of the token endpoint, got {:?}",
            self.realm
        );
        for (key, value) in [
            ("auth.realm", &self.realm),
            ("auth.service", &self.service),
            ("auth.issuer", &self.issuer),
        ] {
            ensure!(!value.is_empty(), "{key} must not be empty");
            ensure!(
                is_quotable(value),
                "{key} may hold only printable ASCII without '\"' or '\\', got {value:?}"
            );
        }
        Ok(())
    }

    fn authn_options(&self) -> Result<AuthnOptions> {
        let token_header = match &self.token_header {
            None => None,
            Some(name) => {
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| anyhow!("auth.token_header {name:?} is not a header name"))?;
                ensure!(
                    !is_reserved_header(header.as_str()),
                    "auth.token_header {name:?} is a header the gateway or HTTP itself owns"
                );
                Some(header)
            }
        };
        ensure!(
            !self.credential_cache_ttl.is_zero()
                && self.credential_cache_ttl <= Duration::from_secs(3600),
            "auth.credential_cache_ttl must be between 1s and 1h"
        );
        ensure!(
            self.credential_cache_capacity > 0,
            "auth.credential_cache_capacity must be at least 1"
        );
        Ok(AuthnOptions {
            token_header,
            cache_ttl: self.credential_cache_ttl,
            cache_capacity: self.credential_cache_capacity,
        })
    }

    fn limits(&self) -> Result<LimitOptions> {
        ensure!(
            self.max_failures_per_account > 0 && self.max_failures_per_address > 0,
            "auth.max_failures_per_account and auth.max_failures_per_address must be at least 1"
        );
        ensure!(
            !self.failure_window.is_zero(),
            "auth.failure_window must be more than zero"
        );
        Ok(LimitOptions {
            window: self.failure_window,
            per_account: self.max_failures_per_account,
            per_address: self.max_failures_per_address,
        })
    }
}

impl RawSharedLimits {
    fn validate(&self, base: &Path, env: EnvLookup<'_>) -> Result<(redis::Client, String)> {
        use redis::IntoConnectionInfo;
        let key = "auth.shared_limits.redis_url";
        ensure!(
            self.redis_url.starts_with("redis://"),
            "{key} must be a redis:// URL, got {:?}",
            self.redis_url
        );
        let info = self
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| anyhow!("{key}: {e}"))?;
        ensure!(
            info.redis_settings().password().is_none(),
            "{key} must not hold a password; use auth.shared_limits.password = {{ env = \"NAME\" }}"
        );
        let info = match &self.password {
            None => info,
            Some(secret) => {
                let password = secret.resolve("auth.shared_limits.password", base, env)?;
                let password = String::from_utf8(password)
                    .context("auth.shared_limits.password is not UTF-8")?;
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_password(password.trim_end_matches(['\r', '\n']));
                info.set_redis_settings(settings)
            }
        };
        ensure!(
            !self.key_prefix.is_empty()
                && self
                    .key_prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
            "auth.shared_limits.key_prefix must be non-empty [A-Za-z0-9._:-]"
        );
        let client = redis::Client::open(info).map_err(|e| anyhow!("{key}: {e}"))?;
        Ok((client, self.key_prefix.clone()))
    }
}
