//! The OCI distribution API as the registry bridge serves it, spoken in raw
//! HTTP against the real ChartMuseum v0.16.5 behind an in-process gateway.
//! Helm and ORAS (tests/e2e/oci.rs) only show what those clients happen to
//! send; this file pins the wire itself: challenges and scopes, the upload
//! protocol, the manifest checks that keep anything but a matching Helm
//! chart out of ChartMuseum (its request log proving no upload), derived
//! pulls, tag pagination, tenant isolation and the audit trail of publishes.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hyper::{Method, Request};
use serde_json::{json, Value};

use crate::audit::audit_until;
use crate::chartmuseum::{ChartMuseum, Options};
use crate::common::*;
use crate::helm::Helm;

const CHART: &str = "org1/repo1/mychart";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
const IMAGE_CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const CHART_LAYER_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const REALM: &str = "http://localhost:8080/oauth/token";
const SERVICE: &str = "localhost:8080";

/// Runs blocking work (a child process, a log poll) off the runtime's
/// scheduling, so the in-process gateway keeps serving.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn sha256(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One ChartMuseum, one gateway with `[oci]` and `[audit]` in front of it,
/// and a Helm to package charts, all in a directory of the test's own.
struct Site {
    cm: ChartMuseum,
    gw: Gw,
    text: String,
    audit: PathBuf,
    helm: Helm,
}

impl Site {
    async fn start(label: &str) -> Site {
        let work = std::env::temp_dir().join(format!(
            "chartgate-e2e-registry-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let storage = work.join("storage");
        let depth2 = Options {
            depth: 2,
            ..Options::default()
        };
        let cm = blocking(|| ChartMuseum::start(&depth2, &storage, &storage.with_extension("log")));
        let audit = work.join("audit.jsonl");
        let text = format!(
            "{}\n[oci]\nstaging_dir = \"{}\"\n\n[audit]\nfile = \"{}\"\n",
            accounts_config(),
            work.join("staging").display(),
            audit.display()
        );
        let gw = spawn_gateway(config(&text, cm.addr)).await;
        let helm = Helm::new(3, work.join("helm"));
        Site {
            cm,
            gw,
            text,
            audit,
            helm,
        }
    }

    /// `/v2/<name>/<rest>` on the gateway.
    fn v2(&self, name: &str, rest: &str) -> String {
        self.gw.url(&format!("/v2/{name}/{rest}"))
    }

    /// `helm create` (once per chart) and `helm package` at `version`: the
    /// archive's bytes.
    fn package(&self, chart: &str, version: &str) -> Vec<u8> {
        blocking(|| {
            let dir = self.helm.home().join("src");
            std::fs::create_dir_all(&dir).unwrap();
            let src = dir.join(chart);
            if !src.exists() {
                self.helm.ok(&["create", src.to_str().unwrap()], &[]);
            }
            let (s, d) = (src.to_str().unwrap(), dir.to_str().unwrap());
            self.helm
                .ok(&["package", s, "--version", version, "-d", d], &[]);
            std::fs::read(dir.join(format!("{chart}-{version}.tgz"))).unwrap()
        })
    }

    /// Uploads into ChartMuseum's `org1/repo1`, as its request log tells.
    fn uploads(&self) -> Vec<crate::chartmuseum::Served> {
        blocking(|| {
            self.cm.sync();
            self.cm
                .served()
                .into_iter()
                .filter(|s| s.method == "POST" && s.path.starts_with("/api/org1/repo1/"))
                .collect()
        })
    }

    /// Seeds `archive` straight into ChartMuseum's API, as an operator would.
    async fn seed(&self, archive: &[u8]) {
        let url = format!("{}/api/org1/repo1/charts", self.cm.url());
        let r = call(Method::POST, &url, None, &[], archive.to_vec()).await;
        assert_eq!(r.status, 201, "seeding: {}", said(&r));
    }

    /// The stored archive `file` of `org1/repo1`.
    fn stored(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.cm.stored("org1/repo1", file)).unwrap()
    }
}

async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut b = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(full(body)).unwrap()).await
}

/// A token from the issuer's Docker form (`GET ?service=&scope=` with
/// Basic credentials), granting exactly `scope`.
async fn docker_token(site: &Site, scope: &str) -> String {
    let url = site
        .gw
        .url(&format!("/oauth/token?service={SERVICE}&scope={scope}"));
    let r = get(&url, Some(&basic("alice", ALICE_PASSWORD))).await;
    assert_eq!(r.status, 200, "token for {scope}: {}", said(&r));
    assert_eq!(r.json()["scope"], scope, "granted: {}", said(&r));
    r.json()["token"].as_str().unwrap().to_owned()
}

/// A reply's body for a failure message (blobs need not be UTF-8).
fn said(r: &Reply) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&r.body)
}

/// A registry error: its status, the OCI body's code, the API version.
fn assert_oci(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", said(r));
    let body = r.json();
    let errors = body["errors"].as_array().expect("an OCI errors array");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["code"], code, "{body}");
    assert!(errors[0]["message"].is_string(), "{body}");
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
}

fn challenge(scope: Option<&str>) -> String {
    match scope {
        Some(s) => format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"{s}\""),
        None => format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\""),
    }
}

fn config_blob(name: &str, version: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"name": name, "version": version, "apiVersion": "v2"})).unwrap()
}

/// A manifest with `config` as its config blob (of `config_type`) and
/// `chart` as its one chart layer.
fn manifest(config_type: &str, config: &[u8], chart: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": config_type, "digest": sha256(config), "size": config.len()},
        "layers": [{"mediaType": CHART_LAYER_TYPE, "digest": sha256(chart), "size": chart.len()}],
    }))
    .unwrap()
}

/// A monolithic upload of `bytes` to `name`: 201 with its location and digest.
async fn upload(site: &Site, name: &str, token: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let url = site.v2(name, &format!("blobs/uploads/?digest={digest}"));
    let r = call(Method::POST, &url, Some(token), &[], bytes.to_vec()).await;
    assert_eq!(r.status, 201, "{}", said(&r));
    assert_eq!(r.header("location"), format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest);
    digest
}

async fn put_manifest(
    site: &Site,
    token: &str,
    reference: &str,
    content_type: &str,
    bytes: &[u8],
) -> Reply {
    put_manifest_to(site, CHART, token, reference, content_type, bytes).await
}

async fn put_manifest_to(
    site: &Site,
    name: &str,
    token: &str,
    reference: &str,
    content_type: &str,
    bytes: &[u8],
) -> Reply {
    let url = site.v2(name, &format!("manifests/{reference}"));
    let headers = [("content-type", content_type)];
    call(Method::PUT, &url, Some(token), &headers, bytes.to_vec()).await
}

/// The audit events in `file` once the one of request `id` is written.
/// Every event of an earlier request is written before it.
fn audit_through(file: &Path, id: &str) -> Vec<Value> {
    let events = audit_until(file, |e| e.iter().any(|e| e["request_id"] == id));
    assert!(
        events.iter().any(|e| e["request_id"] == id),
        "no audit event for {id}: {events:?}"
    );
    events
}

fn pushes(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["action"] == "push").collect()
}

// === 1, 2: the base check, the catalog, challenges ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_check_challenges_and_the_catalog_is_never_served() {
    let site = Site::start("base").await;
    let base = site.gw.url("/v2/");
    let r = get(&base, None).await;
    assert_oci(&r, 401, "UNAUTHORIZED");
    assert_eq!(r.header("www-authenticate"), challenge(None));
    let wrong = get(&base, Some(&basic("alice", "wrong"))).await;
    assert_oci(&wrong, 401, "UNAUTHORIZED");

    let token = docker_token(&site, &format!("repository:{CHART}:pull")).await;
    let auth = format!("Bearer {token}");
    let r = get(&base, Some(&auth)).await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(r.json(), json!({}));
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");

    for auth in [None, Some(auth.as_str())] {
        let r = get(&site.gw.url("/v2/_catalog"), auth).await;
        assert_oci(&r, 404, "NAME_UNKNOWN");
    }
    requests_without_a_token_are_challenged_for_their_scope(&site).await;
}

async fn requests_without_a_token_are_challenged_for_their_scope(site: &Site) {
    let pull = format!("repository:{CHART}:pull");
    let blob = format!("blobs/{}", sha256(b"x"));
    for rest in ["manifests/0.1.0", blob.as_str(), "tags/list"] {
        let r = get(&site.v2(CHART, rest), None).await;
        assert_oci(&r, 401, "UNAUTHORIZED");
        assert_eq!(
            r.header("www-authenticate"),
            challenge(Some(&pull)),
            "{rest}"
        );
    }
    let url = site.v2(CHART, "blobs/uploads/");
    let r = call(Method::POST, &url, None, &[], Bytes::new()).await;
    assert_oci(&r, 401, "UNAUTHORIZED");
    let push = format!("repository:{CHART}:pull,push");
    assert_eq!(r.header("www-authenticate"), challenge(Some(&push)));
    // A pull token does not push either.
    let token = docker_token(site, &pull).await;
    let r = call(Method::POST, &url, Some(&token), &[], Bytes::new()).await;
    assert_oci(&r, 401, "UNAUTHORIZED");
    assert_eq!(r.header("www-authenticate"), challenge(Some(&push)));
}

// === 3: blob uploads ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_uploads_monolithic_chunked_mounted_and_cancelled() {
    let site = Site::start("uploads").await;
    let token = docker_token(&site, &format!("repository:{CHART}:pull,push")).await;
    let digest = upload(&site, CHART, &token, b"monolithic").await;
    let r = get(
        &site.v2(CHART, &format!("blobs/{digest}")),
        Some(&bearer(&token)),
    )
    .await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"monolithic"[..]));
    assert_eq!(r.header("docker-content-digest"), digest);

    chunked_upload(&site, &token).await;
    wrong_digest_discards_the_upload(&site, &token).await;
    mount_is_a_plain_upload(&site, &token).await;
    cancelled_upload_is_gone(&site, &token).await;
    assert!(site.uploads().is_empty(), "blobs alone reached ChartMuseum");
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST` a session: 202, its location, id and an empty range.
async fn open_session(site: &Site, name: &str, token: &str) -> String {
    let url = site.v2(name, "blobs/uploads/");
    let r = call(Method::POST, &url, Some(token), &[], Bytes::new()).await;
    assert_eq!(r.status, 202, "{}", said(&r));
    let id = r.header("docker-upload-uuid").to_owned();
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "upload id {id:?}");
    assert_eq!(
        r.header("location"),
        format!("/v2/{name}/blobs/uploads/{id}")
    );
    assert_eq!(r.header("range"), "0-0");
    r.header("location").to_owned()
}

async fn patch(site: &Site, token: &str, location: &str, range: &str, chunk: &[u8]) -> Reply {
    let headers = [
        ("content-range", range),
        ("content-type", "application/octet-stream"),
    ];
    let url = site.gw.url(location);
    call(Method::PATCH, &url, Some(token), &headers, chunk.to_vec()).await
}

async fn chunked_upload(site: &Site, token: &str) {
    let location = open_session(site, CHART, token).await;
    let r = patch(site, token, &location, "0-2", b"hel").await;
    assert_eq!(r.status, 202, "{}", said(&r));
    assert_eq!(r.header("range"), "0-2");
    let r = patch(site, token, &location, "5-6", b"xx").await;
    assert_oci(&r, 416, "BLOB_UPLOAD_INVALID");
    let r = patch(site, token, &location, "3-4", b"lo").await;
    assert_eq!(r.status, 202, "{}", said(&r));
    assert_eq!(r.header("range"), "0-4");

    let status = get(&site.gw.url(&location), Some(&bearer(token))).await;
    assert_eq!(status.status, 204, "{}", said(&status));
    assert_eq!(status.header("range"), "0-4");
    assert_eq!(status.header("location"), location);

    let digest = sha256(b"hello");
    let url = site.gw.url(&format!("{location}?digest={digest}"));
    let r = call(Method::PUT, &url, Some(token), &[], Bytes::new()).await;
    assert_eq!(r.status, 201, "{}", said(&r));
    assert_eq!(r.header("docker-content-digest"), digest);
    let blob = site.gw.url(r.header("location"));
    let r = get(&blob, Some(&bearer(token))).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"hello"[..]));
}

async fn wrong_digest_discards_the_upload(site: &Site, token: &str) {
    let location = open_session(site, CHART, token).await;
    let claimed = sha256(b"something else");
    let url = site.gw.url(&format!("{location}?digest={claimed}"));
    let r = call(Method::PUT, &url, Some(token), &[], b"abc".to_vec()).await;
    assert_oci(&r, 400, "DIGEST_INVALID");
    let r = get(&site.gw.url(&location), Some(&bearer(token))).await;
    assert_oci(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    let r = get(
        &site.v2(CHART, &format!("blobs/{claimed}")),
        Some(&bearer(token)),
    )
    .await;
    assert_oci(&r, 404, "BLOB_UNKNOWN");
}

/// A mount from another repository answers 202 (a session), never 201:
/// the blob staged there stays there.
async fn mount_is_a_plain_upload(site: &Site, token: &str) {
    let other = "org1/repo1/other";
    let other_token = docker_token(site, &format!("repository:{other}:pull,push")).await;
    let digest = upload(site, other, &other_token, b"staged elsewhere").await;
    let url = site.v2(
        CHART,
        &format!("blobs/uploads/?mount={digest}&from={other}"),
    );
    let r = call(Method::POST, &url, Some(token), &[], Bytes::new()).await;
    assert_eq!(r.status, 202, "{}", said(&r));
    let id = r.header("docker-upload-uuid");
    assert_eq!(
        r.header("location"),
        format!("/v2/{CHART}/blobs/uploads/{id}")
    );
    let r = get(
        &site.v2(CHART, &format!("blobs/{digest}")),
        Some(&bearer(token)),
    )
    .await;
    assert_oci(&r, 404, "BLOB_UNKNOWN");
}

async fn cancelled_upload_is_gone(site: &Site, token: &str) {
    let location = open_session(site, CHART, token).await;
    let url = site.gw.url(&location);
    let r = patch(site, token, &location, "0-3", b"data").await;
    assert_eq!(r.status, 202, "{}", said(&r));
    let r = call(Method::DELETE, &url, Some(token), &[], Bytes::new()).await;
    assert_eq!(r.status, 204, "{}", said(&r));
    let r = call(Method::DELETE, &url, Some(token), &[], Bytes::new()).await;
    assert_oci(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    let r = get(&url, Some(&bearer(token))).await;
    assert_oci(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    let r = patch(site, token, &location, "0-1", b"xy").await;
    assert_oci(&r, 404, "BLOB_UPLOAD_UNKNOWN");
}

// === 4: manifests that must be refused ===

/// Blobs staged for the refusals: the archives of mychart 0.1.0 and of a
/// chart named `other` 0.1.0, and mychart 0.1.0's config blob.
struct Staged {
    chart: Vec<u8>,
    other: Vec<u8>,
    config: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_that_are_not_this_chart_at_this_tag_upload_nothing() {
    let site = Site::start("refusals").await;
    let token = docker_token(&site, &format!("repository:{CHART}:pull,push")).await;
    let staged = Staged {
        chart: site.package("mychart", "0.1.0"),
        other: site.package("other", "0.1.0"),
        config: config_blob("mychart", "0.1.0"),
    };
    for blob in [&staged.chart, &staged.other, &staged.config] {
        upload(&site, CHART, &token, blob).await;
    }
    let mut refused = Vec::new();
    for case in refusals(&site, &token, &staged).await {
        let (reference, content_type) = (&case.reference, case.content_type);
        let r = put_manifest(&site, &token, reference, content_type, &case.manifest).await;
        assert_oci(&r, case.status, case.code);
        let uploads = site.uploads();
        assert!(uploads.is_empty(), "{}: uploaded {uploads:?}", case.what);
        refused.push((r.header("x-request-id").to_owned(), case.status, case.code));
    }
    let tags = get(&site.v2(CHART, "tags/list"), Some(&bearer(&token))).await;
    assert_oci(&tags, 404, "NAME_UNKNOWN");
    refusals_are_audited(&site, &refused);

    // The same staged blobs under the right manifest publish: the refusals
    // were the manifests', not the fixture's.
    let right = manifest(CONFIG_TYPE, &staged.config, &staged.chart);
    let r = put_manifest(&site, &token, "0.1.0", MANIFEST_TYPE, &right).await;
    assert_eq!(r.status, 201, "{}", said(&r));
    assert_eq!(site.uploads().len(), 1);
    assert_eq!(site.stored("mychart-0.1.0.tgz"), staged.chart);
}

/// One manifest push that must be refused.
struct Refusal {
    what: &'static str,
    reference: String,
    content_type: &'static str,
    manifest: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// Every refusal, each wrong in one way only; the blobs they name are
/// staged, except the one never uploaded.
async fn refusals(site: &Site, token: &str, s: &Staged) -> Vec<Refusal> {
    let config2 = config_blob("mychart", "0.2.0");
    let config9 = config_blob("mychart", "0.9.0");
    for blob in [&config2, &config9] {
        upload(site, CHART, token, blob).await;
    }
    let right = manifest(CONFIG_TYPE, &s.config, &s.chart);
    let case = |what, reference: &str, content_type, manifest, status, code| Refusal {
        what,
        reference: reference.to_owned(),
        content_type,
        manifest,
        status,
        code,
    };
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let (invalid, unsupported) = ("MANIFEST_INVALID", "UNSUPPORTED");
    vec![
        case(
            "image config",
            "0.1.0",
            MANIFEST_TYPE,
            manifest(IMAGE_CONFIG_TYPE, &s.config, &s.chart),
            415,
            unsupported,
        ),
        case(
            "content type",
            "0.1.0",
            docker,
            right.clone(),
            415,
            unsupported,
        ),
        case(
            "layer never uploaded",
            "0.1.0",
            MANIFEST_TYPE,
            manifest(CONFIG_TYPE, &s.config, b"never uploaded"),
            404,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        case(
            "tag differs from Chart.yaml",
            "0.2.0",
            MANIFEST_TYPE,
            manifest(CONFIG_TYPE, &config2, &s.chart),
            400,
            invalid,
        ),
        case(
            "config differs from the tag",
            "0.1.0",
            MANIFEST_TYPE,
            manifest(CONFIG_TYPE, &config9, &s.chart),
            400,
            invalid,
        ),
        case(
            "chart name differs",
            "0.1.0",
            MANIFEST_TYPE,
            manifest(CONFIG_TYPE, &s.config, &s.other),
            400,
            invalid,
        ),
        case(
            "bytes hash differently from the digest",
            &sha256(b"another manifest"),
            MANIFEST_TYPE,
            right,
            400,
            "DIGEST_INVALID",
        ),
    ]
}

/// Each refused manifest push, by tag or by digest, is one `refused`
/// event with its code and status.
fn refusals_are_audited(site: &Site, refused: &[(String, u16, &str)]) {
    let (last, ..) = refused.last().unwrap();
    let events = blocking(|| audit_through(&site.audit, last));
    let pushes = pushes(&events);
    assert_eq!(pushes.len(), refused.len(), "{events:?}");
    for ((id, status, code), e) in refused.iter().zip(pushes) {
        assert_eq!(e["request_id"], *id, "{e}");
        assert_eq!(e["outcome"], "refused", "{e}");
        assert_eq!(e["reason"], *code, "{e}");
        assert_eq!(e["status"], *status, "{e}");
        assert_eq!(e["chart"], "mychart", "{e}");
    }
}

// === 5: a whole push ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_push_publishes_once_and_blobs_alone_publish_nothing() {
    let site = Site::start("push").await;
    let token = docker_token(&site, &format!("repository:{CHART}:pull,push")).await;
    let chart = site.package("mychart", "0.1.0");
    let config = config_blob("mychart", "0.1.0");
    upload(&site, CHART, &token, &config).await;
    upload(&site, CHART, &token, &chart).await;
    let bytes = manifest(CONFIG_TYPE, &config, &chart);
    let digest = sha256(&bytes);

    let staged = pushed_by_digest(&site, &token, &bytes).await;
    let first = put_manifest(&site, &token, "0.1.0", MANIFEST_TYPE, &bytes).await;
    assert_eq!(first.status, 201, "{}", said(&first));
    assert_eq!(first.header("docker-content-digest"), digest);
    assert_eq!(
        first.header("location"),
        format!("/v2/{CHART}/manifests/{digest}")
    );
    let uploads = site.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].path, "/api/org1/repo1/charts");
    assert_eq!(uploads[0].request_id, first.header("x-request-id"));
    assert_eq!(site.stored("mychart-0.1.0.tgz"), chart);

    let again = put_manifest(&site, &token, "0.1.0", MANIFEST_TYPE, &bytes).await;
    assert_eq!(again.status, 201, "{}", said(&again));
    assert_eq!(again.header("docker-content-digest"), digest);
    assert_eq!(
        site.uploads().len(),
        1,
        "the repeated manifest uploaded again"
    );

    let ids = [&staged, &first, &again].map(|r| r.header("x-request-id").to_owned());
    publishes_are_audited(&site, &ids, &sha256(&chart), chart.len());
    blobs_without_a_manifest_publish_nothing(&site, &token).await;
}

/// Helm's way: the manifest by digest first, which stages it (read back
/// byte for byte) and publishes nothing.
async fn pushed_by_digest(site: &Site, token: &str, bytes: &[u8]) -> Reply {
    let digest = sha256(bytes);
    let r = put_manifest(site, token, &digest, MANIFEST_TYPE, bytes).await;
    assert_eq!(r.status, 201, "{}", said(&r));
    assert_eq!(r.header("docker-content-digest"), digest);
    assert!(site.uploads().is_empty(), "a manifest by digest uploaded");
    let back = get(
        &site.v2(CHART, &format!("manifests/{digest}")),
        Some(&bearer(token)),
    )
    .await;
    assert_eq!(back.status, 200, "{}", said(&back));
    assert_eq!(&back.body[..], bytes);
    r
}

/// One `allowed` push event per manifest PUT by tag, naming the chart,
/// version and archive digest; none for the one by digest.
fn publishes_are_audited(site: &Site, ids: &[String; 3], sha: &str, size: usize) {
    let events = blocking(|| audit_through(&site.audit, &ids[2]));
    let pushes = pushes(&events);
    let seen: Vec<_> = pushes.iter().map(|e| e["request_id"].clone()).collect();
    assert_eq!(seen, [ids[1].as_str(), ids[2].as_str()], "{events:?}");
    for e in pushes {
        assert_eq!(e["outcome"], "allowed", "{e}");
        assert_eq!(e["status"], 201, "{e}");
        assert_eq!(e["subject"], "alice", "{e}");
        assert_eq!(e["repo"], "org1/repo1", "{e}");
        assert_eq!(e["chart"], "mychart", "{e}");
        assert_eq!(e["version"], "0.1.0", "{e}");
        assert_eq!(e["file"], "mychart-0.1.0.tgz", "{e}");
        assert_eq!(e["sha256"], sha.trim_start_matches("sha256:"), "{e}");
        assert_eq!(e["size"], size, "{e}");
    }
}

async fn blobs_without_a_manifest_publish_nothing(site: &Site, token: &str) {
    let chart = site.package("mychart", "0.2.0");
    upload(site, CHART, token, &config_blob("mychart", "0.2.0")).await;
    upload(site, CHART, token, &chart).await;
    assert_eq!(site.uploads().len(), 1, "blobs alone reached ChartMuseum");
    assert_eq!(index_versions(site).await, ["0.1.0"]);
    let r = get(&site.v2(CHART, "tags/list"), Some(&bearer(token))).await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(r.json(), json!({"name": CHART, "tags": ["0.1.0"]}));
}

/// The versions of mychart in the index Helm reads, through the gateway.
async fn index_versions(site: &Site) -> Vec<String> {
    let url = site.gw.url("/org1/repo1/index.yaml");
    let r = get(&url, Some(&basic("alice", ALICE_PASSWORD))).await;
    assert_eq!(r.status, 200, "{}", said(&r));
    let index: Value = serde_yaml_ng::from_slice(&r.body).unwrap();
    index["entries"]["mychart"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|e| e["version"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// === 6, 7: pulls and tags ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_are_derived_from_what_chartmuseum_stores() {
    let site = Site::start("pull").await;
    for version in ["0.1.0", "0.2.0", "0.3.0+b1"] {
        site.seed(&site.package("mychart", version)).await;
    }
    let token = docker_token(&site, &format!("repository:{CHART}:pull")).await;
    let manifest = pulled_manifest(&site, &token, "0.1.0", "mychart-0.1.0.tgz").await;
    head_matches_get(&site, &token, &manifest).await;
    by_digest_is_identical(&site, &token, &manifest).await;
    blobs_by_digest(&site, &token, &manifest).await;

    let auth = Some(bearer(&token));
    let r = get(&site.v2(CHART, "manifests/9.9.9"), auth.as_deref()).await;
    assert_oci(&r, 404, "MANIFEST_UNKNOWN");
    let r = get(
        &site.v2(CHART, &format!("blobs/{}", sha256(b"nothing"))),
        auth.as_deref(),
    )
    .await;
    assert_oci(&r, 404, "BLOB_UNKNOWN");

    let plus = pulled_manifest(&site, &token, "0.3.0_b1", "mychart-0.3.0+b1.tgz").await;
    let m: Value = serde_json::from_slice(&plus).unwrap();
    assert_eq!(
        m["annotations"]["org.opencontainers.image.version"],
        "0.3.0+b1"
    );
    assert_eq!(
        m["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "mychart-0.3.0+b1.tgz"
    );
    tags_are_paginated(&site, &token).await;
}

/// `GET manifests/<tag>`: Helm's manifest whose chart layer is the stored
/// archive `file`; returns its bytes.
async fn pulled_manifest(site: &Site, token: &str, tag: &str, file: &str) -> Bytes {
    let r = get(
        &site.v2(CHART, &format!("manifests/{tag}")),
        Some(&bearer(token)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(r.header("content-type"), MANIFEST_TYPE);
    assert_eq!(r.header("docker-content-digest"), sha256(&r.body));
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    let m = r.json();
    let stored = site.stored(file);
    assert_eq!(m["mediaType"], MANIFEST_TYPE);
    assert_eq!(m["config"]["mediaType"], CONFIG_TYPE);
    assert_eq!(m["layers"][0]["mediaType"], CHART_LAYER_TYPE);
    assert_eq!(m["layers"][0]["digest"], sha256(&stored));
    assert_eq!(m["layers"][0]["size"], stored.len());
    r.body
}

async fn head_matches_get(site: &Site, token: &str, manifest: &[u8]) {
    let url = site.v2(CHART, "manifests/0.1.0");
    let r = call(Method::HEAD, &url, Some(token), &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "HEAD sent a body");
    assert_eq!(r.header("content-type"), MANIFEST_TYPE);
    assert_eq!(r.header("docker-content-digest"), sha256(manifest));
    assert_eq!(r.header("content-length"), manifest.len().to_string());
}

/// By digest, the same bytes: from this replica's index, then from a
/// fresh gateway (a replica that never saw the tag) deriving them again.
async fn by_digest_is_identical(site: &Site, token: &str, manifest: &[u8]) {
    let url = site.v2(CHART, &format!("manifests/{}", sha256(manifest)));
    let warm = get(&url, Some(&bearer(token))).await;
    assert_eq!(warm.status, 200, "{}", said(&warm));
    assert_eq!(&warm.body[..], manifest);
    site.gw
        .live
        .replace(rebuild(&site.gw, config(&site.text, site.cm.addr)));
    let cold = get(&url, Some(&bearer(token))).await;
    assert_eq!(cold.status, 200, "{}", said(&cold));
    assert_eq!(&cold.body[..], manifest);
    assert_eq!(cold.header("docker-content-digest"), sha256(manifest));
}

async fn blobs_by_digest(site: &Site, token: &str, manifest: &[u8]) {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    let auth = Some(bearer(token));
    let config_digest = m["config"]["digest"].as_str().unwrap();
    let r = get(
        &site.v2(CHART, &format!("blobs/{config_digest}")),
        auth.as_deref(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(sha256(&r.body), config_digest);
    assert_eq!(r.body.len() as u64, m["config"]["size"].as_u64().unwrap());
    assert_eq!(r.header("docker-content-digest"), config_digest);
    let config = r.json();
    assert_eq!(
        (&config["name"], &config["version"]),
        (&json!("mychart"), &json!("0.1.0"))
    );

    let chart_digest = m["layers"][0]["digest"].as_str().unwrap();
    let url = site.v2(CHART, &format!("blobs/{chart_digest}"));
    let r = get(&url, auth.as_deref()).await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(&r.body[..], site.stored("mychart-0.1.0.tgz"));
    assert_eq!(r.header("docker-content-digest"), chart_digest);
    let head = call(Method::HEAD, &url, Some(token), &[], Bytes::new()).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sent a body");
    assert_eq!(head.header("content-length"), r.body.len().to_string());
}

async fn tags_are_paginated(site: &Site, token: &str) {
    let auth = Some(bearer(token));
    let r = get(&site.v2(CHART, "tags/list?n=2"), auth.as_deref()).await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(r.json(), json!({"name": CHART, "tags": ["0.1.0", "0.2.0"]}));
    let link = r.header("link");
    assert_eq!(
        link,
        format!("</v2/{CHART}/tags/list?n=2&last=0.2.0>; rel=\"next\"")
    );
    let next = &link[1..link.find('>').unwrap()];
    let r = get(&site.gw.url(next), auth.as_deref()).await;
    assert_eq!(r.status, 200, "{}", said(&r));
    assert_eq!(r.json(), json!({"name": CHART, "tags": ["0.3.0_b1"]}));
    assert!(r.headers.get("link").is_none(), "a last page links on");
}

// === 8: tenants ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_and_a_staging_area_serve_one_repository_only() {
    let site = Site::start("tenants").await;
    site.seed(&site.package("mychart", "0.1.0")).await;
    let token = docker_token(&site, &format!("repository:{CHART}:pull,push")).await;
    let mine = get(&site.v2(CHART, "manifests/0.1.0"), Some(&bearer(&token))).await;
    assert_eq!(mine.status, 200, "{}", said(&mine));
    for name in ["org1/repo1/other", "org2/repo2/mychart"] {
        let r = get(&site.v2(name, "manifests/0.1.0"), Some(&bearer(&token))).await;
        assert_oci(&r, 401, "UNAUTHORIZED");
        let scope = format!("repository:{name}:pull");
        assert_eq!(r.header("www-authenticate"), challenge(Some(&scope)));
    }
    staging_is_per_repository(&site, &token).await;
}

async fn staging_is_per_repository(site: &Site, token: &str) {
    let other = "org1/repo1/other";
    let other_token = docker_token(site, &format!("repository:{other}:pull,push")).await;
    let archive = site.package("other", "0.1.0");
    let config = config_blob("other", "0.1.0");
    let digest = upload(site, CHART, token, &archive).await;
    upload(site, CHART, token, &config).await;
    let session = open_session(site, CHART, token).await;

    let auth = Some(bearer(&other_token));
    let r = get(&site.v2(other, &format!("blobs/{digest}")), auth.as_deref()).await;
    assert_oci(&r, 404, "BLOB_UNKNOWN");
    let id = session.rsplit('/').next().unwrap();
    let theirs = site.v2(other, &format!("blobs/uploads/{id}"));
    let r = get(&theirs, auth.as_deref()).await;
    assert_oci(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    let url = format!("{theirs}?digest={}", sha256(b""));
    let r = call(Method::PUT, &url, Some(&other_token), &[], Bytes::new()).await;
    assert_oci(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    let r = get(&site.gw.url(&session), Some(&bearer(token))).await;
    assert_eq!(
        r.status,
        204,
        "the owner's session was touched: {}",
        said(&r)
    );

    // A manifest of `other` naming blobs staged under mychart finds none.
    let bytes = manifest(CONFIG_TYPE, &config, &archive);
    let r = put_manifest_to(site, other, &other_token, "0.1.0", MANIFEST_TYPE, &bytes).await;
    assert_oci(&r, 404, "MANIFEST_BLOB_UNKNOWN");
    let uploads = site.uploads();
    assert_eq!(uploads.len(), 1, "only the seed: {uploads:?}");
}
