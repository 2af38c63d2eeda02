//! The staging area: blobs a registry client pushes wait here, on disk,
//! until their manifest arrives and the chart is published to ChartMuseum.
//!
//! Bodies are streamed to files (never collected in memory) under a size
//! cap. Every file is named by the OCI repository it was pushed to, so one
//! repository can never reference another's staged bytes, and upload ids
//! are random UUIDs. All state is on disk: replicas sharing the directory
//! share uploads. Files older than the upload timeout are swept.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use super::digest::Digest;
use crate::auth::token::unix_now;
use crate::error::{GatewayError, OciCode};
use crate::proxy::inspect::hex;

/// How often, at most, a sweep of expired files starts.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The staging directory and its limits.
#[derive(Debug)]
pub struct Staging {
    root: PathBuf,
    timeout: Duration,
    max_bytes: u64,
    last_sweep: AtomicU64,
}

fn registry(code: OciCode, message: impl Into<String>) -> GatewayError {
    GatewayError::Registry {
        code,
        message: message.into(),
    }
}

fn io(e: std::io::Error) -> GatewayError {
    GatewayError::Internal(format!("staging: {e}"))
}

/// A short, path-safe key for an OCI repository name.
fn name_key(oci: &str) -> String {
    hex(&digest::digest(&digest::SHA256, oci.as_bytes()).as_ref()[..16])
}

impl Staging {
    /// A staging area under `root` (whose `uploads/` and `blobs/` exist),
    /// deleting files older than `timeout`, holding blobs of at most
    /// `max_bytes`.
    pub fn new(root: PathBuf, timeout: Duration, max_bytes: u64) -> Staging {
        Staging {
            root,
            timeout,
            max_bytes,
            last_sweep: AtomicU64::new(0),
        }
    }

    fn upload_path(&self, oci: &str, id: uuid::Uuid) -> PathBuf {
        self.root
            .join("uploads")
            .join(format!("{}-{}", name_key(oci), id.hyphenated()))
    }

    fn blob_dir(&self, oci: &str) -> PathBuf {
        self.root.join("blobs").join(name_key(oci))
    }

    /// Where the staged blob `digest` of `oci` is, if it is.
    pub async fn blob(&self, oci: &str, digest: &Digest) -> Option<(PathBuf, u64)> {
        let path = self.blob_dir(oci).join(digest.hex());
        let meta = tokio::fs::metadata(&path).await.ok()?;
        meta.is_file().then_some((path, meta.len()))
    }

    /// Opens a new upload session for `oci`.
    ///
    /// # Errors
    /// The staging directory cannot be written.
    pub async fn start(&self, oci: &str) -> Result<uuid::Uuid, GatewayError> {
        self.sweep_if_due();
        let id = uuid::Uuid::new_v4();
        tokio::fs::File::create(self.upload_path(oci, id))
            .await
            .map_err(io)?;
        Ok(id)
    }

    /// Bytes received so far by upload `id` of `oci`.
    ///
    /// # Errors
    /// `BLOB_UPLOAD_UNKNOWN` when there is no such upload.
    pub async fn size(&self, oci: &str, id: uuid::Uuid) -> Result<u64, GatewayError> {
        tokio::fs::metadata(self.upload_path(oci, id))
            .await
            .map(|m| m.len())
            .map_err(|_| registry(OciCode::BlobUploadUnknown, "no such upload"))
    }

    /// Appends `body` to upload `id`, which must hold exactly `offset`
    /// bytes when one is given (a chunk's `Content-Range` start). Returns
    /// the new size.
    ///
    /// # Errors
    /// No such upload, a chunk out of order, the size cap passed (the
    /// upload is then discarded), or the body broke off.
    pub async fn append<B>(
        &self,
        oci: &str,
        id: uuid::Uuid,
        body: B,
        offset: Option<u64>,
    ) -> Result<u64, GatewayError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let path = self.upload_path(oci, id);
        let size = self.size(oci, id).await?;
        if offset.is_some_and(|o| o != size) {
            return Err(registry(
                OciCode::RangeInvalid,
                format!("chunk must start at byte {size}"),
            ));
        }
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(|_| registry(OciCode::BlobUploadUnknown, "no such upload"))?;
        match self.write_body(file, body, size).await {
            Ok(n) => Ok(n),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e)
            }
        }
    }

    async fn write_body<B>(
        &self,
        mut file: tokio::fs::File,
        mut body: B,
        mut size: u64,
    ) -> Result<u64, GatewayError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| registry(OciCode::BlobUploadInvalid, "upload body broke off"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            size += data.len() as u64;
            if size > self.max_bytes {
                return Err(GatewayError::PayloadTooLarge {
                    limit: self.max_bytes,
                });
            }
            file.write_all(&data).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(size)
    }

    /// Closes upload `id`: its bytes must hash to `digest`; they become the
    /// staged blob `digest` of `oci`. Returns its size.
    ///
    /// # Errors
    /// No such upload, or `DIGEST_INVALID` (the upload is then discarded).
    pub async fn finish(
        &self,
        oci: &str,
        id: uuid::Uuid,
        digest: &Digest,
    ) -> Result<u64, GatewayError> {
        let path = self.upload_path(oci, id);
        let size = self.size(oci, id).await?;
        let hashed = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(|e| GatewayError::Internal(format!("hashing: {e}")))?
                .map_err(io)?
        };
        if hashed != *digest {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(registry(
                OciCode::DigestInvalid,
                format!("uploaded bytes are {hashed}, not {digest}"),
            ));
        }
        let dir = self.blob_dir(oci);
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        tokio::fs::rename(&path, dir.join(digest.hex()))
            .await
            .map_err(io)?;
        Ok(size)
    }

    /// Stages `bytes` (a pushed manifest, small and already in memory) as
    /// the blob `digest` of `oci`, written whole before it becomes visible.
    ///
    /// # Errors
    /// The staging directory cannot be written.
    pub async fn put(&self, oci: &str, digest: &Digest, bytes: &[u8]) -> Result<(), GatewayError> {
        let id = self.start(oci).await?;
        let path = self.upload_path(oci, id);
        tokio::fs::write(&path, bytes).await.map_err(io)?;
        let dir = self.blob_dir(oci);
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        tokio::fs::rename(&path, dir.join(digest.hex()))
            .await
            .map_err(io)
    }

    /// Drops upload `id` of `oci`.
    ///
    /// # Errors
    /// `BLOB_UPLOAD_UNKNOWN` when there is no such upload.
    pub async fn cancel(&self, oci: &str, id: uuid::Uuid) -> Result<(), GatewayError> {
        tokio::fs::remove_file(self.upload_path(oci, id))
            .await
            .map_err(|_| registry(OciCode::BlobUploadUnknown, "no such upload"))
    }

    /// Deletes the staged blobs `digests` of `oci` once they are published.
    pub async fn remove(&self, oci: &str, digests: &[Digest]) {
        let dir = self.blob_dir(oci);
        for d in digests {
            let _ = tokio::fs::remove_file(dir.join(d.hex())).await;
        }
        let _ = tokio::fs::remove_dir(&dir).await;
    }

    /// Starts a sweep of expired files unless one ran recently.
    fn sweep_if_due(&self) {
        let now = unix_now();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_INTERVAL.as_secs()
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (root, timeout) = (self.root.clone(), self.timeout);
        tokio::task::spawn_blocking(move || sweep(&root, timeout));
    }
}

/// SHA-256 of a file, read in 64 KiB blocks.
fn hash_file(path: &Path) -> std::io::Result<Digest> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(Digest::from_context(ctx.finish()));
        }
        ctx.update(&buf[..n]);
    }
}

/// Deletes uploads and staged blobs last written more than `timeout` ago.
pub fn sweep(root: &Path, timeout: Duration) {
    let Some(cutoff) = SystemTime::now().checked_sub(timeout) else {
        return;
    };
    let expired = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff)
    };
    let mut removed = 0usize;
    let files = |dir: PathBuf| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
    };
    for path in files(root.join("uploads")).filter(|p| expired(p)) {
        removed += usize::from(std::fs::remove_file(&path).is_ok());
    }
    for dir in files(root.join("blobs")) {
        for path in files(dir.clone()).filter(|p| expired(p)) {
            removed += usize::from(std::fs::remove_file(&path).is_ok());
        }
        let _ = std::fs::remove_dir(&dir);
    }
    match removed {
        0 => debug!("staging sweep: nothing expired"),
        n => warn!(
            files = n,
            "staging sweep: deleted uploads whose manifest never came"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    /// A staging directory of the test's own, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn staging(max: u64) -> (Dir, Staging) {
        let dir =
            Dir(std::env::temp_dir().join(format!("chartgate-stage-{}", uuid::Uuid::new_v4())));
        for sub in ["uploads", "blobs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let s = Staging::new(dir.path().to_owned(), Duration::from_secs(900), max);
        (dir, s)
    }

    fn body(bytes: &'static [u8]) -> Full<Bytes> {
        Full::new(Bytes::from_static(bytes))
    }

    fn code(e: GatewayError) -> Option<OciCode> {
        match e {
            GatewayError::Registry { code, .. } => Some(code),
            _ => None,
        }
    }

    #[tokio::test]
    async fn chunks_in_order_become_a_blob_of_that_name_only() {
        let (_dir, s) = staging(1024);
        let id = s.start("org1/repo1/a").await.unwrap();
        assert_eq!(
            s.append("org1/repo1/a", id, body(b"hel"), Some(0))
                .await
                .unwrap(),
            3
        );
        let late = s.append("org1/repo1/a", id, body(b"xx"), Some(1)).await;
        assert_eq!(late.err().and_then(code), Some(OciCode::RangeInvalid));
        assert_eq!(
            s.append("org1/repo1/a", id, body(b"lo"), Some(3))
                .await
                .unwrap(),
            5
        );
        let digest = Digest::of(b"hello");
        assert_eq!(s.finish("org1/repo1/a", id, &digest).await.unwrap(), 5);
        let (path, size) = s.blob("org1/repo1/a", &digest).await.unwrap();
        assert_eq!((std::fs::read(path).unwrap(), size), (b"hello".to_vec(), 5));
        // Another repository never sees it, nor the upload.
        assert!(s.blob("org1/repo1/b", &digest).await.is_none());
        let other = s.size("org1/repo1/b", id).await;
        assert_eq!(other.err().and_then(code), Some(OciCode::BlobUploadUnknown));
    }

    #[tokio::test]
    async fn a_wrong_digest_or_an_oversized_body_stages_nothing() {
        let (_dir, s) = staging(4);
        let id = s.start("r/c").await.unwrap();
        s.append("r/c", id, body(b"abc"), None).await.unwrap();
        let claimed = Digest::of(b"abd");
        let wrong = s.finish("r/c", id, &claimed).await;
        assert_eq!(wrong.err().and_then(code), Some(OciCode::DigestInvalid));
        assert!(s.blob("r/c", &claimed).await.is_none());
        assert!(s.size("r/c", id).await.is_err(), "the upload is discarded");

        let id = s.start("r/c").await.unwrap();
        let big = s.append("r/c", id, body(b"12345"), None).await;
        assert!(matches!(
            big,
            Err(GatewayError::PayloadTooLarge { limit: 4 })
        ));
        assert!(s.size("r/c", id).await.is_err(), "the upload is discarded");
    }

    #[tokio::test]
    async fn the_sweep_deletes_only_what_is_older_than_the_timeout() {
        let (dir, s) = staging(1024);
        let id = s.start("r/c").await.unwrap();
        s.append("r/c", id, body(b"x"), None).await.unwrap();
        let digest = Digest::of(b"m");
        s.put("r/c", &digest, b"m").await.unwrap();
        sweep(dir.path(), Duration::from_secs(60));
        assert!(s.size("r/c", id).await.is_ok());
        assert!(s.blob("r/c", &digest).await.is_some());
        std::thread::sleep(Duration::from_millis(20));
        sweep(dir.path(), Duration::from_millis(10));
        assert!(s.size("r/c", id).await.is_err());
        assert!(s.blob("r/c", &digest).await.is_none());
    }
}
