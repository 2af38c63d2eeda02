//! Configuration: the TOML file as written ([`RawConfig`], serde, unknown
//! keys refused) and the validated [`Config`] the gateway runs on, with keys
//! parsed and secrets resolved. Every error names the offending key.
//!
//! Secrets never sit in the file itself: a secret is `{ env = "NAME" }` or
//! `{ file = "path" }`, and relative paths are relative to the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use hyper::Uri;
use serde::Deserialize;

use crate::auth::access::check_repo_name;
use crate::auth::access::ActionSet;
use crate::auth::account::{Account, Accounts, SecretHash, MIN_KEY_LEN};
use crate::auth::acl::{Acl, RawRule};
use crate::auth::authn::AuthnOptions;
use crate::auth::challenge::is_quotable;
use crate::auth::key::{parse_algorithm, SigningKey};
use crate::auth::keyset::KeyFile;
use crate::auth::path;
use crate::auth::route::RouteOptions;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: RawListen,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub chartmuseum: RawChartmuseum,
    pub auth: RawAuth,
    pub issuer: RawIssuer,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
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
    /// RFC 3339 time after which the account stops authenticating.
    pub expires: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    #[serde(with = "humantime_serde", default = "defaults::header_read_timeout")]
    pub header_read_timeout: Duration,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(with = "humantime_serde", default = "defaults::shutdown_grace")]
    pub shutdown_grace: Duration,
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
}

/// Where a secret comes from: exactly one of `env` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

mod defaults {
    use std::time::Duration;
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_connections() -> usize {
        10_000
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
    pub fn key_refresh() -> Duration {
        Duration::from_secs(60)
    }
    pub fn token_path() -> String {
        "/oauth/token".into()
    }
    pub fn algorithm() -> String {
        "RS256".into()
    }
    /// The example server's fixed lifetime.
    pub fn token_ttl() -> Duration {
        Duration::from_secs(300)
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// Upstream (ChartMuseum) settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `scheme://authority` of ChartMuseum.
    pub base: Uri,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_upload_bytes: u64,
}

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
}

/// The token endpoint.
#[derive(Debug)]
pub struct IssuerConfig {
    pub path: String,
    pub signing_key: SigningKey,
    pub token_ttl: Duration,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: ListenConfig,
    pub upstream: UpstreamConfig,
    pub routes: RouteOptions,
    pub auth: AuthConfig,
    pub issuer: IssuerConfig,
    pub accounts: Accounts,
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
        let raw: RawConfig = toml::from_str(text)?;
        raw.validate(base, env)
    }
}

impl RawSecret {
    fn resolve(&self, key: &str, base: &Path, env: EnvLookup<'_>) -> Result<Vec<u8>> {
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
    ];
    RESERVED.contains(&name)
}

impl RawAccount {
    fn validate(self, key: &str, base: &Path, env: EnvLookup<'_>) -> Result<Account> {
        let id = self.id;
        ensure!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@')),
            "{key}.id must be 1-64 characters of [A-Za-z0-9._@-], got {id:?}"
        );
        let secret = match (self.secret_hash, self.key) {
            (Some(stored), None) => {
                SecretHash::parse(&stored).with_context(|| format!("{key}.secret_hash ({id})"))?
            }
            (None, Some(source)) => {
                let raw = source.resolve(&format!("{key}.key"), base, env)?;
                let raw =
                    String::from_utf8(raw).with_context(|| format!("{key}.key is not UTF-8"))?;
                let raw = raw.trim_end_matches(['\r', '\n']);
                ensure!(
                    raw.len() >= MIN_KEY_LEN && credential_safe(raw),
                    "{key}.key must be at least {} characters of [A-Za-z0-9._~+/=-]",
                    MIN_KEY_LEN
                );
                SecretHash::of_api_key(raw)
            }
            _ => bail!("{key}: give exactly one of `secret_hash` or `key`"),
        };
        let expires = match self.expires {
            None => None,
            Some(when) => {
                let t = time::OffsetDateTime::parse(
                    &when,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| anyhow!("{key}.expires {when:?} is not an RFC 3339 time: {e}"))?;
                Some(u64::try_from(t.unix_timestamp()).unwrap_or(0))
            }
        };
        let acl = Acl::compile(&self.rules, &format!("{key}.rules"))?;
        Ok(Account {
            id,
            secret,
            expires,
            acl,
        })
    }
}

/// Whether an API key can travel as a Bearer token or raw header value.
fn credential_safe(s: &str) -> bool {
    crate::auth::credential::is_token68(s)
}

impl RawConfig {
    /// Checks every key and builds the runtime [`Config`].
    ///
    /// # Errors
    /// The first invalid key, by name.
    pub fn validate(self, base: &Path, env: EnvLookup<'_>) -> Result<Config> {
        let l = self.listen;
        ensure!(
            l.max_connections > 0,
            "listen.max_connections must be at least 1"
        );
        ensure!(
            !l.header_read_timeout.is_zero(),
            "listen.header_read_timeout must be more than zero"
        );
        ensure!(
            l.addr.port() == 0 || l.admin_addr != Some(l.addr),
            "listen.admin_addr must differ from listen.addr"
        );

        let u = self.upstream;
        let base_uri: Uri = u
            .url
            .parse()
            .map_err(|e| anyhow!("upstream.url: {e}: {:?}", u.url))?;
        ensure!(
            base_uri.scheme_str() == Some("http"),
            "upstream.url must start with http://, got {:?}",
            u.url
        );
        ensure!(
            base_uri.authority().is_some(),
            "upstream.url has no host: {:?}",
            u.url
        );
        ensure!(
            matches!(base_uri.path(), "" | "/") && base_uri.query().is_none(),
            "upstream.url must be scheme://host:port only; set chartmuseum.context_path for a prefix"
        );
        ensure!(
            !u.connect_timeout.is_zero(),
            "upstream.connect_timeout must be more than zero"
        );
        ensure!(
            !u.timeout.is_zero(),
            "upstream.timeout must be more than zero"
        );
        ensure!(
            u.max_upload_bytes > 0,
            "upstream.max_upload_bytes must be more than zero"
        );

        let c = self.chartmuseum;
        ensure!(
            c.depth <= 16,
            "chartmuseum.depth must be at most 16, got {}",
            c.depth
        );
        let context_path = match c.context_path.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                let p = format!("/{p}");
                path::check(&p).map_err(|e| anyhow!("chartmuseum.context_path {p:?}: {e}"))?;
                Some(p)
            }
        };
        let routes = RouteOptions {
            depth: c.depth,
            context_path,
            api: !c.disable_api,
            delete: !c.disable_delete,
            artifact_hub: c.artifact_hub,
        };

        let a = self.auth;
        ensure!(
            a.realm.starts_with("http://") || a.realm.starts_with("https://"),
            "auth.realm must be an absolute http(s) URL of the token endpoint, got {:?}",
            a.realm
        );
        for (key, value) in [
            ("auth.realm", &a.realm),
            ("auth.service", &a.service),
            ("auth.issuer", &a.issuer),
        ] {
            ensure!(!value.is_empty(), "{key} must not be empty");
            ensure!(
                is_quotable(value),
                "{key} may hold only printable ASCII without '\"' or '\\', got {value:?}"
            );
        }
        let audience = a.audience.unwrap_or_else(|| a.service.clone());
        ensure!(!audience.is_empty(), "auth.audience must not be empty");
        ensure!(
            a.token_cache_capacity > 0,
            "auth.token_cache_capacity must be at least 1"
        );
        ensure!(
            !a.key_refresh.is_zero(),
            "auth.key_refresh must be more than zero"
        );
        let mut trusted_keys = Vec::new();
        for (i, k) in a.trusted_keys.iter().enumerate() {
            let algorithm = parse_algorithm(&k.algorithm)
                .with_context(|| format!("auth.trusted_keys[{i}].algorithm"))?;
            trusted_keys.push(KeyFile {
                path: base.join(&k.file),
                algorithm,
            });
        }
        let mut pull_only = ActionSet::default();
        pull_only.insert(crate::auth::access::Action::Pull);
        let anonymous_pull = Acl::uniform(&a.anonymous_pull, pull_only, "auth.anonymous_pull")?;
        let token_header = match &a.token_header {
            None => None,
            Some(name) => {
                let header = hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| anyhow!("auth.token_header {name:?} is not a header name"))?;
                ensure!(
                    !is_reserved_header(header.as_str()),
                    "auth.token_header {name:?} is a header the gateway or HTTP itself owns"
                );
                Some(header)
            }
        };
        ensure!(
            !a.credential_cache_ttl.is_zero()
                && a.credential_cache_ttl <= Duration::from_secs(3600),
            "auth.credential_cache_ttl must be between 1s and 1h"
        );
        ensure!(
            a.credential_cache_capacity > 0,
            "auth.credential_cache_capacity must be at least 1"
        );
        let authn = AuthnOptions {
            token_header,
            cache_ttl: a.credential_cache_ttl,
            cache_capacity: a.credential_cache_capacity,
        };
        let auth = AuthConfig {
            realm: a.realm,
            service: a.service,
            issuer: a.issuer,
            audience,
            leeway: a.leeway,
            token_cache_capacity: a.token_cache_capacity,
            trusted_keys,
            key_refresh: a.key_refresh,
            anonymous_pull,
            authn,
        };

        let i = self.issuer;
        ensure!(
            i.path.starts_with('/') && path::check(&i.path).is_ok() && i.path != "/",
            "issuer.path must be a canonical absolute path such as /oauth/token, got {:?}",
            i.path
        );
        let algorithm = parse_algorithm(&i.algorithm).context("issuer.algorithm")?;
        let pem = i.signing_key.resolve("issuer.signing_key", base, env)?;
        let signing_key = SigningKey::from_pem(&pem, algorithm).context("issuer.signing_key")?;
        ensure!(
            i.token_ttl >= Duration::from_secs(60) && i.token_ttl <= Duration::from_secs(86_400),
            "issuer.token_ttl must be between 60s and 24h (Docker clients expect at least 60s)"
        );
        let mut accounts = Vec::with_capacity(self.accounts.len());
        for (n, raw) in self.accounts.into_iter().enumerate() {
            accounts.push(raw.validate(&format!("accounts[{n}]"), base, env)?);
        }
        let accounts = Accounts::new(accounts)?;

        // The default namespace must stay grantable at every depth.
        debug_assert!(check_repo_name("repo", routes.depth).is_ok());

        Ok(Config {
            listen: ListenConfig {
                addr: l.addr,
                admin_addr: l.admin_addr,
                header_read_timeout: l.header_read_timeout,
                max_connections: l.max_connections,
                shutdown_grace: l.shutdown_grace,
            },
            upstream: UpstreamConfig {
                base: base_uri,
                connect_timeout: u.connect_timeout,
                timeout: u.timeout,
                max_upload_bytes: u.max_upload_bytes,
            },
            routes,
            auth,
            issuer: IssuerConfig {
                path: i.path,
                signing_key,
                token_ttl: i.token_ttl,
            },
            accounts,
        })
    }
}

#[cfg(test)]
mod tests;
