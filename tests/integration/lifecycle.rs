//! The process around the proxy: admin health, slow clients, drain on
//! shutdown, and the binary's handling of a bad config.

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

#[tokio::test]
async fn admin_health_and_readiness() {
    let (_up, gw) = setup().await;
    let r = get(&format!("http://{}/healthz", gw.admin), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["healthy"], true);
    let r = get(&format!("http://{}/readyz", gw.admin), None).await;
    assert_eq!(r.status, 200);
    // The admin port serves nothing else, and the proxy port has no /healthz.
    assert_eq!(
        get(&format!("http://{}/org1/repo1/index.yaml", gw.admin), None)
            .await
            .status,
        404
    );

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = spawn_gateway(config(BASE_CONFIG, dead)).await;
    let r = get(&format!("http://{}/readyz", gw.admin), None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["reason"], "upstream unhealthy");
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (up, gw) = setup().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // header_read_timeout is 1s in the test config; never finish the head.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection still open long after the header timeout"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (up, mut gw) = setup().await;
    // Open a keep-alive connection with a request whose body is still coming.
    let t = token(&gw, "artifact-repository:org1/repo1:push").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 10\r\n\r\n12345"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Once the request is in flight upstream, ask the gateway to stop.
    up.wait_started(1).await;
    gw.stop.take().unwrap().send(()).unwrap();
    // The in-flight request still completes.
    s.write_all(b"67890").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    assert_eq!(up.last().body.as_ref(), b"1234567890");
    // And the server task finishes once drained.
    tokio::time::timeout(Duration::from_secs(6), gw.done)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(gw.addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn a_bad_config_exits_non_zero_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("chartgate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        BASE_CONFIG
            .replace("UPSTREAM", "127.0.0.1:1")
            .replace("depth = 2", "depth = 99"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chartgate"))
        .args(["check", "--config"])
        .arg(&path)
        .env("KEY", &signing_pem().0)
        .env("MASTER", MASTER_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chartmuseum.depth"), "{stderr}");

    std::fs::write(&path, BASE_CONFIG.replace("UPSTREAM", "127.0.0.1:1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chartgate"))
        .args(["check", "--config"])
        .arg(&path)
        .env("KEY", &signing_pem().0)
        .env_remove("MASTER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("accounts[0].key.env") && stderr.contains("MASTER"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("BEGIN"),
        "key material in an error message"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A listen address already in use is a runtime failure, not a usage
/// error: exit 69, naming the address.
#[test]
fn an_address_in_use_exits_69() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("chartgate-inuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    std::fs::write(
        &path,
        BASE_CONFIG.replace("UPSTREAM", "127.0.0.1:1").replace(
            "addr = \"127.0.0.1:0\"\nadmin",
            &format!("addr = \"{addr}\"\nadmin"),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chartgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("KEY", &signing_pem().0)
        .env("MASTER", MASTER_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    drop(taken);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_refused_upload_is_read_to_its_end_and_answered_401() {
    let (up, gw) = setup().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // A chunked upload without credentials, as helm-push sends it.
    s.write_all(
        b"POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..32 {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&chunk)
            .await
            .expect("the gateway reset the connection mid-upload");
        s.write_all(b"\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let reply = read_response(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(
        !reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    // The body was consumed, so the connection is still good for the next request.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = read_response(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(up.hits(), 1, "only the health check reached the upstream");
}

/// Reads one response head and its (small, Content-Length) body.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
        if buf.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[tokio::test]
async fn a_replaced_gateway_serves_the_next_request() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(accounts_gateway_config(up.addr)).await;
    let alice = basic("alice", ALICE_PASSWORD);
    let url = gw.url("/org1/repo1/index.yaml");
    assert_eq!(get(&url, Some(&alice)).await.status, 200);
    // The same config without alice: her remembered password check goes too.
    let text = accounts_config().replace("id = \"alice\"", "id = \"alice-gone\"");
    let config = config(&text, up.addr);
    gw.live.replace(rebuild(&gw, config));
    assert_eq!(get(&url, Some(&alice)).await.status, 401);
}

/// The binary reloads its config on SIGHUP, and keeps the running one when
/// the new file is broken.
#[tokio::test]
async fn sighup_reloads_and_a_broken_file_keeps_the_old_config() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let dir = std::env::temp_dir().join(format!("chartgate-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    let allow = BASE_CONFIG.replace("UPSTREAM", &up.addr.to_string());
    std::fs::write(&path, &allow).unwrap();
    // Killed on drop, so a failed assertion never leaves it running.
    let Binary {
        mut child,
        mut lines,
        addr,
    } = spawn_binary(&path, &[]).await;
    let url = format!("http://{addr}/org1/repo1/index.yaml");
    let key = format!("Bearer {MASTER_KEY}");
    assert_eq!(get(&url, Some(&key)).await.status, 200);

    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP failed");
    };
    // Narrow the master account to org2; reload.
    std::fs::write(&path, allow.replace("repos = \"**\"", "repos = \"org2/*\"")).unwrap();
    hup(child.id());
    wait_for(&mut lines, "configuration reloaded").await;
    assert_eq!(get(&url, Some(&key)).await.status, 401);

    // A broken file: logged, and the running config stays.
    std::fs::write(&path, "this is not toml").unwrap();
    hup(child.id());
    wait_for(&mut lines, "reload failed").await;
    assert_eq!(get(&url, Some(&key)).await.status, 401);
    let org2 = format!("http://{addr}/org2/repo2/index.yaml");
    assert_eq!(get(&org2, Some(&key)).await.status, 200);

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut process = child.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || process.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "chartgate did not exit cleanly on SIGTERM: {status}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn request_targets_need_one_host_and_no_userinfo() {
    let (up, gw) = setup().await;
    let cases = [
        ("GET /health HTTP/1.1\r\n\r\n", "400"),
        ("GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        (
            "GET http://alice:hunter2@gw.example/health HTTP/1.1\r\nHost: gw.example\r\n\r\n",
            "400",
        ),
        (
            "GET http://gw.example/health HTTP/1.1\r\nHost: other.example\r\n\r\n",
            "200",
        ),
    ];
    for (request, status) in cases {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let reply = read_response(&mut s).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {reply}"
        );
    }
    // The absolute-form authority wins over Host (RFC 9112 §3.2.2).
    assert_eq!(up.hits(), 1);
    assert_eq!(up.last().headers["x-forwarded-host"], "gw.example");
}

#[tokio::test]
async fn silent_sockets_cannot_hold_every_connection_slot() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let text = BASE_CONFIG.replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nmax_connections = 2",
    );
    let gw = spawn_gateway(config(&text, up.addr)).await;
    // Two clients connect and never send a byte.
    let mut a = TcpStream::connect(gw.addr).await.unwrap();
    let _b = TcpStream::connect(gw.addr).await.unwrap();
    // They are cut off after the header timeout (1s here)...
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), a.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent socket stayed open"
    );
    // ...so a real client gets served.
    let r = tokio::time::timeout(Duration::from_secs(10), get(&gw.url("/health"), None))
        .await
        .expect("starved by silent sockets");
    assert_eq!(r.status, 200);
}
