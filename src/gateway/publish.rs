//! The publish stage: an admitted upload or delete is held to the publish
//! rules before it is forwarded. A delete names its chart and version in
//! the path. An upload is read for the chart it carries only when a rule
//! needs it (the principal's rule names charts, or the repository is
//! immutable); otherwise it streams through untouched. A refused request
//! is audited and its body drained, and nothing reaches ChartMuseum.

use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response};

use super::registry::upstream_headers;
use super::{Exchange, Gateway, Refusal, DRAIN_TIMEOUT};
use crate::auth::access::{Action, Scope, DEFAULT_NAMESPACE};
use crate::auth::authn::Principal;
use crate::auth::route::Handler;
use crate::body::Body;
use crate::error::GatewayError;
use crate::oci::storage::Storage;
use crate::publish::rules::Checks;
use crate::publish::upload::{Limits, Route, Upload};
use crate::publish::{stored, Identity};
use crate::telemetry::audit::Event;

/// Most bytes of an upload held back while its chart is not yet known.
/// `helm package` writes `Chart.yaml` first, so it arrives in the first
/// few kilobytes.
const IDENTITY_WINDOW: u64 = 4 * 1024 * 1024;

impl Gateway {
    /// Forwards an admitted request, after the publish rules for the
    /// pushes and deletes they apply to.
    pub(super) async fn publish(
        &self,
        req: Request<Incoming>,
        x: Exchange<'_>,
        principal: &Principal,
        event: Option<Box<Event>>,
    ) -> Result<Response<Body>, Refusal> {
        let route = match x.access.handler {
            Some(Handler::ApiUpload) => Route::Charts,
            Some(Handler::ApiProvenance) => Route::Prov,
            // Deletes and inspected uploads run boxed, off the future every
            // pull moves whole.
            Some(Handler::ApiDelete) => {
                return Box::pin(self.delete(req, x, principal, event)).await
            }
            _ => return self.forward(req, x, event, None).await,
        };
        let scope = push_scope(&x);
        let checks = self.publisher.checks(principal, &scope);
        if !checks.needs_identity() {
            return self.forward(req, x, event, None).await;
        }
        Box::pin(self.upload(req, x, route, &checks, event)).await
    }

    /// `DELETE /api/:repo/charts/:name/:version`.
    async fn delete(
        &self,
        req: Request<Incoming>,
        x: Exchange<'_>,
        principal: &Principal,
        event: Option<Box<Event>>,
    ) -> Result<Response<Body>, Refusal> {
        let checks = self.publisher.checks(principal, &push_scope(&x));
        let mut segments = req.uri().path().rsplit('/');
        let (version, chart) = (segments.next().unwrap_or(""), segments.next().unwrap_or(""));
        match checks.delete(chart, version) {
            Ok(()) => self.forward(req, x, event, None).await,
            Err(refusal) => Err(self.refuse(req.into_body(), event, refusal.into()).await),
        }
    }

    /// An upload whose chart a rule needs: read it, decide, then forward
    /// the body as read (the verdict on its rest rides along).
    async fn upload(
        &self,
        req: Request<Incoming>,
        x: Exchange<'_>,
        route: Route,
        checks: &Checks<'_>,
        mut event: Option<Box<Event>>,
    ) -> Result<Response<Body>, Refusal> {
        // The body is re-framed below; an oversized one is refused first,
        // as `Upstream::send` would refuse it.
        if let Err(error) = self.upstream.check_length(req.headers()) {
            return Err(self
                .refuse_with(std::future::ready(false), event, error)
                .await);
        }
        let headers = upstream_headers(&req, &x);
        let (mut parts, body) = req.into_parts();
        let limits = Limits {
            window: IDENTITY_WINDOW,
            drain_bytes: self.upstream.max_upload_bytes(),
            drain_timeout: DRAIN_TIMEOUT,
        };
        let mut upload = Upload::open(body, route, parts.headers.get(CONTENT_TYPE), limits);
        let decided = match upload.identity().await {
            Ok(chart) => {
                if let Some(event) = &mut event {
                    event.chart = Some(chart.name.clone());
                    event.version = Some(chart.version.clone());
                }
                self.allowed(&x, checks, &chart, &headers).await
            }
            Err(refusal) => Err(refusal.into()),
        };
        let _held = match decided {
            Ok(held) => held,
            Err(error) => return Err(self.refuse_with(upload.discard(), event, error).await),
        };
        let forwarded = upload.forward();
        // The body is re-framed (chunked): its length is no longer the client's.
        parts.headers.remove(CONTENT_LENGTH);
        if let Some(content_type) = forwarded.content_type {
            parts.headers.insert(CONTENT_TYPE, content_type);
        }
        let req = Request::from_parts(parts, forwarded.body);
        self.forward(req, x, event, Some(forwarded.verdict)).await
    }

    /// Whether `chart` may be pushed; in an immutable repository, takes the
    /// version's lock (held until ChartMuseum has answered) and checks that
    /// ChartMuseum does not store it yet.
    async fn allowed(
        &self,
        x: &Exchange<'_>,
        checks: &Checks<'_>,
        chart: &Identity,
        headers: &hyper::HeaderMap,
    ) -> Result<Option<crate::publish::lock::Held<'_>>, GatewayError> {
        checks.chart(&chart.name)?;
        if !checks.immutable() {
            return Ok(None);
        }
        let held = self.publisher.lock(&push_scope(x).namespace, chart).await;
        let storage = Storage {
            upstream: &self.upstream,
            headers,
        };
        let repo = x.access.repo.as_deref().unwrap_or("");
        match stored::archive(&storage, repo, chart).await? {
            None => Ok(Some(held)),
            Some(_) => Err(checks.exists(&chart.name, &chart.version).into()),
        }
    }
}

/// The push scope of the request's repository.
fn push_scope(x: &Exchange<'_>) -> Scope {
    let namespace = x.access.repo.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    Scope::repository(namespace, Action::Push)
}
