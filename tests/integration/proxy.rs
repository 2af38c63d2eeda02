//! The proxy path with a recording upstream: the seed walkthrough, streaming
//! uploads, every denial (with the upstream provably untouched), header
//! hygiene, limits and upstream failures.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Request;

use crate::common::*;

const CHALLENGE_PULL: &str = r#"Bearer realm="http://localhost:8080/oauth/token",service="localhost:8080",scope="artifact-repository:org1/repo1:pull""#;

#[tokio::test]
async fn seed_walkthrough_challenge_token_index() {
    let (up, gw) = setup().await;
    // 1. No token: ChartMuseum's exact 401.
    let r = get(&gw.url("/org1/repo1/index.yaml"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), CHALLENGE_PULL);
    assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
    assert_eq!(r.text(), r#"{"error":"unauthorized"}"#);
    assert!(!r.header("x-request-id").is_empty());
    assert_eq!(up.hits(), 0);

    // 2. Token for the scope the challenge named.
    let token = token(&gw, "artifact-repository:org1/repo1:pull").await;

    // 3. Retry: forwarded, and the index lists the chart.
    let r = get(
        &gw.url("/org1/repo1/index.yaml"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("mychart"), "{}", r.text());
    assert!(r.text().contains("charts/mychart-0.1.0.tgz"));
    let seen = up.last();
    assert_eq!(seen.method, hyper::Method::GET);
    assert_eq!(seen.uri, "/org1/repo1/index.yaml");
    assert!(
        seen.headers.get("authorization").is_none(),
        "credentials leaked upstream"
    );
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(seen.headers["x-request-id"], r.header("x-request-id"));
}

fn chunked(parts: Vec<Bytes>) -> TestBody {
    let stream = futures_stream(parts);
    StreamBody::new(stream).boxed()
}

fn futures_stream(
    parts: Vec<Bytes>,
) -> impl tokio_stream::Stream<Item = Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>
       + Send
       + Sync
       + 'static {
    tokio_stream::iter(parts.into_iter().map(|b| Ok(Frame::data(b))))
}

fn multipart(chart: &[u8]) -> Vec<Bytes> {
    let head = "--XYZ\r\nContent-Disposition: form-data; name=\"chart\"; filename=\"/tmp/helm-push-1/mychart-0.1.0.tgz\"\r\nContent-Type: application/octet-stream\r\n\r\n";
    vec![
        Bytes::from(head),
        Bytes::copy_from_slice(&chart[..chart.len() / 2]),
        Bytes::copy_from_slice(&chart[chart.len() / 2..]),
        Bytes::from_static(b"\r\n--XYZ--\r\n"),
    ]
}

#[tokio::test]
async fn chunked_push_then_byte_identical_pull() {
    let (up, gw) = setup().await;
    let push = token(&gw, "artifact-repository:org1/repo1:pull,push").await;
    let chart: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let parts = multipart(&chart);
    let sent: Vec<u8> = parts.iter().flat_map(|b| b.to_vec()).collect();
    let req = Request::post(gw.url("/api/org1/repo1/charts"))
        .header("authorization", format!("Bearer {push}"))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(chunked(parts))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let seen = up.last();
    assert_eq!(
        seen.body.as_ref(),
        sent.as_slice(),
        "upload altered in transit"
    );
    assert!(seen.headers.get("authorization").is_none());

    let r = get(
        &gw.url("/org1/repo1/charts/upload"),
        Some(&format!("Bearer {push}")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), sent.as_slice());
}

#[tokio::test]
async fn every_denial_is_answered_by_the_gateway_alone() {
    let (up, gw) = setup().await;
    let pull = token(&gw, "artifact-repository:org1/repo1:pull").await;
    let mut forged = pull.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let expired = {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(signing_pem().0.as_bytes()).unwrap();
        let (header, mut claims) = decode_parts(&pull);
        claims["exp"] = serde_json::json!(claims["iat"].as_u64().unwrap() - 10);
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = header["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    };
    let cases: Vec<(&str, &str, Option<String>, &str)> = vec![
        ("GET", "/org1/repo1/index.yaml", None, "org1/repo1:pull"),
        (
            "GET",
            "/org1/repo1/index.yaml",
            Some(format!("Bearer {forged}")),
            "org1/repo1:pull",
        ),
        (
            "GET",
            "/org1/repo1/index.yaml",
            Some(format!("Bearer {expired}")),
            "org1/repo1:pull",
        ),
        (
            "GET",
            "/org1/repo1/index.yaml",
            Some(format!("Basic {}", "bWFzdGVyOng=")),
            "org1/repo1:pull",
        ),
        (
            "GET",
            "/org1/repo1/index.yaml",
            Some("Bearer not-a-jwt".into()),
            "org1/repo1:pull",
        ),
        (
            "POST",
            "/api/org1/repo1/charts",
            Some(format!("Bearer {pull}")),
            "org1/repo1:push",
        ),
        (
            "DELETE",
            "/api/org1/repo1/charts/mychart/0.1.0",
            Some(format!("Bearer {pull}")),
            "org1/repo1:push",
        ),
        (
            "GET",
            "/org2/repo2/index.yaml",
            Some(format!("Bearer {pull}")),
            "org2/repo2:pull",
        ),
        (
            "GET",
            "/org1/repo10/index.yaml",
            Some(format!("Bearer {pull}")),
            "org1/repo10:pull",
        ),
        ("GET", "/", Some(format!("Bearer {pull}")), "repo:pull"),
    ];
    for (method, path, auth, scope) in cases {
        let mut b = Request::builder().method(method).uri(gw.url(path));
        if let Some(a) = &auth {
            b = b.header("authorization", a);
        }
        let r = send(b.body(full(Bytes::new())).unwrap()).await;
        assert_eq!(r.status, 401, "{method} {path}");
        assert!(
            r.header("www-authenticate")
                .ends_with(&format!("scope=\"artifact-repository:{scope}\"")),
            "{method} {path}: {}",
            r.header("www-authenticate")
        );
        assert_eq!(r.text(), r#"{"error":"unauthorized"}"#);
    }
    assert_eq!(up.hits(), 0, "the upstream received a denied request");
}

#[tokio::test]
async fn non_canonical_paths_and_unknown_routes_never_reach_upstream() {
    let (up, gw) = setup().await;
    let token = token(&gw, "artifact-repository:org1/repo1:pull,push").await;
    let auth = format!("Bearer {token}");
    for (method, path, status) in [
        ("GET", "/org1/repo1/../repo1/index.yaml", 400),
        ("GET", "/org1//repo1/index.yaml", 400),
        ("GET", "/org1%2Frepo1/index.yaml", 400),
        ("GET", "/org1/repo1/index.yaml;x", 400),
        ("GET", "/org1/repo1/charts/%2e%2e", 400),
        ("GET", "/org1/repo1/", 400),
        ("HEAD", "/org1/repo1/charts/mychart-0.1.0.tgz", 404),
        ("PUT", "/api/org1/repo1/charts", 404),
        ("OPTIONS", "/org1/repo1/index.yaml", 404),
        ("GET", "/metrics", 404),
        ("GET", "/org1/repo1/x/y/index.yaml", 404),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(gw.url(path))
            .header("authorization", &auth)
            .body(full(Bytes::new()))
            .unwrap();
        let r = send(req).await;
        assert_eq!(r.status, status, "{method} {path}");
        if method != "HEAD" {
            assert!(
                r.json()["error"].is_string(),
                "{method} {path}: {}",
                r.text()
            );
        }
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn health_and_info_pass_without_auth() {
    let (up, gw) = setup().await;
    assert_eq!(get(&gw.url("/health"), None).await.status, 200);
    assert_eq!(get(&gw.url("/info"), None).await.status, 200);
    assert_eq!(get(&gw.url("/org1/repo1/health"), None).await.status, 200);
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn duplicate_credentials_and_hosts_are_refused() {
    let (up, gw) = setup().await;
    let t = token(&gw, "artifact-repository:org1/repo1:pull").await;
    let req = Request::get(gw.url("/org1/repo1/index.yaml"))
        .header("authorization", format!("Bearer {t}"))
        .header("authorization", format!("Bearer {t}"))
        .body(full(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.status, 400);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn uploads_over_the_cap_get_413() {
    let (up, gw) = setup().await;
    let push = token(&gw, "artifact-repository:org1/repo1:push").await;
    // Declared too large: refused before the upstream is contacted.
    let req = Request::post(gw.url("/api/org1/repo1/charts"))
        .header("authorization", format!("Bearer {push}"))
        .body(full(vec![0u8; 1_048_577]))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 413);
    assert_eq!(up.hits(), 0);

    // Chunked, no length: cut off mid-stream.
    let parts: Vec<Bytes> = (0..40).map(|_| Bytes::from(vec![1u8; 64 * 1024])).collect();
    let req = Request::post(gw.url("/api/org1/repo1/charts"))
        .header("authorization", format!("Bearer {push}"))
        .body(chunked(parts))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 413);
    let seen = up.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.body.len() <= 1_048_576),
        "the upstream received the whole oversized body"
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    // Nothing listens on a port we bound and released.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = spawn_gateway(config(BASE_CONFIG, dead)).await;
    let r = get(&gw.url("/health"), None).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), r#"{"error":"bad gateway"}"#);

    let hang = spawn_upstream(Behaviour::Hang).await;
    let gw = spawn_gateway(config(
        &BASE_CONFIG.replace("timeout = \"2s\"", "timeout = \"300ms\""),
        hang.addr,
    ))
    .await;
    let r = tokio::time::timeout(Duration::from_secs(5), get(&gw.url("/health"), None))
        .await
        .expect("gateway hung on a hung upstream");
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), r#"{"error":"gateway timeout"}"#);
}

#[tokio::test]
async fn an_upstream_challenge_is_never_relayed() {
    let up = spawn_upstream(Behaviour::Challenge).await;
    let gw = spawn_gateway(config(BASE_CONFIG, up.addr)).await;
    let r = get(&gw.url("/health"), None).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get("www-authenticate").is_none());
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let (up, gw) = setup().await;
    let req = Request::get(gw.url("/health"))
        .header("x-request-id", "abc-123")
        .body(full(Bytes::new()))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.header("x-request-id"), "abc-123");
    assert_eq!(up.last().headers["x-request-id"], "abc-123");
    let req = Request::get(gw.url("/health"))
        .header("x-request-id", "evil\"value")
        .body(full(Bytes::new()))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.header("x-request-id").len(), 36);
}

#[tokio::test]
async fn tokens_of_a_trusted_key_file_are_accepted() {
    // Another issuer's key (say, the previous signing key) trusted by file.
    let (other_private, other_public) = chartgate::auth::key::generate_rsa_pem().unwrap();
    let dir = std::env::temp_dir().join(format!("chartgate-trusted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("previous.pub.pem");
    std::fs::write(&file, &other_public).unwrap();
    let up = spawn_upstream(Behaviour::Normal).await;
    let text = BASE_CONFIG.replace(
        "leeway = \"0s\"",
        &format!(
            "leeway = \"0s\"\ntrusted_keys = [{{ file = \"{}\" }}]",
            file.display()
        ),
    );
    let gw = spawn_gateway(config(&text, up.addr)).await;

    let other = chartgate::auth::key::SigningKey::from_pem(
        other_private.as_bytes(),
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap();
    let minter = chartgate::issuer::mint::Minter::new(
        other,
        "chartgate".into(),
        "localhost:8080".into(),
        Duration::from_secs(300),
    );
    let access = vec![chartgate::auth::access::AccessEntry {
        kind: "artifact-repository".into(),
        name: "org1/repo1".into(),
        actions: vec!["pull".into()],
        charts: None,
    }];
    let now = chartgate::auth::token::unix_now();
    let t = minter.mint("ci", access, now, None).unwrap().token;
    let r = get(
        &gw.url("/org1/repo1/index.yaml"),
        Some(&format!("Bearer {t}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A key nobody trusts, same claims: refused.
    let (stranger, _) = chartgate::auth::key::generate_rsa_pem().unwrap();
    let stranger = chartgate::auth::key::SigningKey::from_pem(
        stranger.as_bytes(),
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap();
    let minter = chartgate::issuer::mint::Minter::new(
        stranger,
        "chartgate".into(),
        "localhost:8080".into(),
        Duration::from_secs(300),
    );
    let t = minter.mint("ci", vec![], now, None).unwrap().token;
    assert_eq!(
        get(
            &gw.url("/org1/repo1/index.yaml"),
            Some(&format!("Bearer {t}"))
        )
        .await
        .status,
        401
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
