//! The OCI registry bridge: Helm's `oci://` workflow served from an
//! unmodified ChartMuseum (docs/PROTOCOL.md §10).
//!
//! The gateway authorizes a registry request (`gateway/registry.rs`), then
//! hands it here. Pulls are answered from what ChartMuseum holds, derived
//! on the fly (`derive`); pushes stage blobs on disk (`stage`) until the
//! manifest arrives, which is checked (`push`, with the archive read as
//! `publish::archive` reads uploads) before the chart is uploaded to
//! ChartMuseum's API (`storage`). An immutable repository's stored versions
//! are never replaced. Derived digests are
//! remembered per replica in a moka index, so a by-digest fetch after a
//! by-tag resolve costs no ChartMuseum round trip; a replica that has not
//! seen them derives them again, identically.

pub mod derive;
pub mod digest;
mod pull;
mod push;
pub mod route;
pub mod stage;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use moka::sync::Cache;

use crate::body::{self, Body};
use crate::config::OciConfig;
use crate::error::{GatewayError, OciCode};
use crate::proxy::upstream::Upstream;
use derive::Sizes;
use digest::Digest;
use route::{ChartName, Endpoint};
use stage::Staging;
use storage::Storage;

pub use push::Published;

/// `Docker-Distribution-API-Version`, sent on every registry answer.
pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

/// How long a derived digest is remembered: long enough for a client's
/// resolve-then-fetch, short enough that a deleted chart soon stops
/// resolving by digest.
const INDEX_TTL: Duration = Duration::from_secs(300);
const INDEX_CAPACITY: u64 = 65_536;
/// Archive sizes are keyed by ChartMuseum's digest, so never stale.
const SIZES_CAPACITY: u64 = 65_536;

/// What a digest of one OCI repository stands for.
#[derive(Debug)]
enum Located {
    Manifest(Bytes),
    Config(Bytes),
    /// A file of the repository's `charts/`: the archive or its `.prov`.
    File {
        file: String,
        size: u64,
    },
}

/// The registry bridge.
#[derive(Debug)]
pub struct Registry {
    upstream: Arc<Upstream>,
    staging: Staging,
    depth: usize,
    /// `<oci name>@<digest>` → what it is.
    index: Cache<String, Arc<Located>>,
    /// `<oci name>@<archive digest>` → the archive's and provenance's sizes.
    sizes: Cache<String, Arc<Sizes>>,
}

/// One authorized registry request, with what it needs to reach ChartMuseum.
pub struct Call<'a> {
    pub name: &'a ChartName,
    /// Forwarding headers and the request id for ChartMuseum.
    pub headers: &'a HeaderMap,
    /// Whether the repository is immutable (`[publish] immutable`): a
    /// manifest push never replaces a stored version.
    pub immutable: bool,
}

fn registry_error(code: OciCode, message: impl Into<String>) -> GatewayError {
    GatewayError::Registry {
        code,
        message: message.into(),
    }
}

/// A registry answer with the API version header.
fn answer(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

/// A content answer: type, length and digest, with the bytes unless `HEAD`.
fn content(media_type: &str, bytes: Bytes, digest: &Digest, head: bool) -> Response<Body> {
    let len = bytes.len();
    let mut response = answer(
        StatusCode::OK,
        if head {
            body::empty()
        } else {
            body::full(bytes)
        },
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(media_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    set_digest(headers, digest);
    response
}

fn set_digest(headers: &mut HeaderMap, digest: &Digest) {
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        headers.insert(CONTENT_DIGEST, v);
    }
}

fn set_location(headers: &mut HeaderMap, location: &str) {
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(hyper::header::LOCATION, v);
    }
}

/// The base check's answer: `200 {}`.
pub fn base() -> Response<Body> {
    let mut response = answer(StatusCode::OK, body::json(&serde_json::json!({})));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, crate::error::JSON);
    response
}

impl Registry {
    /// A bridge to `upstream` for a server of repository depth `depth`,
    /// staging blobs of at most `max_blob_bytes`.
    pub fn new(config: &OciConfig, upstream: Arc<Upstream>, depth: usize) -> Registry {
        let max = upstream.max_upload_bytes();
        Registry {
            upstream,
            staging: Staging::new(config.staging_dir.clone(), config.upload_timeout, max),
            depth,
            index: Cache::builder()
                .max_capacity(INDEX_CAPACITY)
                .time_to_live(INDEX_TTL)
                .build(),
            sizes: Cache::new(SIZES_CAPACITY),
        }
    }

    /// The repository depth registry names are split by.
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn storage<'a>(&'a self, call: &Call<'a>) -> Storage<'a> {
        Storage {
            upstream: &self.upstream,
            headers: call.headers,
        }
    }

    /// Serves an authorized request for one chart's `endpoint`. A manifest
    /// push also returns what it published, for the audit trail.
    ///
    /// # Errors
    /// The registry error the client gets.
    pub async fn serve(
        &self,
        call: Call<'_>,
        endpoint: Endpoint,
        req: Request<Incoming>,
    ) -> Result<(Response<Body>, Option<Published>), GatewayError> {
        let head = *req.method() == Method::HEAD;
        let unsupported = || registry_error(OciCode::Unsupported, "not supported by this registry");
        let response = match (endpoint, req.method().clone()) {
            (Endpoint::Manifest(r), Method::GET | Method::HEAD) => {
                self.manifest(&call, &r, head).await?
            }
            (Endpoint::Manifest(r), Method::PUT) => {
                return self.publish(&call, &r, req).await;
            }
            (Endpoint::Blob(d), Method::GET | Method::HEAD) => self.blob(&call, &d, head).await?,
            (Endpoint::Tags, Method::GET) => self.tags(&call, req.uri().query()).await?,
            (Endpoint::UploadStart, Method::POST) => self.start_upload(&call, req).await?,
            (Endpoint::Upload(id), Method::PATCH) => self.patch_upload(&call, id, req).await?,
            (Endpoint::Upload(id), Method::PUT) => self.finish_upload(&call, id, req).await?,
            (Endpoint::Upload(id), Method::GET) => self.upload_status(&call, id).await?,
            (Endpoint::Upload(id), Method::DELETE) => {
                self.staging.cancel(&call.name.oci, id).await?;
                answer(StatusCode::NO_CONTENT, body::empty())
            }
            (Endpoint::Referrers, _) => {
                return Err(registry_error(
                    OciCode::NameUnknown,
                    "referrers are not served",
                ))
            }
            _ => return Err(unsupported()),
        };
        Ok((response, None))
    }

    fn remember(&self, name: &ChartName, digest: &Digest, located: Located) {
        self.index
            .insert(format!("{}@{digest}", name.oci), Arc::new(located));
    }

    fn recall(&self, name: &ChartName, digest: &Digest) -> Option<Arc<Located>> {
        self.index.get(&format!("{}@{digest}", name.oci))
    }
}
