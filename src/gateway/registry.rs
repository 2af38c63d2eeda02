//! The registry stage: a `/v2/` request is checked (framing, canonical
//! path, OCI target), authorized for the Docker-form scope of the chart it
//! names, held to the publish rules (the chart is the name's last segment,
//! the version the tag), then served by the bridge in `oci/`. Manifest
//! pushes, which publish, are audited like classic uploads.

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HOST};
use hyper::{Method, Request, Response};

use super::admit::check_target;
use super::ConnInfo;
use super::{Exchange, Gateway, Refusal};
use crate::auth::access::Action;
use crate::auth::authn::{Principal, Via};
use crate::auth::path;
use crate::body::Body;
use crate::error::{AuthFailure, GatewayError, OciCode};
use crate::oci::route::{self, ChartName, Endpoint, Target, TargetError};
use crate::oci::{self, Call, Published, Registry};
use crate::proxy::header;
use crate::publish::Identity;
use crate::telemetry::access::Access;
use crate::telemetry::audit::{self, Event};
use crate::telemetry::metrics::Decision;

/// The route kind of a registry endpoint, for logs and metrics.
fn route_name(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Base => "oci_base",
        Endpoint::Catalog => "oci_catalog",
        Endpoint::Manifest(_) => "oci_manifest",
        Endpoint::Blob(_) => "oci_blob",
        Endpoint::UploadStart | Endpoint::Upload(_) => "oci_upload",
        Endpoint::Tags => "oci_tags",
        Endpoint::Referrers => "oci_referrers",
    }
}

fn target_error(e: TargetError) -> GatewayError {
    let code = match e {
        TargetError::Name(_) => OciCode::NameInvalid,
        TargetError::Unknown => return GatewayError::NotFound,
        TargetError::Digest => OciCode::DigestInvalid,
        TargetError::Tag => OciCode::ManifestInvalid,
        TargetError::Upload => OciCode::BlobUploadUnknown,
    };
    GatewayError::Registry {
        code,
        message: e.to_string(),
    }
}

impl Gateway {
    /// Serves a registry request end to end.
    pub(super) async fn registry(
        &self,
        registry: &Registry,
        req: Request<Incoming>,
        x: Exchange<'_>,
    ) -> Result<Response<Body>, Refusal> {
        x.access.route = "oci";
        let target = self
            .registry_target(&req, registry.depth())
            .inspect_err(|_| x.access.route = "invalid")?;
        x.access.route = route_name(&target.endpoint);
        let Some(name) = target.chart else {
            return self.registry_root(&req, x, &target.endpoint).await;
        };
        x.access.repo = Some(name.namespace.clone());
        let publishes =
            matches!(target.endpoint, Endpoint::Manifest(_)) && req.method() == Method::PUT;
        let mut event = publishes.then(|| self.publish_event(&req, &x, &name));
        let principal = match self.authorize_registry(&req, x.conn, x.access, &name).await {
            Ok(p) => p,
            Err(error) => return Err(self.refuse(req.into_body(), event, error).await),
        };
        x.access.subject = principal.0.subject().to_owned();
        if let Some(event) = &mut event {
            event.subject = principal.0.subject().to_owned();
            event.credential = principal.1.name();
            event.token_jti = super::record::token_jti(&principal.0);
        }
        // Publish rules: every push endpoint names its chart, so a chart the
        // principal's rule leaves out is refused before a blob is staged.
        let scope = name.scope(req.method());
        let immutable = scope.action == Action::Push && {
            let checks = self.publisher.checks(&principal.0, &scope);
            if let Err(refusal) = checks.chart(&name.chart) {
                return Err(self.refuse(req.into_body(), event, refusal.into()).await);
            }
            checks.immutable()
        };
        // One push of a version at a time into an immutable repository.
        let _held = match pushed_version(&req) {
            Some(version) if publishes && immutable => {
                let chart = Identity {
                    name: name.chart.clone(),
                    version,
                };
                Some(self.publisher.lock(&name.namespace, &chart).await)
            }
            _ => None,
        };
        let headers = upstream_headers(&req, &x);
        let call = Call {
            name: &name,
            headers: &headers,
            immutable,
        };
        let served = registry.serve(call, target.endpoint, req).await;
        if let Some(event) = event {
            self.published(event, &served);
        }
        Ok(served?.0)
    }

    fn registry_target(
        &self,
        req: &Request<Incoming>,
        depth: usize,
    ) -> Result<Target, GatewayError> {
        check_target(req)?;
        let path = req.uri().path();
        // Registry clients send `/v2/` and `…/blobs/uploads/`: one trailing
        // slash is part of the API, the rest of the path must be canonical.
        // A digest reference (`sha256:<hex>`) is the one segment with a
        // colon; `route::parse` holds it to the digest grammar.
        let canonical = path.strip_suffix('/').unwrap_or(path);
        let checked = match canonical.rsplit_once('/') {
            Some((head, last)) if last.contains(':') => head,
            _ => canonical,
        };
        path::check(checked)?;
        route::parse(path, depth).map_err(target_error)
    }

    /// `/v2/` (any valid credential) and `/v2/_catalog` (not served).
    async fn registry_root(
        &self,
        req: &Request<Incoming>,
        x: Exchange<'_>,
        endpoint: &Endpoint,
    ) -> Result<Response<Body>, Refusal> {
        if *endpoint == Endpoint::Catalog {
            return Err(GatewayError::NotFound.into());
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return Err(GatewayError::Registry {
                code: OciCode::Unsupported,
                message: "the base endpoint takes GET".into(),
            }
            .into());
        }
        let authenticated = self
            .guard
            .request(req.headers(), x.conn.peer.ip(), x.conn.client_cn.as_deref())
            .await;
        let refused = |cause| GatewayError::Unauthenticated { cause };
        let error = match authenticated {
            Ok((Principal::Anonymous, _)) => refused(AuthFailure::Missing),
            Ok((principal, _)) => {
                self.decided(x.access, Decision::Allowed);
                x.access.subject = principal.subject().to_owned();
                return Ok(oci::base());
            }
            Err(denied) => GatewayError::denied(denied, |e| refused(AuthFailure::Authn(e))),
        };
        if let Some(d) = error.decision() {
            self.decided(x.access, d);
        }
        Err(error.into())
    }

    /// Authorizes `name`'s scope for this method, recording the decision.
    async fn authorize_registry(
        &self,
        req: &Request<Incoming>,
        conn: &ConnInfo,
        access: &mut Access,
        name: &ChartName,
    ) -> Result<(Principal, Via), GatewayError> {
        let decided = self
            .authorize(req.headers(), conn, name.scope(req.method()))
            .await;
        let decision = match &decided {
            Ok((Principal::Anonymous, _)) => Some(Decision::Anonymous),
            Ok(_) => Some(Decision::Allowed),
            Err(e) => e.decision(),
        };
        if let Some(d) = decision {
            self.decided(access, d);
        }
        decided
    }

    fn publish_event(
        &self,
        req: &Request<Incoming>,
        x: &Exchange<'_>,
        name: &ChartName,
    ) -> Box<Event> {
        let mut event = self.event(audit::Action::Push, req, x);
        event.repo = Some(name.namespace.clone());
        event.chart = Some(name.chart.clone());
        event.version = pushed_version(req);
        event
    }

    /// Records a manifest push's outcome.
    fn published(
        &self,
        mut event: Box<Event>,
        served: &Result<(Response<Body>, Option<Published>), GatewayError>,
    ) {
        match served {
            // A manifest pushed by digest is only staged until it is tagged.
            Ok((_, None)) => return,
            Ok((response, Some(p))) => {
                event.status = response.status().as_u16();
                event.version = Some(p.version.clone());
                event.file = Some(format!("{}-{}.tgz", p.chart, p.version));
                event.sha256 = Some(p.digest.hex());
                event.size = Some(p.size);
            }
            Err(e) => {
                event.outcome = "refused";
                event.reason = Some(match e {
                    GatewayError::Registry { code, .. } => code.as_str(),
                    GatewayError::Publish(refusal) => refusal.reason(),
                    _ => "upstream",
                });
                event.status = e.status().as_u16();
            }
        }
        self.audit.record(&event);
    }
}

/// The chart version a manifest push by tag publishes (its tag, with `_`
/// read as `+`); `None` for a push by digest.
fn pushed_version<B>(req: &Request<B>) -> Option<String> {
    let tag = req.uri().path().rsplit('/').next()?;
    (!tag.contains(':')).then(|| oci::derive::version_of(tag))
}

/// The headers the gateway's own ChartMuseum requests carry: the client's
/// host, forwarding headers, the request id and the trace context.
pub(super) fn upstream_headers<B>(req: &Request<B>, x: &Exchange<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(host) = req.headers().get(HOST) {
        headers.insert(HOST, host.clone());
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    header::prepare_request(
        &mut headers,
        authority.as_deref(),
        &x.conn.forwarded_for,
        x.conn.proto,
        x.request_id,
        x.trace.header(),
    );
    headers
}
