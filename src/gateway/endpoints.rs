//! The gateway's own endpoints, answered before the route table: the
//! token issuer (with its metrics and audit event) and the published keys.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};

use super::{Exchange, Gateway};
use crate::body::{self, Body};
use crate::error::GatewayError;
use crate::issuer;
use crate::telemetry::audit;

/// Where the gateway publishes its public keys (RFC 8615, RFC 7517).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// How long a JWKS consumer may cache it: short, so a key added for a
/// rotation reaches them well before it signs anything.
const JWKS_MAX_AGE: HeaderValue = HeaderValue::from_static("public, max-age=60");

impl Gateway {
    /// The public keys, for other replicas, ChartMuseum's bearer mode and
    /// any service that verifies the gateway's tokens.
    pub(super) fn jwks(&self) -> Response<Body> {
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
    pub(super) async fn token(
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
                if let Some(credential) = issued.credential {
                    event.credential = credential;
                    event.token_jti = issued.presented_jti;
                }
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
}
