//! The OCI view of a chart ChartMuseum holds, derived and never stored:
//! the config blob (the chart's metadata as JSON, Helm's config media
//! type), the chart layer (the `.tgz`, whose digest is ChartMuseum's own
//! sha256), an optional provenance layer, and the manifest tying them
//! together (docs/PROTOCOL.md §10.2).
//!
//! Everything here is a pure function of what ChartMuseum returns, so every
//! replica derives the same bytes and digests.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::digest::Digest;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
pub const CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The chart layer type of Helm releases before 3.7.
pub const LEGACY_CHART_MEDIA_TYPE: &str = "application/tar+gzip";
pub const PROV_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";

/// Helm's chart metadata, field for field in the order of Helm's own
/// `chart.Metadata`, as ChartMuseum's API returns it. Values are kept as
/// JSON so nothing is lost or reformatted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Value>,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintainers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<Value>,
}

/// One chart version as ChartMuseum's API returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct ChartVersion {
    #[serde(flatten)]
    pub metadata: Metadata,
    /// Where the archive is, relative to the repository (`charts/x-1.0.0.tgz`).
    #[serde(default)]
    pub urls: Vec<String>,
    /// SHA-256 of the archive, hex.
    #[serde(default)]
    pub digest: String,
}

impl ChartVersion {
    /// The archive's file name in the repository's `charts/`.
    pub fn file(&self) -> String {
        self.urls
            .first()
            .and_then(|u| u.strip_prefix("charts/"))
            .filter(|f| !f.contains('/'))
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}-{}.tgz", self.metadata.name, self.metadata.version))
    }

    /// The chart layer's digest: ChartMuseum's.
    pub fn chart_digest(&self) -> Option<Digest> {
        Digest::from_hex(&self.digest).ok()
    }

    /// The tag this version is listed under: `+` is not allowed in tags,
    /// so Helm writes it `_`.
    pub fn tag(&self) -> String {
        tag_of(&self.metadata.version)
    }
}

/// The tag of chart version `version`.
pub fn tag_of(version: &str) -> String {
    version.replace('+', "_")
}

/// The chart version a tag stands for.
pub fn version_of(tag: &str) -> String {
    tag.replace('_', "+")
}

/// A blob with its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
}

/// The config blob of a version: its metadata as JSON.
pub fn config(version: &ChartVersion) -> Bytes {
    // A struct of strings and JSON values always serializes.
    Bytes::from(serde_json::to_vec(&version.metadata).unwrap_or_default())
}

/// Everything a manifest needs that ChartMuseum's API does not say.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// The archive's size.
    pub chart: u64,
    /// The provenance file, when there is one.
    pub prov: Option<Blob>,
}

/// The manifest of `version`, whose config blob is `config`.
pub fn manifest(version: &ChartVersion, config: &Blob, chart: &Blob, prov: Option<&Blob>) -> Bytes {
    let file = version.file();
    let mut layers = vec![json!({
        "mediaType": CHART_MEDIA_TYPE,
        "digest": chart.digest.to_string(),
        "size": chart.size,
        "annotations": {"org.opencontainers.image.title": file},
    })];
    if let Some(prov) = prov {
        layers.push(json!({
            "mediaType": PROV_MEDIA_TYPE,
            "digest": prov.digest.to_string(),
            "size": prov.size,
            "annotations": {"org.opencontainers.image.title": format!("{file}.prov")},
        }));
    }
    let mut annotations = json!({
        "org.opencontainers.image.title": version.metadata.name,
        "org.opencontainers.image.version": version.metadata.version,
    });
    if let Some(Value::String(d)) = &version.metadata.description {
        annotations["org.opencontainers.image.description"] = Value::String(d.clone());
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config.digest.to_string(),
            "size": config.size,
        },
        "layers": layers,
        "annotations": annotations,
    });
    Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CM_JSON: &str = r#"{"name":"mychart","version":"0.1.0+build.7","description":"A Helm chart","apiVersion":"v2","appVersion":"1.16.0","type":"application","urls":["charts/mychart-0.1.0+build.7.tgz"],"created":"2026-12-04T10:00:00Z","digest":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#;

    fn version() -> ChartVersion {
        serde_json::from_str(CM_JSON).unwrap()
    }

    #[test]
    fn config_is_the_metadata_in_helms_field_order() {
        let config = config(&version());
        assert_eq!(
            std::str::from_utf8(&config).unwrap(),
            r#"{"name":"mychart","version":"0.1.0+build.7","description":"A Helm chart","apiVersion":"v2","appVersion":"1.16.0","type":"application"}"#
        );
    }

    #[test]
    fn manifest_is_deterministic_and_names_the_layers() {
        let v = version();
        let cfg = config(&v);
        let config_blob = Blob {
            digest: Digest::of(&cfg),
            size: cfg.len() as u64,
        };
        let chart = Blob {
            digest: v.chart_digest().unwrap(),
            size: 3,
        };
        let prov = Blob {
            digest: Digest::of(b"p"),
            size: 1,
        };
        let a = manifest(&v, &config_blob, &chart, Some(&prov));
        assert_eq!(a, manifest(&v, &config_blob, &chart, Some(&prov)));
        let m: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(m["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(m["layers"][0]["digest"], format!("sha256:{}", v.digest));
        assert_eq!(
            m["layers"][0]["annotations"]["org.opencontainers.image.title"],
            "mychart-0.1.0+build.7.tgz"
        );
        assert_eq!(m["layers"][1]["mediaType"], PROV_MEDIA_TYPE);
        let without = manifest(&v, &config_blob, &chart, None);
        let m: Value = serde_json::from_slice(&without).unwrap();
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn tags_write_plus_as_underscore() {
        assert_eq!(version().tag(), "0.1.0_build.7");
        assert_eq!(version_of("0.1.0_build.7"), "0.1.0+build.7");
        assert_eq!(version().file(), "mychart-0.1.0+build.7.tgz");
    }
}
