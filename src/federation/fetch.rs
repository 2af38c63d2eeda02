//! Fetches an external issuer's OIDC discovery document and JWKS: small JSON
//! documents, read under hard bounds so a slow, huge or redirecting issuer
//! costs little.
//!
//! Which URLs may be fetched is decided in one place, [`check_url`]:
//! `https://` always, `http://` only to a loopback host (tests). TLS trusts
//! the configured `ca_file`, else the system's roots (rustls-native-certs;
//! the image ships `/etc/ssl/certs`), and Mozilla's bundled roots
//! (webpki-roots) only where the system has none. Redirects are never
//! followed: hyper's client has no such feature, and anything but `200` fails.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, CACHE_CONTROL, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::warn;

use crate::server::tls;

/// The largest OIDC discovery document read.
pub const DISCOVERY_MAX_BYTES: usize = 64 * 1024;
/// The largest JWKS read.
pub const JWKS_MAX_BYTES: usize = 256 * 1024;
/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole fetch may take: connect, TLS, request and body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection to an issuer is kept for the next fetch.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A fetched JSON document and how long its server says it stays fresh.
#[derive(Debug)]
pub struct Document {
    pub json: serde_json::Value,
    /// `Cache-Control: max-age`; zero for `no-store` or `no-cache`; `None`
    /// when the response says neither.
    pub max_age: Option<Duration>,
}

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url:?} may not be fetched: {reason}")]
    Refused { url: String, reason: &'static str },
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("answered {0}, not 200")]
    Status(StatusCode),
    #[error("the body is over {0} bytes")]
    TooLarge(usize),
    #[error("reading the body failed")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the body is not JSON")]
    Json(#[from] serde_json::Error),
}

/// The URL policy: the URL parsed, if chartgate may fetch it. `https://` is
/// always allowed; `http://` only to `localhost`, `127.0.0.0/8` or `::1`,
/// so tests can serve keys in-process; user info in a URL is refused.
///
/// # Errors
/// [`FetchError::Refused`], saying why.
pub fn check_url(url: &str) -> Result<Uri, FetchError> {
    let refuse = |reason| FetchError::Refused {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| refuse("not a URL"))?;
    let authority = uri.authority().ok_or_else(|| refuse("no host"))?;
    if authority.as_str().contains('@') {
        return Err(refuse("user info in the URL"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(authority.host()) => Ok(uri),
        Some("http") => Err(refuse("http:// is allowed to a loopback host only")),
        _ => Err(refuse("only https:// URLs are fetched")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The freshness a response grants: `max-age=N`, or zero when it says
/// `no-store` or `no-cache` (which win over any `max-age`).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    let directives = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for directive in directives {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
            max_age = value
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

/// An HTTPS client for issuers' discovery documents and JWKS.
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A client trusting the CA certificates in `ca_file` (PEM), or the
    /// system's roots without one.
    ///
    /// # Errors
    /// `ca_file` cannot be read or holds no usable certificate.
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<Fetcher> {
        let tls = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("issuer TLS versions")?
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        // The TLS layer above handles https://; check_url limits http://.
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(Fetcher { client })
    }

    /// GETs `url` and parses its body, at most `max_bytes`, as JSON, all
    /// within [`FETCH_TIMEOUT`].
    ///
    /// # Errors
    /// The URL policy refuses `url`, or the fetch fails, times out, answers
    /// anything but `200`, or sends more than `max_bytes` or not JSON.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> Result<Document, FetchError> {
        let uri = check_url(url)?;
        tokio::time::timeout(FETCH_TIMEOUT, self.fetch_uri(uri, max_bytes))
            .await
            .map_err(|_| FetchError::Timeout(FETCH_TIMEOUT))?
    }

    async fn fetch_uri(&self, uri: Uri, max_bytes: usize) -> Result<Document, FetchError> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static("chartgate"));
        let resp = self
            .client
            .request(req)
            .await
            .map_err(FetchError::Request)?;
        if resp.status() != StatusCode::OK {
            return Err(FetchError::Status(resp.status()));
        }
        let max_age = max_age(resp.headers());
        let body = Limited::new(resp.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| match e.downcast::<LengthLimitError>() {
                Ok(_) => FetchError::TooLarge(max_bytes),
                Err(e) => FetchError::Body(e),
            })?
            .to_bytes();
        Ok(Document {
            json: serde_json::from_slice(&body)?,
            max_age,
        })
    }
}

/// The roots issuers' certificates must chain to.
fn roots(ca_file: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        for cert in tls::load_certs(path)? {
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {}", path.display()))?;
        }
        return Ok(roots);
    }
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        warn!(%error, "reading the system's CA certificates");
    }
    roots.add_parsable_certificates(system.certs);
    if roots.is_empty() {
        warn!("no system CA certificates found; trusting the bundled Mozilla roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_policy_allows_https_and_loopback_http_only() {
        for ok in [
            "https://token.actions.githubusercontent.com/.well-known/jwks",
            "https://10.0.0.1/keys",
            "http://127.0.0.1:8080/jwks",
            "http://127.1.2.3/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost:1234/jwks",
            "http://LOCALHOST/jwks",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://[::ffff:127.0.0.1]/jwks",
            "http://localhost.example.com/jwks",
            "http://127.0.0.1@evil.example/jwks",
            "https://user:pw@example.com/jwks",
            "ftp://example.com/jwks",
            "file:///etc/passwd",
            "/relative/jwks",
            "not a url",
            "",
        ] {
            assert!(
                matches!(check_url(refused), Err(FetchError::Refused { .. })),
                "{refused}"
            );
        }
    }

    #[test]
    fn max_age_reads_cache_control() {
        let of = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            }
            max_age(&headers)
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(of(&[]), None);
        assert_eq!(of(&["public, max-age=3600"]), secs(3600));
        assert_eq!(of(&["Max-Age = 60 , must-revalidate"]), secs(60));
        assert_eq!(of(&["max-age=\"30\""]), secs(30));
        assert_eq!(of(&["public", "max-age=5"]), secs(5));
        assert_eq!(of(&["max-age=5", "max-age=9"]), secs(5));
        assert_eq!(of(&["max-age=soon"]), None);
        assert_eq!(of(&["max-age=-1"]), None);
        assert_eq!(of(&["s-maxage=100"]), None);
        assert_eq!(of(&["no-store"]), secs(0));
        assert_eq!(of(&["max-age=3600, no-cache"]), secs(0));
        assert_eq!(of(&["max-age=3600", "No-Store"]), secs(0));
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        assert!(Fetcher::new(Some(Path::new("/nonexistent/ca.pem"))).is_err());
        let dir = std::env::temp_dir().join(format!("chartgate-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(Fetcher::new(Some(&empty)).is_err());
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert!(Fetcher::new(Some(&good)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
