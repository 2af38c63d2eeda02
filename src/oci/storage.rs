//! The bridge's side of ChartMuseum: the few API calls a registry request
//! turns into (a chart's versions, one version, an archive, an upload),
//! sent through the same upstream client as proxied requests, carrying the
//! client request's id and forwarding headers.

use std::path::Path;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::route::ChartName;
use crate::error::GatewayError;
use crate::proxy::pool::PooledBody;
use crate::proxy::upstream::Upstream;

/// Largest API answer read (a chart with thousands of versions fits).
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;
/// Largest provenance file read.
pub const MAX_PROV_BYTES: usize = 1024 * 1024;

/// ChartMuseum, as one registry request reaches it.
pub struct Storage<'a> {
    pub upstream: &'a Upstream,
    /// Forwarding headers and the request id, prepared once per request.
    pub headers: &'a HeaderMap,
}

fn upstream_error(what: &str, status: StatusCode) -> GatewayError {
    GatewayError::UpstreamUnavailable(format!("{what}: ChartMuseum answered {status}").into())
}

/// `/api/<repo>/<rest>`, or `/api/<rest>` at depth 0.
fn api(name: &ChartName, rest: &str) -> String {
    match name.repo.as_str() {
        "" => format!("/api/{rest}"),
        repo => format!("/api/{repo}/{rest}"),
    }
}

/// `/<repo>/charts/<file>`, or `/charts/<file>` at depth 0.
fn file_path(repo: &str, file: &str) -> String {
    match repo {
        "" => format!("/charts/{file}"),
        repo => format!("/{repo}/charts/{file}"),
    }
}

impl Storage<'_> {
    fn request<B>(&self, method: Method, path: &str, body: B) -> Result<Request<B>, GatewayError> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = self
            .upstream
            .path(path)
            .parse()
            .map_err(|e| GatewayError::Internal(format!("upstream path {path:?}: {e}")))?;
        *req.headers_mut() = self.headers.clone();
        Ok(req)
    }

    async fn get(&self, path: &str) -> Result<Response<PooledBody>, GatewayError> {
        self.upstream
            .send(self.request(Method::GET, path, crate::body::empty())?)
            .await
    }

    /// A JSON answer, or `None` on 404.
    async fn json<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, GatewayError> {
        let response = self.get(path).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(upstream_error(path, status)),
        }
        let bytes = read(response, MAX_JSON_BYTES).await?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| GatewayError::Internal(format!("ChartMuseum's {path}: {e}")))
    }

    /// Every version of the chart, newest first; `None` if it has none.
    pub async fn versions<T: DeserializeOwned>(
        &self,
        name: &ChartName,
    ) -> Result<Option<Vec<T>>, GatewayError> {
        self.json(&api(name, &format!("charts/{}", name.chart)))
            .await
    }

    /// One version, as ChartMuseum resolves it (it may match a range: the
    /// caller checks the version is the one asked for).
    pub async fn version<T: DeserializeOwned>(
        &self,
        name: &ChartName,
        version: &str,
    ) -> Result<Option<T>, GatewayError> {
        self.json(&api(name, &format!("charts/{}/{version}", name.chart)))
            .await
    }

    /// A file of the chart's repository's `charts/`, streaming; `None` on 404.
    pub async fn file(
        &self,
        name: &ChartName,
        file: &str,
    ) -> Result<Option<Response<PooledBody>>, GatewayError> {
        self.repo_file(&name.repo, file).await
    }

    /// A file of `repo`'s `charts/` (`repo` empty at depth 0), streaming;
    /// `None` on 404. ChartMuseum serves it straight from storage, the
    /// same lookup its own overwrite check makes.
    pub async fn repo_file(
        &self,
        repo: &str,
        file: &str,
    ) -> Result<Option<Response<PooledBody>>, GatewayError> {
        let path = file_path(repo, file);
        let response = self.get(&path).await?;
        match response.status() {
            StatusCode::OK => Ok(Some(response)),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(upstream_error(&path, status)),
        }
    }

    /// The size of a file, counted as it streams by (ChartMuseum's API
    /// does not say, and its file route has no `HEAD`); `None` on 404.
    pub async fn size(&self, name: &ChartName, file: &str) -> Result<Option<u64>, GatewayError> {
        let Some(response) = self.file(name, file).await? else {
            return Ok(None);
        };
        let mut body = response.into_body();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| GatewayError::UpstreamUnavailable(Box::new(e)))?;
            if let Ok(data) = frame.into_data() {
                size += data.len() as u64;
            }
        }
        Ok(Some(size))
    }

    /// A small file, whole; `None` on 404.
    pub async fn small_file(
        &self,
        name: &ChartName,
        file: &str,
        limit: usize,
    ) -> Result<Option<Bytes>, GatewayError> {
        match self.file(name, file).await? {
            Some(response) => read(response, limit).await.map(Some),
            None => Ok(None),
        }
    }

    /// Uploads the staged file at `path` to `/api/<repo>/<what>` (`charts`
    /// or `prov`) as ChartMuseum's raw-body upload, streaming it from disk.
    /// Returns ChartMuseum's status and its short answer.
    ///
    /// # Errors
    /// The file cannot be read or ChartMuseum cannot be reached.
    pub async fn upload(
        &self,
        name: &ChartName,
        what: &str,
        path: &Path,
        size: u64,
    ) -> Result<(StatusCode, Bytes), GatewayError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| GatewayError::Internal(format!("staged {}: {e}", path.display())))?;
        let stream = tokio_util::io::ReaderStream::new(file).map_ok(Frame::data);
        let mut req = self.request(Method::POST, &api(name, what), StreamBody::new(stream))?;
        let headers = req.headers_mut();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let response = self.upstream.send(req).await?;
        let status = response.status();
        Ok((status, read(response, 64 * 1024).await?))
    }
}

/// Reads an upstream body whole, up to `limit` bytes.
async fn read(response: Response<PooledBody>, limit: usize) -> Result<Bytes, GatewayError> {
    Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(GatewayError::UpstreamUnavailable)
}
