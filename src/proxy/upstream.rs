//! The upstream client: the one place that talks to ChartMuseum.
//!
//! Requests go out over the connection [`Pool`]; request and response
//! bodies are streamed, never collected. The request body is wrapped in a
//! byte limit so an oversized chunked upload is cut off mid-stream (`413`)
//! instead of being handed whole to the upstream.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::header::{HeaderValue, CONTENT_LENGTH, HOST};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, Uri, Version};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;

use super::pool::{Pool, PoolError, PooledBody};
use crate::body::{Body, SignalEnd};
use crate::config::UpstreamConfig;
use crate::error::GatewayError;

/// Idle pooled connections to keep.
const POOL_MAX_IDLE: usize = 256;
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// ChartMuseum, as the gateway reaches it.
#[derive(Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    timeout: Duration,
    max_upload_bytes: u64,
    health: Uri,
    authorization: Option<hyper::header::HeaderValue>,
    /// `Host` for every upstream request: the upstream URL's authority,
    /// formatted once (the client would otherwise format it per request).
    host: Option<HeaderValue>,
    /// ChartMuseum's `--context-path`, for requests the gateway makes itself.
    context_path: String,
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
        let pool = Pool::new(
            connector,
            config.base.clone(),
            POOL_MAX_IDLE,
            POOL_IDLE_TIMEOUT,
        );
        let health = format!("{}/health", context_path.unwrap_or(""))
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/health"));
        Upstream {
            pool: Arc::new(pool),
            timeout: config.timeout,
            max_upload_bytes: config.max_upload_bytes,
            health,
            authorization: config.authorization.clone(),
            host: config
                .base
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
            context_path: context_path.unwrap_or("").to_owned(),
        }
    }

    /// The upstream target of `path` (which starts with `/`) under
    /// ChartMuseum's context path, for requests the gateway makes itself.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.context_path)
    }

    /// Whether ChartMuseum's `/health` answers 200 within [`PROBE_TIMEOUT`].
    pub async fn is_healthy(&self) -> bool {
        let mut req = Request::new(crate::body::empty());
        *req.uri_mut() = self.health.clone();
        if let Some(host) = &self.host {
            req.headers_mut().insert(HOST, host.clone());
        }
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, self.pool.send(req)).await,
            Ok(Ok(r)) if r.status() == hyper::StatusCode::OK
        )
    }

    /// Idle pooled connections to ChartMuseum.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// The upload cap, for early `413`s on a declared `Content-Length`.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    /// Refuses a request whose declared `Content-Length` passes the cap,
    /// before any of its body is read.
    ///
    /// # Errors
    /// `PayloadTooLarge`.
    pub fn check_length(&self, headers: &hyper::HeaderMap) -> Result<(), GatewayError> {
        let limit = self.max_upload_bytes;
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(n) if n > limit => Err(GatewayError::PayloadTooLarge { limit }),
            _ => Ok(()),
        }
    }

    /// The origin-form target for the upstream: the request's own
    /// `path?query`, already parsed (an absolute-form target loses its
    /// scheme and authority here).
    fn target<B>(req: &Request<B>) -> Uri {
        Uri::from(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        )
    }

    /// Sends `req` (headers already prepared) upstream and returns its
    /// response with the body still streaming.
    ///
    /// # Errors
    /// `PayloadTooLarge` when the body passes the cap, `UpstreamTimeout` when
    /// no response head arrives in time, `UpstreamUnavailable` otherwise.
    pub async fn send<B>(&self, req: Request<B>) -> Result<Response<PooledBody>, GatewayError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<crate::body::BoxError>,
    {
        let limit = self.max_upload_bytes;
        self.check_length(req.headers())?;
        let uri = Self::target(&req);
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
        // The response deadline starts once the request body is sent: a
        // large upload over a slow link may take longer than `timeout`, and
        // a stalled one is cut off by the listener's stall timeouts instead.
        let (body, sent) = if http_body::Body::is_end_stream(&body) {
            (Limited::new(body, limit_usize).boxed(), None)
        } else {
            let (body, sent) = SignalEnd::new(body);
            (Limited::new(body, limit_usize).boxed(), Some(sent))
        };
        let outbound = Request::from_parts(parts, body);
        let deadline = async {
            if let Some(sent) = sent {
                let _ = sent.await;
            }
            tokio::time::sleep(self.timeout).await;
        };

        tokio::select! {
            biased;
            exchanged = self.pool.send(outbound) => match exchanged {
                Ok(response) => Ok(response),
                Err(e) if caused_by_length_limit(&e) => Err(GatewayError::PayloadTooLarge { limit }),
                Err(e) => Err(GatewayError::UpstreamUnavailable(Box::new(e))),
            },
            () = deadline => Err(GatewayError::UpstreamTimeout),
        }
    }
}

/// Whether the client error was our own body limit tripping.
fn caused_by_length_limit(err: &PoolError) -> bool {
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
pub fn into_body(response: Response<PooledBody>) -> Response<Body> {
    response.map(|b| b.map_err(Into::into).boxed())
}
