//! The upstream client: the one place that talks to ChartMuseum.
//!
//! A pooled hyper-util client; request and response bodies are streamed,
//! never collected. The request body is wrapped in a byte limit so an
//! oversized chunked upload is cut off mid-stream (`413`) instead of being
//! handed whole to the upstream.

use std::error::Error as _;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::header::{HeaderValue, HOST};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, Uri, Version};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::error::GatewayError;

/// Idle pooled connections to keep per upstream host.
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// ChartMuseum, as the gateway reaches it.
#[derive(Debug)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    base: Uri,
    timeout: Duration,
    max_upload_bytes: u64,
    health: Uri,
    authorization: Option<hyper::header::HeaderValue>,
    /// `Host` for every upstream request: the upstream URL's authority,
    /// formatted once (the client would otherwise format it per request).
    host: Option<HeaderValue>,
}

/// How long a readiness probe waits for ChartMuseum's `/health`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Upstream {
    /// A pooled client for the upstream in `config`, whose ChartMuseum
    /// serves under `context_path`.
    pub fn new(config: &UpstreamConfig, context_path: Option<&str>) -> Upstream {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        // The TLS layer above handles https://; let the TCP layer accept it.
        http.enforce_http(false);
        // HTTP/1.1 only upstream: ChartMuseum speaks it, and SNI comes from
        // the upstream URL's host.
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config((*config.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let mut health = config.base.clone().into_parts();
        health.path_and_query = format!("{}/health", context_path.unwrap_or(""))
            .parse()
            .ok();
        Upstream {
            client,
            base: config.base.clone(),
            timeout: config.timeout,
            max_upload_bytes: config.max_upload_bytes,
            health: Uri::from_parts(health).unwrap_or_else(|_| config.base.clone()),
            authorization: config.authorization.clone(),
            host: config
                .base
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        }
    }

    /// Whether ChartMuseum's `/health` answers 200 within [`PROBE_TIMEOUT`].
    pub async fn is_healthy(&self) -> bool {
        let req = Request::get(self.health.clone()).body(crate::body::empty());
        let Ok(req) = req else { return false };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, self.client.request(req)).await,
            Ok(Ok(r)) if r.status() == hyper::StatusCode::OK
        )
    }

    /// The upload cap, for early `413`s on a declared `Content-Length`.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    /// The full upstream URI for a request's `path?query` (already parsed:
    /// the request's own is reused, not re-parsed).
    fn target(&self, req: &Request<Incoming>) -> Result<Uri, GatewayError> {
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).map_err(|e| GatewayError::Internal(e.to_string()))
    }

    /// Sends `req` (headers already prepared) upstream and returns its
    /// response with the body still streaming.
    ///
    /// # Errors
    /// `PayloadTooLarge` when the body passes the cap, `UpstreamTimeout` when
    /// no response head arrives in time, `UpstreamUnavailable` otherwise.
    pub async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, GatewayError> {
        let limit = self.max_upload_bytes;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        let uri = self.target(&req)?;
        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        // The pool speaks HTTP/1.1 to ChartMuseum whatever the client spoke.
        parts.version = Version::HTTP_11;
        if let Some(host) = &self.host {
            parts.headers.insert(HOST, host.clone());
        }
        // The gateway's own upstream credential, if any; the client's was
        // removed with the other credentials before this point.
        if let Some(auth) = &self.authorization {
            parts
                .headers
                .insert(hyper::header::AUTHORIZATION, auth.clone());
        }
        let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
        let body = Limited::new(body, limit_usize).boxed();
        let outbound = Request::from_parts(parts, body);

        match tokio::time::timeout(self.timeout, self.client.request(outbound)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if caused_by_length_limit(&e) => {
                Err(GatewayError::PayloadTooLarge { limit })
            }
            Ok(Err(e)) => Err(GatewayError::UpstreamUnavailable(Box::new(e))),
        }
    }
}

/// Whether the client error was our own body limit tripping.
fn caused_by_length_limit(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source = err.source();
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Converts the streaming upstream response into the gateway's body type.
pub fn into_body(response: Response<Incoming>) -> Response<Body> {
    response.map(|b| b.map_err(Into::into).boxed())
}
