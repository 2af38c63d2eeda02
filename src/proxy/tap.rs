//! Taps on bodies streaming through the gateway. A [`RequestTap`] counts
//! the upload's bytes and, for pushes, copies each chunk to the upload
//! inspector (with backpressure: a full feed pauses the upload, never
//! buffers it). A [`ResponseTap`] counts the bytes sent and writes the
//! access line when the body ends or is dropped.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::PollSender;

use crate::telemetry::access::Access;

/// A request body on its way upstream.
pub struct RequestTap<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
    /// In a mutex only so the body is `Sync`, as hyper's boxed bodies must
    /// be; polling has `&mut self` and never locks it.
    feed: Option<Mutex<PollSender<Bytes>>>,
}

impl<B> RequestTap<B> {
    /// Counts `inner` into `bytes`, and copies it into `feed` if given.
    pub fn new(inner: B, bytes: Arc<AtomicU64>, feed: Option<PollSender<Bytes>>) -> RequestTap<B> {
        RequestTap {
            inner,
            bytes,
            feed: feed.map(Mutex::new),
        }
    }
}

impl<B> Body for RequestTap<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        // Room for the next chunk first, so a chunk read is never held back.
        if let Some(feed) = &mut this.feed {
            let feed = feed.get_mut().unwrap_or_else(|p| p.into_inner());
            if ready!(feed.poll_reserve(cx)).is_err() {
                // The inspector has what it needs, or is gone.
                this.feed = None;
            }
        }
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes
                        .fetch_add(data.remaining() as u64, Ordering::Relaxed);
                    if let Some(feed) = &mut this.feed {
                        let feed = feed.get_mut().unwrap_or_else(|p| p.into_inner());
                        if feed.send_item(data.clone()).is_err() {
                            this.feed = None;
                        }
                    }
                }
            }
            // The end, or a failed read: either way the inspector is done.
            None | Some(Err(_)) => this.feed = None,
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body on its way to the client, carrying its access record.
pub struct ResponseTap<B> {
    inner: B,
    sent: u64,
    access: Option<Access>,
}

impl<B> ResponseTap<B> {
    pub fn new(inner: B, access: Access) -> ResponseTap<B> {
        ResponseTap {
            inner,
            sent: 0,
            access: Some(access),
        }
    }

    fn finish(&mut self) {
        if let Some(access) = self.access.take() {
            access.finish(self.sent);
        }
    }
}

impl<B> Body for ResponseTap<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.remaining() as u64;
                }
            }
            None | Some(Err(_)) => this.finish(),
        }
        if this.inner.is_end_stream() {
            this.finish();
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ResponseTap<B> {
    /// A body abandoned mid-way (the client went away) still gets its line.
    fn drop(&mut self) {
        self.finish();
    }
}
