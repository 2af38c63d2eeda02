//! Response and request body types shared by every stage.
//!
//! Upstream bodies are streamed through untouched; the gateway's own replies
//! (challenges, errors, tokens) are small in-memory bodies built here.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Boxed error carried by streaming bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type the gateway hands to hyper, in both directions.
pub type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A body holding `bytes` in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A file's bytes, streamed from disk in the reader's blocks.
pub fn stream_file(file: tokio::fs::File) -> Body {
    use futures_util::TryStreamExt;
    let frames = tokio_util::io::ReaderStream::new(file)
        .map_ok(hyper::body::Frame::data)
        .map_err(BoxError::from);
    http_body_util::StreamBody::new(frames).boxed()
}

/// A compact JSON body, serialized from `value`.
pub fn json(value: &serde_json::Value) -> Body {
    // Serializing a `Value` cannot fail: every key is a string.
    full(serde_json::to_vec(value).unwrap_or_default())
}

/// A request body that says when it has been sent: the sender fires when
/// the body ends, and is dropped (which the receiver also sees) if the body
/// is abandoned first.
pub struct SignalEnd<B> {
    inner: B,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<B> SignalEnd<B> {
    /// Wraps `inner`; the receiver resolves once it is sent or abandoned.
    pub fn new(inner: B) -> (SignalEnd<B>, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            SignalEnd {
                inner,
                done: Some(tx),
            },
            rx,
        )
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for SignalEnd<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) {
            if let Some(done) = this.done.take() {
                let _ = done.send(());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads and discards `body`, up to `limit` bytes and `timeout`. Returns
/// whether it ended within both, i.e. whether the connection can be reused.
pub async fn drain<B>(mut body: B, limit: u64, timeout: Duration) -> bool
where
    B: http_body::Body + Unpin,
{
    let read_all = async {
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                seen += bytes::Buf::remaining(data) as u64;
                if seen > limit {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(timeout, read_all)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_reads_to_the_end_within_the_limit() {
        assert!(
            drain(
                Full::new(Bytes::from_static(b"0123456789")),
                10,
                Duration::from_secs(1)
            )
            .await
        );
        assert!(
            !drain(
                Full::new(Bytes::from_static(b"0123456789")),
                9,
                Duration::from_secs(1)
            )
            .await
        );
        assert!(drain(Empty::<Bytes>::new(), 0, Duration::from_secs(1)).await);
    }
}
