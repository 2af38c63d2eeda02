//! Configuration: the TOML file as written ([`RawConfig`], serde, unknown
//! keys refused) and the validated [`Config`] the gateway runs on, with keys
//! parsed and secrets resolved. Every error names the offending key.
//!
//! Secrets never sit in the file itself: a secret is `{ env = "NAME" }` or
//! `{ file = "path" }`, and relative paths are relative to the config file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use hyper::Uri;

use crate::auth::access::check_repo_name;
use crate::auth::access::ActionSet;
use crate::auth::account::{Account, Accounts, SecretHash, MIN_KEY_LEN};
use crate::auth::acl::Acl;
use crate::auth::authn::AuthnOptions;
use crate::auth::challenge::is_quotable;
use crate::auth::key::{parse_algorithm, SigningKey};
use crate::auth::keyset::KeyFile;
use crate::auth::limit::LimitOptions;
use crate::auth::path;
use crate::auth::route::RouteOptions;
use crate::server::tls::{self, CertStore};

mod raw;
pub use raw::*;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Plain-HTTP listener, if any.
    pub addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub header_read_timeout: Duration,
    /// How long a connection may sit with a read pending and nothing moving
    /// either way: a stalled upload, a silent client, an idle keep-alive.
    pub read_timeout: Duration,
    /// How long a write to the client may stay pending (it stopped reading).
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub worker_threads: Option<usize>,
}

/// The TLS listener, with its certificate already loaded.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub addr: SocketAddr,
    /// The certificate in service; reloadable.
    pub certs: Arc<CertStore>,
    /// rustls settings built around `certs`.
    pub server: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    pub reload_interval: Duration,
    /// Whether client certificates are requested and verified.
    pub client_auth: bool,
}

/// Upstream (ChartMuseum) settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `scheme://authority` of ChartMuseum.
    pub base: Uri,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_upload_bytes: u64,
    /// TLS settings for an `https://` upstream (unused, with no trusted
    /// roots, for `http://`).
    pub tls: Arc<rustls::ClientConfig>,
    /// `Authorization` value injected into every upstream request.
    pub authorization: Option<hyper::header::HeaderValue>,
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
    pub limits: LimitOptions,
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
    pub tls: Option<TlsConfig>,
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
        if let Some(cn) = &self.client_cert_cn {
            ensure!(
                !cn.is_empty() && cn.len() <= 256 && !cn.chars().any(char::is_control),
                "{key}.client_cert_cn must be a non-empty common name"
            );
        }
        let secret = match (self.secret_hash, self.key) {
            (None, None) if self.client_cert_cn.is_some() => None,
            (Some(stored), None) => Some(
                SecretHash::parse(&stored).with_context(|| format!("{key}.secret_hash ({id})"))?,
            ),
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
                Some(SecretHash::of_api_key(raw))
            }
            _ => bail!(
                "{key}: give exactly one of `secret_hash` or `key` (or only `client_cert_cn`)"
            ),
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
            client_cn: self.client_cert_cn,
            expires,
            acl,
        })
    }
}

/// Whether an API key can travel as a Bearer token or raw header value.
fn credential_safe(s: &str) -> bool {
    crate::auth::credential::is_token68(s)
}

impl RawTls {
    fn validate(self, base: &Path) -> Result<TlsConfig> {
        ensure!(
            !self.handshake_timeout.is_zero(),
            "tls.handshake_timeout must be more than zero"
        );
        ensure!(
            !self.reload_interval.is_zero(),
            "tls.reload_interval must be more than zero"
        );
        let certs = CertStore::load(base.join(&self.cert), base.join(&self.key))
            .context("tls.cert / tls.key")?;
        let certs = Arc::new(certs);
        let client_ca = self.client_ca.as_ref().map(|p| base.join(p));
        let server =
            tls::server_config(certs.clone(), client_ca.as_deref()).context("tls.client_ca")?;
        Ok(TlsConfig {
            addr: self.addr,
            certs,
            server,
            handshake_timeout: self.handshake_timeout,
            reload_interval: self.reload_interval,
            client_auth: client_ca.is_some(),
        })
    }
}

/// The rustls client settings for the upstream. An `http://` upstream gets
/// settings that trust nothing, since they are never used.
fn upstream_tls(u: &RawUpstream, https: bool, base: &Path) -> Result<Arc<rustls::ClientConfig>> {
    ensure!(
        https || (u.ca_file.is_none() && u.client_cert.is_none() && u.client_key.is_none()),
        "upstream.ca_file, client_cert and client_key need an https:// upstream.url"
    );
    let mut roots = rustls::RootCertStore::empty();
    match &u.ca_file {
        Some(ca) => {
            for cert in tls::load_certs(&base.join(ca)).context("upstream.ca_file")? {
                roots.add(cert).context("upstream.ca_file")?;
            }
        }
        None if https => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        None => {}
    }
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("upstream TLS versions")?
        .with_root_certificates(roots);
    let config = match (&u.client_cert, &u.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = tls::load_certs(&base.join(cert)).context("upstream.client_cert")?;
            let key = tls::load_key(&base.join(key)).context("upstream.client_key")?;
            builder
                .with_client_auth_cert(chain, key)
                .context("upstream.client_cert / upstream.client_key")?
        }
        _ => bail!("upstream.client_cert and upstream.client_key go together"),
    };
    Ok(Arc::new(config))
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
            !l.read_timeout.is_zero(),
            "listen.read_timeout must be more than zero"
        );
        ensure!(
            !l.write_timeout.is_zero(),
            "listen.write_timeout must be more than zero"
        );
        ensure!(
            l.addr
                .is_none_or(|a| a.port() == 0 || l.admin_addr != Some(a)),
            "listen.admin_addr must differ from listen.addr"
        );
        ensure!(
            l.worker_threads.is_none_or(|n| (1..=1024).contains(&n)),
            "listen.worker_threads must be between 1 and 1024"
        );
        ensure!(
            l.addr.is_some() || self.tls.is_some(),
            "listen.addr is required unless [tls] is configured"
        );
        let tls = match self.tls {
            None => None,
            Some(t) => Some(t.validate(base)?),
        };

        let u = self.upstream;
        let base_uri: Uri = u
            .url
            .parse()
            .map_err(|e| anyhow!("upstream.url: {e}: {:?}", u.url))?;
        ensure!(
            matches!(base_uri.scheme_str(), Some("http" | "https")),
            "upstream.url must start with http:// or https://, got {:?}",
            u.url
        );
        let upstream_tls = upstream_tls(&u, base_uri.scheme_str() == Some("https"), base)?;
        let upstream_authorization = match (&u.basic_auth_user, &u.basic_auth_password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                ensure!(
                    !user.is_empty() && !user.contains(':'),
                    "upstream.basic_auth_user must be non-empty and hold no ':'"
                );
                let password = password.resolve("upstream.basic_auth_password", base, env)?;
                let password = String::from_utf8(password)
                    .context("upstream.basic_auth_password is not UTF-8")?;
                let token = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{}", password.trim_end_matches(['\r', '\n'])),
                );
                let mut value = hyper::header::HeaderValue::from_str(&format!("Basic {token}"))
                    .context("upstream.basic_auth_password")?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => bail!("upstream.basic_auth_user and upstream.basic_auth_password go together"),
        };
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
            a.leeway <= Duration::from_secs(300),
            "auth.leeway must be at most 5m, got {:?}",
            a.leeway
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
        ensure!(
            a.max_failures_per_account > 0 && a.max_failures_per_address > 0,
            "auth.max_failures_per_account and auth.max_failures_per_address must be at least 1"
        );
        ensure!(
            !a.failure_window.is_zero(),
            "auth.failure_window must be more than zero"
        );
        let limits = LimitOptions {
            window: a.failure_window,
            per_account: a.max_failures_per_account,
            per_address: a.max_failures_per_address,
        };
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
            limits,
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
        ensure!(
            tls.as_ref().is_some_and(|t| t.client_auth)
                || accounts.iter().all(|a| a.client_cn.is_none()),
            "accounts: client_cert_cn needs tls.client_ca, which verifies client certificates"
        );
        let accounts = Accounts::new(accounts)?;

        // The default namespace must stay grantable at every depth.
        debug_assert!(check_repo_name("repo", routes.depth).is_ok());

        Ok(Config {
            tls,
            listen: ListenConfig {
                addr: l.addr,
                admin_addr: l.admin_addr,
                header_read_timeout: l.header_read_timeout,
                read_timeout: l.read_timeout,
                write_timeout: l.write_timeout,
                max_connections: l.max_connections,
                shutdown_grace: l.shutdown_grace,
                worker_threads: l.worker_threads,
            },
            upstream: UpstreamConfig {
                base: base_uri,
                connect_timeout: u.connect_timeout,
                timeout: u.timeout,
                max_upload_bytes: u.max_upload_bytes,
                tls: upstream_tls,
                authorization: upstream_authorization,
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
