//! Pushes: blob uploads into the staging area (monolithic, chunked, or a
//! cross-mount attempt answered as a plain upload), and the manifest push
//! that publishes the chart. A manifest is checked before anything reaches
//! ChartMuseum: Helm's media types, every layer staged with the size it
//! claims, the archive's own `Chart.yaml` naming this chart at the tag's
//! version. A push that never sends its manifest publishes nothing. In an
//! immutable repository a tag whose version ChartMuseum already stores is
//! refused, unless the archive is the very one stored (nothing changes).

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use super::derive::{self, ChartVersion};
use super::digest::Digest;
use super::route::Reference;
use super::{
    answer, registry_error, set_digest, set_location, Call, Located, Registry, UPLOAD_UUID,
};
use crate::body::{self, Body};
use crate::error::{GatewayError, OciCode};
use crate::publish::{archive, stored, Identity, PublishRefusal};

/// Largest manifest accepted.
pub(super) const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Largest config blob read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// What a manifest push published, for the audit trail.
#[derive(Debug, Clone)]
pub struct Published {
    pub chart: String,
    pub version: String,
    /// The archive's SHA-256 and size.
    pub digest: Digest,
    pub size: u64,
    /// Whether a provenance file went with it.
    pub provenance: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

/// The staged files a checked manifest publishes.
struct Verified {
    chart: std::path::PathBuf,
    prov: Option<std::path::PathBuf>,
}

/// The layers of a Helm chart manifest.
pub(super) struct Layers {
    config: (Digest, u64),
    chart: (Digest, u64),
    prov: Option<(Digest, u64)>,
}

fn invalid(message: impl Into<String>) -> GatewayError {
    registry_error(OciCode::ManifestInvalid, message)
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn digest_param(req: &Request<Incoming>) -> Result<Option<Digest>, GatewayError> {
    query_param(req, "digest")
        .map(|d| {
            Digest::parse(&d).map_err(|e| registry_error(OciCode::DigestInvalid, e.to_string()))
        })
        .transpose()
}

/// `202 Accepted` for an upload in progress at `size` bytes.
fn in_progress(call: &Call<'_>, id: uuid::Uuid, size: u64) -> Response<Body> {
    let mut r = answer(StatusCode::ACCEPTED, body::empty());
    let h = r.headers_mut();
    set_location(
        h,
        &call
            .name
            .location(&format!("blobs/uploads/{}", id.hyphenated())),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("0-{}", size.saturating_sub(1))) {
        h.insert(RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&id.hyphenated().to_string()) {
        h.insert(UPLOAD_UUID, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(0));
    r
}

/// `201 Created` for the blob `digest`.
fn created_blob(call: &Call<'_>, digest: &Digest) -> Response<Body> {
    let mut r = answer(StatusCode::CREATED, body::empty());
    let h = r.headers_mut();
    set_location(h, &call.name.location(&format!("blobs/{digest}")));
    set_digest(h, digest);
    h.insert(CONTENT_LENGTH, HeaderValue::from(0));
    r
}

/// The first byte of a chunk's `Content-Range: <start>-<end>`.
fn chunk_start(req: &Request<Incoming>) -> Result<Option<u64>, GatewayError> {
    let Some(v) = req.headers().get(hyper::header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || registry_error(OciCode::RangeInvalid, "Content-Range must be <start>-<end>");
    let text = v.to_str().map_err(|_| bad())?;
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let (start, _) = text.split_once('-').ok_or_else(bad)?;
    start.parse().map(Some).map_err(|_| bad())
}

impl Registry {
    /// `POST /v2/<name>/blobs/uploads/`: a session, or a whole blob when
    /// `?digest=` is given. `?mount=` is answered as a plain upload: blobs
    /// never cross repositories.
    pub(super) async fn start_upload(
        &self,
        call: &Call<'_>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let digest = digest_param(&req)?;
        let oci = &call.name.oci;
        let id = self.staging.start(oci).await?;
        match digest {
            Some(digest) => {
                self.staging.append(oci, id, req.into_body(), None).await?;
                self.staging.finish(oci, id, &digest).await?;
                Ok(created_blob(call, &digest))
            }
            None => Ok(in_progress(call, id, 0)),
        }
    }

    /// `PATCH /v2/<name>/blobs/uploads/<id>`: one more chunk.
    pub(super) async fn patch_upload(
        &self,
        call: &Call<'_>,
        id: uuid::Uuid,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let start = chunk_start(&req)?;
        let size = self
            .staging
            .append(&call.name.oci, id, req.into_body(), start)
            .await?;
        Ok(in_progress(call, id, size))
    }

    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last chunk, if any,
    /// and the digest the whole must have.
    pub(super) async fn finish_upload(
        &self,
        call: &Call<'_>,
        id: uuid::Uuid,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let digest = digest_param(&req)?
            .ok_or_else(|| registry_error(OciCode::DigestInvalid, "digest parameter missing"))?;
        let oci = &call.name.oci;
        self.staging.append(oci, id, req.into_body(), None).await?;
        self.staging.finish(oci, id, &digest).await?;
        Ok(created_blob(call, &digest))
    }

    /// `GET /v2/<name>/blobs/uploads/<id>`: how far an upload got.
    pub(super) async fn upload_status(
        &self,
        call: &Call<'_>,
        id: uuid::Uuid,
    ) -> Result<Response<Body>, GatewayError> {
        let size = self.staging.size(&call.name.oci, id).await?;
        let mut r = in_progress(call, id, size);
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }

    /// `PUT /v2/<name>/manifests/<reference>`. By tag, the manifest and its
    /// staged blobs are checked, then the chart (and provenance) goes to
    /// ChartMuseum. By digest (Helm pushes so, reads it back, then tags it)
    /// the same checks run but the manifest is only staged: the chart is
    /// published when it is tagged with its version.
    pub(super) async fn publish(
        &self,
        call: &Call<'_>,
        reference: &Reference,
        req: Request<Incoming>,
    ) -> Result<(Response<Body>, Option<Published>), GatewayError> {
        let bytes = read_manifest(req).await?;
        let digest = Digest::of(&bytes);
        let layers = check_manifest(&bytes)?;
        let oci = &call.name.oci;
        let published = match reference {
            Reference::Digest(named) if *named != digest => {
                return Err(registry_error(
                    OciCode::DigestInvalid,
                    format!("the manifest is {digest}, pushed as {named}"),
                ))
            }
            Reference::Digest(_) => {
                self.verify(call, &layers, None).await?;
                self.staging.put(oci, &digest, &bytes).await?;
                None
            }
            Reference::Tag(tag) => {
                let version = derive::version_of(tag);
                let published = self.publish_layers(call, &layers, &version).await?;
                self.remember(call.name, &digest, Located::Manifest(bytes));
                self.staging.remove(oci, &[digest]).await;
                Some(published)
            }
        };
        let mut r = answer(StatusCode::CREATED, body::empty());
        let h = r.headers_mut();
        set_location(h, &call.name.location(&format!("manifests/{digest}")));
        set_digest(h, &digest);
        h.insert(CONTENT_LENGTH, HeaderValue::from(0));
        Ok((r, published))
    }

    /// Checks, then uploads, the layers of a manifest tagged `version`.
    async fn publish_layers(
        &self,
        call: &Call<'_>,
        layers: &Layers,
        version: &str,
    ) -> Result<Published, GatewayError> {
        let verified = match self.verify(call, layers, Some(version)).await? {
            Some(v) if call.immutable => self.unchanged(call, layers, version).await?.then_some(v),
            verified => verified,
        };
        if let Some(v) = &verified {
            self.upload(call, "charts", &v.chart, layers.chart.1)
                .await?;
            if let (Some(path), Some((_, size))) = (&v.prov, layers.prov) {
                self.upload(call, "prov", path, size).await?;
            }
            let mut digests = vec![layers.config.0, layers.chart.0];
            digests.extend(layers.prov.map(|p| p.0));
            self.staging.remove(&call.name.oci, &digests).await;
        }
        Ok(Published {
            chart: call.name.chart.clone(),
            version: version.to_owned(),
            digest: layers.chart.0,
            size: layers.chart.1,
            provenance: layers.prov.is_some(),
        })
    }

    /// Checks every layer is staged with its size and the archive (and
    /// config) is this chart at `version` (the archive's own when `None`).
    /// `Ok(None)` when the client skipped the chart layer because
    /// ChartMuseum already holds this very archive: nothing to upload.
    async fn verify(
        &self,
        call: &Call<'_>,
        layers: &Layers,
        version: Option<&str>,
    ) -> Result<Option<Verified>, GatewayError> {
        let chart = match self.staged(call, layers.chart).await {
            Ok(path) => path,
            Err(e) => {
                return match self
                    .already_published(call, layers.chart.0, version)
                    .await?
                {
                    true => Ok(None),
                    false => Err(e),
                }
            }
        };
        let identity = {
            let path = chart.clone();
            tokio::task::spawn_blocking(move || archive::identity_of_file(&path))
                .await
                .map_err(|e| GatewayError::Internal(format!("reading the chart: {e}")))?
                .map_err(invalid)?
        };
        let version = version.unwrap_or(&identity.version);
        check_identity(&identity, &call.name.chart, version)?;
        self.check_config(call, layers.config, version).await?;
        let prov = match layers.prov {
            Some(p) => Some(self.staged(call, p).await?),
            None => None,
        };
        Ok(Some(Verified { chart, prov }))
    }

    /// In an immutable repository: `true` when `version` is not stored yet
    /// (upload it), `false` when the very archive is (nothing to upload).
    ///
    /// # Errors
    /// Another archive is stored under `version`.
    async fn unchanged(
        &self,
        call: &Call<'_>,
        layers: &Layers,
        version: &str,
    ) -> Result<bool, GatewayError> {
        let chart = Identity {
            name: call.name.chart.clone(),
            version: version.to_owned(),
        };
        match stored::archive(&self.storage(call), &call.name.repo, &chart).await? {
            None => Ok(true),
            Some(digest) if digest == layers.chart.0 => Ok(false),
            Some(_) => Err(PublishRefusal::Immutable {
                chart: chart.name,
                version: chart.version,
                repo: call.name.namespace.clone(),
            }
            .into()),
        }
    }

    /// The staged blob `digest`, which must be `size` bytes.
    async fn staged(
        &self,
        call: &Call<'_>,
        (digest, size): (Digest, u64),
    ) -> Result<std::path::PathBuf, GatewayError> {
        match self.staging.blob(&call.name.oci, &digest).await {
            Some((path, found)) if found == size => Ok(path),
            Some(_) => Err(invalid(format!("blob {digest} is not {size} bytes"))),
            None => Err(registry_error(
                OciCode::ManifestBlobUnknown,
                format!("blob {digest} was not uploaded"),
            )),
        }
    }

    /// The config blob must be chart metadata naming this chart at
    /// `version`. It is staged, or it is one the chart's stored versions
    /// derive: a client skips a config blob the registry says it has, as
    /// when a version is pushed again with only its files changed.
    async fn check_config(
        &self,
        call: &Call<'_>,
        config: (Digest, u64),
        version: &str,
    ) -> Result<(), GatewayError> {
        let bytes = match self.staged(call, config).await {
            Ok(_) if config.1 > MAX_CONFIG_BYTES => {
                return Err(invalid("the config blob is too large"))
            }
            Ok(path) => tokio::fs::read(&path)
                .await
                .map(bytes::Bytes::from)
                .map_err(|e| GatewayError::Internal(format!("staged config: {e}")))?,
            Err(missing) => match self.find_blob(call, &config.0).await.as_deref() {
                Ok(Located::Config(bytes)) => bytes.clone(),
                _ => return Err(missing),
            },
        };
        let meta: Identity = serde_json::from_slice(&bytes)
            .map_err(|_| invalid("the config blob is not Helm chart metadata"))?;
        check_identity(&meta, &call.name.chart, version)
    }

    /// Whether ChartMuseum already holds the archive `digest` of this chart
    /// (as `version`, when given).
    async fn already_published(
        &self,
        call: &Call<'_>,
        digest: Digest,
        version: Option<&str>,
    ) -> Result<bool, GatewayError> {
        let Some(version) = version else {
            return Ok(matches!(
                self.find_blob(call, &digest).await.as_deref(),
                Ok(Located::File { .. })
            ));
        };
        let found: Option<ChartVersion> = self.storage(call).version(call.name, version).await?;
        Ok(
            found
                .is_some_and(|v| v.metadata.version == version && v.chart_digest() == Some(digest)),
        )
    }

    async fn upload(
        &self,
        call: &Call<'_>,
        what: &str,
        path: &std::path::Path,
        size: u64,
    ) -> Result<(), GatewayError> {
        let (status, answer) = self
            .storage(call)
            .upload(call.name, what, path, size)
            .await?;
        let said = || {
            serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("ChartMuseum answered {status}"))
        };
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT => Err(registry_error(OciCode::Exists, said())),
            s if s.is_client_error() => Err(invalid(said())),
            s => Err(GatewayError::UpstreamUnavailable(
                format!("{what} upload: ChartMuseum answered {s}").into(),
            )),
        }
    }
}

/// Reads a manifest body of Helm's manifest type, bounded.
async fn read_manifest(req: Request<Incoming>) -> Result<bytes::Bytes, GatewayError> {
    let media_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
    if media_type.as_deref() != Some(derive::MANIFEST_MEDIA_TYPE) {
        return Err(registry_error(
            OciCode::UnsupportedMedia,
            format!(
                "only {} manifests of Helm charts are accepted",
                derive::MANIFEST_MEDIA_TYPE
            ),
        ));
    }
    Limited::new(req.into_body(), MAX_MANIFEST_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                GatewayError::PayloadTooLarge {
                    limit: MAX_MANIFEST_BYTES as u64,
                }
            } else {
                invalid("could not read the manifest")
            }
        })
}

/// Checks a manifest is a Helm chart's: Helm's config type, one chart
/// layer, at most one provenance layer, nothing else.
pub(super) fn check_manifest(bytes: &[u8]) -> Result<Layers, GatewayError> {
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest: {e}")))?;
    if m.schema_version != 2 {
        return Err(invalid("schemaVersion must be 2"));
    }
    if m.media_type
        .as_deref()
        .is_some_and(|t| t != derive::MANIFEST_MEDIA_TYPE)
    {
        return Err(invalid("mediaType disagrees with Content-Type"));
    }
    let not_chart = |what: &str| {
        registry_error(
            OciCode::UnsupportedMedia,
            format!("not a Helm chart: {what}; this registry stores Helm charts only"),
        )
    };
    if m.config.media_type != derive::CONFIG_MEDIA_TYPE {
        return Err(not_chart(&format!("config type {}", m.config.media_type)));
    }
    let descriptor = |d: &Descriptor| {
        Digest::parse(&d.digest)
            .map(|digest| (digest, d.size))
            .map_err(|e| registry_error(OciCode::DigestInvalid, e.to_string()))
    };
    let (mut chart, mut prov) = (None, None);
    for layer in &m.layers {
        let slot = match layer.media_type.as_str() {
            derive::CHART_MEDIA_TYPE | derive::LEGACY_CHART_MEDIA_TYPE => &mut chart,
            derive::PROV_MEDIA_TYPE => &mut prov,
            other => return Err(not_chart(&format!("layer type {other}"))),
        };
        if slot.replace(descriptor(layer)?).is_some() {
            return Err(invalid(format!("more than one {} layer", layer.media_type)));
        }
    }
    Ok(Layers {
        config: descriptor(&m.config)?,
        chart: chart.ok_or_else(|| invalid("no chart layer"))?,
        prov,
    })
}

/// The archive (or config) must be this chart at this version.
fn check_identity(found: &Identity, chart: &str, version: &str) -> Result<(), GatewayError> {
    if found.name != chart {
        return Err(invalid(format!(
            "the archive is chart {:?}, pushed as {chart:?}",
            found.name
        )));
    }
    if found.version != version {
        return Err(invalid(format!(
            "the archive is version {:?}, tagged {:?}",
            found.version,
            derive::tag_of(version)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(config_type: &str, layers: &[&str]) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|t| serde_json::json!({"mediaType": t, "digest": D2, "size": 9}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": config_type, "digest": D1, "size": 3},
            "layers": layers,
        }))
        .unwrap()
    }

    fn code(r: Result<Layers, GatewayError>) -> Option<OciCode> {
        match r {
            Err(GatewayError::Registry { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn accepts_helm_manifests() {
        let l = check_manifest(&manifest(
            derive::CONFIG_MEDIA_TYPE,
            &[derive::CHART_MEDIA_TYPE],
        ))
        .unwrap();
        assert_eq!(l.chart, (Digest::parse(D2).unwrap(), 9));
        assert_eq!(l.config, (Digest::parse(D1).unwrap(), 3));
        assert!(l.prov.is_none());
        let with_prov = check_manifest(&manifest(
            derive::CONFIG_MEDIA_TYPE,
            &[derive::CHART_MEDIA_TYPE, derive::PROV_MEDIA_TYPE],
        ))
        .unwrap();
        assert!(with_prov.prov.is_some());
    }

    #[test]
    fn refuses_what_is_not_a_chart() {
        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            &[derive::CHART_MEDIA_TYPE],
        );
        assert_eq!(
            code(check_manifest(&image)),
            Some(OciCode::UnsupportedMedia)
        );
        let extra = manifest(
            derive::CONFIG_MEDIA_TYPE,
            &[
                derive::CHART_MEDIA_TYPE,
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ],
        );
        assert_eq!(
            code(check_manifest(&extra)),
            Some(OciCode::UnsupportedMedia)
        );
        let two = manifest(
            derive::CONFIG_MEDIA_TYPE,
            &[derive::CHART_MEDIA_TYPE, derive::CHART_MEDIA_TYPE],
        );
        assert_eq!(code(check_manifest(&two)), Some(OciCode::ManifestInvalid));
        let none = manifest(derive::CONFIG_MEDIA_TYPE, &[]);
        assert_eq!(code(check_manifest(&none)), Some(OciCode::ManifestInvalid));
        assert_eq!(code(check_manifest(b"{")), Some(OciCode::ManifestInvalid));
    }

    #[test]
    fn identity_must_match_name_and_tag() {
        let id = Identity {
            name: "mychart".into(),
            version: "0.1.0+b".into(),
        };
        assert!(check_identity(&id, "mychart", "0.1.0+b").is_ok());
        assert!(check_identity(&id, "other", "0.1.0+b").is_err());
        assert!(check_identity(&id, "mychart", "0.1.1").is_err());
    }
}
