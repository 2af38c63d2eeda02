//! Running it: metrics whose series stay bounded, one guard counting
//! failures at both doors, the access line and trace context, and reloads
//! that mean what they say (the new upstream in `/readyz`, start-only keys
//! named, no request lost under load).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;

use crate::common::*;

async fn scrape(gw: &Gw) -> String {
    let r = get(&format!("http://{}/metrics", gw.admin), None).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .starts_with("application/openmetrics-text"));
    r.text().to_owned()
}

/// Series lines (not comments) in an exposition.
fn series(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

/// A token for `sub` granting pull on `repo`, signed with the gateway's
/// key (parsed once: signing costs a quarter of a millisecond).
fn token_for_subject(key: &chartgate::auth::key::SigningKey, sub: &str, repo: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let now = chartgate::auth::token::unix_now();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.kid});
    let claims = serde_json::json!({
        "iss": "chartgate", "aud": "localhost:8080", "sub": sub,
        "iat": now, "exp": now + 300,
        "access": [{"type": "artifact-repository", "name": repo, "actions": ["pull"]}],
    });
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(message.as_bytes()).unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Request `i` of the series test: a distinct subject and path, allowed,
/// refused for scope, refused as an unknown API key, or not a route.
async fn distinct_request(url: &str, key: &chartgate::auth::key::SigningKey, i: usize) -> u16 {
    let (auth, path) = match i % 4 {
        0 => (
            format!(
                "Bearer {}",
                token_for_subject(key, &format!("user-{i}"), &format!("org{i}/r{i}"))
            ),
            format!("/org{i}/r{i}/index.yaml"),
        ),
        1 => (
            format!(
                "Bearer {}",
                token_for_subject(key, &format!("user-{i}"), &format!("org{i}/r{i}"))
            ),
            format!("/org{i}/x{i}/index.yaml"),
        ),
        2 => (
            format!("Bearer cgk_ghost-key-number-{i:08}"),
            format!("/org{i}/r{i}/charts/c{i}-1.0.{i}.tgz"),
        ),
        _ => (
            format!("Bearer {MASTER_KEY}"),
            format!("/no/such/route/{i}"),
        ),
    };
    get(&format!("{url}{path}"), Some(&auth))
        .await
        .status
        .as_u16()
}

/// 10,000 distinct paths and subjects add no series: labels come from
/// closed sets only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_series_do_not_grow_with_paths_or_subjects() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(
        &BASE_CONFIG.replace(
            "leeway = \"0s\"",
            "leeway = \"0s\"\nmax_failures_per_address = 1000000",
        ),
        up.addr,
    ))
    .await;
    let key = Arc::new(
        chartgate::auth::key::SigningKey::from_pem(
            signing_pem().0.as_bytes(),
            chartgate::auth::key::parse_algorithm("RS256").unwrap(),
        )
        .unwrap(),
    );
    let url = gw.url("");
    for i in 0..100 {
        distinct_request(&url, &key, i).await;
    }
    let warm = scrape(&gw).await;
    let tasks: Vec<_> = (0..4)
        .map(|k| {
            let (url, key) = (url.clone(), key.clone());
            tokio::spawn(async move {
                let mut statuses = [0usize; 4];
                for i in (100 + k..10_000).step_by(4) {
                    let status = distinct_request(&url, &key, i).await;
                    let expected = [200, 401, 401, 404][i % 4];
                    assert_eq!(status, expected, "request {i}");
                    statuses[i % 4] += 1;
                }
                statuses
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = scrape(&gw).await;
    for line in [
        r#"chartgate_requests_total{route="index",method="GET",status="200"} 2500"#,
        r#"chartgate_auth_decisions_total{outcome="denied",reason="wrong_scope"} 2500"#,
        r#"chartgate_auth_decisions_total{outcome="denied",reason="bad_credential"} 2500"#,
        r#"chartgate_requests_total{route="unknown",method="GET",status="404"} 2500"#,
    ] {
        assert!(after.contains(line), "missing {line}:\n{after}");
    }
    assert_eq!(
        series(&warm).len(),
        series(&after).len(),
        "series grew with traffic:\n{after}"
    );
    for needle in ["org1", "user-", "ghost", "c7-", "/no/such"] {
        assert!(!after.contains(needle), "{needle} leaked into a label");
    }
}

#[tokio::test]
async fn one_guard_counts_failures_at_the_token_endpoint_and_the_proxy() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let text = accounts_config().replace(
        "leeway = \"0s\"",
        "leeway = \"0s\"\nmax_failures_per_account = 3",
    );
    let gw = spawn_gateway(config(&text, up.addr)).await;
    let token_url = gw.url("/oauth/token?grant_type=client_credentials");
    for _ in 0..3 {
        let r = send(
            Request::post(&token_url)
                .header("authorization", basic("alice", "wrong"))
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    // Locked out at the proxy too, even with the right password.
    let r = get(
        &gw.url("/org1/repo1/index.yaml"),
        Some(&basic("alice", ALICE_PASSWORD)),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
    let text = scrape(&gw).await;
    assert!(
        text.contains(
            r#"chartgate_tokens_issued_total{grant="unknown",outcome="invalid_client"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"reason="locked_out"} 1"#), "{text}");
}

#[tokio::test]
async fn the_trace_is_joined_and_passed_upstream_with_a_new_parent() {
    let (up, gw) = setup().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = send(
        Request::get(gw.url("/org1/repo1/index.yaml"))
            .header("authorization", format!("Bearer {MASTER_KEY}"))
            .header("traceparent", incoming)
            .body(full(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let sent = up.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(!sent.contains("00f067aa0ba902b7") && sent.ends_with("-01"));
    // A forged or missing one starts a new trace.
    for header in [Some("00-zz-yy-01"), None] {
        let mut b = Request::get(gw.url("/org1/repo1/index.yaml"))
            .header("authorization", format!("Bearer {MASTER_KEY}"));
        if let Some(h) = header {
            b = b.header("traceparent", h);
        }
        assert_eq!(send(b.body(full(Bytes::new())).unwrap()).await.status, 200);
        let sent = up.last().headers["traceparent"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(sent.len(), 55, "{sent}");
        assert!(!sent.contains("zz"));
    }
}

#[tokio::test]
async fn a_reload_moves_readyz_to_the_new_upstream_and_names_start_only_keys() {
    let healthy = spawn_upstream(Behaviour::Normal).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = std::env::temp_dir().join(format!("chartgate-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    let admin_port = free_port();
    let text = |upstream: std::net::SocketAddr, timeout: &str| {
        BASE_CONFIG
            .replace("UPSTREAM", &upstream.to_string())
            .replace(
                "admin_addr = \"127.0.0.1:0\"",
                &format!("admin_addr = \"127.0.0.1:{admin_port}\""),
            )
            .replace("header_read_timeout = \"1s\"", timeout)
    };
    std::fs::write(&path, text(healthy.addr, "header_read_timeout = \"1s\"")).unwrap();
    let mut bin = spawn_binary(&path, &[]).await;
    let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
    assert_eq!(get(&readyz, None).await.status, 200);

    // Point it at a ChartMuseum that is not there, and change a start-only key.
    std::fs::write(&path, text(dead, "header_read_timeout = \"2s\"")).unwrap();
    hup(bin.child.id());
    let warned = wait_for(&mut bin.lines, "takes effect after restart").await;
    assert!(warned.contains("listen.header_read_timeout"), "{warned}");
    let applied = wait_for(&mut bin.lines, "configuration reloaded").await;
    assert!(applied.contains("upstream.url"), "{applied}");
    let r = get(&readyz, None).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("upstream unhealthy"));

    // And back.
    std::fs::write(&path, text(healthy.addr, "header_read_timeout = \"2s\"")).unwrap();
    hup(bin.child.id());
    wait_for(&mut bin.lines, "configuration reloaded").await;
    assert_eq!(get(&readyz, None).await.status, 200);
    let metrics = get(&format!("http://127.0.0.1:{admin_port}/metrics"), None).await;
    assert!(metrics
        .text()
        .contains(r#"chartgate_config_reloads_total{outcome="ok"} 2"#));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reloads every 200 ms for 10 s while four clients pull without pause:
/// every request is answered 200, none fails or is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_loses_no_request() {
    let a = spawn_upstream(Behaviour::Normal).await;
    let b = spawn_upstream(Behaviour::Normal).await;
    let dir = std::env::temp_dir().join(format!("chartgate-hupload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    let text = |u: std::net::SocketAddr| BASE_CONFIG.replace("UPSTREAM", &u.to_string());
    std::fs::write(&path, text(a.addr)).unwrap();
    let bin = spawn_binary(&path, &[]).await;
    let url = format!("http://{}/org1/repo1/index.yaml", bin.addr);
    let auth = format!("Bearer {MASTER_KEY}");
    let until = Instant::now() + Duration::from_secs(10);
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, auth, ok, failed) = (url.clone(), auth.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let r = get(&url, Some(&auth)).await;
                    let counter = if r.status == 200 { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut reloads = 0;
    while Instant::now() < until {
        let target = if reloads % 2 == 0 { b.addr } else { a.addr };
        std::fs::write(&path, text(target)).unwrap();
        hup(bin.child.id());
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reload under load: {ok} requests answered 200, {failed} failed, {reloads} reloads");
    assert_eq!(failed, 0);
    assert!(ok > 1_000, "too few requests to mean anything: {ok}");
    // Both upstreams served: the reloads really moved the traffic.
    assert!(a.hits() > 0 && b.hits() > 0, "{} / {}", a.hits(), b.hits());
    std::fs::remove_dir_all(&dir).unwrap();
}
