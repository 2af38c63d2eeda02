//! The admission stage: framing, the canonical path, the route, and the
//! authorization decision for its scope, recorded once for the metrics and
//! the access line.

use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::Request;

use super::{ConnInfo, Gateway};
use crate::auth::access::Scope;
use crate::auth::authn::{Principal, Via};
use crate::auth::path;
use crate::error::{AuthFailure, GatewayError};
use crate::telemetry::access::Access;
use crate::telemetry::metrics::Decision;

impl Gateway {
    /// Everything decided before forwarding: framing, canonical path, route,
    /// credentials and scope. Records the route and the decision.
    pub(super) async fn admit(
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

    pub(super) fn decided(&self, access: &mut Access, decision: Decision) {
        self.metrics.decision(decision);
        access.decision = Some(decision);
    }

    /// Authenticates the request's credential and checks it grants `scope`.
    pub(super) async fn authorize(
        &self,
        headers: &hyper::HeaderMap,
        conn: &ConnInfo,
        scope: Scope,
    ) -> Result<(Principal, Via), GatewayError> {
        let (principal, via) = self
            .guard
            .request(headers, conn.peer.ip(), conn.client_cn.as_deref())
            .await
            .map_err(|denied| {
                GatewayError::denied(denied, |e| GatewayError::Unauthorized {
                    scope: scope.clone(),
                    cause: AuthFailure::Authn(e),
                })
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
pub(super) struct Admitted {
    pub(super) principal: Principal,
    pub(super) via: Via,
}

/// Framing rules for the request target (RFC 9112 §3.2): an HTTP/1.1
/// request carries exactly one `Host`; HTTP/2 may carry none (it has
/// `:authority`); none may carry more than one; and no target may carry
/// userinfo, which would otherwise end up in `X-Forwarded-Host`.
pub(super) fn check_target(req: &Request<Incoming>) -> Result<(), GatewayError> {
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
