//! Reading a registry request's path: which OCI endpoint it is, which
//! chart in which ChartMuseum repository it names, and what it needs
//! (docs/PROTOCOL.md §10.1). Runs before the route table; ChartMuseum has
//! no `/v2`.
//!
//! With `--depth N` an OCI name has N + 1 components: the repository's N,
//! then the chart. Splitting by count, not by searching for `/manifests/`,
//! keeps a repository called `manifests` unambiguous.

use hyper::Method;

use super::digest::Digest;
use crate::auth::access::{self, Action, Scope};

/// The prefix every registry path starts with.
pub const PREFIX: &str = "/v2";

/// Whether `path` belongs to the registry API.
pub fn is_registry_path(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// One registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`: not served (it would list other tenants' names).
    Catalog,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(Reference),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(Digest),
    /// `/v2/<name>/blobs/uploads/`: a new upload session.
    UploadStart,
    /// `/v2/<name>/blobs/uploads/<id>`: an upload in progress.
    Upload(uuid::Uuid),
    /// `/v2/<name>/tags/list`.
    Tags,
    /// `/v2/<name>/referrers/<digest>`: not served.
    Referrers,
}

/// A manifest reference: a tag (a chart version, `+` written `_`) or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// A parsed registry request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: Endpoint,
    /// The chart it names, when the endpoint names one.
    pub chart: Option<ChartName>,
}

/// An OCI repository name, and the ChartMuseum chart it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartName {
    /// The OCI name, `org1/repo1/mychart`.
    pub oci: String,
    /// The ChartMuseum repository path, `org1/repo1` (empty at depth 0).
    pub repo: String,
    /// The chart, `mychart`.
    pub chart: String,
    /// The namespace scopes check (the repository, or `repo` at depth 0).
    pub namespace: String,
}

impl ChartName {
    /// The scope a request with `method` on this chart needs: reads pull,
    /// everything else pushes.
    pub fn scope(&self, method: &Method) -> Scope {
        let action = if matches!(*method, Method::GET | Method::HEAD) {
            Action::Pull
        } else {
            Action::Push
        };
        Scope {
            oci: Some(self.oci.clone()),
            ..Scope::repository(self.namespace.clone(), action)
        }
    }

    /// The path of this chart's endpoint `rest` (`manifests/…`, `blobs/…`).
    pub fn location(&self, rest: &str) -> String {
        format!("{PREFIX}/{}/{rest}", self.oci)
    }
}

/// Why a registry path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Name(String),
    #[error("not a registry endpoint")]
    Unknown,
    #[error("invalid digest")]
    Digest,
    #[error("invalid tag")]
    Tag,
    #[error("invalid upload id")]
    Upload,
}

/// Parses a registry `path` for a server of repository depth `depth`. One
/// trailing slash is allowed, as registry clients send `/v2/` and
/// `/v2/<name>/blobs/uploads/`.
///
/// # Errors
/// The path names no endpoint, or its name, tag, digest or id is malformed.
pub fn parse(path: &str, depth: usize) -> Result<Target, TargetError> {
    let rest = path
        .strip_prefix(PREFIX)
        .ok_or(TargetError::Unknown)?
        .trim_start_matches('/');
    if rest.is_empty() {
        return Ok(Target {
            endpoint: Endpoint::Base,
            chart: None,
        });
    }
    if rest == "_catalog" {
        return Ok(Target {
            endpoint: Endpoint::Catalog,
            chart: None,
        });
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() < depth + 2 {
        return Err(TargetError::Unknown);
    }
    let (name, tail) = segments.split_at(depth + 1);
    let chart = chart_name(&name.join("/"), depth)?;
    let endpoint = endpoint(tail)?;
    Ok(Target {
        endpoint,
        chart: Some(chart),
    })
}

fn chart_name(oci: &str, depth: usize) -> Result<ChartName, TargetError> {
    let namespace = access::oci_namespace(oci, depth).map_err(TargetError::Name)?;
    let (repo, chart) = match oci.rsplit_once('/') {
        Some((repo, chart)) => (repo, chart),
        None => ("", oci),
    };
    Ok(ChartName {
        oci: oci.to_owned(),
        repo: repo.to_owned(),
        chart: chart.to_owned(),
        namespace,
    })
}

fn endpoint(tail: &[&str]) -> Result<Endpoint, TargetError> {
    Ok(match tail {
        ["manifests", reference] => Endpoint::Manifest(parse_reference(reference)?),
        ["blobs", "uploads"] | ["blobs", "uploads", ""] => Endpoint::UploadStart,
        ["blobs", "uploads", id] => Endpoint::Upload(parse_upload_id(id)?),
        ["blobs", digest] => {
            Endpoint::Blob(Digest::parse(digest).map_err(|_| TargetError::Digest)?)
        }
        ["tags", "list"] => Endpoint::Tags,
        ["referrers", _] => Endpoint::Referrers,
        _ => return Err(TargetError::Unknown),
    })
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` (distribution spec), or a digest.
fn parse_reference(s: &str) -> Result<Reference, TargetError> {
    if s.contains(':') {
        return Digest::parse(s)
            .map(Reference::Digest)
            .map_err(|_| TargetError::Digest);
    }
    let b = s.as_bytes();
    let tag_byte = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-');
    let valid = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(tag_byte);
    if valid {
        Ok(Reference::Tag(s.to_owned()))
    } else {
        Err(TargetError::Tag)
    }
}

/// Upload ids are the UUIDs we hand out, in their hyphenated form only.
fn parse_upload_id(s: &str) -> Result<uuid::Uuid, TargetError> {
    let id = uuid::Uuid::try_parse(s).map_err(|_| TargetError::Upload)?;
    if id.hyphenated().to_string() == s {
        Ok(id)
    } else {
        Err(TargetError::Upload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn chart(path: &str) -> ChartName {
        parse(path, 2).unwrap().chart.unwrap()
    }

    #[test]
    fn reads_every_endpoint() {
        assert_eq!(parse("/v2/", 2).unwrap().endpoint, Endpoint::Base);
        assert_eq!(parse("/v2", 2).unwrap().endpoint, Endpoint::Base);
        assert_eq!(
            parse("/v2/_catalog", 2).unwrap().endpoint,
            Endpoint::Catalog
        );
        let tag = parse("/v2/org1/repo1/mychart/manifests/0.1.0_build.1", 2).unwrap();
        assert_eq!(
            tag.endpoint,
            Endpoint::Manifest(Reference::Tag("0.1.0_build.1".into()))
        );
        let by_digest = parse(&format!("/v2/org1/repo1/mychart/manifests/{D}"), 2).unwrap();
        assert!(matches!(
            by_digest.endpoint,
            Endpoint::Manifest(Reference::Digest(_))
        ));
        let blob = parse(&format!("/v2/org1/repo1/mychart/blobs/{D}"), 2).unwrap();
        assert!(matches!(blob.endpoint, Endpoint::Blob(_)));
        for start in [
            "/v2/org1/repo1/c/blobs/uploads/",
            "/v2/org1/repo1/c/blobs/uploads",
        ] {
            assert_eq!(parse(start, 2).unwrap().endpoint, Endpoint::UploadStart);
        }
        let id = uuid::Uuid::new_v4();
        let up = parse(&format!("/v2/org1/repo1/c/blobs/uploads/{id}"), 2).unwrap();
        assert_eq!(up.endpoint, Endpoint::Upload(id));
        assert_eq!(
            parse("/v2/org1/repo1/c/tags/list", 2).unwrap().endpoint,
            Endpoint::Tags
        );
    }

    #[test]
    fn splits_the_name_by_depth() {
        let c = chart("/v2/org1/repo1/mychart/tags/list");
        assert_eq!(
            (c.repo.as_str(), c.chart.as_str()),
            ("org1/repo1", "mychart")
        );
        assert_eq!(c.namespace, "org1/repo1");
        // A repository may be called `manifests`: the depth decides.
        let c = chart("/v2/manifests/blobs/tags/manifests/1.0.0");
        assert_eq!(
            (c.repo.as_str(), c.chart.as_str()),
            ("manifests/blobs", "tags")
        );
        let flat = parse("/v2/mychart/tags/list", 0).unwrap().chart.unwrap();
        assert_eq!((flat.repo.as_str(), flat.namespace.as_str()), ("", "repo"));
    }

    #[test]
    fn scopes_pull_for_reads_and_push_for_writes() {
        let c = chart("/v2/org1/repo1/mychart/tags/list");
        assert_eq!(
            c.scope(&Method::HEAD).to_string(),
            "repository:org1/repo1/mychart:pull"
        );
        assert_eq!(
            c.scope(&Method::PATCH).to_string(),
            "repository:org1/repo1/mychart:pull,push"
        );
        assert_eq!(c.scope(&Method::GET).namespace, "org1/repo1");
    }

    #[test]
    fn refuses_malformed_targets() {
        for bad in [
            "/v2/org1/mychart/tags/list",
            "/v2/org1/repo1/x/mychart/tags/list",
            "/v2/org1/repo1/MyChart/tags/list",
            "/v2/org1/repo1/c/manifests/-x",
            "/v2/org1/repo1/c/manifests/sha256:abc",
            "/v2/org1/repo1/c/blobs/md5:0123",
            "/v2/org1/repo1/c/blobs/uploads/not-a-uuid",
            "/v2/org1/repo1/c/blobs/uploads/0123456789abcdef0123456789abcdef",
            "/v2/org1/repo1/c/unknown",
            "/v2/org1/repo1/c",
            "/v2x",
        ] {
            assert!(parse(bad, 2).is_err(), "{bad}");
        }
        assert!(!is_registry_path("/v2x/index.yaml"));
        assert!(is_registry_path("/v2/"));
    }
}
