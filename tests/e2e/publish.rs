//! Publish rules against the real ChartMuseum, started with
//! `--allow-overwrite`, driven by real `helm cm-push` and `helm push`: a CI
//! account whose rule names `billing` and `billing-*` pushes those and is
//! refused `other` (with its key and with a token), over the classic API
//! and over OCI; an immutable repository keeps a released version through
//! a `--force` overwrite and a delete, while a pre-release may go, and the
//! same overwrite succeeds in a mutable repository, which proves the
//! refusals are the gateway's. ChartMuseum's request log proves refused
//! uploads never reached it; the audit trail names each refusal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hyper::Request;

use crate::audit::audit_until;
use crate::chartmuseum::{work_dir, ChartMuseum, Options};
use crate::common::*;
use crate::helm::{blocking, Helm};

const BILLING_KEY: &str = "cgk_billing-ci-key-0123456789";

/// The accounts config plus a CI account limited to billing charts, an
/// immutable `org1/stable`, the registry bridge and an audit file.
fn publish_config(work: &Path, realm: &str) -> String {
    let digest = {
        use aws_lc_rs::digest;
        let d = digest::digest(&digest::SHA256, BILLING_KEY.as_bytes());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    accounts_config().replace("http://localhost:8080/oauth/token", realm)
        + &format!(
            r#"
[[accounts]]
id = "billing-ci"
secret_hash = "sha256:{digest}"
rules = [{{ repos = "org1/*", actions = ["pull", "push"], charts = ["billing", "billing-*"] }}]

[publish]
immutable = ["org1/stable"]

[oci]
staging_dir = "{staging}"

[audit]
file = "{audit}"
"#,
            staging = work.join("staging").display(),
            audit = work.join("audit.jsonl").display(),
        )
}

/// `helm create` (once) + `helm package` of `name` at `version` into `out`.
fn package(helm: &Helm, name: &str, version: &str, out: &str) -> PathBuf {
    let src = helm.home().join("src");
    let chart = src.join(name);
    if !chart.exists() {
        std::fs::create_dir_all(&src).unwrap();
        helm.ok(&["create", chart.to_str().unwrap()], &[]);
    }
    let dir = helm.home().join(out);
    std::fs::create_dir_all(&dir).unwrap();
    let (c, d) = (chart.to_str().unwrap(), dir.to_str().unwrap());
    helm.ok(&["package", c, "--version", version, "-d", d], &[]);
    dir.join(format!("{name}-{version}.tgz"))
}

/// How many uploads into `repo` ChartMuseum has logged.
fn uploads(cm: &ChartMuseum, repo: &str) -> usize {
    cm.sync();
    cm.served()
        .iter()
        .filter(|s| s.method == "POST" && s.path.starts_with(&format!("/api/{repo}/")))
        .count()
}

/// The text of `file` inside the gzipped chart archive `archive`.
fn file_in(archive: &[u8], file: &str) -> String {
    use std::io::Read;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(file) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("{file} is not in the archive");
}

async fn delete(gw: &Gw, path: &str) -> Reply {
    send(
        Request::delete(gw.url(path))
            .header("authorization", basic("alice", ALICE_PASSWORD))
            .body(full(Bytes::new()))
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_rules_and_immutable_versions_hold_against_the_real_tools() {
    let work = work_dir("publish");
    let options = Options {
        depth: 2,
        allow_overwrite: true,
        ..Options::default()
    };
    let cm = ChartMuseum::start_in(options, &work).await;
    let gw = spawn_gateway(config(
        &publish_config(&work, "http://localhost:8080/oauth/token"),
        cm.addr,
    ))
    .await;
    // OCI clients take a realm only on the host they dialled.
    let host = format!("127.0.0.1:{}", gw.addr.port());
    let realm = format!("http://{host}/oauth/token");
    gw.live.replace(rebuild(
        &gw,
        config(&publish_config(&work, &realm), cm.addr),
    ));
    let helm = Arc::new(Helm::new(3, work.join("helm")));

    charts_of_a_rule(&gw, &cm, &helm, &host).await;
    immutable_versions(&gw, &cm, &helm, &host).await;

    let audit = work.join("audit.jsonl");
    let events = blocking(move || {
        audit_until(&audit, |e| {
            e.iter().filter(|e| e["outcome"] == "refused").count() >= 5
        })
    })
    .await;
    let refused = |reason: &str, action: &str, chart: &str| {
        events.iter().any(|e| {
            e["outcome"] == "refused"
                && e["reason"] == reason
                && e["action"] == action
                && e["chart"] == chart
        })
    };
    assert!(refused("chart_not_allowed", "push", "other"), "{events:#?}");
    assert!(refused("immutable", "push", "app"), "{events:#?}");
    assert!(refused("immutable", "delete", "app"), "{events:#?}");
    drop(cm);
    std::fs::remove_dir_all(&work).unwrap();
}

/// `billing-ci` pushes `billing` and `billing-api`, and never `other`.
async fn charts_of_a_rule(gw: &Gw, cm: &Arc<ChartMuseum>, helm: &Arc<Helm>, host: &str) {
    let r = send(
        Request::post(gw.url(
            "/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull,push",
        ))
        .header("authorization", format!("Bearer {BILLING_KEY}"))
        .body(full(Bytes::new()))
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let (h, c, url) = (helm.clone(), cm.clone(), gw.url("/org1/repo1"));
    let host = host.to_owned();
    blocking(move || {
        let (helm, cm) = (h, c);
        let creds = ["--username", "billing-ci", "--password", BILLING_KEY];
        for name in ["billing", "billing-api"] {
            let file = package(&helm, name, "1.0.0", "out");
            let mut args = vec!["cm-push", file.to_str().unwrap(), &url];
            args.extend(creds);
            helm.ok(&args, &[]);
            assert!(cm
                .stored("org1/repo1", &format!("{name}-1.0.0.tgz"))
                .exists());
        }
        let before = uploads(&cm, "org1/repo1");
        let other = package(&helm, "other", "1.0.0", "out");
        let mut args = vec!["cm-push", other.to_str().unwrap(), &url];
        args.extend(creds);
        let e = helm.fails(&args, &[]);
        assert!(
            e.contains("403") && e.contains("chart \"other\" may not be pushed to org1/repo1"),
            "{e}"
        );
        // The same with a token minted for the account: it carries the rule.
        let e = helm.fails(
            &["cm-push", other.to_str().unwrap(), &url],
            &[("HELM_REPO_ACCESS_TOKEN", &token)],
        );
        assert!(e.contains("403"), "{e}");
        // And over OCI, where the chart is the name's last segment.
        let login = [
            "registry",
            "login",
            &host,
            "--plain-http",
            "-u",
            "billing-ci",
            "-p",
            BILLING_KEY,
        ];
        helm.ok(&login, &[]);
        let oci = format!("oci://{host}/org1/repo1");
        let e = helm.fails(
            &["push", other.to_str().unwrap(), &oci, "--plain-http"],
            &[],
        );
        assert!(e.contains("403") || e.contains("denied"), "{e}");
        assert_eq!(
            uploads(&cm, "org1/repo1"),
            before,
            "a refused upload reached ChartMuseum:\n{}",
            cm.log_tail()
        );
        assert!(!cm.stored("org1/repo1", "other-1.0.0.tgz").exists());
        let oci_ok = package(&helm, "billing-oci", "1.0.0", "out");
        helm.ok(
            &["push", oci_ok.to_str().unwrap(), &oci, "--plain-http"],
            &[],
        );
        assert!(cm.stored("org1/repo1", "billing-oci-1.0.0.tgz").exists());
    })
    .await;
}

/// `org1/stable` keeps `app-1.0.0` as first pushed; `org1/repo1` does not.
/// helm-push packages a chart again before it uploads it, so what
/// ChartMuseum stores is compared with what it stored before, or by content.
async fn immutable_versions(gw: &Gw, cm: &Arc<ChartMuseum>, helm: &Arc<Helm>, host: &str) {
    let (h, c, base, host) = (helm.clone(), cm.clone(), gw.url(""), host.to_owned());
    let stored = blocking(move || {
        let (helm, cm) = (h, c);
        let alice = ["--username", "alice", "--password", ALICE_PASSWORD];
        let push = |file: &Path, repo: &str, force: bool| {
            let url = format!("{base}/{repo}");
            let mut args = vec!["cm-push", file.to_str().unwrap(), &url];
            args.extend(alice);
            if force {
                args.push("--force");
            }
            helm.run(&args, &[])
        };
        let values = |repo: &str| {
            let archive = std::fs::read(cm.stored(repo, "app-1.0.0.tgz")).unwrap();
            file_in(&archive, "app/values.yaml")
        };
        let first = package(&helm, "app", "1.0.0", "first");
        let source = helm.home().join("src/app/values.yaml");
        let text = std::fs::read_to_string(&source).unwrap();
        std::fs::write(&source, text + "\nchanged: true\n").unwrap();
        let changed = package(&helm, "app", "1.0.0", "changed");

        // A mutable repository: ChartMuseum really does overwrite.
        assert!(push(&first, "org1/repo1", false).status.success());
        assert!(!values("org1/repo1").contains("changed: true"));
        let out = push(&changed, "org1/repo1", true);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            values("org1/repo1").contains("changed: true"),
            "ChartMuseum did not overwrite: the test would prove nothing"
        );

        // The immutable one: the first push lands, the overwrite is refused.
        assert!(push(&first, "org1/stable", false).status.success());
        let stored = std::fs::read(cm.stored("org1/stable", "app-1.0.0.tgz")).unwrap();
        let before = uploads(&cm, "org1/stable");
        let out = push(&changed, "org1/stable", true);
        let e = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{e}");
        assert!(
            e.contains("409") && e.contains("app-1.0.0 is immutable in org1/stable"),
            "{e}"
        );
        assert_eq!(uploads(&cm, "org1/stable"), before, "{}", cm.log_tail());

        // Over OCI too: another archive under a stored version is refused,
        // the very one stored is a no-op.
        let login = [
            "registry",
            "login",
            &host,
            "--plain-http",
            "-u",
            "alice",
            "-p",
            ALICE_PASSWORD,
        ];
        helm.ok(&login, &[]);
        let oci = format!("oci://{host}/org1/stable");
        let e = helm.fails(
            &["push", changed.to_str().unwrap(), &oci, "--plain-http"],
            &[],
        );
        assert!(e.contains("409") || e.contains("immutable"), "{e}");
        let same = helm.home().join("stored/app-1.0.0.tgz");
        std::fs::create_dir_all(same.parent().unwrap()).unwrap();
        std::fs::write(&same, &stored).unwrap();
        helm.ok(&["push", same.to_str().unwrap(), &oci, "--plain-http"], &[]);
        assert_eq!(uploads(&cm, "org1/stable"), before, "{}", cm.log_tail());

        let rc = package(&helm, "app", "1.1.0-rc.1", "first");
        assert!(push(&rc, "org1/stable", false).status.success());
        stored
    })
    .await;

    // ChartMuseum still serves the first upload's bytes.
    let r = get(
        &gw.url("/org1/stable/charts/app-1.0.0.tgz"),
        Some(&basic("alice", ALICE_PASSWORD)),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body == stored, "the stored chart changed");
    assert!(!file_in(&r.body, "app/values.yaml").contains("changed: true"));

    // A released version stays; a pre-release may go.
    let r = delete(gw, "/api/org1/stable/charts/app/1.0.0").await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json()["error"],
        "chart version app-1.0.0 is immutable in org1/stable"
    );
    let r = delete(gw, "/api/org1/stable/charts/app/1.1.0-rc.1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(cm.stored("org1/stable", "app-1.0.0.tgz").exists());
    assert!(!cm.stored("org1/stable", "app-1.1.0-rc.1.tgz").exists());
    let cm2 = cm.clone();
    blocking(move || cm2.sync()).await;
    assert_eq!(
        cm.count("DELETE", "/api/org1/stable/charts/app/1.0.0"),
        0,
        "the refused delete reached ChartMuseum"
    );
    assert_eq!(
        cm.count("DELETE", "/api/org1/stable/charts/app/1.1.0-rc.1"),
        1
    );
}
