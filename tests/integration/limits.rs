//! Brute-force limits over HTTP: per account and per client address, for
//! the proxy and the token endpoint; free for credential-less requests and
//! for successes; a success starts the count over.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::common::*;

const LIMITS: &str = "leeway = \"0s\"\nmax_failures_per_account = 3\nmax_failures_per_address = 6";

async fn setup_limited() -> (Upstream, Gw) {
    let up = spawn_upstream(Behaviour::Normal).await;
    let text = accounts_config().replace("leeway = \"0s\"", LIMITS);
    let gw = spawn_gateway(config(&text, up.addr)).await;
    (up, gw)
}

/// GET `url` from the loopback address `from`.
async fn get_from(from: Ipv4Addr, url: &str, auth: Option<&str>) -> Reply {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(IpAddr::V4(from)));
    let client: Client<_, TestBody> = Client::builder(TokioExecutor::new()).build(http);
    let mut b = Request::get(url);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let resp = client
        .request(b.body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    Reply {
        status,
        headers,
        body: Bytes::new(),
    }
}

#[tokio::test]
async fn an_account_is_locked_after_its_failures_even_with_the_right_password() {
    let (up, gw) = setup_limited().await;
    let url = gw.url("/org1/repo1/index.yaml");
    for _ in 0..3 {
        assert_eq!(get(&url, Some(&basic("alice", "wrong"))).await.status, 401);
    }
    let r = get(&url, Some(&basic("alice", ALICE_PASSWORD))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), "300");
    assert_eq!(r.json()["error"], "too many failed attempts");
    // From another address too: the account is what is being guessed.
    let r = get_from(
        Ipv4Addr::new(127, 0, 0, 2),
        &url,
        Some(&basic("alice", ALICE_PASSWORD)),
    )
    .await;
    assert_eq!(r.status, 429);
    // Other accounts are unaffected.
    assert_eq!(
        get(&url, Some(&format!("Bearer {MASTER_KEY}")))
            .await
            .status,
        200
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn an_address_is_locked_across_accounts_and_others_are_not() {
    let (_up, gw) = setup_limited().await;
    let url = gw.url("/org1/repo1/index.yaml");
    let spray = Ipv4Addr::new(127, 0, 0, 3);
    for i in 0..6 {
        let r = get_from(spray, &url, Some(&basic(&format!("guess{i}"), "x"))).await;
        assert_eq!(r.status, 401);
    }
    let r = get_from(spray, &url, Some(&format!("Bearer {MASTER_KEY}"))).await;
    assert_eq!(
        r.status, 429,
        "the spraying address is locked for every credential"
    );
    let r = get_from(
        Ipv4Addr::new(127, 0, 0, 4),
        &url,
        Some(&format!("Bearer {MASTER_KEY}")),
    )
    .await;
    assert_eq!(r.status, 200, "another address is not");
}

#[tokio::test]
async fn credential_less_requests_and_successes_are_free_and_success_resets() {
    let (_up, gw) = setup_limited().await;
    let url = gw.url("/org1/repo1/index.yaml");
    for _ in 0..20 {
        assert_eq!(get(&url, None).await.status, 401);
    }
    let good = basic("alice", ALICE_PASSWORD);
    // A burst of parallel good pulls is never locked out.
    let pulls: Vec<_> = (0..40)
        .map(|_| {
            let (url, good) = (url.clone(), good.clone());
            tokio::spawn(async move { get(&url, Some(&good)).await.status })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.await.unwrap(), 200);
    }
    // Two failures, a success, two more failures: never three in a row.
    for _ in 0..2 {
        assert_eq!(get(&url, Some(&basic("alice", "wrong"))).await.status, 401);
    }
    assert_eq!(get(&url, Some(&good)).await.status, 200);
    for _ in 0..2 {
        assert_eq!(get(&url, Some(&basic("alice", "wrong"))).await.status, 401);
    }
    assert_eq!(get(&url, Some(&good)).await.status, 200);
}

#[tokio::test]
async fn the_token_endpoint_is_limited_too() {
    let (_up, gw) = setup_limited().await;
    let url = gw.url(
        "/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull",
    );
    let post = |auth: String| {
        Request::post(url.clone())
            .header("authorization", auth)
            .body(full(Bytes::new()))
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(send(post(basic("alice", "wrong"))).await.status, 401);
    }
    let r = send(post(basic("alice", ALICE_PASSWORD))).await;
    assert_eq!(r.status, 429);
    assert!(!r.header("retry-after").is_empty());
}
