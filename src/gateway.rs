//! The per-request flow: dispatch to the issuer, or check the path, resolve
//! the route and scope, authenticate, authorize, and forward.
//!
//! [`Gateway::handle`] is the infallible outer function hyper calls; it logs
//! once and turns any [`GatewayError`] into a response. [`Gateway::route`]
//! is the inner function, written with `?`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response};
use tracing::{debug, error, info, warn, Instrument};

use crate::auth::access::Scope;
use crate::auth::authn::{Authenticator, AuthnError, Principal};
use crate::auth::challenge::Challenge;
use crate::auth::credential::CredentialError;
use crate::auth::keyset::KeySet;
use crate::auth::limit::FailureLimiter;
use crate::auth::path;
use crate::auth::route::Routes;
use crate::auth::token::{Verifier, VerifyPolicy};
use crate::body::{self, Body};
use crate::config::Config;
use crate::error::{AuthFailure, GatewayError};
use crate::issuer::mint::Minter;
use crate::issuer::Issuer;
use crate::proxy::header;
use crate::proxy::upstream::{self, Upstream};

/// How long a refused request's body may take to drain before we answer
/// anyway and close the connection.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A refused request: the error, and whether the connection must close
/// because part of the request body is still unread.
#[derive(Debug)]
pub struct Refusal {
    error: GatewayError,
    close: bool,
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Refusal {
        Refusal {
            error,
            close: false,
        }
    }
}

/// Longest client-supplied `X-Request-Id` echoed; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The downstream peer.
    pub peer: SocketAddr,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// Common name of the client certificate the TLS handshake verified.
    pub client_cn: Option<Arc<str>>,
    /// The peer's address as sent in `X-Forwarded-For`, formatted once per
    /// connection rather than once per request.
    forwarded_for: HeaderValue,
}

impl ConnInfo {
    /// A connection from `peer` over `proto` (`http` or `https`).
    pub fn new(peer: SocketAddr, proto: &'static str, client_cn: Option<Arc<str>>) -> ConnInfo {
        let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo {
            peer,
            proto,
            client_cn,
            forwarded_for,
        }
    }

    /// A plain-HTTP connection from `peer`.
    pub fn plain(peer: SocketAddr) -> ConnInfo {
        ConnInfo::new(peer, "http", None)
    }
}

/// Shared state of the running gateway.
#[derive(Debug)]
pub struct Gateway {
    routes: Routes,
    challenge: Challenge,
    authn: Authenticator,
    limiter: FailureLimiter,
    issuer: Issuer,
    token_path: String,
    upstream: Arc<Upstream>,
}

impl Gateway {
    /// Builds the gateway from a validated config.
    ///
    /// # Errors
    /// A trusted key file cannot be read or parsed.
    pub fn from_config(config: Config) -> anyhow::Result<Gateway> {
        let auth = &config.auth;
        let policy = VerifyPolicy {
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            leeway: auth.leeway.as_secs(),
            cache_capacity: auth.token_cache_capacity,
        };
        let keys = KeySet::new(
            [config.issuer.signing_key.public.clone()],
            auth.trusted_keys.clone(),
            auth.key_refresh,
            policy.validation(),
        )
        .context("auth.trusted_keys")?;
        let verifier = Verifier::new(keys, policy);
        let authn = Authenticator::new(
            verifier,
            Arc::new(config.accounts),
            config.auth.anonymous_pull.clone(),
            config.auth.authn.clone(),
        );
        let minter = Minter::new(
            config.issuer.signing_key,
            auth.issuer.clone(),
            auth.audience.clone(),
            config.issuer.token_ttl,
        );
        Ok(Gateway {
            routes: Routes::new(&config.routes),
            challenge: Challenge::new(auth.realm.clone(), auth.service.clone()),
            authn,
            limiter: FailureLimiter::new(config.auth.limits),
            issuer: Issuer::new(minter, config.routes.depth),
            token_path: config.issuer.path,
            upstream: Arc::new(Upstream::new(
                &config.upstream,
                config.routes.context_path.as_deref(),
            )),
        })
    }

    /// The upstream client, shared with the admin listener's readiness probe.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.upstream.clone()
    }

    /// Serves one request. Never fails: errors become responses here, and
    /// this is where the one access-log line per request is written.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let request_id = request_id(&req);
        let span = tracing::info_span!(
            "request",
            id = %request_id.to_str().unwrap_or("-"),
            peer = %conn.peer,
            method = %req.method(),
            path = %req.uri().path(),
            sub = tracing::field::Empty,
        );
        async move {
            let mut response = match self.route(req, conn, &request_id).await {
                Ok(response) => response,
                Err(Refusal { error: e, close }) => {
                    if e.is_client_fault() {
                        debug!(error = %e, "refused");
                    } else if matches!(e, GatewayError::Internal(_)) {
                        error!(error = %e, "internal error");
                    } else {
                        warn!(error = %e, source = ?std::error::Error::source(&e), "upstream failure");
                    }
                    let mut response = e.into_response(&self.challenge);
                    if close {
                        response
                            .headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                }
            };
            response
                .headers_mut()
                .insert(header::X_REQUEST_ID, request_id);
            info!(
                status = response.status().as_u16(),
                micros = started.elapsed().as_micros() as u64,
                "done"
            );
            Ok(response)
        }
        .instrument(span)
        .await
    }

    /// The inner flow, written with `?`.
    async fn route(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        request_id: &HeaderValue,
    ) -> Result<Response<Body>, Refusal> {
        if req.uri().path() == self.token_path && check_target(&req).is_ok() {
            let (subject, response) = self
                .issuer
                .handle(req, &self.authn, &self.limiter, conn.peer.ip())
                .await?;
            tracing::Span::current().record("sub", subject.as_str());
            return Ok(response);
        }
        match self.admit(&req, &conn).await {
            Ok(principal) => {
                tracing::Span::current().record("sub", principal.subject());
            }
            Err(error) => {
                // Read the refused request's body (bounded) before answering:
                // a client still sending an upload would otherwise see a
                // reset instead of our 401 (helm-push reports "broken pipe").
                let drained = body::drain(
                    req.into_body(),
                    self.upstream.max_upload_bytes(),
                    DRAIN_TIMEOUT,
                )
                .await;
                return Err(Refusal {
                    error,
                    close: !drained,
                });
            }
        }

        let mut req = req;
        let authority = req.uri().authority().map(|a| a.as_str().to_owned());
        if let Some(name) = self.authn.token_header() {
            req.headers_mut().remove(name);
        }
        header::prepare_request(
            req.headers_mut(),
            authority.as_deref(),
            &conn.forwarded_for,
            conn.proto,
            request_id,
        );
        let mut response = self.upstream.send(req).await?;
        header::prepare_response(response.headers_mut());
        Ok(upstream::into_body(response))
    }

    /// Everything decided before forwarding: framing, canonical path, route,
    /// credentials and scope. Returns who the request is.
    async fn admit(
        &self,
        req: &Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<Principal, GatewayError> {
        check_target(req)?;
        path::check(req.uri().path())?;
        let resolved = self
            .routes
            .resolve(req.method(), req.uri().path())
            .ok_or(GatewayError::NotFound)?;
        match resolved.scope() {
            Some(scope) => self.authorize(req.headers(), conn, scope).await,
            None => Ok(Principal::Anonymous),
        }
    }

    /// Authenticates the request's credential and checks it grants `scope`.
    async fn authorize(
        &self,
        headers: &hyper::HeaderMap,
        conn: &ConnInfo,
        scope: Scope,
    ) -> Result<Principal, GatewayError> {
        let (peer, client_cn) = (conn.peer.ip(), conn.client_cn.as_deref());
        let deny = |cause| GatewayError::Unauthorized {
            scope: scope.clone(),
            cause,
        };
        let attempt = self.authn.attempt(headers);
        if let Some(account) = &attempt {
            self.limiter
                .check(peer, account.as_deref())
                .map_err(|retry_after| GatewayError::TooManyAttempts { retry_after })?;
        }
        let principal = match self.authn.authenticate(headers, client_cn).await {
            Ok(p) => p,
            Err(AuthnError::Credential(CredentialError::Duplicate)) => {
                return Err(GatewayError::DuplicateCredentials)
            }
            Err(AuthnError::Busy) => return Err(GatewayError::Busy),
            Err(e) => {
                if let Some(account) = &attempt {
                    self.limiter.failed(peer, account.as_deref());
                }
                return Err(deny(AuthFailure::Authn(e)));
            }
        };
        if let Some(account) = &attempt {
            self.limiter.succeeded(peer, account.as_deref());
        }
        if self.authn.allows(&principal, &scope) {
            Ok(principal)
        } else if matches!(principal, Principal::Anonymous) {
            Err(deny(AuthFailure::Missing))
        } else {
            Err(deny(AuthFailure::InsufficientScope {
                subject: principal.subject().to_owned(),
            }))
        }
    }
}

/// Framing rules for the request target (RFC 9112 §3.2): an HTTP/1.1
/// request carries exactly one `Host`; HTTP/2 may carry none (it has
/// `:authority`); none may carry more than one; and no target may carry
/// userinfo, which would otherwise end up in `X-Forwarded-Host`.
fn check_target(req: &Request<Incoming>) -> Result<(), GatewayError> {
    let hosts = req.headers().get_all(HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == hyper::Version::HTTP_11) {
        return Err(GatewayError::DuplicateHost);
    }
    if req
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(GatewayError::DuplicateHost);
    }
    Ok(())
}

/// The request's id: the client's `X-Request-Id` when it is short and
/// printable (so logs on both sides line up, as ChartMuseum echoes it),
/// a fresh UUIDv4 otherwise.
fn request_id(req: &Request<Incoming>) -> HeaderValue {
    req.headers()
        .get(header::X_REQUEST_ID)
        .filter(|v| {
            v.len() <= MAX_REQUEST_ID_LEN
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .cloned()
        .unwrap_or_else(|| {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = fresh_request_id().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
        })
}

/// A new request id: UUID-shaped, a random per-process half and a counter,
/// so minting one costs no system call (a v4 UUID reads the OS RNG).
fn fresh_request_id() -> uuid::Uuid {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    uuid::Uuid::from_u64_pair(prefix, COUNTER.fetch_add(1, Ordering::Relaxed))
}
