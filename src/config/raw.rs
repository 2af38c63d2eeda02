//! The configuration file as written: serde types that mirror the TOML,
//! with defaults, refusing unknown keys. Nothing here is validated: each
//! section validates itself in the file for its part of the configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::acl::RawRule;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: RawListen,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub chartmuseum: RawChartmuseum,
    pub tls: Option<RawTls>,
    pub auth: RawAuth,
    pub issuer: RawIssuer,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
    #[serde(default)]
    pub log: RawLog,
    pub audit: Option<RawAudit>,
    pub oci: Option<RawOci>,
    /// Publish rules: immutable repositories.
    #[serde(default)]
    pub publish: RawPublish,
    /// Trusted publishing: external OIDC identities and what they may do.
    #[serde(default)]
    pub trust: Vec<RawTrust>,
}

/// `[[trust]]`: one trust policy (docs/TRUSTED-PUBLISHING.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    /// Written first in subjects: `<name>:<identity>`.
    pub name: String,
    /// The exact `iss` of the platform's id tokens.
    pub issuer: String,
    /// The `aud` the tokens must carry.
    pub audience: String,
    /// `github`, `gitlab` or `generic`: which claims may be matched.
    pub provider: String,
    /// The JWKS address, when the issuer serves no OIDC discovery.
    pub jwks_uri: Option<String>,
    /// CA bundle for the issuer's https (default: the system roots).
    pub ca_file: Option<PathBuf>,
    /// Longest life of a token minted for the identity.
    #[serde(with = "humantime_serde", default = "defaults::trust_max_ttl")]
    pub max_ttl: Duration,
    /// Each id token's `jti` may be exchanged once.
    #[serde(default)]
    pub single_use: bool,
    /// Claim name to one value or a list of values (exact or glob).
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, RawClaimValues>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// A claim matcher's values: one, or any of several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawClaimValues {
    One(String),
    Flag(bool),
    Many(Vec<String>),
}

/// `[publish]`: rules on what may be published (docs/PROTOCOL.md §11).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    /// Repository patterns where a stored chart version is never
    /// overwritten and a released one never deleted.
    #[serde(default)]
    pub immutable: Vec<String>,
}

/// `[oci]`: the OCI distribution API under `/v2/` (docs/PROTOCOL.md §10).
/// Present means on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOci {
    /// Where pushed blobs wait for their manifest; default: the system
    /// temporary directory's `chartgate-oci`.
    pub staging_dir: Option<PathBuf>,
    /// How long a staged upload or blob may wait for its manifest.
    #[serde(with = "humantime_serde", default = "defaults::upload_timeout")]
    pub upload_timeout: Duration,
}

/// `[log]`: how log lines are written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`.
    #[serde(default = "defaults::log_format")]
    pub format: String,
}

impl Default for RawLog {
    fn default() -> RawLog {
        RawLog {
            format: defaults::log_format(),
        }
    }
}

/// `[audit]`: where publish, delete and issuance events go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Append events to this file as JSON lines; without it they go to the
    /// log stream (target `audit`).
    pub file: Option<PathBuf>,
}

/// One account as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub id: String,
    /// A stored hash: `$argon2id$...` or `sha256:<hex>`.
    pub secret_hash: Option<String>,
    /// An API key read from env or file, hashed on load.
    pub key: Option<RawSecret>,
    /// Common name of a client certificate (verified against `tls.client_ca`)
    /// that authenticates as this account.
    pub client_cert_cn: Option<String>,
    /// RFC 3339 time after which the account stops authenticating.
    pub expires: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// Plain-HTTP listener; optional when `[tls]` has an address.
    pub addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    #[serde(with = "humantime_serde", default = "defaults::header_read_timeout")]
    pub header_read_timeout: Duration,
    /// A downstream read may stay pending this long with nothing moving
    /// either way before the connection is closed.
    #[serde(with = "humantime_serde", default = "defaults::read_timeout")]
    pub read_timeout: Duration,
    /// A downstream write may stay pending this long.
    #[serde(with = "humantime_serde", default = "defaults::write_timeout")]
    pub write_timeout: Duration,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(with = "humantime_serde", default = "defaults::shutdown_grace")]
    pub shutdown_grace: Duration,
    /// Async worker threads (default: one per CPU the process may use).
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(with = "humantime_serde", default = "defaults::connect_timeout")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde", default = "defaults::upstream_timeout")]
    pub timeout: Duration,
    #[serde(default = "defaults::max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// Basic credentials chartgate presents to ChartMuseum (its
    /// `--basic-auth-user/--basic-auth-pass`), for an upstream reachable by
    /// others; clients never see them.
    pub basic_auth_user: Option<String>,
    pub basic_auth_password: Option<RawSecret>,
    /// CA bundle for an `https://` upstream (default: the Mozilla roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key presented to an `https://` upstream.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The TLS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub addr: SocketAddr,
    /// Certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 or SEC1 (PEM).
    pub key: PathBuf,
    #[serde(with = "humantime_serde", default = "defaults::handshake_timeout")]
    pub handshake_timeout: Duration,
    /// How often the certificate files are checked for changes.
    #[serde(with = "humantime_serde", default = "defaults::cert_reload_interval")]
    pub reload_interval: Duration,
    /// CA for optional client certificates (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChartmuseum {
    #[serde(default)]
    pub depth: usize,
    pub context_path: Option<String>,
    #[serde(default)]
    pub disable_api: bool,
    #[serde(default)]
    pub disable_delete: bool,
    #[serde(default)]
    pub artifact_hub: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub realm: String,
    pub service: String,
    #[serde(default = "defaults::issuer")]
    pub issuer: String,
    pub audience: Option<String>,
    #[serde(with = "humantime_serde", default = "defaults::leeway")]
    pub leeway: Duration,
    #[serde(default = "defaults::token_cache_capacity")]
    pub token_cache_capacity: u64,
    #[serde(default)]
    pub trusted_keys: Vec<RawTrustedKey>,
    #[serde(with = "humantime_serde", default = "defaults::key_refresh")]
    pub key_refresh: Duration,
    /// Repository patterns anyone may pull from without credentials.
    #[serde(default)]
    pub anonymous_pull: Vec<String>,
    /// A header carrying a raw token (helm-push `--auth-header`).
    pub token_header: Option<String>,
    #[serde(with = "humantime_serde", default = "defaults::credential_cache_ttl")]
    pub credential_cache_ttl: Duration,
    #[serde(default = "defaults::credential_cache_capacity")]
    pub credential_cache_capacity: u64,
    /// Failed credential checks allowed per account, and per client
    /// address, within `failure_window`; beyond them, `429`.
    #[serde(default = "defaults::max_failures_per_account")]
    pub max_failures_per_account: u32,
    #[serde(default = "defaults::max_failures_per_address")]
    pub max_failures_per_address: u32,
    #[serde(with = "humantime_serde", default = "defaults::failure_window")]
    pub failure_window: Duration,
    /// Failure counts shared by every replica, in Redis.
    pub shared_limits: Option<RawSharedLimits>,
}

/// An extra public key whose tokens are accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedKey {
    pub file: PathBuf,
    #[serde(default = "defaults::algorithm")]
    pub algorithm: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    #[serde(default = "defaults::token_path")]
    pub path: String,
    pub signing_key: RawSecret,
    #[serde(default = "defaults::algorithm")]
    pub algorithm: String,
    #[serde(with = "humantime_serde", default = "defaults::token_ttl")]
    pub token_ttl: Duration,
    /// RFC 3339 time by which the signing key is to be rotated; exported
    /// as a metric so an alert can fire before it.
    pub signing_key_expires: Option<String>,
}

/// `[auth.shared_limits]`: the Redis that holds the fleet's failure counts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSharedLimits {
    /// `redis://host:port[/db]`, without a password.
    pub redis_url: String,
    /// Redis `AUTH` password, if it has one.
    pub password: Option<RawSecret>,
    #[serde(default = "defaults::shared_prefix")]
    pub key_prefix: String,
}

/// Where a secret comes from: exactly one of `env` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

pub(super) mod defaults {
    use std::time::Duration;
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    /// Above `upstream_timeout`, so a client waiting in silence for a slow
    /// upstream gets its 504 rather than a closed connection; above the h2
    /// ping interval (30s); nginx's `keepalive_timeout` default.
    pub fn read_timeout() -> Duration {
        Duration::from_secs(75)
    }
    /// nginx's `send_timeout` default.
    pub fn write_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn cert_reload_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(20)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn upstream_timeout() -> Duration {
        Duration::from_secs(60)
    }
    /// ChartMuseum's own `--max-upload-size` default.
    pub fn max_upload_bytes() -> u64 {
        20 * 1024 * 1024
    }
    pub fn issuer() -> String {
        "chartgate".into()
    }
    pub fn leeway() -> Duration {
        Duration::from_secs(30)
    }
    pub fn token_cache_capacity() -> u64 {
        10_000
    }
    pub fn credential_cache_ttl() -> Duration {
        Duration::from_secs(60)
    }
    pub fn credential_cache_capacity() -> u64 {
        10_000
    }
    pub fn max_failures_per_account() -> u32 {
        10
    }
    pub fn max_failures_per_address() -> u32 {
        100
    }
    pub fn failure_window() -> Duration {
        Duration::from_secs(300)
    }
    pub fn key_refresh() -> Duration {
        Duration::from_secs(60)
    }
    pub fn token_path() -> String {
        "/oauth/token".into()
    }
    pub fn algorithm() -> String {
        "RS256".into()
    }
    pub fn shared_prefix() -> String {
        "chartgate".into()
    }
    pub fn log_format() -> String {
        "text".into()
    }
    /// The example server's fixed lifetime.
    pub fn upload_timeout() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn token_ttl() -> Duration {
        Duration::from_secs(300)
    }
    pub fn trust_max_ttl() -> Duration {
        Duration::from_secs(600)
    }
}
