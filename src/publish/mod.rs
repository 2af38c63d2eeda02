//! Publish rules: which chart an upload, a delete or an OCI manifest push
//! publishes, and whether it may. A rule's `charts` limits the charts a
//! principal may push ([`rules`]); `[publish] immutable` repositories refuse
//! to overwrite a stored version or delete a released one, whatever
//! ChartMuseum's `--allow-overwrite` says.
//!
//! The chart comes from what is uploaded, read as ChartMuseum reads it: the
//! archive's own `Chart.yaml` ([`archive`]), or a provenance file's signed
//! block ([`prov`]), never the file name a client sends (ChartMuseum ignores
//! it). [`upload`] reads it from the streaming body before anything is
//! forwarded, and keeps checking the rest while it streams; a form upload is
//! re-encoded ([`form`]) so ChartMuseum parses exactly what was checked.
//! [`stored`] asks ChartMuseum whether a version exists, and [`lock`]
//! serializes pushes of one version within the process.

pub mod archive;
pub mod form;
pub mod lock;
pub mod prov;
pub mod rules;
pub mod stored;
pub mod upload;

use serde::Deserialize;

use crate::auth::path;

pub use rules::Publisher;

/// A chart version: what ChartMuseum files an upload under.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identity {
    pub name: String,
    pub version: String,
}

impl Identity {
    /// `name` and `version`, if both are safe path segments
    /// (`[A-Za-z0-9._+-]`, not `.` or `..`). Anything else is refused: such
    /// a chart could not be fetched through the gateway, and Helm would
    /// rewrite some of it (spaces, control characters) before filing it.
    ///
    /// # Errors
    /// Which of the two is not a safe segment; safe to show the client.
    pub fn checked(name: String, version: String) -> Result<Identity, String> {
        if let Err(e) = path::check_segment(&name) {
            return Err(format!("chart name {name:?} is not usable: {e}"));
        }
        if let Err(e) = path::check_segment(&version) {
            return Err(format!("chart version {version:?} is not usable: {e}"));
        }
        Ok(Identity { name, version })
    }

    /// The archive's file name in ChartMuseum's storage.
    pub fn file(&self) -> String {
        format!("{}-{}.tgz", self.name, self.version)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.name, self.version)
    }
}

/// Why a publish rule refused a request. The messages are built from what
/// the client sent and are safe to show it; `error.rs` picks the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    /// The chart an upload carries cannot be determined, or the body says
    /// two different things.
    #[error("{0}")]
    Unreadable(String),
    /// The principal's rule does not list this chart.
    #[error("chart {chart:?} may not be pushed to {repo}")]
    ChartNotAllowed { chart: String, repo: String },
    /// The version exists (upload) or is released (delete) in an
    /// immutable repository.
    #[error("chart version {chart}-{version} is immutable in {repo}")]
    Immutable {
        chart: String,
        version: String,
        repo: String,
    },
}

impl PublishRefusal {
    /// The reason the audit trail records.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishRefusal::Unreadable(_) => "chart_unreadable",
            PublishRefusal::ChartNotAllowed { .. } => "chart_not_allowed",
            PublishRefusal::Immutable { .. } => "immutable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_must_be_safe_segments() {
        assert!(Identity::checked("billing-api".into(), "1.2.3-rc.1+b.7".into()).is_ok());
        for (name, version) in [
            ("..", "1.0.0"),
            ("a b", "1.0.0"),
            ("a/b", "1.0.0"),
            ("", "1.0.0"),
            ("x", "1.0.0\r"),
            ("x", "1.0.0 "),
            ("bill\u{200b}ing", "1.0.0"),
        ] {
            assert!(
                Identity::checked(name.into(), version.into()).is_err(),
                "{name:?} {version:?}"
            );
        }
    }
}
