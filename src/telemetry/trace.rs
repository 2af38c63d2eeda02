//! W3C Trace Context (`traceparent`, version 00): the gateway joins an
//! incoming trace, or starts one, and passes it to ChartMuseum with its own
//! span as the parent. A malformed header starts a new trace; it is never
//! forwarded as sent. Ids are kept as integers and written out as hex only
//! where a header or a log line needs them.

use std::fmt;

use hyper::header::HeaderValue;

/// One hop of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// Never zero.
    pub trace_id: u128,
    /// This gateway's span: the parent id sent upstream. Never zero.
    pub span_id: u64,
    /// Trace flags (`01` = sampled).
    pub flags: u8,
}

/// A trace id as its 32 lowercase hex digits.
#[derive(Debug, Clone, Copy)]
pub struct TraceId(pub u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Lowercase hex of exactly `len` digits, parsed.
fn hex(s: &str, len: usize) -> Option<u128> {
    (s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| u128::from_str_radix(s, 16).ok())
    .flatten()
}

/// A random-looking non-zero 64-bit id. Ids need to be unique, not secret:
/// a per-process random seed hashes a counter, so no request pays for a
/// trip to the OS random source.
fn random_u64() -> u64 {
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
    let mut h = seed.build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
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
            let ok = parts.next().is_none() && version == "00";
            let trace = hex(trace, 32).filter(|&t| ok && t != 0)?;
            hex(parent, 16).filter(|&p| p != 0)?;
            let flags = u8::try_from(hex(flags, 2)?).ok()?;
            Some((trace, flags))
        });
        let (trace_id, flags) = parsed.unwrap_or_else(|| {
            let trace = (u128::from(random_u64()) << 64) | u128::from(random_u64());
            (trace, 1)
        });
        TraceContext {
            trace_id,
            span_id: random_u64(),
            flags,
        }
    }

    /// The trace id, for logs and audit events.
    pub fn id(&self) -> TraceId {
        TraceId(self.trace_id)
    }

    /// The `traceparent` value to send upstream.
    pub fn header(&self) -> HeaderValue {
        use data_encoding::HEXLOWER;
        // 55 bytes exactly: "00-" + 32 + "-" + 16 + "-" + 2. Written with a
        // table, not `fmt`: it is built for every proxied request.
        let mut buf = *b"00-________________________________-________________-__";
        HEXLOWER.encode_mut(&self.trace_id.to_be_bytes(), &mut buf[3..35]);
        HEXLOWER.encode_mut(&self.span_id.to_be_bytes(), &mut buf[36..52]);
        HEXLOWER.encode_mut(&[self.flags], &mut buf[53..55]);
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static(
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
        assert_eq!(t.id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.flags, 1);
        assert_ne!(t.span_id, 0x00f0_67aa_0ba9_02b7);
        let sent = t.header();
        let sent = sent.to_str().unwrap();
        assert_eq!(sent.len(), 55);
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
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            let v = HeaderValue::from_str(bad).unwrap();
            let t = TraceContext::continue_or_start(Some(&v));
            assert_ne!(
                t.trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                "{bad}"
            );
            assert!(t.trace_id != 0 && t.span_id != 0);
            assert_eq!(t.header().len(), 55);
        }
        let a = TraceContext::continue_or_start(None);
        let b = TraceContext::continue_or_start(None);
        assert_ne!(a.trace_id, b.trace_id);
    }
}
