//! The access line: one per request, written when its response body has
//! been sent (or abandoned), so it can say how many bytes went each way and
//! how long the whole exchange took. The same moment feeds the request
//! metrics, so the log and `/metrics` always count the same requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use hyper::Method;

use super::metrics::{Decision, Metrics};
use super::trace::TraceId;
use crate::auth::route::Handler;

/// What is known about a request by the time its response head leaves.
#[derive(Debug)]
pub struct Access {
    pub started: Instant,
    pub request_id: HeaderValue,
    pub trace_id: TraceId,
    pub peer: SocketAddr,
    pub method: Method,
    /// The route kind (`index`, `chart`, `token`, `unknown`, …).
    pub route: &'static str,
    /// The ChartMuseum route it resolved to, if any.
    pub handler: Option<Handler>,
    pub repo: Option<String>,
    pub subject: String,
    pub decision: Option<Decision>,
    pub status: u16,
    /// ChartMuseum's time to a response head, when it was asked.
    pub upstream: Option<Duration>,
    /// Request body bytes read from the client, counted as they stream
    /// (`None` when the request had no body to forward).
    pub bytes_in: Option<Arc<AtomicU64>>,
    pub metrics: Arc<Metrics>,
}

impl Access {
    /// Writes the line and records the metrics; `bytes_out` is the response
    /// body sent.
    pub fn finish(self, bytes_out: u64) {
        let took = self.started.elapsed();
        let bytes_in = self
            .bytes_in
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed));
        self.metrics
            .request(self.route, &self.method, self.status, took);
        self.metrics.bytes_in(bytes_in);
        self.metrics.bytes_out(bytes_out);
        let (outcome, reason) = self.decision.map_or(("-", "-"), Decision::labels);
        tracing::info!(
            target: "access",
            id = %self.request_id.to_str().unwrap_or("-"),
            trace_id = %self.trace_id,
            peer = %self.peer,
            method = %self.method,
            route = self.route,
            repo = self.repo.as_deref().unwrap_or("-"),
            sub = %self.subject,
            decision = outcome,
            reason,
            status = self.status,
            bytes_in,
            bytes_out,
            upstream_micros = self.upstream.map_or(0, |d| d.as_micros() as u64),
            micros = took.as_micros() as u64,
            "done"
        );
    }
}
