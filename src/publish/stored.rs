//! Whether ChartMuseum already stores a chart version: its archive is
//! fetched from the repository's `charts/` (straight from storage, not
//! from the possibly cached index) and hashed as it streams by.

use aws_lc_rs::digest;
use http_body_util::BodyExt;

use super::Identity;
use crate::error::GatewayError;
use crate::oci::digest::Digest;
use crate::oci::storage::Storage;

/// The SHA-256 of the stored archive of `chart` in `repo` (empty at depth
/// 0), or `None` when ChartMuseum has none.
///
/// # Errors
/// ChartMuseum cannot be reached or answers neither 200 nor 404.
pub async fn archive(
    storage: &Storage<'_>,
    repo: &str,
    chart: &Identity,
) -> Result<Option<Digest>, GatewayError> {
    let Some(response) = storage.repo_file(repo, &chart.file()).await? else {
        return Ok(None);
    };
    let mut body = response.into_body();
    let mut hash = digest::Context::new(&digest::SHA256);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| GatewayError::UpstreamUnavailable(Box::new(e)))?;
        if let Some(data) = frame.data_ref() {
            hash.update(data);
        }
    }
    Ok(Some(Digest::from_context(hash.finish())))
}
