//! What the gateway knows of a request before any stage runs: the
//! connection it came on, and its request id.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::Request;

use crate::proxy::header;

/// Longest client-supplied `X-Request-Id` echoed; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The downstream peer.
    pub peer: SocketAddr,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// Common name of the client certificate the TLS handshake verified.
    pub client_cn: Option<Arc<str>>,
    /// The peer's address as sent in `X-Forwarded-For`, formatted once per
    /// connection rather than once per request.
    pub(super) forwarded_for: HeaderValue,
}

impl ConnInfo {
    /// A connection from `peer` over `proto` (`http` or `https`).
    pub fn new(peer: SocketAddr, proto: &'static str, client_cn: Option<Arc<str>>) -> ConnInfo {
        let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo {
            peer,
            proto,
            client_cn,
            forwarded_for,
        }
    }

    /// A plain-HTTP connection from `peer`.
    pub fn plain(peer: SocketAddr) -> ConnInfo {
        ConnInfo::new(peer, "http", None)
    }
}

/// The request's id: the client's `X-Request-Id` when it is short and
/// printable (so logs on both sides line up, as ChartMuseum echoes it),
/// a fresh UUIDv4 otherwise.
pub(super) fn request_id(req: &Request<Incoming>) -> HeaderValue {
    req.headers()
        .get(header::X_REQUEST_ID)
        .filter(|v| {
            v.len() <= MAX_REQUEST_ID_LEN
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .cloned()
        .unwrap_or_else(|| {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = fresh_request_id().hyphenated().encode_lower(&mut buf);
            HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
        })
}

/// A new request id: UUID-shaped, a random per-process half and a counter,
/// so minting one costs no system call (a v4 UUID reads the OS RNG).
fn fresh_request_id() -> uuid::Uuid {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    uuid::Uuid::from_u64_pair(prefix, COUNTER.fetch_add(1, Ordering::Relaxed))
}
