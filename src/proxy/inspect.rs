//! Upload inspection for the audit trail: what a push carried, read from a
//! copy of the body as it streams upstream (never buffered whole). A
//! multipart upload (helm-push, `curl -F`) is parsed with multer for the
//! `chart` or `prov` part: its file name and the SHA-256 of its bytes,
//! which is the digest ChartMuseum's index lists for a chart. Any other
//! body is hashed whole.

use std::convert::Infallible;

use aws_lc_rs::digest;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

/// Chunks in flight between the forwarding body and the inspector.
const FEED_DEPTH: usize = 4;

/// What an upload carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The part's file name as sent (helm-push sends a temporary path).
    pub file: Option<String>,
    /// Lowercase hex SHA-256 of the part (or the whole body).
    pub sha256: String,
    pub size: u64,
}

impl Upload {
    /// `(chart, version)` from a `<name>-<version>.tgz[.prov]` file name,
    /// where the version is the first `-`-separated tail that is semver.
    pub fn chart_version(&self) -> Option<(String, String)> {
        let file = self.file.as_deref()?;
        let base = file.rsplit(['/', '\\']).next()?;
        let stem = base
            .strip_suffix(".tgz.prov")
            .or_else(|| base.strip_suffix(".tgz"))?;
        stem.match_indices('-').find_map(|(at, _)| {
            let (name, version) = (&stem[..at], &stem[at + 1..]);
            (!name.is_empty() && is_semver(version)).then(|| (name.to_owned(), version.to_owned()))
        })
    }
}

/// `MAJOR.MINOR.PATCH` with an optional `-pre` and `+build` tail.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && v[core.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b))
}

/// The multipart boundary of a `Content-Type` value, if it is multipart.
fn boundary(content_type: Option<&str>) -> Option<String> {
    multer::parse_boundary(content_type?).ok()
}

/// Starts inspecting an upload whose `Content-Type` is `content_type`:
/// returns the feed the forwarding body copies chunks into, and the task
/// that yields what it found once the feed closes. The inspector may stop
/// early (it has what it needs); the feed then reports closed and the body
/// carries on without it.
pub fn start(content_type: Option<&str>) -> (PollSender<Bytes>, JoinHandle<Option<Upload>>) {
    let (tx, rx) = mpsc::channel::<Bytes>(FEED_DEPTH);
    let boundary = boundary(content_type);
    let task = tokio::spawn(async move {
        match boundary {
            Some(b) => multipart(rx, b).await,
            None => Some(whole(rx).await),
        }
    });
    (PollSender::new(tx), task)
}

async fn whole(mut rx: mpsc::Receiver<Bytes>) -> Upload {
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut size = 0u64;
    while let Some(chunk) = rx.recv().await {
        size += chunk.len() as u64;
        hash.update(&chunk);
    }
    Upload {
        file: None,
        sha256: hex(hash.finish().as_ref()),
        size,
    }
}

async fn multipart(mut rx: mpsc::Receiver<Bytes>, boundary: String) -> Option<Upload> {
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok::<Bytes, Infallible>))
    });
    let mut parts = multer::Multipart::new(stream, boundary);
    while let Ok(Some(mut field)) = parts.next_field().await {
        if !matches!(field.name(), Some("chart" | "prov")) {
            continue;
        }
        let file = field.file_name().map(str::to_owned);
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut size = 0u64;
        while let Ok(Some(chunk)) = field.chunk().await {
            size += chunk.len() as u64;
            hash.update(&chunk);
        }
        return Some(Upload {
            file,
            sha256: hex(hash.finish().as_ref()),
            size,
        });
    }
    None
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn feed(content_type: Option<&str>, chunks: &[&[u8]]) -> Option<Upload> {
        let (mut tx, task) = start(content_type);
        for c in chunks {
            std::future::poll_fn(|cx| tx.poll_reserve(cx))
                .await
                .unwrap();
            tx.send_item(Bytes::copy_from_slice(c)).unwrap();
        }
        drop(tx);
        task.await.unwrap()
    }

    fn sha256(b: &[u8]) -> String {
        hex(digest::digest(&digest::SHA256, b).as_ref())
    }

    #[tokio::test]
    async fn a_multipart_chart_is_named_and_hashed_across_chunks() {
        let chart = b"\x1f\x8b pretend this is a chart archive";
        let mut body = Vec::new();
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"chart\"; filename=\"/tmp/helm-push-1/mychart-0.1.0.tgz\"\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(chart);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let (a, b) = body.split_at(57);
        let (b, c) = b.split_at(40);
        let got = feed(Some("multipart/form-data; boundary=XyZ"), &[a, b, c])
            .await
            .unwrap();
        assert_eq!(got.sha256, sha256(chart));
        assert_eq!(got.size, chart.len() as u64);
        assert_eq!(
            got.chart_version(),
            Some(("mychart".to_owned(), "0.1.0".to_owned()))
        );
    }

    #[tokio::test]
    async fn any_other_body_is_hashed_whole() {
        let got = feed(Some("application/gzip"), &[b"abc", b"def"])
            .await
            .unwrap();
        assert_eq!(got.sha256, sha256(b"abcdef"));
        assert_eq!(got.file, None);
        assert_eq!(got.chart_version(), None);
    }

    #[test]
    fn versions_are_the_first_semver_tail() {
        let v = |f: &str| {
            Upload {
                file: Some(f.into()),
                sha256: String::new(),
                size: 0,
            }
            .chart_version()
        };
        let pair = |a: &str, b: &str| Some((a.to_owned(), b.to_owned()));
        assert_eq!(v("my-chart-1.2.3-rc.1.tgz"), pair("my-chart", "1.2.3-rc.1"));
        assert_eq!(v("k8s-2fa-1.0.0.tgz"), pair("k8s-2fa", "1.0.0"));
        assert_eq!(v("mychart-0.1.0.tgz.prov"), pair("mychart", "0.1.0"));
        assert_eq!(
            v("mychart-0.1.0+build.5.tgz"),
            pair("mychart", "0.1.0+build.5")
        );
        assert_eq!(v("mychart.tgz"), None);
        assert_eq!(v("mychart-1.0.tgz"), None);
        assert_eq!(v("-1.0.0.tgz"), None);
    }
}
