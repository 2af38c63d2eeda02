//! The seed walkthrough against the real ChartMuseum: the challenge, the
//! token and the index (steps 1-3), the same token accepted by ChartMuseum's
//! own `--bearer-auth` mode, a chunked multipart push pulled back
//! byte-identical, and each denial answered by the gateway while
//! ChartMuseum's request log proves it never saw the request.

use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use hyper::Request;

use crate::chartmuseum::{ChartMuseum, Options};
use crate::common::*;
use crate::helm::{blocking, Helm};
use crate::tokens;

const REALM: &str = "http://localhost:8080/oauth/token";
const SERVICE: &str = "localhost:8080";

/// A GET with `auth` and a request id of the test's choosing.
async fn get_with_id(url: &str, auth: Option<&str>, id: &str) -> Reply {
    let mut b = Request::get(url).header("x-request-id", id);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    send(b.body(full(Bytes::new())).unwrap()).await
}

/// `curl` uploading `file` as the multipart `chart` field, chunked (as
/// helm-push sends it); returns (status, body).
fn curl_push(url: &str, auth: &str, file: &std::path::Path, id: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            "Transfer-Encoding: chunked",
        ])
        .args(["-H", &format!("Authorization: {auth}")])
        .args(["-H", &format!("X-Request-Id: {id}")])
        .arg("-F")
        .arg(format!("chart=@{}", file.display()))
        .arg(url)
        .output()
        .expect("curl is needed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_walkthrough_against_the_real_chartmuseum() {
    let work = std::env::temp_dir().join(format!("chartgate-e2e-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let helm = Helm::new(3, work.join("helm"));
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for version in ["0.1.0", "0.2.0"] {
        let chart = src.join("mychart");
        if !chart.exists() {
            helm.ok(&["create", chart.to_str().unwrap()], &[]);
        }
        helm.ok(
            &["package", chart.to_str().unwrap(), "--version", version],
            &[],
        );
    }
    let storage = work.join("storage");
    std::fs::create_dir_all(storage.join("org1/repo1")).unwrap();
    let v1 = helm.home().join("mychart-0.1.0.tgz");
    let v2 = helm.home().join("mychart-0.2.0.tgz");
    std::fs::copy(&v1, storage.join("org1/repo1/mychart-0.1.0.tgz")).unwrap();

    let public_key = work.join("chartgate.pub.pem");
    std::fs::write(&public_key, &signing_pem().1).unwrap();
    let (st, st2) = (storage.clone(), storage.clone());
    let cm = Arc::new(
        blocking(move || {
            let depth2 = Options {
                depth: 2,
                ..Options::default()
            };
            ChartMuseum::start(&depth2, &st, &st.with_extension("open.log"))
        })
        .await,
    );
    let bearer_cm = Arc::new(
        blocking(move || {
            let bearer = Options {
                depth: 2,
                bearer: Some((REALM.into(), SERVICE.into(), public_key)),
                ..Options::default()
            };
            ChartMuseum::start(&bearer, &st2, &st2.with_extension("bearer.log"))
        })
        .await,
    );
    let gw = spawn_gateway(config(BASE_CONFIG, cm.addr)).await;

    // (a) 1. No token: ChartMuseum's own challenge, byte for byte.
    let r = get_with_id(&gw.url("/org1/repo1/index.yaml"), None, "walk-1").await;
    assert_eq!(r.status, 401);
    let challenge = format!(
        "Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"artifact-repository:org1/repo1:pull\""
    );
    assert_eq!(r.header("www-authenticate"), challenge);
    assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
    assert_eq!(r.text(), "{\"error\":\"unauthorized\"}");
    // ... and the same bytes from ChartMuseum's bearer mode.
    let direct = get(&format!("{}/org1/repo1/index.yaml", bearer_cm.url()), None).await;
    assert_eq!(direct.status, 401);
    assert_eq!(direct.header("www-authenticate"), challenge);
    assert_eq!(direct.text(), r.text());

    // 2. The token for the scope the challenge named, with the seed's call.
    let pull = token(&gw, "artifact-repository:org1/repo1:pull").await;
    let (header, claims) = decode_parts(&pull);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "chartgate");
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["sub"], "master");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "artifact-repository", "name": "org1/repo1", "actions": ["pull"]}])
    );

    // 3. The retry: ChartMuseum's index, listing the stored chart.
    let bearer = format!("Bearer {pull}");
    let r = get_with_id(&gw.url("/org1/repo1/index.yaml"), Some(&bearer), "walk-3").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("mychart") && r.text().contains("version: 0.1.0"),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("charts/mychart-0.1.0.tgz"),
        "{}",
        r.text()
    );

    // (b) ChartMuseum's own bearer mode accepts the gateway's token, for
    // exactly its scope.
    let direct = get(
        &format!("{}/org1/repo1/index.yaml", bearer_cm.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(direct.status, 200, "{}", direct.text());
    assert!(direct.text().contains("version: 0.1.0"));
    let direct = get(
        &format!("{}/org2/repo2/index.yaml", bearer_cm.url()),
        Some(&bearer),
    )
    .await;
    assert_eq!(direct.status, 401);

    // (c) A chunked multipart push with a push token, pulled back
    // byte-identical.
    let push = token(&gw, "artifact-repository:org1/repo1:pull,push").await;
    let push_auth = format!("Bearer {push}");
    let (url, v2c) = (gw.url("/api/org1/repo1/charts"), v2.clone());
    let pa = push_auth.clone();
    let (status, body) = blocking(move || curl_push(&url, &pa, &v2c, "walk-push")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, "{\"saved\":true}");
    let r = get(
        &gw.url("/org1/repo1/charts/mychart-0.2.0.tgz"),
        Some(&push_auth),
    )
    .await;
    assert_eq!(r.status, 200);
    let sent = std::fs::read(&v2).unwrap();
    assert!(r.body.as_ref() == sent.as_slice(), "pulled bytes differ");
    assert_eq!(
        std::fs::read(cm.stored("org1/repo1", "mychart-0.2.0.tgz")).unwrap(),
        sent
    );

    // (d) Denials, each answered by the gateway alone.
    let denials = denials(&gw, &pull, &push).await;
    let cm2 = cm.clone();
    blocking(move || cm2.sync()).await;
    let served = cm.served();
    for (id, status) in [("walk-3", 200), ("walk-push", 201)] {
        assert!(
            served
                .iter()
                .any(|s| s.request_id == id && s.status == status),
            "ChartMuseum's log lacks {id}: the test would prove nothing\n{}",
            cm.log_tail()
        );
    }
    for id in denials.iter().chain(["walk-1".to_owned()].iter()) {
        assert!(
            !served.iter().any(|s| &s.request_id == id),
            "{id} reached ChartMuseum:\n{}",
            cm.log_tail()
        );
    }
    drop((cm, bearer_cm));
    std::fs::remove_dir_all(&work).unwrap();
}

/// Sends each denial case through the gateway, asserts its 401 and
/// challenge, and returns the request ids used.
async fn denials(gw: &Gw, pull: &str, push: &str) -> Vec<String> {
    let cases = [
        ("no-token", "GET", "/org1/repo1/index.yaml", None, "pull"),
        (
            "bad-signature",
            "GET",
            "/org1/repo1/index.yaml",
            Some(tokens::bad_signature(pull)),
            "pull",
        ),
        (
            "expired",
            "GET",
            "/org1/repo1/index.yaml",
            Some(tokens::expired(pull)),
            "pull",
        ),
        (
            "pull-token-pushing",
            "POST",
            "/api/org1/repo1/charts",
            Some(pull.to_owned()),
            "push",
        ),
        (
            "pull-token-deleting",
            "DELETE",
            "/api/org1/repo1/charts/mychart/0.1.0",
            Some(pull.to_owned()),
            "push",
        ),
        (
            "other-tenant",
            "GET",
            "/org2/repo2/index.yaml",
            Some(push.to_owned()),
            "pull",
        ),
    ];
    let mut ids = Vec::new();
    for (name, method, path, token, action) in cases {
        let id = format!("walk-deny-{name}");
        let mut b = Request::builder()
            .method(method)
            .uri(gw.url(path))
            .header("x-request-id", &id);
        if let Some(t) = &token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let r = send(b.body(full(Bytes::from_static(b"not a chart"))).unwrap()).await;
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        let repo = path
            .trim_start_matches("/api")
            .split('/')
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join("/");
        assert!(
            r.header("www-authenticate")
                .ends_with(&format!("scope=\"artifact-repository:{repo}:{action}\"")),
            "{name}: {}",
            r.header("www-authenticate")
        );
        ids.push(id);
    }
    ids
}
