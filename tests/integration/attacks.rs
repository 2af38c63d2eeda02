//! Attacks an adversary would write, over raw TCP where framing matters:
//! request smuggling shapes, upgrades, headers naming the gateway's own,
//! oversized heads, and tokens carrying attacker keys or forged signatures.
//! Each asserts what the upstream actually received.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// Writes `raw` on a fresh connection and returns everything read back
/// until the server closes or goes quiet.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(replies: &str) -> Vec<&str> {
    replies
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(|l| &l[9..12])
        .collect()
}

#[tokio::test]
async fn smuggling_shapes_never_reach_the_upstream_as_a_second_request() {
    let (up, gw) = setup().await;
    let t = token(&gw, "artifact-repository:org1/repo1:pull,push").await;
    let cases = [
        // CL.TE: a chunked body that ends early, followed by a "hidden" request.
        format!("POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /org9/secret/index.yaml HTTP/1.1\r\nHost: x\r\n\r\n"),
        // Two different Content-Lengths.
        format!("POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcdGET /org9/secret/index.yaml HTTP/1.1\r\nHost: x\r\n\r\n"),
        // An unknown transfer coding.
        format!("POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        // Obsolete line folding hiding a header.
        format!("GET /org1/repo1/index.yaml HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nX-Original-URL:\r\n /org9/secret\r\n\r\n"),
    ];
    for raw in &cases {
        let replies = exchange(gw.addr, raw.as_bytes()).await;
        for status in statuses(&replies) {
            assert!(
                matches!(status, "200" | "201" | "400" | "401" | "501"),
                "{status} for {raw:?}"
            );
        }
    }
    let seen = up.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|r| !r.uri.contains("org9")),
        "a smuggled request reached the upstream: {:?}",
        seen.iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    // Whatever did reach it carried no conflicting framing.
    for r in &seen {
        assert!(
            !(r.headers.contains_key("content-length")
                && r.headers.contains_key("transfer-encoding"))
        );
    }
}

#[tokio::test]
async fn upgrades_and_connection_named_headers_are_not_passed_on() {
    let (up, gw) = setup().await;
    let t = token(&gw, "artifact-repository:org1/repo1:pull").await;
    let raw = format!(
        "GET /org1/repo1/index.yaml HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nConnection: Upgrade, HTTP2-Settings, X-Forwarded-For, X-Request-Id\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
    );
    let replies = exchange(gw.addr, raw.as_bytes()).await;
    assert_eq!(statuses(&replies), ["200"], "{replies}");
    let seen = up.last();
    for h in ["upgrade", "http2-settings", "connection"] {
        assert!(seen.headers.get(h).is_none(), "{h} reached the upstream");
    }
    // The client named the gateway's own headers in Connection: they are
    // still set, by the gateway.
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert!(seen.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn oversized_heads_are_refused() {
    let (up, gw) = setup().await;
    let big = "a".repeat(80 * 1024);
    let raw = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let replies = exchange(gw.addr, raw.as_bytes()).await;
    let s = statuses(&replies);
    assert!(s.is_empty() || s == ["431"], "{replies}");
    assert_eq!(up.hits(), 0);
}

/// A listener that counts connection attempts, to prove no key is fetched.
async fn counting_listener() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        while l.accept().await.is_ok() {
            n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (addr, n)
}

#[tokio::test]
async fn tokens_naming_attacker_keys_are_refused_without_any_fetch() {
    let (up, gw) = setup().await;
    let (trap, hits) = counting_listener().await;
    let real = token(&gw, "artifact-repository:org1/repo1:pull").await;
    let (header, claims) = decode_parts(&real);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());

    // An attacker's own key, advertised in every way JOSE allows.
    let (attacker_pem, _) = chartgate::auth::key::generate_rsa_pem().unwrap();
    let attacker = jsonwebtoken::EncodingKey::from_rsa_pem(attacker_pem.as_bytes()).unwrap();
    let url = format!("http://{trap}/keys");
    let mut forged = Vec::new();
    for (field, value) in [
        ("jku", serde_json::json!(url)),
        ("x5u", serde_json::json!(url)),
        (
            "jwk",
            serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        ),
        (
            "x5c",
            serde_json::json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ),
    ] {
        // With our kid kept, and without any kid.
        for keep_kid in [true, false] {
            let mut h = header.clone();
            h[field] = value.clone();
            if !keep_kid {
                h.as_object_mut().unwrap().remove("kid");
            }
            let msg = format!("{}.{body}", URL_SAFE_NO_PAD.encode(h.to_string()));
            let sig = jsonwebtoken::crypto::sign(
                msg.as_bytes(),
                &attacker,
                jsonwebtoken::Algorithm::RS256,
            )
            .unwrap();
            forged.push(format!("{msg}.{sig}"));
        }
    }
    // HS256 keyed with the public key in PEM and DER forms.
    let public_pem = signing_pem().1.clone();
    let public_der = pem::parse(&public_pem).unwrap().contents().to_vec();
    for secret in [public_pem.as_bytes().to_vec(), public_der] {
        let mut h = header.clone();
        h["alg"] = serde_json::json!("HS256");
        let head = URL_SAFE_NO_PAD.encode(h.to_string());
        let msg = format!("{head}.{body}");
        let sig = jsonwebtoken::crypto::sign(
            msg.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        forged.push(format!("{msg}.{sig}"));
    }
    // ES256 with an all-zero signature (CVE-2022-21449 shape).
    let mut h = header.clone();
    h["alg"] = serde_json::json!("ES256");
    let head = URL_SAFE_NO_PAD.encode(h.to_string());
    forged.push(format!(
        "{head}.{body}.{}",
        URL_SAFE_NO_PAD.encode([0u8; 64])
    ));
    // The real token with its signature stripped or swapped.
    let (msg, _) = real.rsplit_once('.').unwrap();
    forged.push(format!("{msg}."));
    forged.push(format!("{msg}.{}", URL_SAFE_NO_PAD.encode([0u8; 256])));

    for t in &forged {
        let r = get(
            &gw.url("/org1/repo1/index.yaml"),
            Some(&format!("Bearer {t}")),
        )
        .await;
        assert_eq!(r.status, 401, "forged token accepted: {t}");
    }
    assert_eq!(up.hits(), 0);
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the gateway fetched an attacker's key"
    );
}
