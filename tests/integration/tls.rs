//! The TLS listener in process: both ALPN protocols, certificate swaps with
//! open connections surviving, corrupt replacements refused, client
//! certificates as credentials, and TLS to the upstream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chartgate::server::devcert::{self, DevPki};
use http_body_util::BodyExt;
use hyper::{Request, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::common::*;

pub fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chartgate-tls-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Adds a `[tls]` section (and optionally a client CA) to `text`.
pub fn with_tls(text: &str, dir: &Path, client_ca: bool) -> String {
    let mut section = format!(
        "\n[tls]\naddr = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nreload_interval = \"100ms\"\n",
        dir.join("server.pem").display(),
        dir.join("server-key.pem").display()
    );
    if client_ca {
        section.push_str(&format!(
            "client_ca = \"{}\"\n",
            dir.join("ca.pem").display()
        ));
    }
    // Sections must come before [[accounts]] arrays to stay in [tls].
    match text.find("[[accounts]]") {
        Some(i) => format!("{}{section}\n{}", &text[..i], &text[i..]),
        None => format!("{text}{section}"),
    }
}

fn roots(pki: &DevPki) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).unwrap())
        .unwrap();
    roots
}

fn client_config(pki: &DevPki, client_cert: bool, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let b = rustls::ClientConfig::builder_with_provider(chartgate::server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki));
    let mut c = if client_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap();
        b.with_client_auth_cert(chain, key).unwrap()
    } else {
        b.with_no_client_auth()
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    c
}

/// One TLS connection by hand: returns the negotiated ALPN and the leaf.
async fn connect(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

fn leaf_of(s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn https_get(
    pki: &DevPki,
    url: &str,
    auth: Option<&str>,
    h2: bool,
    client_cert: bool,
) -> (Reply, Version) {
    // hyper-rustls sets ALPN itself from the enabled versions.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(pki, client_cert, &[]))
        .https_only();
    let https = if h2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    let mut client = Client::builder(TokioExecutor::new());
    client.http2_only(h2);
    let client: Client<_, TestBody> = client.build(https);
    let mut b = Request::get(url);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let resp = client
        .request(b.body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        version,
    )
}

#[tokio::test]
async fn serves_h2_and_http11_over_tls() {
    let dir = tmp_dir("alpn");
    let pki = devcert::generate(&["localhost", "127.0.0.1"], "ci-bot").unwrap();
    pki.write(&dir).unwrap();
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&with_tls(BASE_CONFIG, &dir, false), up.addr)).await;
    let base = format!("https://localhost:{}", gw.tls_addr.unwrap().port());
    let key = format!("Bearer {MASTER_KEY}");
    for h2 in [true, false] {
        let (r, version) = https_get(
            &pki,
            &format!("{base}/org1/repo1/index.yaml"),
            Some(&key),
            h2,
            false,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            version,
            if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        );
        let seen = up.last();
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(
            seen.headers["x-forwarded-host"],
            format!("localhost:{}", gw.tls_addr.unwrap().port())
        );
    }
    let (r, _) = https_get(
        &pki,
        &format!("{base}/org1/repo1/index.yaml"),
        None,
        true,
        false,
    )
    .await;
    assert_eq!(r.status, 401);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_swapped_certificate_reaches_new_connections_and_open_ones_survive() {
    let dir = tmp_dir("swap");
    let a = devcert::generate(&["localhost"], "ci-bot").unwrap();
    a.write(&dir).unwrap();
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&with_tls(BASE_CONFIG, &dir, false), up.addr)).await;
    let addr = gw.tls_addr.unwrap();

    // A connection opened with the first certificate.
    let mut open = connect(addr, client_config(&a, false, &[b"http/1.1"])).await;
    let first_leaf = leaf_of(&open);

    // Replace the pair (same CA so the client still trusts it): first a
    // half-written pair, which must be refused, then the complete one.
    let b = devcert::generate(&["localhost"], "ci-bot").unwrap();
    std::fs::write(dir.join("server.pem"), &b.server_cert).unwrap();
    std::fs::write(
        dir.join("server-key.pem"),
        "-----BEGIN PRIVATE KEY-----\ntruncated",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let still = connect(addr, client_config(&a, false, &[b"http/1.1"])).await;
    assert_eq!(
        leaf_of(&still),
        first_leaf,
        "a corrupt pair replaced the certificate"
    );

    std::fs::write(dir.join("server-key.pem"), &b.server_key).unwrap();
    let mut swapped = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = connect(addr, client_config(&b, false, &[b"http/1.1"])).await;
        if leaf_of(&fresh) != first_leaf {
            swapped = true;
            break;
        }
    }
    assert!(
        swapped,
        "the new certificate never reached a new connection"
    );

    // The connection opened before the swap still works.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    open.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_client_certificate_authenticates_its_account() {
    let dir = tmp_dir("mtls");
    let pki = devcert::generate(&["localhost"], "ci-bot").unwrap();
    pki.write(&dir).unwrap();
    let up = spawn_upstream(Behaviour::Normal).await;
    let text = with_tls(BASE_CONFIG, &dir, true)
        + "\n[[accounts]]\nid = \"bot\"\nclient_cert_cn = \"ci-bot\"\nrules = [{ repos = \"org1/*\", actions = [\"pull\"] }]\n";
    let gw = spawn_gateway(config(&text, up.addr)).await;
    let url = format!(
        "https://localhost:{}/org1/repo1/index.yaml",
        gw.tls_addr.unwrap().port()
    );
    let (r, _) = https_get(&pki, &url, None, false, true).await;
    assert_eq!(r.status, 200, "with the certificate");
    let (r, _) = https_get(&pki, &url, None, false, false).await;
    assert_eq!(r.status, 401, "without it");
    let push = format!(
        "https://localhost:{}/org2/repo2/index.yaml",
        gw.tls_addr.unwrap().port()
    );
    let (r, _) = https_get(&pki, &push, None, false, true).await;
    assert_eq!(r.status, 401, "outside the account's rules");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What a TLS upstream saw: SNI, client certificate CN, Authorization.
#[derive(Debug, Default, Clone)]
struct UpstreamTlsSeen {
    sni: Option<String>,
    client_cn: Option<String>,
    authorization: Option<String>,
}

/// An HTTPS upstream (cert for `localhost`) that requires a client
/// certificate from `pki`'s CA and records what it saw.
async fn spawn_tls_upstream(
    pki: &DevPki,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<UpstreamTlsSeen>>>,
) {
    let dir = tmp_dir("upstream-certs");
    pki.write(&dir).unwrap();
    let store = Arc::new(
        chartgate::server::tls::CertStore::load(dir.join("server.pem"), dir.join("server-key.pem"))
            .unwrap(),
    );
    let config = chartgate::server::tls::server_config(store, Some(&dir.join("ca.pem"))).unwrap();
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<UpstreamTlsSeen>>> = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let base = UpstreamTlsSeen {
                    sni: session.server_name().map(str::to_owned),
                    client_cn: session
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(chartgate::server::tls::client_common_name),
                    authorization: None,
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let mut s = base.clone();
                    s.authorization = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    seen.lock().unwrap().push(s);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"ok")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn an_https_upstream_gets_sni_a_client_certificate_and_the_gateways_credential() {
    let pki = devcert::generate(&["localhost"], "chartgate-gw").unwrap();
    let dir = tmp_dir("upstream-client");
    pki.write(&dir).unwrap();
    let (addr, seen) = spawn_tls_upstream(&pki).await;
    let text = BASE_CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        &format!(
            "url = \"https://localhost:{}\"\nca_file = \"{d}/ca.pem\"\nclient_cert = \"{d}/client.pem\"\nclient_key = \"{d}/client-key.pem\"\nbasic_auth_user = \"gate\"\nbasic_auth_password = {{ env = \"MASTER\" }}",
            addr.port(),
            d = dir.display()
        ),
    );
    let gw = spawn_gateway(config(&text, addr)).await;
    let r = get(
        &gw.url("/org1/repo1/index.yaml"),
        Some(&format!("Bearer {MASTER_KEY}")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(s.sni.as_deref(), Some("localhost"));
    assert_eq!(s.client_cn.as_deref(), Some("chartgate-gw"));
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("gate:{MASTER_KEY}")
        )
    );
    assert_eq!(
        s.authorization.as_deref(),
        Some(expected.as_str()),
        "the client's token must not be relayed"
    );

    // Without the CA, the upstream's certificate is not trusted: 502.
    let untrusting = text.replace(&format!("ca_file = \"{}/ca.pem\"\n", dir.display()), "");
    let gw = spawn_gateway(config(&untrusting, addr)).await;
    let r = get(&gw.url("/health"), None).await;
    assert_eq!(r.status, 502);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The binary re-reads its certificate on SIGHUP, without waiting for the
/// file poll (set to an hour here).
#[tokio::test]
async fn sighup_puts_a_new_certificate_in_service() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tmp_dir("hup");
    let a = devcert::generate(&["localhost"], "ci-bot").unwrap();
    a.write(&dir).unwrap();
    let up = spawn_upstream(Behaviour::Normal).await;
    let text = with_tls(
        &BASE_CONFIG.replace("UPSTREAM", &up.addr.to_string()),
        &dir,
        false,
    )
    .replace("reload_interval = \"100ms\"", "reload_interval = \"1h\"")
    .replace("admin_addr = \"127.0.0.1:0\"\n", "");
    let path = dir.join("chartgate.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_chartgate"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("KEY", &signing_pem().0)
            .env("MASTER", MASTER_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let stderr = child.0.as_mut().unwrap().stderr.take().unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = wait_for(&mut lines, "listening (TLS)").await;
    let addr: std::net::SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let before = leaf_of(&connect(addr, client_config(&a, false, &[b"http/1.1"])).await);

    let b = devcert::generate(&["localhost"], "ci-bot").unwrap();
    b.write(&dir).unwrap();
    let ok = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    wait_for(&mut lines, "configuration reloaded").await;
    let after = leaf_of(&connect(addr, client_config(&b, false, &[b"http/1.1"])).await);
    assert_ne!(
        before, after,
        "SIGHUP did not put the new certificate in service"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
