//! The per-request flow: dispatch to the issuer, or check the path, resolve
//! the route and scope, authenticate, authorize, and forward.
//!
//! [`Gateway::handle`] is the infallible outer function hyper calls; it
//! turns any [`GatewayError`] into a response and hands the response body
//! the request's access record, written when the body is done.
//! [`Gateway::route`] is the inner function, written with `?`; it fills in
//! the record as the request moves through the stages. The stages live
//! beside it: `admit` (framing, path, route, authorization decision),
//! `endpoints` (the issuer and the JWKS), `publish` (the publish rules on
//! uploads and deletes), `record` (audit events of pushes and deletes) and
//! `conn` (connection facts and the request id).

use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Request, Response};
use tracing::{debug, error, warn, Instrument};

use crate::auth::authn::Authenticator;
use crate::auth::challenge::Challenge;
use crate::auth::guard::Guard;
use crate::auth::keyset::KeySet;
use crate::auth::limit::FailureLimiter;
use crate::auth::route::Routes;
use crate::auth::shared::SharedCounts;
use crate::auth::token::{Verifier, VerifyPolicy};
use crate::body::{self, Body};
use crate::config::GatewayConfig;
use crate::error::{Dialect, GatewayError};
use crate::federation::verifier::Federation;
use crate::issuer::mint::Minter;
use crate::issuer::Issuer;
use crate::oci::{self, Registry};
use crate::proxy::header;
use crate::proxy::inspect;
use crate::proxy::tap::{RequestTap, ResponseTap};
use crate::proxy::upstream::{self, Upstream};
use crate::publish::upload::Verdict;
use crate::publish::Publisher;
use crate::telemetry::access::Access;
use crate::telemetry::audit::{self, Audit, Event};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::TraceContext;

mod admit;
mod conn;
mod endpoints;
mod publish;
mod record;
mod registry;

use admit::check_target;
use conn::request_id;
pub use conn::ConnInfo;
pub use endpoints::JWKS_PATH;
use record::{audited_action, token_jti};

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

/// Shared state of the running gateway: everything a reload rebuilds.
#[derive(Debug)]
pub struct Gateway {
    routes: Routes,
    challenge: Challenge,
    guard: Guard,
    issuer: Issuer,
    token_path: String,
    upstream: Arc<Upstream>,
    /// The OCI registry bridge under `/v2/`, when `[oci]` enables it.
    registry: Option<Registry>,
    /// Per-chart push rules and immutable repositories.
    publisher: Publisher,
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
        let mut authn = Authenticator::new(
            verifier,
            Arc::new(config.accounts),
            config.auth.anonymous_pull.clone(),
            config.auth.authn.clone(),
        );
        let shared = config.auth.shared_limits.clone().map(|(client, prefix)| {
            Arc::new(SharedCounts::new(
                client,
                prefix,
                config.auth.limits,
                metrics.clone(),
            ))
        });
        if let Some(federation) =
            Federation::from_config(&config.trust, auth.leeway, shared.clone())?
        {
            authn = authn.with_federation(Arc::new(federation));
        }
        let signing_kid = config.issuer.signing_key.kid.clone();
        metrics.signing_key_expires(config.issuer.signing_key_expires);
        let minter = Minter::new(
            config.issuer.signing_key,
            auth.issuer.clone(),
            auth.audience.clone(),
            config.issuer.token_ttl,
        );
        let upstream = Arc::new(Upstream::new(
            &config.upstream,
            config.routes.context_path.as_deref(),
        ));
        let registry = config
            .oci
            .as_ref()
            .map(|oci| Registry::new(oci, upstream.clone(), config.routes.depth));
        Ok(Gateway {
            routes: Routes::new(&config.routes),
            challenge: Challenge::new(auth.realm.clone(), auth.service.clone()),
            guard: Guard::new(authn, FailureLimiter::new(config.auth.limits), shared),
            issuer: Issuer::new(minter, config.routes.depth),
            token_path: config.issuer.path,
            upstream,
            registry,
            publisher: Publisher::new(&config.publish),
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
            trace_id: trace.id(),
            peer: conn.peer,
            method: req.method().clone(),
            route: "unknown",
            handler: None,
            repo: None,
            subject: "-".to_owned(),
            decision: None,
            status: 0,
            upstream: None,
            bytes_in: None,
            metrics: self.metrics.clone(),
        };
        async move {
            let exchange = Exchange {
                conn: &conn,
                request_id: &request_id,
                trace: &trace,
                access: &mut access,
            };
            let dialect = self.dialect(req.uri().path());
            let mut response = match self.route(req, exchange).await {
                Ok(response) => response,
                Err(refusal) => self.refusal_response(refusal, dialect),
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

    /// Whether `path` is answered in the registry's dialect.
    fn dialect(&self, path: &str) -> Dialect {
        if self.registry.is_some() && oci::route::is_registry_path(path) {
            Dialect::Oci
        } else {
            Dialect::ChartMuseum
        }
    }

    fn refusal_response(
        &self,
        Refusal { error: e, close }: Refusal,
        dialect: Dialect,
    ) -> Response<Body> {
        if e.is_client_fault() {
            debug!(error = %e, "refused");
        } else if matches!(e, GatewayError::Internal(_)) {
            error!(error = %e, "internal error");
        } else {
            warn!(error = %e, source = ?std::error::Error::source(&e), "upstream failure");
        }
        let mut response = e.into_response(&self.challenge, dialect);
        if dialect == Dialect::Oci {
            response
                .headers_mut()
                .insert(oci::API_VERSION, HeaderValue::from_static("registry/2.0"));
        }
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
            // The rare endpoints run boxed, off the future every proxied
            // request moves whole.
            return Box::pin(self.token(req, x)).await.map_err(Refusal::from);
        }
        if req.uri().path() == JWKS_PATH
            && matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD)
            && check_target(&req).is_ok()
        {
            x.access.route = "jwks";
            return Ok(self.jwks());
        }
        if let Some(registry) = &self.registry {
            if oci::route::is_registry_path(req.uri().path()) {
                return Box::pin(self.registry(registry, req, x)).await;
            }
        }
        let admitted = self.admit(&req, x.conn, &mut *x.access).await;
        let audited = audited_action(x.access.handler);
        let (principal, via) = match admitted {
            Ok(a) => (a.principal, a.via),
            Err(error) => {
                if let Some(action) = audited {
                    let mut event = self.event(action, &req, &x);
                    record::refused(&mut event, &error);
                    self.audit.record(&event);
                }
                // Read the refused request's body (bounded) before answering:
                // a client still sending an upload would otherwise see a
                // reset instead of our 401 (helm-push reports "broken pipe").
                let drained = Box::pin(body::drain(
                    req.into_body(),
                    self.upstream.max_upload_bytes(),
                    DRAIN_TIMEOUT,
                ))
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
        self.publish(req, x, &principal, event).await
    }

    /// Sends an admitted request upstream and streams the answer back. A
    /// `verdict` from the publish stage, set while the upload streamed,
    /// turns the exchange into its refusal.
    async fn forward<B>(
        &self,
        mut req: Request<B>,
        x: Exchange<'_>,
        event: Option<Box<Event>>,
        verdict: Option<Verdict>,
    ) -> Result<Response<Body>, Refusal>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<body::BoxError>,
    {
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
        let asked = Instant::now();
        // A request without a body (most pulls) needs no tap.
        let sent = if http_body::Body::is_end_stream(req.body()) && feed.is_none() {
            self.upstream.send(req).await
        } else {
            let counted = Arc::new(AtomicU64::new(0));
            x.access.bytes_in = Some(counted.clone());
            let req = req.map(|b| RequestTap::new(b, counted, feed));
            self.upstream.send(req).await
        };
        let waited = asked.elapsed();
        x.access.upstream = Some(waited);
        match &sent {
            Ok(_) => self.metrics.upstream_answered(waited),
            Err(GatewayError::UpstreamTimeout) => self.metrics.upstream_failed("timeout"),
            Err(GatewayError::UpstreamUnavailable(_)) => self.metrics.upstream_failed("connect"),
            Err(_) => {}
        }
        let refused = verdict.and_then(|v| v.refusal()).map(GatewayError::from);
        if let Some(mut event) = event {
            event.status = match &sent {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.status().as_u16(),
            };
            if let Some(error) = &refused {
                record::refused(&mut event, error);
            }
            self.finish_event(event, inspected);
        }
        if let Some(error) = refused {
            return Err(Refusal { error, close: true });
        }
        let mut response = sent?;
        header::prepare_response(response.headers_mut());
        Ok(upstream::into_body(response))
    }
}
