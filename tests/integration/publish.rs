//! Publish rules over HTTP with an in-process upstream that records what
//! reaches it: a rule's `charts` on raw and form uploads (chunked, as
//! helm-push sends them), on deletes and in minted tokens; uploads whose
//! chart cannot be read; a form that contradicts itself after it was let
//! through; and the immutable repository's checks that need no stored
//! chart. tests/e2e/publish.rs runs the same rules against the real
//! ChartMuseum.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Request;

use crate::common::*;

const BILLING_KEY: &str = "cgk_billing-ci-key-0123456789";

fn digest(key: &str) -> String {
    use aws_lc_rs::digest;
    let d = digest::digest(&digest::SHA256, key.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn publish_config(upstream: std::net::SocketAddr) -> chartgate::Config {
    let text = BASE_CONFIG.to_owned()
        + &format!(
            r#"
[[accounts]]
id = "billing-ci"
secret_hash = "sha256:{}"
rules = [{{ repos = "org1/*", actions = ["pull", "push"], charts = ["billing", "billing-*"] }}]

[publish]
immutable = ["org1/stable"]
"#,
            digest(BILLING_KEY)
        );
    config(&text, upstream)
}

/// A gzipped chart archive of `files`.
fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn chart(name: &str, version: &str) -> Vec<u8> {
    let meta = format!("apiVersion: v2\nname: {name}\nversion: {version}\n");
    tgz(&[
        (&format!("{name}/Chart.yaml"), &meta),
        (&format!("{name}/values.yaml"), "replicas: 1\n"),
    ])
}

/// A form as helm-push writes it: one part per `(field, file, bytes)`.
fn form(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend_from_slice(format!("--b0und\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--b0und--\r\n");
    body
}

/// `body` sent chunked (no Content-Length) in 1 KiB frames.
fn chunked(body: &[u8]) -> TestBody {
    let frames: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> = body
        .chunks(1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

async fn push(gw: &Gw, repo: &str, auth: &str, body: &[u8], form: bool) -> Reply {
    let mut b = Request::post(gw.url(&format!("/api/{repo}/charts"))).header("authorization", auth);
    if form {
        b = b.header("content-type", "multipart/form-data; boundary=b0und");
    }
    send(b.body(chunked(body)).unwrap()).await
}

fn key(k: &str) -> String {
    format!("Bearer {k}")
}

/// The uploads the upstream received, whole.
fn uploads(up: &Upstream) -> Vec<Recorded> {
    up.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == hyper::Method::POST)
        .cloned()
        .collect()
}

/// The parts of a recorded form upload, as a form parser reads them.
async fn parts_of(r: &Recorded) -> Vec<(String, Bytes)> {
    let ct = r.headers["content-type"].to_str().unwrap();
    let boundary = multer::parse_boundary(ct).unwrap();
    let body = r.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = form.next_field().await.unwrap() {
        let name = field.name().unwrap().to_owned();
        out.push((name, field.bytes().await.unwrap()));
    }
    out
}

#[tokio::test]
async fn a_rule_naming_charts_lets_only_those_through() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(publish_config(up.addr)).await;
    let auth = key(BILLING_KEY);

    // Raw archives: the body reaches the upstream byte for byte.
    let billing = chart("billing", "1.0.0");
    let r = push(&gw, "org1/repo1", &auth, &billing, false).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        uploads(&up)[0].body == billing,
        "the archive changed on its way"
    );
    assert!(!uploads(&up)[0].headers.contains_key("content-length"));

    // A form with a temporary file name, as helm-push sends it: re-encoded,
    // the archive itself unchanged.
    let api = chart("billing-api", "0.2.0");
    let body = form(&[("chart", "/tmp/helm-push-88/chart.tgz", &api)]);
    let r = push(&gw, "org1/repo1", &auth, &body, true).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let parts = parts_of(&uploads(&up)[1]).await;
    assert_eq!(parts.len(), 1);
    assert!(parts[0].0 == "chart" && parts[0].1 == api);

    // Another chart, under a well-formed file name of an allowed one: the
    // archive decides, and nothing is forwarded.
    let other = chart("other", "1.0.0");
    let body = form(&[("chart", "billing-1.0.0.tgz", &other)]);
    for (bytes, is_form) in [(other.clone(), false), (body, true)] {
        let r = push(&gw, "org1/repo1", &auth, &bytes, is_form).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(
            r.json()["error"],
            "chart \"other\" may not be pushed to org1/repo1"
        );
    }
    assert_eq!(
        uploads(&up).len(),
        2,
        "a refused upload reached the upstream"
    );

    // The master account's rule names no charts: its upload streams through.
    let r = push(&gw, "org1/repo1", &key(MASTER_KEY), &other, false).await;
    assert_eq!(r.status, 201);
    assert_eq!(uploads(&up).len(), 3);
}

#[tokio::test]
async fn an_upload_whose_chart_cannot_be_read_is_refused_unforwarded() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(publish_config(up.addr)).await;
    let auth = key(BILLING_KEY);
    let no_chart_yaml = tgz(&[("billing/values.yaml", "a: 1\n")]);
    let cases: [(&[u8], bool, &str); 4] = [
        (b"not a chart", false, "not a gzipped tar"),
        (&no_chart_yaml, false, "no <chart>/Chart.yaml"),
        (
            &form(&[("package", "billing-1.0.0.tgz", &chart("billing", "1.0.0"))]),
            true,
            "form field \"package\"",
        ),
        (
            &form(&[
                ("chart", "a.tgz", &chart("billing", "1.0.0")),
                ("chart", "b.tgz", &chart("billing", "1.0.0")),
            ]),
            true,
            "sent twice",
        ),
    ];
    for (body, is_form, why) in cases {
        let r = push(&gw, "org1/repo1", &auth, body, is_form).await;
        assert_eq!(r.status, 400, "{}", r.text());
        let error = r.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(why), "{error}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn a_form_that_names_a_second_chart_never_completes_upstream() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(publish_config(up.addr)).await;
    let prov = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nname: other\nversion: 1.0.0\n";
    let body = form(&[
        ("chart", "/tmp/x", &chart("billing", "1.0.0")),
        ("prov", "/tmp/x.prov", prov.as_bytes()),
    ]);
    let r = push(&gw, "org1/repo1", &key(BILLING_KEY), &body, true).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["error"],
        "the upload names two charts, billing-1.0.0 and other-1.0.0"
    );
    up.wait_started(1).await;
    for _ in 0..100 {
        if up.hits() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        uploads(&up).iter().all(|r| &r.body[..] == b"<aborted>"),
        "the upstream read a whole body"
    );
}

#[tokio::test]
async fn tokens_carry_the_rules_charts_and_are_held_to_them() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(publish_config(up.addr)).await;
    let r = send(
        Request::post(gw.url(
            "/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull,push",
        ))
        .header("authorization", key(BILLING_KEY))
        .body(full(Bytes::new()))
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let (_, claims) = decode_parts(&token);
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "artifact-repository", "name": "org1/repo1",
            "actions": ["pull", "push"], "charts": ["billing", "billing-*"]}])
    );
    let auth = format!("Bearer {token}");
    let r = push(&gw, "org1/repo1", &auth, &chart("other", "1.0.0"), false).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = push(&gw, "org1/repo1", &auth, &chart("billing", "1.0.0"), false).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Deletes are pushes: held to the same charts.
    let delete = |path: &str| {
        Request::delete(gw.url(path))
            .header("authorization", &auth)
            .body(full(Bytes::new()))
            .unwrap()
    };
    let r = send(delete("/api/org1/repo1/charts/other/1.0.0")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = send(delete("/api/org1/repo1/charts/billing/1.0.0")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let deletes = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == hyper::Method::DELETE)
        .count();
    assert_eq!(deletes, 1);
}

#[tokio::test]
async fn an_immutable_repository_checks_before_it_forwards() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(publish_config(up.addr)).await;
    let auth = key(MASTER_KEY);
    // Released versions stay; pre-releases may go.
    let delete = |path: &str| {
        Request::delete(gw.url(path))
            .header("authorization", &auth)
            .body(full(Bytes::new()))
            .unwrap()
    };
    let r = send(delete("/api/org1/stable/charts/app/1.0.0")).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json()["error"],
        "chart version app-1.0.0 is immutable in org1/stable"
    );
    assert_eq!(up.hits(), 0);
    let r = send(delete("/api/org1/stable/charts/app/1.1.0-rc.1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // An upload asks ChartMuseum's storage for the version first.
    let r = push(&gw, "org1/stable", &auth, &chart("app", "1.0.0"), false).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let seen: Vec<String> = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert_eq!(
        seen[1..],
        [
            "GET /org1/stable/charts/app-1.0.0.tgz",
            "POST /api/org1/stable/charts"
        ]
    );
}
