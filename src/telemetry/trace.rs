//! W3C Trace Context (`traceparent`, version 00): the gateway joins an
//! incoming trace, or starts one, and passes it to ChartMuseum with its own
//! span as the parent. A malformed header starts a new trace; it is never
//! forwarded as sent.

use std::fmt::Write;

use hyper::header::HeaderValue;

/// One hop of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, lowercase hex, never all zero.
    pub trace_id: String,
    /// This gateway's span: the parent id sent upstream.
    pub span_id: String,
    /// Trace flags, two hex digits (`01` = sampled).
    pub flags: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `bytes` random-looking bytes as lowercase hex, never all zero. Ids need
/// to be unique, not secret: a per-process random seed hashes a counter,
/// so no request pays for a trip to the OS random source.
fn random_hex(bytes: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEED: OnceLock<foldhash::fast::FixedState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        let mut raw = [0u8; 8];
        // The OS RNG only fails on a broken system; ids then stay unique
        // within this process, from the counter.
        let _ = aws_lc_rs::rand::fill(&mut raw);
        foldhash::fast::FixedState::with_seed(u64::from_le_bytes(raw))
    });
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        let mut h = seed.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let _ = write!(out, "{:016x}", h.finish());
    }
    out.truncate(bytes * 2);
    if out.bytes().all(|b| b == b'0') {
        out.replace_range(bytes * 2 - 1.., "1");
    }
    out
}

impl TraceContext {
    /// Joins the trace in `incoming` (a `traceparent` value) when it is a
    /// well-formed version-00 header, else starts a new, sampled one; either
    /// way with a new span for this hop.
    pub fn continue_or_start(incoming: Option<&HeaderValue>) -> TraceContext {
        let parsed = incoming.and_then(|v| v.to_str().ok()).and_then(|v| {
            let mut parts = v.trim().split('-');
            let (version, trace, parent, flags) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let ok = parts.next().is_none()
                && version == "00"
                && is_hex(trace, 32)
                && trace.bytes().any(|b| b != b'0')
                && is_hex(parent, 16)
                && parent.bytes().any(|b| b != b'0')
                && is_hex(flags, 2);
            ok.then(|| (trace.to_owned(), flags.to_owned()))
        });
        let (trace_id, flags) = parsed.unwrap_or_else(|| (random_hex(16), "01".to_owned()));
        TraceContext {
            trace_id,
            span_id: random_hex(8),
            flags,
        }
    }

    /// The `traceparent` value to send upstream.
    pub fn header(&self) -> HeaderValue {
        let value = format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags);
        // Hex digits and dashes only.
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(
            "00-00000000000000000000000000000001-0000000000000001-00",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_a_valid_trace_with_a_new_span() {
        let incoming =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let t = TraceContext::continue_or_start(Some(&incoming));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.flags, "01");
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        let sent = t.header();
        let sent = sent.to_str().unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(sent.ends_with("-01"));
    }

    #[test]
    fn malformed_headers_start_a_new_trace() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let v = HeaderValue::from_str(bad).unwrap();
            let t = TraceContext::continue_or_start(Some(&v));
            assert_ne!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert!(is_hex(&t.trace_id, 32) && is_hex(&t.span_id, 16));
        }
        let a = TraceContext::continue_or_start(None);
        let b = TraceContext::continue_or_start(None);
        assert_ne!(a.trace_id, b.trace_id);
    }
}
