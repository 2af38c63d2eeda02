//! The real chartmuseum/auth library (v0.6.0 on golang-jwt v4.5.2, what
//! ChartMuseum v0.16.5 runs in `--bearer-auth` mode) as an oracle: tokens
//! chartgate mints must be accepted by it for exactly their scopes, and
//! chartgate's challenge bytes must equal the library's.
//!
//! The oracle binary is built from `tests/cmauth-oracle` by `scripts/tools.sh`;
//! a missing binary fails the test, it never skips.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use bytes::Bytes;
use hyper::Request;
use serde_json::{json, Value};

use crate::common::*;

fn tools_dir() -> PathBuf {
    match std::env::var_os("CHARTGATE_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/chartgate/tools")
        }
    }
}

struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    fn start(realm: &str, service: &str, cert: &std::path::Path) -> Oracle {
        let bin = tools_dir().join("bin/cmauth-oracle");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/tools.sh (the README's test command does)",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["-realm", realm, "-service", service, "-cert"])
            .arg(cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Oracle {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, auth: &str, action: &str, namespace: &str) -> Value {
        let q = json!({"auth": auth, "action": action, "namespace": namespace});
        writeln!(self.stdin, "{q}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("oracle said {line:?}: {e}"))
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn chartmuseum_auth_accepts_chartgate_tokens_for_exactly_their_scopes() {
    let (_up, gw) = setup().await;
    let dir = std::env::temp_dir().join(format!("chartgate-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("chartgate.pub.pem");
    std::fs::write(&cert, &signing_pem().1).unwrap();
    let mut oracle = Oracle::start("http://localhost:8080/oauth/token", "localhost:8080", &cert);

    let pull = format!(
        "Bearer {}",
        token(&gw, "artifact-repository:org1/repo1:pull").await
    );
    let both = format!(
        "Bearer {}",
        token(&gw, "artifact-repository:org1/repo1:pull,push").await
    );
    let root = format!(
        "Bearer {}",
        token(&gw, "artifact-repository:repo:pull").await
    );

    // Allowed by ChartMuseum's own verifier.
    for (auth, action, ns) in [
        (&pull, "pull", "org1/repo1"),
        (&both, "push", "org1/repo1"),
        (&both, "pull", "org1/repo1"),
        (&root, "pull", ""),
    ] {
        let a = oracle.ask(auth, action, ns);
        assert_eq!(a["allowed"], true, "{action} {ns}: {a}");
    }

    // Denied by ChartMuseum's verifier, and by chartgate with identical challenge bytes.
    let cases: Vec<(&str, &str, &str, &str, &str)> = vec![
        (
            &pull,
            "push",
            "org1/repo1",
            "POST",
            "/api/org1/repo1/charts",
        ),
        (&pull, "pull", "org2/repo2", "GET", "/org2/repo2/index.yaml"),
        (
            &pull,
            "pull",
            "org1/repo10",
            "GET",
            "/org1/repo10/index.yaml",
        ),
        (&pull, "pull", "", "GET", "/"),
        ("", "pull", "org1/repo1", "GET", "/org1/repo1/index.yaml"),
        (
            "",
            "push",
            "org1/repo1",
            "DELETE",
            "/api/org1/repo1/charts/mychart/0.1.0",
        ),
    ];
    for (auth, action, ns, method, path) in cases {
        let a = oracle.ask(auth, action, ns);
        assert_eq!(a["allowed"], false, "{action} {ns}: {a}");
        let mut b = Request::builder().method(method).uri(gw.url(path));
        if !auth.is_empty() {
            b = b.header("authorization", auth);
        }
        let r = send(b.body(full(Bytes::new())).unwrap()).await;
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(
            r.header("www-authenticate"),
            a["www_authenticate"].as_str().unwrap(),
            "{method} {path}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
