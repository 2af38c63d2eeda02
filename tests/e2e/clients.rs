//! Every client × credential combination, with the real binaries:
//! `helm repo add/update`, `helm search repo`, `helm pull` with account
//! credentials and with a token as password; `helm cm-push` with
//! `HELM_REPO_ACCESS_TOKEN`, with `--auth-header`, and with the repo's Basic
//! credentials; a `cm://` download; an anonymous repo; and the denials a
//! user would see. Behind the gateway runs the real ChartMuseum, whose
//! request log proves which requests reached it.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Request;

use crate::chartmuseum::{work_dir, ChartMuseum, Options};
use crate::common::*;
use crate::helm::{assert_same, blocking, Helm};

async fn token_for(gw: &Gw, user: &str, password: &str, scope: &str) -> String {
    let req = Request::post(gw.url(&format!(
        "/oauth/token?grant_type=client_credentials&scope={scope}"
    )))
    .header("authorization", basic(user, password))
    .body(full(Bytes::new()))
    .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

async fn scenario(major: u8) {
    let work = work_dir(&format!("helm{major}"));
    let options = Options {
        depth: 2,
        ..Options::default()
    };
    let cm = ChartMuseum::start_in(options, &work).await;
    let gw = spawn_gateway(accounts_gateway_config(cm.addr)).await;
    let helm = Arc::new(Helm::new(major, work.join("helm")));
    let base = gw.url("");
    let repo1 = format!("{base}/org1/repo1");

    let push_token = token_for(
        &gw,
        "alice",
        ALICE_PASSWORD,
        "artifact-repository:org1/repo1:pull,push",
    )
    .await;
    let pull_token = token_for(
        &gw,
        "alice",
        ALICE_PASSWORD,
        "artifact-repository:org1/repo1:pull",
    )
    .await;

    let h = helm.clone();
    let (r1, pt, pl, b) = (
        repo1.clone(),
        push_token.clone(),
        pull_token.clone(),
        base.clone(),
    );
    let stored = cm.storage.join("org1/repo1");
    blocking(move || {
        let helm = h;
        let v1 = helm.package("mychart", "0.1.0");
        let v2 = helm.package("mychart", "0.2.0");
        let v3 = helm.package("mychart", "0.3.0");

        // helm-push with HELM_REPO_ACCESS_TOKEN (Authorization: Bearer).
        helm.ok(
            &["cm-push", v1.to_str().unwrap(), &r1],
            &[("HELM_REPO_ACCESS_TOKEN", &pt)],
        );
        // helm-push with --auth-header (the raw token under our header).
        helm.ok(
            &[
                "cm-push",
                v2.to_str().unwrap(),
                &r1,
                "--access-token",
                &pt,
                "--auth-header",
                "X-Chartgate-Token",
            ],
            &[],
        );

        // Plain Helm with account credentials (Basic on every request).
        helm.ok(
            &[
                "repo",
                "add",
                "org1",
                &r1,
                "--username",
                "alice",
                "--password",
                ALICE_PASSWORD,
            ],
            &[],
        );
        // helm-push with the named repo: Basic credentials from the repo entry.
        helm.ok(&["cm-push", v3.to_str().unwrap(), "org1"], &[]);
        helm.ok(&["repo", "update"], &[]);
        let found = helm.ok(&["search", "repo", "org1/mychart", "--versions"], &[]);
        for v in ["0.1.0", "0.2.0", "0.3.0"] {
            assert!(found.contains(v), "helm search lacks {v}:\n{found}");
        }
        let pulled = helm.pull("org1/mychart", "0.1.0", "pulled", &[]);
        assert_same(&pulled, &stored.join("mychart-0.1.0.tgz"));
        let shown = helm.ok(&["show", "chart", pulled.to_str().unwrap()], &[]);
        assert!(
            shown.contains("name: mychart") && shown.contains("version: 0.1.0"),
            "{shown}"
        );

        // A short-lived token as the Basic password.
        helm.ok(
            &[
                "repo",
                "add",
                "tok",
                &r1,
                "--username",
                "ci-job",
                "--password",
                &pl,
            ],
            &[],
        );
        let pulled = helm.pull("tok/mychart", "0.2.0", "pulled-tok", &[]);
        assert_same(&pulled, &stored.join("mychart-0.2.0.tgz"));

        // cm:// downloads through the helm-push getter, token in the env.
        let cm = r1.replace("http://", "cm://");
        let env = [
            ("HELM_REPO_ACCESS_TOKEN", pl.as_str()),
            ("HELM_REPO_USE_HTTP", "true"),
        ];
        helm.ok(&["repo", "add", "cmrepo", &cm], &env);
        let pulled = helm.pull("cmrepo/mychart", "0.3.0", "pulled-cm", &env);
        assert_same(&pulled, &stored.join("mychart-0.3.0.tgz"));

        // An anonymous-pull repository, no credentials at all.
        helm.ok(&["repo", "add", "pub", &format!("{b}/public/charts")], &[]);

        // Denials, as the user sees them.
        let e = helm.fails(
            &[
                "repo",
                "add",
                "bad",
                &r1,
                "--username",
                "alice",
                "--password",
                "wrong",
            ],
            &[],
        );
        assert!(e.contains("401"), "{e}");
        let e = helm.fails(
            &[
                "repo",
                "add",
                "other",
                &format!("{b}/org3/repo3"),
                "--username",
                "ci",
                "--password",
                CI_KEY,
            ],
            &[],
        );
        assert!(e.contains("401"), "{e}");
        let e = helm.fails(
            &[
                "repo",
                "add",
                "old",
                &r1,
                "--username",
                "old",
                "--password",
                OLD_KEY,
            ],
            &[],
        );
        assert!(e.contains("401"), "{e}");
        let e = helm.fails(&["repo", "add", "anon", &r1], &[]);
        assert!(e.contains("401"), "{e}");
        // A read-only account pushing: index pull works, the upload is refused.
        let e = helm.fails(
            &[
                "cm-push",
                v1.to_str().unwrap(),
                &format!("{b}/org2/repo2"),
                "--username",
                "ci",
                "--password",
                CI_KEY,
            ],
            &[],
        );
        assert!(e.contains("401"), "{e}");
        // A pull-only token pushing.
        let e = helm.fails(
            &["cm-push", v1.to_str().unwrap(), &r1],
            &[("HELM_REPO_ACCESS_TOKEN", &pl)],
        );
        assert!(e.contains("401"), "{e}");
    })
    .await;

    let cm2 = cm.clone();
    blocking(move || cm2.sync()).await;
    assert_eq!(
        cm.count("POST", "/api/org1/repo1/charts"),
        3,
        "exactly the three allowed pushes reached ChartMuseum:\n{}",
        cm.log_tail()
    );
    assert_eq!(cm.count("POST", "/api/org2/repo2/charts"), 0);
    assert_eq!(cm.count("GET", "/org3/repo3/index.yaml"), 0);
    assert!(
        cm.count("GET", "/org1/repo1/charts/mychart-0.1.0.tgz") >= 1,
        "the pull was served by ChartMuseum"
    );
    drop(cm);
    std::fs::remove_dir_all(&work).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm3_and_helm_push() {
    scenario(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm4_and_helm_push() {
    scenario(4).await;
}
