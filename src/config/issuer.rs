//! `[issuer]`: the token endpoint's path, signing key and token lifetime.
//! Owned by the gateway: a reload may rotate the signing key.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::raw::RawIssuer;
use super::{rfc3339, EnvLookup};
use crate::auth::key::{parse_algorithm, SigningKey};
use crate::auth::path;

/// The token endpoint.
#[derive(Debug)]
pub struct IssuerConfig {
    pub path: String,
    pub signing_key: SigningKey,
    pub token_ttl: Duration,
    /// When the signing key is due for rotation (unix seconds), if set.
    pub signing_key_expires: Option<u64>,
}

impl RawIssuer {
    /// # Errors
    /// The first invalid `issuer.*` key, or a signing key that does not load.
    pub fn validate(self, base: &Path, env: EnvLookup<'_>) -> Result<IssuerConfig> {
        ensure!(
            self.path.starts_with('/') && path::check(&self.path).is_ok() && self.path != "/",
            "issuer.path must be a canonical absolute path such as /oauth/token, got {:?}",
            self.path
        );
        let algorithm = parse_algorithm(&self.algorithm).context("issuer.algorithm")?;
        let pem = self.signing_key.resolve("issuer.signing_key", base, env)?;
        let signing_key = SigningKey::from_pem(&pem, algorithm).context("issuer.signing_key")?;
        ensure!(
            self.token_ttl >= Duration::from_secs(60)
                && self.token_ttl <= Duration::from_secs(86_400),
            "issuer.token_ttl must be between 60s and 24h (Docker clients expect at least 60s)"
        );
        let signing_key_expires = self
            .signing_key_expires
            .as_deref()
            .map(|when| rfc3339("issuer.signing_key_expires", when))
            .transpose()?;
        Ok(IssuerConfig {
            path: self.path,
            signing_key,
            token_ttl: self.token_ttl,
            signing_key_expires,
        })
    }
}
