//! The per-request flow: dispatch to the issuer, or check the path, resolve
//! the route and scope, authenticate, authorize, and forward.
//!
//! [`Gateway::handle`] is the infallible outer function hyper calls; it
//! turns any [`GatewayError`] into a response and hands the response body
//! the request's access record, written when the body is done.
//! [`Gateway::route`] is the inner function, written with `?`; it fills in
//! the record as the request moves through the stages, and records the
//! authorization decision and, for pushes, deletes and token requests, the
//! audit event.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Request, Response};
use tracing::{debug, error, warn, Instrument};

use crate::auth::access::Scope;
use crate::auth::authn::{Authenticator, Principal, Via};
use crate::auth::challenge::Challenge;
use crate::auth::guard::{Denied, Guard};
use crate::auth::keyset::KeySet;
use crate::auth::limit::FailureLimiter;
use crate::auth::path;
use crate::auth::route::{Handler, Routes};
use crate::auth::shared::SharedCounts;
use crate::auth::token::{Verifier, VerifyPolicy};
use crate::body::{self, Body};
use crate::config::GatewayConfig;
use crate::error::{AuthFailure, GatewayError};
use crate::issuer::mint::Minter;
use crate::issuer::{self, Issuer};
use crate::proxy::header;
use crate::proxy::inspect::{self, Upload};
use crate::proxy::tap::{RequestTap, ResponseTap};
use crate::proxy::upstream::{self, Upstream};
use crate::telemetry::access::Access;
use crate::telemetry::audit::{self, Audit, Event};
use crate::telemetry::metrics::{Decision, Metrics};
use crate::telemetry::trace::TraceContext;

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
/// Where the gateway publishes its public keys (RFC 8615, RFC 7517).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// How long a JWKS consumer may cache it: short, so a key added for a
/// rotation reaches them well before it signs anything.
const JWKS_MAX_AGE: HeaderValue = HeaderValue::from_static("public, max-age=60");
/// How long an audit event waits, after ChartMuseum answered, for the
/// upload inspector to finish hashing.
const INSPECT_WAIT: Duration = Duration::from_secs(5);

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

/// Shared state of the running gateway: everything a reload rebuilds.
#[derive(Debug)]
pub struct Gateway {
    routes: Routes,
    challenge: Challenge,
    guard: Guard,
    issuer: Issuer,
    token_path: String,
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    signing_kid: String,
}

/// What a request carries through the stages.
struct Exchange<'a> {
    conn: &'a ConnInfo,
    request_id: &'a HeaderValue,
    trace: &'a TraceContext,
    access: &'a mut Access,
}

impl Gateway {
    /// Builds the gateway from a validated config, recording into `metrics`
    /// (which outlives reloads).
    ///
    /// # Errors
    /// A trusted key file cannot be read or parsed, or the audit file
    /// cannot be opened.
    pub fn from_config(config: GatewayConfig, metrics: Arc<Metrics>) -> anyhow::Result<Gateway> {
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
        let signing_kid = config.issuer.signing_key.kid.clone();
        metrics.signing_key_expires(config.issuer.signing_key_expires);
        let minter = Minter::new(
            config.issuer.signing_key,
            auth.issuer.clone(),
            auth.audience.clone(),
            config.issuer.token_ttl,
        );
        Ok(Gateway {
            routes: Routes::new(&config.routes),
            challenge: Challenge::new(auth.realm.clone(), auth.service.clone()),
            guard: Guard::new(
                authn,
                FailureLimiter::new(config.auth.limits),
                config.auth.shared_limits.clone().map(|(client, prefix)| {
                    SharedCounts::new(client, prefix, config.auth.limits, metrics.clone())
                }),
            ),
            issuer: Issuer::new(minter, config.routes.depth),
            token_path: config.issuer.path,
            upstream: Arc::new(Upstream::new(
                &config.upstream,
                config.routes.context_path.as_deref(),
            )),
            audit: Arc::new(Audit::open(config.audit.file.as_deref())?),
            metrics,
            signing_kid,
        })
    }

    /// The upstream client, for the admin listener's readiness probe.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.upstream.clone()
    }

    /// The `kid` of the key tokens are signed with.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// Serves one request. Never fails: errors become responses here, and
    /// the response body carries the access record to its end.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Response<Body>, Infallible> {
        let request_id = request_id(&req);
        let trace = TraceContext::continue_or_start(req.headers().get(header::TRACEPARENT));
        let span = tracing::debug_span!(
            "request",
            id = %request_id.to_str().unwrap_or("-"),
            peer = %conn.peer,
        );
        let mut access = Access {
            started: Instant::now(),
            request_id: request_id.clone(),
            trace_id: trace.trace_id.clone(),
            peer: conn.peer,
            method: req.method().clone(),
            route: "unknown",
            handler: None,
            repo: None,
            subject: "-".to_owned(),
            decision: None,
            status: 0,
            upstream: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            metrics: self.metrics.clone(),
        };
        async move {
            let exchange = Exchange {
                conn: &conn,
                request_id: &request_id,
                trace: &trace,
                access: &mut access,
            };
            let mut response = match self.route(req, exchange).await {
                Ok(response) => response,
                Err(refusal) => self.refusal_response(refusal),
            };
            response
                .headers_mut()
                .insert(header::X_REQUEST_ID, request_id);
            access.status = response.status().as_u16();
            Ok(response.map(|b| ResponseTap::new(b, access).boxed()))
        }
        .instrument(span)
        .await
    }

    fn refusal_response(&self, Refusal { error: e, close }: Refusal) -> Response<Body> {
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

    /// The inner flow, written with `?`.
    async fn route(
        &self,
        req: Request<Incoming>,
        x: Exchange<'_>,
    ) -> Result<Response<Body>, Refusal> {
        if req.uri().path() == self.token_path && check_target(&req).is_ok() {
            return self.token(req, x).await.map_err(Refusal::from);
        }
        if req.uri().path() == JWKS_PATH
            && matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD)
            && check_target(&req).is_ok()
        {
            x.access.route = "jwks";
            return Ok(self.jwks());
        }
        let admitted = self.admit(&req, x.conn, &mut *x.access).await;
        let audited = audited_action(x.access.handler);
        let (principal, via) = match admitted {
            Ok(a) => (a.principal, a.via),
            Err(error) => {
                if let Some(action) = audited {
                    let mut event = self.event(action, &req, &x);
                    event.outcome = "refused";
                    event.reason = error.decision().map(|d| d.labels().1);
                    event.status = error.status().as_u16();
                    self.audit.record(&event);
                }
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
        };
        x.access.subject = principal.subject().to_owned();
        let event = audited.map(|action| {
            let mut event = self.event(action, &req, &x);
            event.subject = principal.subject().to_owned();
            event.credential = via.name();
            event.token_jti = token_jti(&principal);
            event
        });
        self.forward(req, x, event).await
    }

    /// Sends an admitted request upstream and streams the answer back.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        x: Exchange<'_>,
        event: Option<Event>,
    ) -> Result<Response<Body>, Refusal> {
        let authority = req.uri().authority().map(|a| a.as_str().to_owned());
        if let Some(name) = self.guard.authn().token_header() {
            req.headers_mut().remove(name);
        }
        header::prepare_request(
            req.headers_mut(),
            authority.as_deref(),
            &x.conn.forwarded_for,
            x.conn.proto,
            x.request_id,
            x.trace.header(),
        );
        let inspector = match &event {
            Some(e) if e.action == audit::Action::Push => Some(inspect::start(
                req.headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
            )),
            _ => None,
        };
        let (feed, inspected) = inspector.unzip();
        let req = req.map(|b| RequestTap::new(b, x.access.bytes_in.clone(), feed));
        let asked = Instant::now();
        let sent = self.upstream.send(req).await;
        x.access.upstream = Some(asked.elapsed());
        match &sent {
            Ok(_) => self.metrics.upstream_answered(asked.elapsed()),
            Err(GatewayError::UpstreamTimeout) => self.metrics.upstream_failed("timeout"),
            Err(GatewayError::UpstreamUnavailable(_)) => self.metrics.upstream_failed("connect"),
            Err(_) => {}
        }
        if let Some(mut event) = event {
            event.status = match &sent {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.status().as_u16(),
            };
            self.finish_event(event, inspected);
        }
        let mut response = sent?;
        header::prepare_response(response.headers_mut());
        Ok(upstream::into_body(response))
    }

    /// Writes `event` once the upload inspector (if any) has its answer,
    /// without holding up the response.
    fn finish_event(
        &self,
        mut event: Event,
        inspected: Option<tokio::task::JoinHandle<Option<Upload>>>,
    ) {
        let audit = self.audit.clone();
        tokio::spawn(async move {
            if let Some(task) = inspected {
                if let Ok(Ok(Some(upload))) = tokio::time::timeout(INSPECT_WAIT, task).await {
                    if let Some((chart, version)) = upload.chart_version() {
                        event.chart = Some(chart);
                        event.version = Some(version);
                    }
                    event.file = upload.file;
                    event.sha256 = Some(upload.sha256);
                    event.size = Some(upload.size);
                }
            }
            audit.record(&event);
        });
    }

    /// The public keys, for other replicas, ChartMuseum's bearer mode and
    /// any service that verifies the gateway's tokens.
    fn jwks(&self) -> Response<Body> {
        let value = serde_json::to_value(self.guard.authn().jwks()).unwrap_or_default();
        let mut response = Response::new(body::json(&value));
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        headers.insert(hyper::header::CACHE_CONTROL, JWKS_MAX_AGE);
        response
    }

    /// The token endpoint, with its metrics and audit event.
    async fn token(
        &self,
        req: Request<Incoming>,
        x: Exchange<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        x.access.route = "token";
        let mut event = self.event(audit::Action::Token, &req, &x);
        let issued = self.issuer.handle(req, &self.guard, x.conn.peer.ip()).await;
        match issued {
            Ok(issued) => {
                self.metrics.token_request(issued.grant, "issued");
                x.access.subject.clone_from(&issued.account);
                event.subject = issued.account;
                event.grant = Some(issued.grant);
                event.scopes_requested = Some(issued.requested);
                event.scopes_granted = Some(issued.granted);
                event.issued_jti = Some(issued.jti);
                event.status = issued.response.status().as_u16();
                self.audit.record(&event);
                Ok(issued.response)
            }
            Err(e) => {
                let outcome = issuer::refusal_outcome(&e);
                self.metrics.token_request("unknown", outcome);
                event.outcome = "refused";
                event.reason = Some(outcome);
                event.status = e.status().as_u16();
                self.audit.record(&event);
                Err(e)
            }
        }
    }

    /// An audit event for this request, with what is known before auth.
    fn event<B>(&self, action: audit::Action, req: &Request<B>, x: &Exchange<'_>) -> Event {
        let mut event = Event::new(
            action,
            x.request_id.to_str().unwrap_or("-"),
            &x.trace.trace_id,
            x.conn.peer.ip().to_string(),
        );
        event.repo.clone_from(&x.access.repo);
        if action == audit::Action::Delete {
            // `/api/:repo/charts/:name/:version`
            let mut segments = req.uri().path().rsplit('/');
            event.version = segments.next().map(str::to_owned);
            event.chart = segments.next().map(str::to_owned);
        }
        event
    }

    /// Everything decided before forwarding: framing, canonical path, route,
    /// credentials and scope. Records the route and the decision.
    async fn admit(
        &self,
        req: &Request<Incoming>,
        conn: &ConnInfo,
        access: &mut Access,
    ) -> Result<Admitted, GatewayError> {
        check_target(req).inspect_err(|_| access.route = "invalid")?;
        path::check(req.uri().path()).inspect_err(|_| access.route = "invalid")?;
        let resolved = self
            .routes
            .resolve(req.method(), req.uri().path())
            .ok_or(GatewayError::NotFound)?;
        let handler = resolved.route.handler;
        access.route = handler.name();
        access.handler = Some(handler);
        if !resolved.repo.is_empty() {
            access.repo = Some(resolved.repo.clone());
        }
        let Some(scope) = resolved.scope() else {
            self.decided(access, Decision::Public);
            return Ok(Admitted {
                principal: Principal::Anonymous,
                via: Via::Nothing,
            });
        };
        let decided = self.authorize(req.headers(), conn, scope).await;
        let decision = match &decided {
            Ok((Principal::Anonymous, _)) => Some(Decision::Anonymous),
            Ok(_) => Some(Decision::Allowed),
            Err(e) => e.decision(),
        };
        if let Some(d) = decision {
            self.decided(access, d);
        }
        let (principal, via) = decided?;
        Ok(Admitted { principal, via })
    }

    fn decided(&self, access: &mut Access, decision: Decision) {
        self.metrics.decision(decision);
        access.decision = Some(decision);
    }

    /// Authenticates the request's credential and checks it grants `scope`.
    async fn authorize(
        &self,
        headers: &hyper::HeaderMap,
        conn: &ConnInfo,
        scope: Scope,
    ) -> Result<(Principal, Via), GatewayError> {
        let (principal, via) = self
            .guard
            .request(headers, conn.peer.ip(), conn.client_cn.as_deref())
            .await
            .map_err(|denied| match denied {
                Denied::LockedOut(retry_after) => GatewayError::TooManyAttempts { retry_after },
                Denied::Busy => GatewayError::Busy,
                Denied::Ambiguous => GatewayError::DuplicateCredentials,
                Denied::Failed(e) => GatewayError::Unauthorized {
                    scope: scope.clone(),
                    cause: AuthFailure::Authn(e),
                },
            })?;
        if self.guard.authn().allows(&principal, &scope) {
            Ok((principal, via))
        } else if matches!(principal, Principal::Anonymous) {
            Err(GatewayError::Unauthorized {
                scope,
                cause: AuthFailure::Missing,
            })
        } else {
            Err(GatewayError::Unauthorized {
                scope,
                cause: AuthFailure::InsufficientScope {
                    subject: principal.subject().to_owned(),
                },
            })
        }
    }
}

/// A request past the guard.
struct Admitted {
    principal: Principal,
    via: Via,
}

/// Which routes the audit trail records.
fn audited_action(handler: Option<Handler>) -> Option<audit::Action> {
    match handler? {
        Handler::ApiUpload | Handler::ApiProvenance => Some(audit::Action::Push),
        Handler::ApiDelete => Some(audit::Action::Delete),
        _ => None,
    }
}

fn token_jti(principal: &Principal) -> Option<String> {
    match principal {
        Principal::Token(claims) => claims.jti.clone(),
        _ => None,
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
