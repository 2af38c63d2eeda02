//! The admin listener: the gateway's own health and metrics, on its own
//! port so it can never shadow or be shadowed by a ChartMuseum path.
//!
//! `/healthz` answers 200 while the process serves; `/readyz` answers 200
//! only while the gateway is not draining and the ChartMuseum of the
//! gateway in service (after any reload) answers `/health` with 200, so a
//! load balancer stops sending traffic to a gateway that could only answer
//! 502. `/metrics` is the Prometheus exposition.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::body::{self, Body};
use crate::error::JSON;
use crate::server::reload::Live;
use crate::server::tls::{self, CertStore};

/// The OpenMetrics text format's content type.
const OPENMETRICS: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");

/// What the admin endpoints report on.
#[derive(Debug)]
pub struct Admin {
    pub live: Arc<Live>,
    pub draining: Arc<AtomicBool>,
    /// The TLS listener's certificates, for their expiry gauge.
    pub certs: Option<Arc<CertStore>>,
}

fn reply(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::json(&value));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
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
            "/readyz" => self.ready().await,
            "/metrics" => self.metrics(),
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        })
    }

    async fn ready(&self) -> Response<Body> {
        if self.draining.load(Ordering::Relaxed) {
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "reason": "draining"}),
            )
        } else if !self.live.get().upstream().is_healthy().await {
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "reason": "upstream unhealthy"}),
            )
        } else {
            reply(StatusCode::OK, json!({"ready": true}))
        }
    }

    /// The exposition, with the gauges read at scrape time brought up to
    /// date first.
    fn metrics(&self) -> Response<Body> {
        let metrics = self.live.metrics();
        metrics.set_pool_idle(self.live.get().upstream().idle_connections());
        if let Some(not_after) = self.certs.as_deref().and_then(tls::not_after) {
            metrics.certificate_expires("listener", not_after);
        }
        let mut response = Response::new(body::full(metrics.encode()));
        response.headers_mut().insert(CONTENT_TYPE, OPENMETRICS);
        response
    }
}
