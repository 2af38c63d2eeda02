//! Pulls: manifests by tag or digest, blobs, and the tags list, all
//! derived from ChartMuseum's API and files.

use std::sync::Arc;

use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LINK};
use hyper::{Response, StatusCode};

use super::derive::{self, Blob, ChartVersion, Sizes};
use super::digest::Digest;
use super::route::Reference;
use super::storage::MAX_PROV_BYTES;
use super::{answer, content, registry_error, set_digest, Call, Located, Registry};
use crate::body::{self, Body};
use crate::error::{GatewayError, OciCode};
use crate::proxy::upstream;

/// Most tags in one page when the client names no `n`.
const MAX_PAGE: usize = 10_000;

/// A version's OCI form.
struct Derived {
    manifest: bytes::Bytes,
    digest: Digest,
}

impl Registry {
    /// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
    pub(super) async fn manifest(
        &self,
        call: &Call<'_>,
        reference: &Reference,
        head: bool,
    ) -> Result<Response<Body>, GatewayError> {
        let unknown = || registry_error(OciCode::ManifestUnknown, "manifest unknown");
        let derived = match reference {
            Reference::Tag(tag) => {
                let version = derive::version_of(tag);
                let found: Option<ChartVersion> =
                    self.storage(call).version(call.name, &version).await?;
                // ChartMuseum resolves ranges too; a tag names one version.
                let found = found
                    .filter(|v| v.metadata.version == version)
                    .ok_or_else(unknown)?;
                self.derive(call, &found).await?
            }
            Reference::Digest(digest) => self.manifest_by_digest(call, digest).await?,
        };
        Ok(content(
            derive::MANIFEST_MEDIA_TYPE,
            derived.manifest,
            &derived.digest,
            head,
        ))
    }

    /// A manifest by digest: one pushed and not yet tagged, one derived
    /// lately, or one derived again from each version.
    async fn manifest_by_digest(
        &self,
        call: &Call<'_>,
        digest: &Digest,
    ) -> Result<Derived, GatewayError> {
        let unknown = || registry_error(OciCode::ManifestUnknown, "manifest unknown");
        if let Some(manifest) = self.staged_manifest(call, digest).await {
            return Ok(Derived {
                manifest,
                digest: *digest,
            });
        }
        match self.recall(call.name, digest).as_deref() {
            Some(Located::Manifest(bytes)) => Ok(Derived {
                manifest: bytes.clone(),
                digest: *digest,
            }),
            Some(_) => Err(unknown()),
            None => self.find_manifest(call, digest).await?.ok_or_else(unknown),
        }
    }

    /// A manifest pushed by digest and not yet tagged: exactly the bytes the
    /// client sent, which it reads back before tagging.
    async fn staged_manifest(&self, call: &Call<'_>, digest: &Digest) -> Option<bytes::Bytes> {
        let (path, size) = self.staging.blob(&call.name.oci, digest).await?;
        if size > super::push::MAX_MANIFEST_BYTES as u64 {
            return None;
        }
        let bytes = bytes::Bytes::from(tokio::fs::read(&path).await.ok()?);
        super::push::check_manifest(&bytes).ok()?;
        Some(bytes)
    }

    /// Derives every version's manifest until one has `digest`.
    async fn find_manifest(
        &self,
        call: &Call<'_>,
        digest: &Digest,
    ) -> Result<Option<Derived>, GatewayError> {
        for version in self.versions(call).await? {
            let derived = self.derive(call, &version).await?;
            if derived.digest == *digest {
                return Ok(Some(derived));
            }
        }
        Ok(None)
    }

    async fn versions(&self, call: &Call<'_>) -> Result<Vec<ChartVersion>, GatewayError> {
        Ok(self
            .storage(call)
            .versions(call.name)
            .await?
            .unwrap_or_default())
    }

    /// The OCI form of `version`, remembering each of its digests.
    async fn derive(
        &self,
        call: &Call<'_>,
        version: &ChartVersion,
    ) -> Result<Derived, GatewayError> {
        let chart_digest = version
            .chart_digest()
            .ok_or_else(|| GatewayError::Internal("ChartMuseum gave no chart digest".into()))?;
        let file = version.file();
        let sizes = self.sizes_of(call, &file, &chart_digest).await?;
        let config = derive::config(version);
        let config_blob = Blob {
            digest: Digest::of(&config),
            size: config.len() as u64,
        };
        let chart = Blob {
            digest: chart_digest,
            size: sizes.chart,
        };
        let manifest = derive::manifest(version, &config_blob, &chart, sizes.prov.as_ref());
        let digest = Digest::of(&manifest);
        let name = call.name;
        self.remember(name, &digest, Located::Manifest(manifest.clone()));
        self.remember(name, &config_blob.digest, Located::Config(config));
        self.remember(
            name,
            &chart.digest,
            Located::File {
                file: file.clone(),
                size: chart.size,
            },
        );
        if let Some(prov) = &sizes.prov {
            let file = format!("{file}.prov");
            self.remember(
                name,
                &prov.digest,
                Located::File {
                    file,
                    size: prov.size,
                },
            );
        }
        Ok(Derived { manifest, digest })
    }

    /// The archive's size and the provenance blob: cached by the archive's
    /// digest, fetched once per replica otherwise.
    async fn sizes_of(
        &self,
        call: &Call<'_>,
        file: &str,
        chart: &Digest,
    ) -> Result<Arc<Sizes>, GatewayError> {
        let key = format!("{}@{chart}", call.name.oci);
        if let Some(sizes) = self.sizes.get(&key) {
            return Ok(sizes);
        }
        let storage = self.storage(call);
        let size = storage
            .size(call.name, file)
            .await?
            .ok_or_else(|| registry_error(OciCode::ManifestUnknown, "chart archive missing"))?;
        let prov = storage
            .small_file(call.name, &format!("{file}.prov"), MAX_PROV_BYTES)
            .await?
            .map(|bytes| Blob {
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
            });
        let sizes = Arc::new(Sizes { chart: size, prov });
        self.sizes.insert(key, sizes.clone());
        Ok(sizes)
    }

    /// `GET`/`HEAD /v2/<name>/blobs/<digest>`: a staged blob, or one a
    /// manifest of this chart names.
    pub(super) async fn blob(
        &self,
        call: &Call<'_>,
        digest: &Digest,
        head: bool,
    ) -> Result<Response<Body>, GatewayError> {
        if let Some((path, size)) = self.staging.blob(&call.name.oci, digest).await {
            return staged(&path, size, digest, head).await;
        }
        let located = match self.recall(call.name, digest) {
            Some(l) => l,
            None => self.find_blob(call, digest).await?,
        };
        match &*located {
            Located::Config(bytes) => Ok(content(
                derive::CONFIG_MEDIA_TYPE,
                bytes.clone(),
                digest,
                head,
            )),
            Located::Manifest(bytes) => Ok(content(
                derive::MANIFEST_MEDIA_TYPE,
                bytes.clone(),
                digest,
                head,
            )),
            Located::File { file, size } => self.file_blob(call, file, *size, digest, head).await,
        }
    }

    /// Looks `digest` up among the chart's versions: archives by
    /// ChartMuseum's digest, configs by deriving them (no file fetched).
    pub(super) async fn find_blob(
        &self,
        call: &Call<'_>,
        digest: &Digest,
    ) -> Result<Arc<Located>, GatewayError> {
        for version in self.versions(call).await? {
            let config = derive::config(&version);
            if version.chart_digest() == Some(*digest) || Digest::of(&config) == *digest {
                self.derive(call, &version).await?;
                if let Some(found) = self.recall(call.name, digest) {
                    return Ok(found);
                }
            }
        }
        Err(registry_error(
            OciCode::BlobUnknown,
            "blob unknown to registry",
        ))
    }

    async fn file_blob(
        &self,
        call: &Call<'_>,
        file: &str,
        size: u64,
        digest: &Digest,
        head: bool,
    ) -> Result<Response<Body>, GatewayError> {
        let headers = |r: &mut Response<Body>| {
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(CONTENT_LENGTH, HeaderValue::from(size));
            set_digest(h, digest);
        };
        if head {
            let mut r = answer(StatusCode::OK, body::empty());
            headers(&mut r);
            return Ok(r);
        }
        let fetched = self
            .storage(call)
            .file(call.name, file)
            .await?
            .ok_or_else(|| registry_error(OciCode::BlobUnknown, "blob unknown to registry"))?;
        // ChartMuseum's own headers stay behind: the registry's describe the blob.
        let mut r = answer(StatusCode::OK, upstream::into_body(fetched).into_body());
        headers(&mut r);
        Ok(r)
    }

    /// `GET /v2/<name>/tags/list[?n=&last=]`: versions as tags, in lexical
    /// order, paginated with a `Link` header.
    pub(super) async fn tags(
        &self,
        call: &Call<'_>,
        query: Option<&str>,
    ) -> Result<Response<Body>, GatewayError> {
        let versions: Vec<ChartVersion> = self
            .storage(call)
            .versions(call.name)
            .await?
            .ok_or_else(|| {
                registry_error(
                    OciCode::NameUnknown,
                    "repository name not known to registry",
                )
            })?;
        let mut tags: Vec<String> = versions.iter().map(ChartVersion::tag).collect();
        tags.sort();
        tags.dedup();
        let (n, last) = page(query)?;
        let start = last.map_or(0, |l| tags.partition_point(|t| t.as_str() <= l.as_str()));
        let end = (start + n).min(tags.len());
        let page_tags = &tags[start..end];
        let json = serde_json::json!({"name": call.name.oci, "tags": page_tags});
        let mut response = answer(StatusCode::OK, body::json(&json));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, crate::error::JSON);
        if let (true, Some(last)) = (end < tags.len(), page_tags.last()) {
            let link = format!(
                "<{}?n={n}&last={last}>; rel=\"next\"",
                call.name.location("tags/list")
            );
            if let Ok(v) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(LINK, v);
            }
        }
        Ok(response)
    }
}

/// `n` and `last` of a tags list request.
fn page(query: Option<&str>) -> Result<(usize, Option<String>), GatewayError> {
    let mut n = MAX_PAGE;
    let mut last = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "n" => {
                n = v
                    .parse::<usize>()
                    .map_err(|_| registry_error(OciCode::Unsupported, "n must be a number"))?
                    .min(MAX_PAGE)
            }
            "last" => last = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok((n, last))
}

/// A staged blob, streamed from disk.
async fn staged(
    path: &std::path::Path,
    size: u64,
    digest: &Digest,
    head: bool,
) -> Result<Response<Body>, GatewayError> {
    let body = if head {
        body::empty()
    } else {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|_| registry_error(OciCode::BlobUnknown, "blob unknown to registry"))?;
        body::stream_file(file)
    };
    let mut response = answer(StatusCode::OK, body);
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(size));
    set_digest(h, digest);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_take_n_and_last() {
        assert_eq!(page(None).unwrap(), (MAX_PAGE, None));
        assert_eq!(
            page(Some("n=2&last=0.1.0")).unwrap(),
            (2, Some("0.1.0".into()))
        );
        assert_eq!(page(Some("n=999999")).unwrap().0, MAX_PAGE);
        assert!(page(Some("n=x")).is_err());
    }
}
