//! Pooled HTTP/1.1 connections to the upstream: hands out a ready
//! connection, and takes it back when its response body has ended.
//!
//! hyper-util's general-purpose client did the same job at about a seventh
//! of a proxied request's instructions (callgrind), for features a gateway
//! with one upstream does not use (per-host keys, HTTP/2 multiplexing,
//! connect races, absolute-form rewriting). This pool is a LIFO stack of
//! idle senders behind a mutex held only to push or pop: the most recently
//! used connection is reused first, and the oldest are dropped once idle
//! past the timeout.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;
use tracing::debug;

use crate::body::{Body, BoxError};

/// Why a request could not be exchanged with the upstream.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be opened (TCP or TLS).
    #[error("connecting to the upstream failed")]
    Connect(#[source] BoxError),
    /// The connection failed while sending the request or reading the head.
    #[error("upstream exchange failed")]
    Http(#[source] hyper::Error),
}

/// An idle connection and when it went idle.
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// The connection pool for one upstream.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// Where connections go: scheme and authority of the upstream URL.
    target: Uri,
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("max_idle", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// How many times a request that never reached the wire is re-sent on a
/// fresh connection (a pooled one closed by the upstream under our feet).
const RESENDS: usize = 2;

impl Pool {
    /// A pool of connections made by `connector` to `target`, keeping at
    /// most `max_idle` idle ones for at most `idle_timeout` each.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Pool {
        Pool {
            connector,
            target,
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// Sends `req` (origin-form target, headers final) on a pooled or new
    /// connection. The response body hands the connection back when it
    /// ends or is dropped.
    ///
    /// # Errors
    /// The connection could not be made, or failed before a response head.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let mut resends = 0;
        loop {
            let mut sender = match self.checkout().await {
                Some(sender) => sender,
                // Boxed: dialing is rare, and its future would otherwise
                // ride in every request's.
                None => Box::pin(self.connect()).await?,
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let checkin = Checkin {
                        sender,
                        pool: self.clone(),
                    };
                    return Ok(response.map(|inner| PooledBody {
                        inner,
                        checkin: Some(checkin),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: safe to send again, on a new connection.
                    Some(unsent) if resends < RESENDS => {
                        debug!(error = %e.error(), "upstream connection closed before the request was sent; resending");
                        resends += 1;
                        req = unsent;
                    }
                    _ => return Err(PoolError::Http(e.into_error())),
                },
            }
        }
    }

    /// Idle connections held now (the metrics read it at scrape time).
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// The most recently idled connection that is still usable, if any.
    async fn checkout(&self) -> Option<SendRequest<Body>> {
        loop {
            let idle = self.lock().pop_back()?;
            if idle.since.elapsed() >= self.idle_timeout || idle.sender.is_closed() {
                continue; // dropping the sender ends its connection
            }
            let mut sender = idle.sender;
            // A connection is returned as soon as its response body ends;
            // its task may not have marked it ready yet, or may be closing
            // it (a body dropped half-read). Either resolves promptly.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Opens a new connection and starts its task.
    async fn connect(&self) -> Result<SendRequest<Body>, PoolError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(PoolError::Connect)?;
        let io = connector
            .call(self.target.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(PoolError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Takes a connection back, unless it is closed or the pool is full.
    /// Connections idle past the timeout are dropped from the old end.
    fn checkin(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(Idle { sender, since: now });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The queue is consistent after every push or pop, so a panic
        // elsewhere while it was held cannot leave it half-changed.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection on loan to a response body.
struct Checkin {
    sender: SendRequest<Body>,
    pool: Arc<Pool>,
}

/// An upstream response body that returns its connection to the pool when
/// it ends or is dropped (a connection whose body was dropped half-read is
/// closed by hyper, and the pool discards it).
pub struct PooledBody {
    inner: Incoming,
    checkin: Option<Checkin>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(Checkin { sender, pool }) = self.checkin.take() {
            pool.checkin(sender);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        self.release();
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            this.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
