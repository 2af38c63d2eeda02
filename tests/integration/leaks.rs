//! No leaks: tokens, secrets, keys and `Authorization` values never appear
//! in logs (at every level, dependencies included), in error bodies, or in
//! what the upstream receives.

use std::io::Read;
use std::process::{Command, Stdio};

use bytes::Bytes;
use hyper::Request;

use crate::common::*;

#[tokio::test]
async fn no_secret_reaches_logs_bodies_or_the_upstream() {
    let logs = no_secret_leaks("text").await;
    assert!(
        logs.contains(" done ") || logs.contains("done"),
        "no access line"
    );
}

/// The same with `log.format = "json"`: every line is one JSON object, the
/// access lines carry their fields, and still no secret appears.
#[tokio::test]
async fn no_secret_reaches_json_logs_and_every_line_is_json() {
    let logs = no_secret_leaks("json").await;
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|v| v["message"] == "done" && v["route"] == "index" && v["status"] == 200)
        .expect("no access line for a served index");
    for field in [
        "id",
        "trace_id",
        "peer",
        "method",
        "repo",
        "sub",
        "decision",
        "bytes_in",
        "bytes_out",
        "upstream_micros",
        "micros",
    ] {
        assert!(
            access.get(field).is_some(),
            "access line lacks {field}: {access}"
        );
    }
    assert_eq!(access["repo"], "org1/repo1");
    assert!(access["bytes_out"].as_u64().unwrap() > 0);
}

/// Runs the binary at trace level with `format` logs through every kind of
/// credential, checks nothing secret leaked, and returns the logs.
async fn no_secret_leaks(format: &str) -> String {
    let up = spawn_upstream(Behaviour::Normal).await;
    let dir = std::env::temp_dir().join(format!("chartgate-leaks-{format}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    let text = accounts_config()
        .replace("UPSTREAM", &up.addr.to_string())
        .replace(
            "addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"",
            "addr = \"127.0.0.1:0\"",
        )
        + &format!("\n[log]\nformat = \"{format}\"\n");
    std::fs::write(&path, &text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chartgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("KEY", &signing_pem().0)
        .env("MASTER", MASTER_KEY)
        .env("OLD", OLD_KEY)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });

    // Find the port from the first log lines (bounded wait).
    let addr = {
        let mut found = None;
        for _ in 0..100 {
            if let Some(a) = listening_addr(child.id()) {
                found = Some(a);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        found.expect("chartgate did not start listening")
    };
    let url = |p: &str| format!("http://{addr}{p}");

    let wrong_key = "cgk_wrong-guess-of-a-key-1234567";
    let wrong_password = "not-alices-password-zz";
    let token_reply = send(
        Request::post(url("/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull,push"))
            .header("authorization", basic("alice", ALICE_PASSWORD))
            .body(full(Bytes::new()))
            .unwrap(),
    )
    .await;
    let token = token_reply.json()["token"].as_str().unwrap().to_owned();
    let mut bodies = vec![token_reply
        .text()
        .replace(&token, "<the token, expected here>")];
    for (method, path, auth) in [
        ("GET", "/org1/repo1/index.yaml", format!("Bearer {token}")),
        (
            "GET",
            "/org1/repo1/index.yaml",
            basic("alice", ALICE_PASSWORD),
        ),
        (
            "GET",
            "/org1/repo1/index.yaml",
            basic("alice", wrong_password),
        ),
        (
            "GET",
            "/org1/repo1/index.yaml",
            format!("Bearer {MASTER_KEY}"),
        ),
        (
            "GET",
            "/org1/repo1/index.yaml",
            format!("Bearer {wrong_key}"),
        ),
        ("GET", "/org1/repo1/index.yaml", basic("token", &token)),
        (
            "POST",
            "/oauth/token?grant_type=client_credentials",
            format!("Bearer {wrong_key}"),
        ),
        (
            "POST",
            "/oauth/token?grant_type=client_credentials",
            basic("alice", wrong_password),
        ),
        ("GET", "/org1/../x/index.yaml", format!("Bearer {token}")),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(url(path))
            .header("authorization", auth);
        let r = send(req.body(full(Bytes::new())).unwrap()).await;
        bodies.push(format!("{:?} {}", r.headers, r.text()));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let logs = reader.join().unwrap();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "logs were not captured at every level"
    );

    let key_body: String = signing_pem()
        .0
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(3)
        .collect();
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let secrets = [
        ("token", token.clone()),
        (
            "token signature",
            token.rsplit('.').next().unwrap().to_owned(),
        ),
        ("alice's password", ALICE_PASSWORD.to_owned()),
        ("a wrong password", wrong_password.to_owned()),
        ("the master key", MASTER_KEY.to_owned()),
        ("a wrong key", wrong_key.to_owned()),
        ("a Basic value", b64(&format!("alice:{ALICE_PASSWORD}"))),
        ("the signing key", key_body),
    ];
    let upstream_saw: String = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("{:?} {:?}", r.headers, r.uri))
        .collect();
    for (what, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{what} appears in the logs"
        );
        for body in &bodies {
            assert!(
                !body.contains(secret.as_str()),
                "{what} appears in a response: {body}"
            );
        }
        assert!(
            !upstream_saw.contains(secret.as_str()),
            "{what} reached the upstream"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    logs
}

/// The proxy port a chartgate process listens on, from /proc.
fn listening_addr(pid: u32) -> Option<std::net::SocketAddr> {
    // Inode numbers of the process's sockets...
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    // ...matched against listening TCP sockets (state 0A).
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    tcp.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(3) != Some(&"0A") || !inodes.iter().any(|i| Some(&i.as_str()) == cols.get(9)) {
            return None;
        }
        let (ip, port) = cols[1].split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?.to_le_bytes();
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(std::net::SocketAddr::from((ip, port)))
    })
}
