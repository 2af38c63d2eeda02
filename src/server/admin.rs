//! The admin listener: the gateway's own health, on its own port so it can
//! never shadow or be shadowed by a ChartMuseum path.
//!
//! `/healthz` answers 200 while the process serves; `/readyz` answers 200
//! only while the gateway is not draining and ChartMuseum's `/health`
//! answers 200, so a load balancer stops sending traffic to a gateway that
//! could only answer 502.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::body::{self, Body};
use crate::error::JSON;
use crate::proxy::upstream::Upstream;

/// What the admin endpoints report on.
#[derive(Debug)]
pub struct Admin {
    pub upstream: Arc<Upstream>,
    pub draining: Arc<AtomicBool>,
}

fn reply(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::json(&value));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, JSON);
    response
}

impl Admin {
    /// Serves one admin request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        if req.method() != Method::GET {
            return Ok(reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "method not allowed"}),
            ));
        }
        Ok(match req.uri().path() {
            "/healthz" => reply(StatusCode::OK, json!({"healthy": true})),
            "/readyz" => {
                if self.draining.load(Ordering::Relaxed) {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"ready": false, "reason": "draining"}),
                    )
                } else if !self.upstream.is_healthy().await {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"ready": false, "reason": "upstream unhealthy"}),
                    )
                } else {
                    reply(StatusCode::OK, json!({"ready": true}))
                }
            }
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        })
    }
}
