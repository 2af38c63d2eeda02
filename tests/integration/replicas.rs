//! Several replicas acting as one door: real `chartgate` processes sharing
//! one signing key and, through a real Redis (Debian's `redis-server`,
//! started here on loopback and stopped by PID), one set of failure counts;
//! the fall-back to per-replica limits when Redis is gone; the published
//! JWKS; and the key-rotation runbook (docs/OPERATIONS.md) followed step by
//! step under load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;

use crate::common::*;

/// A real Redis on a free loopback port, killed when dropped.
struct Redis {
    addr: SocketAddr,
    _child: KillOnDrop,
}

fn pong(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed: scripts/tools.sh deploy installs it");
        let redis = Redis {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: KillOnDrop(Some(child)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pong(redis.addr) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }
}

/// A replica's config: the accounts fixture in front of `upstream`, with
/// its admin listener on `admin`, three failures per account, and the
/// failure counts in the Redis at `redis`.
fn shared_limits_config(
    dir: &Path,
    name: &str,
    upstream: SocketAddr,
    admin: u16,
    redis: SocketAddr,
) -> PathBuf {
    let text = accounts_config()
        .replace("UPSTREAM", &upstream.to_string())
        .replace(
            "admin_addr = \"127.0.0.1:0\"",
            &format!("admin_addr = \"127.0.0.1:{admin}\""),
        )
        .replace(
            "leeway = \"0s\"",
            "leeway = \"0s\"\nmax_failures_per_account = 3",
        )
        // A table of its own, so it goes just before the next section.
        .replacen(
            "\n[issuer]",
            &format!("\n[auth.shared_limits]\nredis_url = \"redis://{redis}\"\n\n[issuer]"),
            1,
        );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn issue(gw: SocketAddr, scope: &str) -> String {
    let r = send(
        Request::post(format!(
            "http://{gw}/oauth/token?grant_type=client_credentials&scope={scope}"
        ))
        .header("authorization", basic("alice", ALICE_PASSWORD))
        .body(full(Bytes::new()))
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chartgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_lockout_and_each_others_tokens() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let redis = Redis::start();
    let dir = work_dir("replicas");
    let paths: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|name| shared_limits_config(&dir, name, up.addr, free_port(), redis.addr))
        .collect();
    let a = spawn_binary(&paths[0], &[("OLD", OLD_KEY)]).await;
    let b = spawn_binary(&paths[1], &[("OLD", OLD_KEY)]).await;

    // A token minted by one replica is accepted by the other.
    let token = issue(a.addr, "artifact-repository:org1/repo1:pull").await;
    let index = |gw: SocketAddr| format!("http://{gw}/org1/repo1/index.yaml");
    let r = get(&index(b.addr), Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Both publish the same keys, and the token verifies with them.
    let jwks_a = get(&format!("http://{}/.well-known/jwks.json", a.addr), None).await;
    let jwks_b = get(&format!("http://{}/.well-known/jwks.json", b.addr), None).await;
    assert_eq!(jwks_a.status, 200);
    assert_eq!(jwks_a.header("content-type"), "application/jwk-set+json");
    assert_eq!(jwks_a.text(), jwks_b.text());
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&jwks_a.body).unwrap();
    let (header, _) = decode_parts(&token);
    let jwk = set
        .find(header["kid"].as_str().unwrap())
        .expect("the signing key's kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["localhost:8080"]);
    jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("a JWKS consumer verifies the gateway's token");
    assert!(
        !jwks_a.text().contains("\"d\""),
        "private key material published"
    );

    // Three failures spread over both replicas lock alice out of both:
    // neither alone saw three.
    let wrong = basic("alice", "wrong");
    for gw in [a.addr, b.addr, a.addr] {
        assert_eq!(get(&index(gw), Some(&wrong)).await.status, 401);
    }
    let right = basic("alice", ALICE_PASSWORD);
    for gw in [a.addr, b.addr] {
        let r = get(&index(gw), Some(&right)).await;
        assert_eq!(r.status, 429, "{gw}: {}", r.text());
    }
    drop((a, b, redis));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_limits_fall_back_to_each_replica() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let redis = Redis::start();
    let dir = work_dir("fallback");
    let admin = free_port();
    let p = shared_limits_config(&dir, "a", up.addr, admin, redis.addr);
    let mut gw = spawn_binary(&p, &[("OLD", OLD_KEY)]).await;
    let index = format!("http://{}/org1/repo1/index.yaml", gw.addr);
    let (wrong, right) = (basic("alice", "wrong"), basic("alice", ALICE_PASSWORD));
    assert_eq!(get(&index, Some(&wrong)).await.status, 401);

    // Redis goes away: requests are still answered (bounded by one
    // command timeout, never a hang), and the replica's own limits hold.
    drop(redis);
    let answered = tokio::time::timeout(Duration::from_secs(10), get(&index, Some(&right)))
        .await
        .expect("a request hung on the missing Redis");
    assert_eq!(answered.status, 200);
    wait_for(&mut gw.lines, "using per-replica limits").await;
    for _ in 0..3 {
        assert_eq!(get(&index, Some(&wrong)).await.status, 401);
    }
    assert_eq!(get(&index, Some(&right)).await.status, 429);
    let metrics = get(&format!("http://127.0.0.1:{admin}/metrics"), None).await;
    let line = metrics
        .text()
        .lines()
        .find(|l| l.starts_with("chartgate_shared_limit_fallbacks_total"))
        .unwrap()
        .to_owned();
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The rotation runbook: (1) trust the next key everywhere, (2) sign with
/// it everywhere, keeping the old one trusted, (3) once no token signed by
/// the old key is in use, stop trusting it. Two replicas reload at each
/// step, one after the other, while four clients take tokens from one
/// replica and use them at the other, each token for up to 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_under_load_fails_no_request() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let dir = work_dir("rotation");
    let (old_private, old_public) = signing_pem().clone();
    let (next_private, next_public) = chartgate::auth::key::generate_rsa_pem().unwrap();
    for (name, pem) in [
        ("old.pem", &old_private),
        ("old.pub.pem", &old_public),
        ("next.pem", &next_private),
        ("next.pub.pem", &next_public),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let write = |signing: &str, trusted: &[&str]| {
        let trusted: Vec<String> = trusted
            .iter()
            .map(|f| {
                format!(
                    "{{ file = \"{}\", algorithm = \"RS256\" }}",
                    dir.join(f).display()
                )
            })
            .collect();
        let text = BASE_CONFIG
            .replace("UPSTREAM", &up.addr.to_string())
            .replace(
                "signing_key = { env = \"KEY\" }",
                &format!(
                    "signing_key = {{ file = \"{}\" }}",
                    dir.join(signing).display()
                ),
            )
            .replace(
                "leeway = \"0s\"",
                &format!("leeway = \"0s\"\ntrusted_keys = [{}]", trusted.join(", ")),
            );
        for name in ["a.toml", "b.toml"] {
            std::fs::write(dir.join(name), &text).unwrap();
        }
    };
    write("old.pem", &[]);
    let mut a = spawn_binary(&dir.join("a.toml"), &[]).await;
    let mut b = spawn_binary(&dir.join("b.toml"), &[]).await;
    let (gw_a, gw_b) = (a.addr, b.addr);

    let until = Instant::now() + Duration::from_secs(16);
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let kids = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let (ok, failed, kids) = (ok.clone(), failed.clone(), kids.clone());
            let (from, to) = if n % 2 == 0 {
                (gw_a, gw_b)
            } else {
                (gw_b, gw_a)
            };
            tokio::spawn(async move {
                while Instant::now() < until {
                    let token = token_at(from).await;
                    let (header, _) = decode_parts(&token);
                    kids.lock()
                        .unwrap()
                        .insert(header["kid"].as_str().unwrap().to_owned());
                    let held_until = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < held_until.min(until) {
                        let url = format!("http://{to}/org1/repo1/index.yaml");
                        let r = get(&url, Some(&format!("Bearer {token}"))).await;
                        let c = if r.status == 200 { &ok } else { &failed };
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    write("old.pem", &["next.pub.pem"]); // 1. trust the next key
    reload_both(&mut a, &mut b).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    write("next.pem", &["old.pub.pem"]); // 2. sign with it, still trusting the old one
    reload_both(&mut a, &mut b).await;
    // 3. Retire the old key once no client can hold a token it signed: the
    // longest a token is held (3 s here; token_ttl in production) plus margin.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let old_token = {
        let k = kids.lock().unwrap();
        assert_eq!(k.len(), 2, "tokens under both keys were used: {k:?}");
        k.clone()
    };
    write("next.pem", &[]);
    reload_both(&mut a, &mut b).await;
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("key rotation under load: {ok} requests answered 200, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 500, "too little load to mean anything: {ok}");
    // The old key is really retired: a token it signs is refused now.
    let stale = {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(old_private.as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        let old_kid = chartgate::auth::key::SigningKey::from_pem(
            old_private.as_bytes(),
            jsonwebtoken::Algorithm::RS256,
        )
        .unwrap()
        .kid;
        assert!(old_token.contains(&old_kid));
        h.kid = Some(old_kid);
        let now = chartgate::auth::token::unix_now();
        let claims = serde_json::json!({"iss": "chartgate", "aud": "localhost:8080", "sub": "x",
            "iat": now, "exp": now + 60,
            "access": [{"type": "artifact-repository", "name": "org1/repo1", "actions": ["pull"]}]});
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    };
    let url = format!("http://{gw_a}/org1/repo1/index.yaml");
    assert_eq!(
        get(&url, Some(&format!("Bearer {stale}"))).await.status,
        401
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One runbook step: SIGHUP to `a`, then to `b` once `a` has reloaded, as
/// a rolling change across a fleet would go.
async fn reload_both(a: &mut Binary, b: &mut Binary) {
    hup(a.child.id());
    wait_for(&mut a.lines, "configuration reloaded").await;
    hup(b.child.id());
    wait_for(&mut b.lines, "configuration reloaded").await;
}

/// A token from `gw`'s issuer with the master key.
async fn token_at(gw: SocketAddr) -> String {
    let r = send(
        Request::post(format!(
            "http://{gw}/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull"
        ))
        .header("authorization", format!("Bearer {MASTER_KEY}"))
        .body(full(Bytes::new()))
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// A single-use id token exchanged at one replica is spent at all of
/// them: the spent `jti` lives in the shared Redis. With Redis gone, each
/// replica still refuses what it has seen itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_id_token_is_spent_across_replicas() {
    use crate::oidc_provider::OidcProvider;
    use crate::trusted::{trust_config, AUD};
    let redis = Redis::start();
    let idp = OidcProvider::start().await;
    let upstream = spawn_upstream(Behaviour::Normal).await;
    let text = trust_config(&idp).replacen(
        "\n[issuer]",
        &format!(
            "\n[auth.shared_limits]\nredis_url = \"redis://{}\"\n\n[issuer]",
            redis.addr
        ),
        1,
    );
    let a = spawn_gateway(config(&text, upstream.addr)).await;
    let b = spawn_gateway(config(&text, upstream.addr)).await;
    let scope = "artifact-repository:org1/repo1:pull";
    let token = idp.mint(&idp.gitlab_claims(AUD, None));
    assert_eq!(exchange(&a, &token, scope).await.status, 200);
    let replayed = exchange(&b, &token, scope).await;
    assert_eq!(replayed.status, 400, "{}", replayed.text());
    assert!(
        replayed.text().contains("already exchanged"),
        "{}",
        replayed.text()
    );
    // Another token of the same job is new everywhere.
    let other = idp.mint(&idp.gitlab_claims(AUD, None));
    assert_eq!(exchange(&b, &other, scope).await.status, 200);
    // Redis gone: each replica falls back to what it spent itself.
    drop(redis);
    assert_eq!(exchange(&b, &other, scope).await.status, 400);
    let third = idp.mint(&idp.gitlab_claims(AUD, None));
    assert_eq!(exchange(&a, &third, scope).await.status, 200);
    assert_eq!(exchange(&a, &third, scope).await.status, 400);
}
