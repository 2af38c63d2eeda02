//! Header hygiene for both directions of the proxy.
//!
//! Downstream → upstream: hop-by-hop headers and every header the client
//! names in `Connection` are dropped (RFC 9110 §7.6.1), then so are the
//! client's credentials and every header that could make the upstream
//! reinterpret the request (method overrides, original-URL headers, forwarding
//! headers, and their `_`/`.` spellings). Only then does the gateway add its
//! own `X-Forwarded-*` and `X-Request-Id`, so nothing the client sends can
//! remove or forge them (SECURITY.md, "header hygiene").

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `Proxy-Connection`
/// and `Keep-Alive`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers the client may not send upstream under any spelling: its
/// credentials, identity and routing headers the gateway owns, and
/// overrides that some servers honour in place of the method or path.
const OWNED_BY_GATEWAY: &[&str] = &[
    "authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-real-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-request-id",
    "traceparent",
];

/// Whether `name` equals `owned` once `_` and `.` are read as `-`, the
/// aliasing some servers apply to header names (no allocation: this runs
/// for every header of every request).
fn same_folded(name: &str, owned: &str) -> bool {
    name.len() == owned.len()
        && name.bytes().zip(owned.bytes()).all(|(a, b)| {
            let a = if a == b'_' || a == b'.' { b'-' } else { a };
            a == b
        })
}

/// Whether `name` is hop-by-hop.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Whether `name` is one the gateway owns, under any `_`/`.` spelling.
fn is_owned_by_gateway(name: &HeaderName) -> bool {
    // Every owned name starts with `a`, `f`, `t` or `x`; most headers do not.
    matches!(
        name.as_str().as_bytes().first(),
        Some(b'a' | b'f' | b't' | b'x')
    ) && OWNED_BY_GATEWAY
        .iter()
        .any(|owned| same_folded(name.as_str(), owned))
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// W3C Trace Context, replaced with the gateway's own hop.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The request id, sent upstream and echoed to the client.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes every header for which `doomed` holds, plus those the client
/// names in `Connection`, in one pass over the names (this runs for every
/// request and response, so it allocates only when something goes).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    // The names `Connection` lists are removed by name after the pass (the
    // values are copied first: `Connection` is itself hop-by-hop). Cloning
    // a value shares its bytes; a second value is rare.
    let mut values = headers.get_all(CONNECTION).iter();
    let connection = values.next().cloned();
    let more: Vec<HeaderValue> = values.cloned().collect();
    let gone: Vec<HeaderName> = headers.keys().filter(|k| doomed(k)).cloned().collect();
    for name in gone {
        headers.remove(name);
    }
    for value in connection.iter().chain(&more) {
        let listed = value.to_str().unwrap_or_default().split(',');
        for name in listed.map(str::trim).filter(|n| !n.is_empty()) {
            // A token that is no header name matches none.
            headers.remove(name);
        }
    }
}

/// Removes hop-by-hop headers and those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, is_hop_by_hop);
}

/// Prepares a request's headers for the upstream.
///
/// `authority` is the request target's authority, which HTTP/2 clients send
/// instead of a `Host` header; `forwarded_for` is the peer's address as a
/// header value.
pub fn prepare_request(
    headers: &mut HeaderMap,
    authority: Option<&str>,
    forwarded_for: &HeaderValue,
    proto: &'static str,
    request_id: &HeaderValue,
    traceparent: HeaderValue,
) {
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2);
    // HTTP/2 sends only the authority.
    let original_host = authority
        .and_then(|a| HeaderValue::from_str(a).ok())
        .or_else(|| headers.get(HOST).cloned());
    // `Host` stays: the upstream client replaces it with the upstream's.
    remove_where(headers, |name| {
        is_hop_by_hop(name) || is_owned_by_gateway(name)
    });
    headers.reserve(5);
    // The peer is the only client address we can vouch for; a chain of
    // trusted proxies in front of us would be a configuration option.
    headers.insert(X_FORWARDED_FOR, forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
    headers.insert(TRACEPARENT, traceparent);
}

/// Prepares an upstream response's headers for the client. An upstream
/// challenge is never relayed: ChartMuseum behind us must not ask for its
/// own credentials, and a client must never be told to send them.
pub fn prepare_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(hyper::header::WWW_AUTHENTICATE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn request_headers_are_cleaned_then_stamped() {
        let mut h = map(&[
            ("host", "gw.example:8080"),
            ("authorization", "Bearer secret"),
            ("connection", "keep-alive, x-custom, x-forwarded-for"),
            ("x-custom", "dropped"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x.real.ip", "6.6.6.6"),
            ("x-http-method-override", "DELETE"),
            ("x_original_url", "/admin"),
            ("x-forwarded-uri", "/other/repo/index.yaml"),
            ("x-request-id", "forged"),
            ("traceparent", "00-forged-forged-01"),
            ("user-agent", "Helm/3.21"),
            ("content-type", "multipart/form-data; boundary=x"),
        ]);
        let rid = HeaderValue::from_static("rid-1");
        let peer = HeaderValue::from_static("10.1.2.3");
        let trace =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        prepare_request(&mut h, None, &peer, "https", &rid, trace.clone());
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-type",
                "host",
                "traceparent",
                "user-agent",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-request-id"
            ]
        );
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "gw.example:8080");
        assert_eq!(h["x-request-id"], "rid-1");
        assert_eq!(h["traceparent"], trace);
    }

    #[test]
    fn upstream_challenges_are_not_relayed() {
        let mut h = map(&[
            ("www-authenticate", "Basic realm=\"ChartMuseum\""),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
        ]);
        prepare_response(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }
}
