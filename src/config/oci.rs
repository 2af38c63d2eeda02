//! `[oci]`: validation of the OCI registry bridge's settings. The staging
//! directory is created here, so a path chartgate cannot write to fails at
//! load, naming the key, instead of at the first push.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::RawOci;

/// The validated `[oci]` section.
#[derive(Debug, Clone)]
pub struct OciConfig {
    /// Root of the staging area (uploads in progress, blobs awaiting their
    /// manifest).
    pub staging_dir: PathBuf,
    /// Age after which staged files are deleted.
    pub upload_timeout: Duration,
}

impl RawOci {
    /// Checks the section and prepares the staging directory.
    ///
    /// # Errors
    /// The timeout is zero, or the directory cannot be created.
    pub fn validate(self, base: &Path) -> Result<OciConfig> {
        if self.upload_timeout.is_zero() {
            bail!("oci.upload_timeout: must be longer than zero");
        }
        let staging_dir = match self.staging_dir {
            Some(dir) => base.join(dir),
            None => std::env::temp_dir().join("chartgate-oci"),
        };
        for sub in ["uploads", "blobs"] {
            let dir = staging_dir.join(sub);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("oci.staging_dir: cannot create {}", dir.display()))?;
        }
        Ok(OciConfig {
            staging_dir,
            upload_timeout: self.upload_timeout,
        })
    }
}
