//! Header hygiene for both directions of the proxy.
//!
//! Downstream → upstream: hop-by-hop headers and every header the client
//! names in `Connection` are dropped (RFC 9110 §7.6.1), then so are the
//! client's credentials and every header that could make the upstream
//! reinterpret the request (method overrides, original-URL headers, forwarding
//! headers, and their `_`/`.` spellings). Only then does the gateway add its
//! own `X-Forwarded-*` and `X-Request-Id`, so nothing the client sends can
//! remove or forge them (SECURITY.md, "header hygiene").

use std::net::SocketAddr;

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

/// Removes hop-by-hop headers and those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Prepares a request's headers for the upstream.
///
/// `authority` is the request target's authority, which HTTP/2 clients send
/// instead of a `Host` header.
pub fn prepare_request(
    headers: &mut HeaderMap,
    authority: Option<&str>,
    peer: SocketAddr,
    proto: &'static str,
    request_id: &HeaderValue,
) {
    strip_hop_by_hop(headers);
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2);
    // HTTP/2 sends only the authority.
    let original_host = authority
        .and_then(|a| HeaderValue::from_str(a).ok())
        .or_else(|| headers.get(HOST).cloned());
    headers.remove(HOST);
    let owned: Vec<HeaderName> = headers
        .keys()
        .filter(|k| OWNED_BY_GATEWAY.iter().any(|o| same_folded(k.as_str(), o)))
        .cloned()
        .collect();
    for name in owned {
        headers.remove(name);
    }
    // The peer is the only client address we can vouch for; a chain of
    // trusted proxies in front of us would be a configuration option.
    if let Ok(ip) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert("x-forwarded-for", ip);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Some(host) = original_host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert("x-request-id", request_id.clone());
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
            ("user-agent", "Helm/3.21"),
            ("content-type", "multipart/form-data; boundary=x"),
        ]);
        let rid = HeaderValue::from_static("rid-1");
        prepare_request(
            &mut h,
            None,
            "10.1.2.3:5555".parse().unwrap(),
            "https",
            &rid,
        );
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-type",
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
