//! Operating the real binary in front of the real ChartMuseum while Helm
//! and helm-push use it: `/metrics` counters move with the traffic, and the
//! audit file holds the push with the SHA-256 of the chart ChartMuseum
//! stored, the refused push, and the token requests.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::digest;
use bytes::Bytes;
use hyper::Request;

use crate::audit::audit_until;
use crate::chartmuseum::{ChartMuseum, Options};
use crate::common::*;
use crate::helm::Helm;

/// Every series of an exposition with its value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(admin: &str) -> HashMap<String, f64> {
    let r = get(&format!("{admin}/metrics"), None).await;
    assert_eq!(r.status, 200);
    parse(r.text())
}

fn grew(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn token(gw: &str, scope: &str) -> String {
    let r = send(
        Request::post(format!(
            "{gw}/oauth/token?grant_type=client_credentials&scope={scope}"
        ))
        .header("authorization", basic("alice", ALICE_PASSWORD))
        .body(full(Bytes::new()))
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_the_audit_trail_records_helm_traffic() {
    let work = std::env::temp_dir().join(format!("chartgate-e2e-ops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let storage = work.join("storage");
    let cm = tokio::task::spawn_blocking(move || {
        let depth2 = Options {
            depth: 2,
            ..Options::default()
        };
        ChartMuseum::start(&depth2, &storage, &storage.with_extension("log"))
    })
    .await
    .unwrap();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let audit = work.join("audit.jsonl");
    let text = accounts_config()
        .replace("UPSTREAM", &cm.addr.to_string())
        .replace(
            "admin_addr = \"127.0.0.1:0\"",
            &format!("admin_addr = \"127.0.0.1:{admin_port}\""),
        )
        + &format!(
            "\n[log]\nformat = \"json\"\n\n[audit]\nfile = \"{}\"\n",
            audit.display()
        );
    let config = work.join("chartgate.toml");
    std::fs::write(&config, text).unwrap();
    let bin = spawn_binary(&config, &[("OLD", OLD_KEY)]).await;
    let gw = format!("http://{}", bin.addr);
    let admin = format!("http://127.0.0.1:{admin_port}");
    let before = scrape(&admin).await;

    let push = token(&gw, "artifact-repository:org1/repo1:pull,push").await;
    let pull = token(&gw, "artifact-repository:org1/repo1:pull").await;
    let helm = Arc::new(Helm::new(3, work.join("helm")));
    let h = helm.clone();
    let repo = format!("{gw}/org1/repo1");
    let chart = tokio::task::spawn_blocking(move || {
        let src = h.home().join("mychart");
        h.ok(&["create", src.to_str().unwrap()], &[]);
        for v in ["0.1.0", "0.2.0"] {
            h.ok(&["package", src.to_str().unwrap(), "--version", v], &[]);
        }
        let v1 = h.home().join("mychart-0.1.0.tgz");
        let v2 = h.home().join("mychart-0.2.0.tgz");
        h.ok(
            &["cm-push", v1.to_str().unwrap(), &repo],
            &[("HELM_REPO_ACCESS_TOKEN", &push)],
        );
        let e = h.fails(
            &["cm-push", v2.to_str().unwrap(), &repo],
            &[("HELM_REPO_ACCESS_TOKEN", &pull)],
        );
        assert!(e.contains("401"), "{e}");
        h.ok(
            &[
                "repo",
                "add",
                "org1",
                &repo,
                "--username",
                "alice",
                "--password",
                ALICE_PASSWORD,
            ],
            &[],
        );
        h.ok(&["repo", "update"], &[]);
        h.pull("org1/mychart", "0.1.0", "pulled", &[])
    })
    .await
    .unwrap();
    let stored = std::fs::read(cm.stored("org1/repo1", "mychart-0.1.0.tgz")).unwrap();
    assert_eq!(std::fs::read(&chart).unwrap(), stored);

    let after = scrape(&admin).await;
    let expect_at_least = |series: &str, n: f64| {
        let d = grew(&before, &after, series);
        assert!(d >= n, "{series} grew by {d}, expected at least {n}");
    };
    expect_at_least(
        r#"chartgate_requests_total{route="api_upload",method="POST",status="201"}"#,
        1.0,
    );
    expect_at_least(
        r#"chartgate_requests_total{route="api_upload",method="POST",status="401"}"#,
        1.0,
    );
    expect_at_least(
        r#"chartgate_requests_total{route="index",method="GET",status="200"}"#,
        2.0,
    );
    expect_at_least(
        r#"chartgate_requests_total{route="chart",method="GET",status="200"}"#,
        1.0,
    );
    expect_at_least(
        r#"chartgate_tokens_issued_total{grant="client_credentials",outcome="issued"}"#,
        2.0,
    );
    expect_at_least(
        r#"chartgate_auth_decisions_total{outcome="allowed",reason="credential"}"#,
        4.0,
    );
    expect_at_least(
        r#"chartgate_auth_decisions_total{outcome="denied",reason="wrong_scope"}"#,
        1.0,
    );
    expect_at_least(r#"chartgate_upstream_duration_seconds_count"#, 4.0);
    expect_at_least(
        r#"chartgate_body_bytes_total{direction="in"}"#,
        stored.len() as f64,
    );
    expect_at_least(
        r#"chartgate_body_bytes_total{direction="out"}"#,
        stored.len() as f64,
    );

    let events = audit_until(&audit, |e| e.len() >= 5);
    let find = |action: &str, outcome: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} event in {events:#?}"))
    };
    let pushed = find("push", "allowed");
    let sha = hex(digest::digest(&digest::SHA256, &stored).as_ref());
    assert_eq!(pushed["sha256"], sha, "{pushed}");
    assert_eq!(pushed["size"], stored.len());
    assert_eq!(pushed["chart"], "mychart");
    assert_eq!(pushed["version"], "0.1.0");
    assert_eq!(pushed["repo"], "org1/repo1");
    assert_eq!(pushed["subject"], "alice");
    assert_eq!(pushed["credential"], "bearer_token");
    assert_eq!(pushed["status"], 201);
    assert!(pushed["token_jti"].as_str().is_some_and(|j| !j.is_empty()));
    let refused = find("push", "refused");
    assert_eq!(refused["reason"], "wrong_scope");
    assert_eq!(refused["status"], 401);
    let issued = find("token", "allowed");
    assert_eq!(issued["subject"], "alice");
    assert!(issued["scopes_granted"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
    // The pushing token is traceable to what it did, by jti.
    assert!(events
        .iter()
        .any(|e| e["action"] == "token" && e["issued_jti"] == pushed["token_jti"]));
    drop((bin, cm));
    std::fs::remove_dir_all(&work).unwrap();
}
