//! Trusted publishing with the real parts: a CI job's OIDC id token (the
//! claim set GitHub Actions documents, minted by an in-process provider on
//! loopback) used by real Helm and helm-push against the real ChartMuseum,
//! both ways the docs give: `helm repo add --username oidc --password
//! "$ID_TOKEN"` then `helm cm-push` and `helm pull`, and the RFC 8693
//! exchange then `helm cm-push` with the minted token. ChartMuseum's
//! request log proves what reached it; the audit file names the identity.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::audit::audit_until;
use crate::chartmuseum::{work_dir, ChartMuseum, Options};
use crate::common::*;
use crate::helm::{assert_same, blocking, Helm};
use crate::oidc_provider::{self, OidcProvider};

const AUD: &str = "https://charts.example.test";

fn trust_config(issuer: &str, audit: &Path) -> String {
    accounts_config()
        + &format!(
            r#"
[audit]
file = "{}"

[[trust]]
name = "github"
issuer = "{issuer}"
audience = "{AUD}"
provider = "github"
claims = {{ repository = "acme/billing", ref = "refs/heads/main" }}
rules = [
  {{ repos = "org1/repo1", actions = ["pull", "push"] }},
  {{ repos = "org2/repo2", actions = ["pull"] }},
]
"#,
            audit.display()
        )
}

/// Exchanges `id_token` for a token granting `scope`.
async fn exchanged(gw: &Gw, id_token: &str, scope: &str) -> String {
    let r = exchange(gw, id_token, scope).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_owned()
}

async fn scenario(major: u8) {
    let work = work_dir(&format!("trusted{major}"));
    let options = Options {
        depth: 2,
        ..Options::default()
    };
    let cm = ChartMuseum::start_in(options, &work).await;
    let idp = OidcProvider::start().await;
    let audit = work.join("audit.jsonl");
    let gw = spawn_gateway(config(&trust_config(idp.issuer(), &audit), cm.addr)).await;
    let helm = Arc::new(Helm::new(major, work.join("helm")));
    let repo1 = gw.url("/org1/repo1");
    let repo2 = gw.url("/org2/repo2");

    let id_token = idp.mint(&idp.github_claims(AUD, None));
    let exchanged = exchanged(&gw, &id_token, "artifact-repository:org1/repo1:pull,push").await;
    // The same workflow of a fork: a valid id token no policy accepts.
    let fork = idp.mint(&oidc_provider::with(
        idp.github_claims(AUD, None),
        json!({"repository": "mallory/billing", "repository_owner": "mallory"}),
    ));

    let (h, stored) = (helm.clone(), cm.storage.join("org1/repo1"));
    blocking(move || {
        let helm = h;
        let v1 = helm.package("billing", "0.1.0");
        let v2 = helm.package("billing", "0.2.0");
        // Way 1: the id token as the repository's Basic password.
        let add = [
            "repo",
            "add",
            "ci",
            &repo1,
            "--username",
            "oidc",
            "--password",
            &id_token,
        ];
        helm.ok(&add, &[]);
        helm.ok(&["cm-push", v1.to_str().unwrap(), "ci"], &[]);
        // Way 2: the exchanged token, as helm-push's access token.
        helm.ok(
            &["cm-push", v2.to_str().unwrap(), &repo1],
            &[("HELM_REPO_ACCESS_TOKEN", &exchanged)],
        );
        helm.ok(&["repo", "update"], &[]);
        for v in ["0.1.0", "0.2.0"] {
            let pulled = helm.pull("ci/billing", v, &format!("pulled-{v}"), &[]);
            assert_same(&pulled, &stored.join(format!("billing-{v}.tgz")));
        }
        // What the policy does not allow, as helm users see it.
        let e = helm.fails(
            &[
                "cm-push",
                v1.to_str().unwrap(),
                &repo2,
                "--username",
                "oidc",
                "--password",
                &id_token,
            ],
            &[],
        );
        assert!(e.contains("401"), "{e}");
        let add = [
            "repo",
            "add",
            "fork",
            &repo1,
            "--username",
            "oidc",
            "--password",
            &fork,
        ];
        let e = helm.fails(&add, &[]);
        assert!(e.contains("401"), "{e}");
    })
    .await;

    let cm2 = cm.clone();
    blocking(move || cm2.sync()).await;
    assert_eq!(
        cm.count("POST", "/api/org1/repo1/charts"),
        2,
        "both allowed pushes reached ChartMuseum:\n{}",
        cm.log_tail()
    );
    assert_eq!(cm.count("POST", "/api/org2/repo2/charts"), 0);
    // The policy's pull on org2 let helm-push read its index before the
    // refused upload.
    assert!(
        cm.count("GET", "/org2/repo2/index.yaml") >= 1,
        "{}",
        cm.log_tail()
    );

    // The audit trail names the identity for both pushes and the exchange.
    let events = audit_until(&audit, |e| e.len() >= 4);
    let pushes: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "push" && e["outcome"] == "allowed")
        .collect();
    assert_eq!(pushes.len(), 2, "{events:#?}");
    for e in &pushes {
        assert_eq!(e["subject"], "github:acme/billing@refs/heads/main", "{e}");
    }
    assert!(
        pushes.iter().any(|e| e["credential"] == "oidc"),
        "{pushes:#?}"
    );
    let exchange = events
        .iter()
        .find(|e| e["action"] == "token")
        .expect("the exchange is audited");
    assert_eq!(exchange["credential"], "oidc");
    assert_eq!(exchange["subject"], "github:acme/billing@refs/heads/main");
    assert!(exchange["token_jti"].is_string(), "{exchange}");
    drop(cm);
    std::fs::remove_dir_all(&work).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm3_publishes_with_a_ci_identity() {
    scenario(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm4_publishes_with_a_ci_identity() {
    scenario(4).await;
}
