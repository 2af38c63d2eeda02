//! Configuration: the TOML file as written ([`RawConfig`], serde, unknown
//! keys refused) and the validated [`Config`] the process runs on, split by
//! lifetime:
//!
//! - [`ServerConfig`] (listeners, TLS listener, limits, timeouts, log
//!   format) is bound once at start and owned by `server/`;
//! - [`GatewayConfig`] (upstream, routes, auth, issuer, accounts, audit, publish) is
//!   what a reload rebuilds, off the runtime, and swaps in one step.
//!
//! Each section validates itself in its own file, and every error names the
//! offending key. Secrets never sit in the file itself: a secret is
//! `{ env = "NAME" }` or `{ file = "path" }`, and relative paths are
//! relative to the config file.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

pub mod accounts;
pub mod auth;
pub mod diff;
pub mod issuer;
pub mod oci;
pub mod publish;
mod raw;
pub mod routes;
pub mod server;
pub mod trust;
pub mod upstream;

pub use auth::AuthConfig;
pub use issuer::IssuerConfig;
pub use oci::OciConfig;
pub use publish::PublishConfig;
pub use raw::*;
pub use server::{ListenConfig, LogFormat, ServerConfig, TlsConfig};
pub use trust::TrustConfig;
pub use upstream::UpstreamConfig;

use crate::auth::account::Accounts;
use crate::auth::route::RouteOptions;

/// Where audit events go.
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// A JSON-lines file to append to; `None` means the log stream.
    pub file: Option<PathBuf>,
}

/// Everything a reload may change, owned by the gateway.
#[derive(Debug)]
pub struct GatewayConfig {
    pub upstream: UpstreamConfig,
    pub routes: RouteOptions,
    pub auth: AuthConfig,
    pub issuer: IssuerConfig,
    pub accounts: Accounts,
    pub audit: AuditConfig,
    /// The OCI registry bridge, when `[oci]` is present.
    pub oci: Option<OciConfig>,
    /// Publish rules (`[publish]`).
    pub publish: PublishConfig,
    /// Trust policies for external OIDC identities (`[[trust]]`).
    pub trust: TrustConfig,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub gateway: GatewayConfig,
    /// The file as parsed, for telling what a reload changed.
    pub table: toml::Table,
}

/// Looks up environment variables; injectable so tests never mutate the environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    /// The file is unreadable or any key is invalid; the message names it.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml_str(&text, base, &|name| std::env::var(name).ok())
            .with_context(|| format!("invalid config {}", path.display()))
    }

    /// Parses and validates `text`; relative files are resolved against `base`.
    ///
    /// # Errors
    /// Any key is invalid; the message names it.
    pub fn from_toml_str(text: &str, base: &Path, env: EnvLookup<'_>) -> Result<Config> {
        let table: toml::Table = toml::from_str(text)?;
        let raw: RawConfig = toml::from_str(text)?;
        let mut config = raw.validate(base, env)?;
        config.table = table;
        Ok(config)
    }
}

impl RawConfig {
    /// Validates each section and builds the runtime [`Config`].
    ///
    /// # Errors
    /// The first invalid key, by name.
    pub fn validate(self, base: &Path, env: EnvLookup<'_>) -> Result<Config> {
        let tls = self.tls.map(|t| t.validate(base)).transpose()?;
        let listen = self.listen.validate(tls.is_some())?;
        let log_format = self.log.validate()?;
        let client_certs = tls.as_ref().is_some_and(|t| t.client_auth);
        let gateway = GatewayConfig {
            upstream: self.upstream.validate(base, env)?,
            routes: self.chartmuseum.validate()?,
            auth: self.auth.validate(base, env)?,
            issuer: self.issuer.validate(base, env)?,
            accounts: accounts::validate(self.accounts, client_certs, base, env)?,
            audit: AuditConfig {
                file: self.audit.and_then(|a| a.file).map(|f| base.join(f)),
            },
            oci: self.oci.map(|o| o.validate(base)).transpose()?,
            publish: self.publish.validate()?,
            trust: trust::validate(self.trust, base)?,
        };
        if !gateway.trust.is_empty() {
            anyhow::ensure!(
                !gateway.accounts.contains(crate::federation::verifier::BASIC_USER),
                "accounts: the id {:?} is reserved for OIDC id tokens when [[trust]] policies exist",
                crate::federation::verifier::BASIC_USER
            );
        }
        Ok(Config {
            server: ServerConfig {
                listen,
                tls,
                log_format,
            },
            gateway,
            table: toml::Table::new(),
        })
    }
}

impl RawSecret {
    /// The secret's bytes, from the environment or a file.
    ///
    /// # Errors
    /// Neither or both sources given, or the source is empty or unreadable.
    pub fn resolve(&self, key: &str, base: &Path, env: EnvLookup<'_>) -> Result<Vec<u8>> {
        match (&self.env, &self.file) {
            (Some(name), None) => env(name)
                .filter(|v| !v.is_empty())
                .map(String::into_bytes)
                .ok_or_else(|| anyhow!("{key}.env: environment variable {name} is not set")),
            (None, Some(file)) => {
                let path = base.join(file);
                std::fs::read(&path)
                    .with_context(|| format!("{key}.file: cannot read {}", path.display()))
            }
            _ => bail!("{key}: give exactly one of `env` or `file`"),
        }
    }
}

/// An RFC 3339 time as unix seconds (0 for times before 1970).
///
/// # Errors
/// `when` is not RFC 3339; the message names `key`.
pub(crate) fn rfc3339(key: &str, when: &str) -> Result<u64> {
    let t = time::OffsetDateTime::parse(when, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow!("{key} {when:?} is not an RFC 3339 time: {e}"))?;
    Ok(u64::try_from(t.unix_timestamp()).unwrap_or(0))
}

#[cfg(test)]
mod tests;
