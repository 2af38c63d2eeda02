//! TLS on both sides, with the real parts: Helm 3 and 4 (`repo add
//! --ca-file`, update, pull), helm-push, curl negotiating HTTP/2, a client
//! certificate as the credential, and TLS 1.1 refused (openssl), through a
//! gateway whose upstream is ChartMuseum itself serving https
//! (`--tls-cert/--tls-key`) and requiring the gateway's client certificate
//! (`--tls-ca-cert`).

use std::process::Command;
use std::sync::Arc;

use chartgate::server::devcert;

use crate::chartmuseum::{ChartMuseum, Options};
use crate::common::*;
use crate::helm::Helm;

/// Runs a command; returns (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_helm_push_curl_and_openssl_over_tls() {
    let work = std::env::temp_dir().join(format!("chartgate-e2e-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let certs = work.join("certs");
    let pki = devcert::generate(&["localhost", "127.0.0.1"], "ci-bot").unwrap();
    pki.write(&certs).unwrap();
    let cm_options = Options {
        depth: 2,
        tls: Some((certs.join("server.pem"), certs.join("server-key.pem"))),
        tls_client_ca: Some(certs.join("ca.pem")),
        ..Options::default()
    };
    let storage = work.join("storage");
    let cm = Arc::new(
        tokio::task::spawn_blocking(move || {
            ChartMuseum::start(&cm_options, &storage, &storage.with_extension("log"))
        })
        .await
        .unwrap(),
    );
    let mut text = accounts_config().replace("http://UPSTREAM", "https://UPSTREAM");
    let upstream_tls = format!(
        "ca_file = \"{c}/ca.pem\"\nclient_cert = \"{c}/client.pem\"\nclient_key = \"{c}/client-key.pem\"\n",
        c = certs.display()
    );
    let at = text.find("[chartmuseum]").unwrap();
    text.insert_str(at, &upstream_tls);
    let tls = format!(
        "\n[tls]\naddr = \"127.0.0.1:0\"\ncert = \"{c}/server.pem\"\nkey = \"{c}/server-key.pem\"\nclient_ca = \"{c}/ca.pem\"\n\n",
        c = certs.display()
    );
    let at = text.find("[[accounts]]").unwrap();
    text.insert_str(at, &tls);
    text.push_str("\n[[accounts]]\nid = \"bot\"\nclient_cert_cn = \"ci-bot\"\nrules = [{ repos = \"org1/*\", actions = [\"pull\"] }]\n");
    let gw = spawn_gateway(config(&text, cm.addr)).await;
    let base = format!("https://127.0.0.1:{}", gw.tls_addr.unwrap().port());
    let ca = certs.join("ca.pem");

    // Helm 3 and Helm 4, each with helm-push, over TLS.
    for major in [3u8, 4] {
        let helm = Arc::new(Helm::new(major, work.join(format!("helm{major}"))));
        let (b, ca) = (base.clone(), ca.clone());
        let h = helm.clone();
        let cm2 = cm.clone();
        tokio::task::spawn_blocking(move || {
            let helm = h;
            let src = helm.home().join("src");
            std::fs::create_dir_all(&src).unwrap();
            let chart = src.join("tlschart");
            helm.ok(&["create", chart.to_str().unwrap()], &[]);
            let version = format!("{major}.0.0");
            helm.ok(
                &[
                    "package",
                    chart.to_str().unwrap(),
                    "--version",
                    &version,
                    "-d",
                    src.to_str().unwrap(),
                ],
                &[],
            );
            let tgz = src.join(format!("tlschart-{version}.tgz"));
            let repo = format!("{b}/org1/repo1");
            let ca = ca.to_str().unwrap();
            helm.ok(
                &[
                    "cm-push",
                    tgz.to_str().unwrap(),
                    &repo,
                    "--ca-file",
                    ca,
                    "--username",
                    "alice",
                    "--password",
                    ALICE_PASSWORD,
                ],
                &[],
            );
            helm.ok(
                &[
                    "repo",
                    "add",
                    "tls",
                    &repo,
                    "--ca-file",
                    ca,
                    "--username",
                    "alice",
                    "--password",
                    ALICE_PASSWORD,
                ],
                &[],
            );
            helm.ok(&["repo", "update"], &[]);
            let pulled = helm.pull("tls/tlschart", &version, "pulled", &[]);
            let stored = cm2.stored("org1/repo1", &format!("tlschart-{version}.tgz"));
            assert_eq!(
                std::fs::read(&pulled).unwrap(),
                std::fs::read(&stored).unwrap()
            );
            // Without the CA, Helm refuses the certificate.
            let e = helm.fails(
                &[
                    "repo",
                    "add",
                    "untrusted",
                    &repo,
                    "--username",
                    "alice",
                    "--password",
                    ALICE_PASSWORD,
                ],
                &[],
            );
            assert!(e.contains("certificate"), "{e}");
        })
        .await
        .unwrap();
    }

    let url = format!("{base}/org1/repo1/index.yaml");
    let ca = ca.to_str().unwrap();
    let alice = format!("alice:{ALICE_PASSWORD}");
    // `curl -sS --cacert CA <args> -o /dev/null -w FORMAT URL`: (ok, output).
    let curl = |args: &[&str], format: &str| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert", ca])
            .args(args)
            .args(["-o", "/dev/null", "-w", format, &url]);
        run(&mut cmd)
    };
    // curl negotiates HTTP/2 through ALPN, or HTTP/1.1 when told to.
    let (ok, out) = curl(&["--http2", "-u", &alice], "%{http_version} %{http_code}");
    assert!(ok && out.trim() == "2 200", "{out}");
    let (ok, out) = curl(&["--http1.1", "-u", &alice], "%{http_version} %{http_code}");
    assert!(ok && out.trim() == "1.1 200", "{out}");

    // A client certificate is the credential; without it, 401.
    let cert = certs.join("client.pem");
    let key = certs.join("client-key.pem");
    let (ok, out) = curl(
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        "%{http_code}",
    );
    assert!(ok && out.trim() == "200", "{out}");
    let (ok, out) = curl(&[], "%{http_code}");
    assert!(ok && out.trim() == "401", "{out}");

    // TLS 1.1 is refused; TLS 1.2 and 1.3 are served.
    let connect = format!("127.0.0.1:{}", gw.tls_addr.unwrap().port());
    for (flag, accepted) in [("-tls1_1", false), ("-tls1_2", true), ("-tls1_3", true)] {
        let (ok, out) = run(Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &connect,
                flag,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-CAfile",
                ca,
            ])
            .stdin(std::process::Stdio::null()));
        assert_eq!(ok, accepted, "openssl {flag}: {out}");
        if accepted {
            assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        } else {
            // The server's refusal (an alert to a TLS 1.1 ClientHello the
            // client did send), not the client's own configuration.
            assert!(
                out.contains("Protocol  : TLSv1.1") && out.contains("SSL alert number"),
                "{out}"
            );
        }
    }
    // Every chart request above reached ChartMuseum over its TLS listener.
    let cm2 = cm.clone();
    tokio::task::spawn_blocking(move || cm2.sync())
        .await
        .unwrap();
    assert_eq!(
        cm.count("POST", "/api/org1/repo1/charts"),
        2,
        "{}",
        cm.log_tail()
    );
    drop(cm);
    std::fs::remove_dir_all(&work).unwrap();
}
