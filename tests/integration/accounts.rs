//! Accounts and rules over HTTP: the issuer's intersection and its Docker
//! and password-grant forms, every proxy credential form, anonymous pull,
//! expiry, and the offline `chartgate token` command.

use bytes::Bytes;
use hyper::Request;

use crate::common::*;

async fn setup_accounts() -> (Upstream, Gw) {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(accounts_gateway_config(up.addr)).await;
    (up, gw)
}

async fn issue(
    gw: &Gw,
    method: &str,
    query: &str,
    auth: Option<&str>,
    form: Option<&str>,
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(gw.url(&format!("/oauth/token?{query}")));
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let body = match form {
        Some(f) => {
            b = b.header("content-type", "application/x-www-form-urlencoded");
            Bytes::from(f.to_owned())
        }
        None => Bytes::new(),
    };
    send(b.body(full(body)).unwrap()).await
}

#[tokio::test]
async fn the_issuer_grants_the_intersection() {
    let (_up, gw) = setup_accounts().await;
    let q = "grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull,push&scope=artifact-repository:org2/repo2:pull,push&scope=artifact-repository:org1/secret:pull&scope=artifact-repository:org3/x/y:pull";
    // org3/x/y has the wrong depth: an invalid scope, refused outright.
    let r = issue(&gw, "POST", q, Some(&basic("alice", ALICE_PASSWORD)), None).await;
    assert_eq!(r.status, 400);
    let q = q.replace("&scope=artifact-repository:org3/x/y:pull", "");
    let r = issue(&gw, "POST", &q, Some(&basic("alice", ALICE_PASSWORD)), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["scope"],
        "artifact-repository:org1/repo1:pull,push artifact-repository:org2/repo2:pull"
    );
    let (_, claims) = decode_parts(r.json()["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["access"].as_array().unwrap().len(), 2);

    // Asking for nothing allowed is still a 200, with nothing granted.
    let r = issue(
        &gw,
        "POST",
        "grant_type=client_credentials&scope=artifact-repository:org9/repo9:push",
        Some(&format!("Bearer {CI_KEY}")),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["scope"], "");
}

#[tokio::test]
async fn docker_get_form_and_password_grant() {
    let (_up, gw) = setup_accounts().await;
    let r = issue(
        &gw,
        "GET",
        "service=localhost:8080&scope=artifact-repository:org1/repo1:pull&scope=artifact-repository:org1/repo2:push&account=alice",
        Some(&basic("alice", ALICE_PASSWORD)),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["token"], r.json()["access_token"]);
    assert_eq!(
        r.json()["scope"],
        "artifact-repository:org1/repo1:pull artifact-repository:org1/repo2:push"
    );
    assert!(r.json()["issued_at"].as_str().unwrap().ends_with('Z'));

    let r = issue(
        &gw,
        "POST",
        "",
        None,
        Some("grant_type=password&username=alice&password=alice+correct+horse&scope=artifact-repository%3Aorg1%2Frepo1%3Apull"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["scope"], "artifact-repository:org1/repo1:pull");

    for (query, auth, form, status) in [
        (
            "",
            None,
            Some("grant_type=password&username=alice&password=wrong"),
            401,
        ),
        ("", None, Some("grant_type=password&username=alice"), 400),
        (
            "password=x&grant_type=password",
            None,
            Some("username=alice"),
            400,
        ),
        ("scope=artifact-repository:org1/repo1:pull", None, None, 401),
    ] {
        let method = if form.is_some() { "POST" } else { "GET" };
        let r = issue(&gw, method, query, auth, form).await;
        assert_eq!(r.status, status, "{query} {form:?}: {}", r.text());
    }
}

#[tokio::test]
async fn expired_accounts_are_refused_everywhere() {
    let (up, gw) = setup_accounts().await;
    let key = OLD_KEY;
    let r = issue(
        &gw,
        "POST",
        "grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull",
        Some(&format!("Bearer {key}")),
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    for auth in [format!("Bearer {key}"), basic("old", key)] {
        let r = get(&gw.url("/org1/repo1/index.yaml"), Some(&auth)).await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn proxy_credentials_follow_the_rules() {
    let (up, gw) = setup_accounts().await;
    let alice = basic("alice", ALICE_PASSWORD);
    let cases: Vec<(&str, &str, Option<String>, u16)> = vec![
        ("GET", "/org1/repo1/index.yaml", Some(alice.clone()), 200),
        ("POST", "/api/org1/repo1/charts", Some(alice.clone()), 201),
        ("GET", "/org2/repo2/index.yaml", Some(alice.clone()), 200),
        ("POST", "/api/org2/repo2/charts", Some(alice.clone()), 401),
        ("GET", "/org1/secret/index.yaml", Some(alice.clone()), 401),
        (
            "GET",
            "/org1/repo1/index.yaml",
            Some(basic("alice", "wrong")),
            401,
        ),
        (
            "GET",
            "/org2/repo2/index.yaml",
            Some(format!("Bearer {CI_KEY}")),
            200,
        ),
        (
            "GET",
            "/org2/repo2/index.yaml",
            Some(basic("ci", CI_KEY)),
            200,
        ),
        (
            "GET",
            "/org1/repo1/index.yaml",
            Some(format!("Bearer {CI_KEY}")),
            401,
        ),
        ("GET", "/public/charts/index.yaml", None, 200),
        ("POST", "/api/public/charts/charts", None, 401),
        (
            "GET",
            "/public/charts/index.yaml",
            Some(basic("alice", "wrong")),
            401,
        ),
        (
            "GET",
            "/public/charts/index.yaml",
            Some("Bearer cgk_unknown-unknown-123".into()),
            401,
        ),
        ("GET", "/org1/repo1/index.yaml", None, 401),
    ];
    let mut forwarded = 0;
    for (method, path, auth, status) in cases {
        let mut b = Request::builder().method(method).uri(gw.url(path));
        if let Some(a) = &auth {
            b = b.header("authorization", a);
        }
        let r = send(b.body(full(Bytes::new())).unwrap()).await;
        assert_eq!(r.status, status, "{method} {path} {auth:?}");
        if status != 401 {
            forwarded += 1;
        }
    }
    assert_eq!(
        up.hits(),
        forwarded,
        "a denied request reached the upstream"
    );
}

#[tokio::test]
async fn tokens_work_as_bearer_raw_header_and_basic_password() {
    let (up, gw) = setup_accounts().await;
    let r = issue(
        &gw,
        "POST",
        "grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull",
        Some(&basic("alice", ALICE_PASSWORD)),
        None,
    )
    .await;
    let token = r.json()["token"].as_str().unwrap().to_owned();
    for (name, value) in [
        ("authorization", format!("Bearer {token}")),
        ("x-chartgate-token", token.clone()),
        ("authorization", basic("ci-job", &token)),
    ] {
        let req = Request::get(gw.url("/org1/repo1/index.yaml"))
            .header(name, &value)
            .body(full(Bytes::new()))
            .unwrap();
        let r = send(req).await;
        assert_eq!(r.status, 200, "{name}");
        let seen = up.last();
        assert!(
            seen.headers.get("x-chartgate-token").is_none(),
            "raw token forwarded"
        );
        assert!(seen.headers.get("authorization").is_none());
    }
    // Both at once is ambiguous.
    let req = Request::get(gw.url("/org1/repo1/index.yaml"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-chartgate-token", &token)
        .body(full(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.status, 400);
}

#[tokio::test]
async fn the_offline_token_command_mints_what_the_gateway_accepts() {
    let (_up, gw) = setup_accounts().await;
    let dir = std::env::temp_dir().join(format!("chartgate-token-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    std::fs::write(&path, accounts_config().replace("UPSTREAM", "127.0.0.1:1")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chartgate"))
        .args([
            "token",
            "--account",
            "alice",
            "--scope",
            "artifact-repository:org1/repo1:pull,push",
            "--scope",
            "artifact-repository:org1/secret:pull",
            "--ttl",
            "10m",
            "--config",
        ])
        .arg(&path)
        .env("KEY", &signing_pem().0)
        .env("MASTER", MASTER_KEY)
        .env("OLD", OLD_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (_, claims) = decode_parts(&token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert_eq!(
        claims["access"].as_array().unwrap().len(),
        1,
        "org1/secret must not be granted"
    );
    let r = get(
        &gw.url("/org1/repo1/index.yaml"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(r.status, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}
