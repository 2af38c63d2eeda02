//! Shared fixtures: an in-process recording upstream, a gateway on port 0,
//! a small HTTP client, and token helpers. No fixed ports, no sleeps to wait
//! for servers: listeners are bound first and handed over.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::time::Duration;

use bytes::Bytes;
use chartgate::server::admin::Admin;
use chartgate::server::{self, Listeners};
use chartgate::{Config, Gateway};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const MASTER_KEY: &str = "test-master-key-0123456789";
pub const OLD_KEY: &str = "old-account-key-0123456789";

/// One RSA signing key per test binary (generation is slow).
pub fn signing_pem() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| chartgate::auth::key::generate_rsa_pem().unwrap())
}

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the fake upstream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Acts like a tiny ChartMuseum: stores uploads, serves them back.
    Normal,
    /// Never answers.
    Hang,
    /// Answers 401 with its own Basic challenge.
    Challenge,
}

/// An in-process upstream that records every request it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
    /// Requests whose head has arrived (bodies may still be streaming).
    pub started: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    /// Waits (bounded) until `n` request heads have reached the upstream.
    pub async fn wait_started(&self, n: usize) {
        for _ in 0..500 {
            if self.started.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("upstream never saw request {n}");
    }
    pub fn last(&self) -> Recorded {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }
}

pub const INDEX_YAML: &str = "apiVersion: v1\nentries:\n  mychart:\n  - name: mychart\n    version: 0.1.0\n    urls:\n    - charts/mychart-0.1.0.tgz\ngenerated: \"2026-11-29T00:00:00Z\"\nserverInfo: {}\n";

pub async fn spawn_upstream(behaviour: Behaviour) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store: Arc<Mutex<HashMap<String, Bytes>>> = Arc::default();
    let seen2 = seen.clone();
    let started2 = started.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            let started = started2.clone();
            let store = store.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                let store = store.clone();
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let (parts, body) = req.into_parts();
                    let body = match body.collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => Bytes::from_static(b"<aborted>"),
                    };
                    seen.lock().unwrap().push(Recorded {
                        method: parts.method.clone(),
                        uri: parts.uri.to_string(),
                        headers: parts.headers.clone(),
                        body: body.clone(),
                    });
                    if behaviour == Behaviour::Hang {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, Infallible>(fake_chartmuseum(behaviour, &parts, body, &store))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        seen,
        started,
    }
}

fn fake_chartmuseum(
    behaviour: Behaviour,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    store: &Mutex<HashMap<String, Bytes>>,
) -> Response<Full<Bytes>> {
    let reply = |status: u16, ct: &str, body: Bytes| {
        Response::builder()
            .status(status)
            .header("content-type", ct)
            .header("connection", "keep-alive")
            .body(Full::new(body))
            .unwrap()
    };
    if behaviour == Behaviour::Challenge {
        let mut r = reply(
            401,
            "application/json; charset=utf-8",
            Bytes::from_static(b"{\"error\":\"unauthorized\"}"),
        );
        r.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"ChartMuseum\"".parse().unwrap(),
        );
        return r;
    }
    let path = parts.uri.path();
    match (parts.method.as_str(), path) {
        ("GET", "/health") => reply(
            200,
            "application/json",
            Bytes::from_static(b"{\"healthy\":true}"),
        ),
        ("GET", p) if p.ends_with("/index.yaml") => reply(
            200,
            "application/x-yaml",
            Bytes::from_static(INDEX_YAML.as_bytes()),
        ),
        ("POST", p) if p.starts_with("/api/") && p.ends_with("/charts") => {
            // Store the raw upload under the repo; tests compare bytes.
            let repo = p.trim_start_matches("/api/").trim_end_matches("/charts");
            store
                .lock()
                .unwrap()
                .insert(format!("/{repo}/charts/upload"), body);
            reply(
                201,
                "application/json",
                Bytes::from_static(b"{\"saved\":true}"),
            )
        }
        ("GET", p) if p.contains("/charts/") => match store.lock().unwrap().get(p) {
            Some(b) => reply(200, "application/x-tar", b.clone()),
            None => reply(
                404,
                "application/json",
                Bytes::from_static(b"{\"error\":\"object not found\"}"),
            ),
        },
        _ => reply(
            200,
            "application/json",
            Bytes::from_static(b"{\"ok\":true}"),
        ),
    }
}

pub const BASE_CONFIG: &str = r#"
[listen]
addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
header_read_timeout = "1s"
shutdown_grace = "5s"

[upstream]
url = "http://UPSTREAM"
timeout = "2s"
max_upload_bytes = 1048576

[chartmuseum]
depth = 2

[auth]
realm = "http://localhost:8080/oauth/token"
service = "localhost:8080"
leeway = "0s"

[issuer]
signing_key = { env = "KEY" }

[[accounts]]
id = "master"
key = { env = "MASTER" }
rules = [{ repos = "**", actions = ["pull", "push"] }]
"#;

pub fn config(text: &str, upstream: SocketAddr) -> Config {
    let text = text.replace("UPSTREAM", &upstream.to_string());
    Config::from_toml_str(&text, Path::new("."), &|name| match name {
        "KEY" => Some(signing_pem().0.clone()),
        "MASTER" => Some(MASTER_KEY.to_owned()),
        "OLD" => Some(OLD_KEY.to_owned()),
        _ => None,
    })
    .unwrap()
}

/// A running gateway.
pub struct Gw {
    pub live: Arc<chartgate::server::reload::Live>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener, when the config has `[tls]`.
    pub tls_addr: Option<SocketAddr>,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gw {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub async fn spawn_gateway(config: Config) -> Gw {
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = main.local_addr().unwrap();
    let admin_addr = admin_listener.local_addr().unwrap();
    let listen = config.server.listen.clone();
    let tls = config.server.tls.clone();
    let tls_listener = match &tls {
        Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        None => None,
    };
    let tls_addr = tls_listener.as_ref().map(|l| l.local_addr().unwrap());
    let metrics = Arc::new(chartgate::telemetry::metrics::Metrics::new());
    let gateway = Gateway::from_config(config.gateway, metrics.clone()).unwrap();
    let live = Arc::new(chartgate::server::reload::Live::new(
        gateway,
        config.table,
        metrics,
    ));
    let admin = Arc::new(Admin {
        live: live.clone(),
        draining: Arc::new(AtomicBool::new(false)),
        certs: tls.as_ref().map(|t| t.certs.clone()),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = Listeners {
        plain: Some(main),
        tls: tls_listener,
        admin: Some(admin_listener),
    };
    let done = tokio::spawn(server::run(
        listeners,
        live.clone(),
        Some(admin),
        listen,
        tls,
        async move {
            let _ = stopped.await;
        },
    ));
    Gw {
        live,
        addr,
        admin: admin_addr,
        tls_addr,
        stop: Some(stop),
        done,
    }
}

/// A gateway built from `config` for `gw`'s live slot (a reload by hand).
pub fn rebuild(gw: &Gw, config: Config) -> Gateway {
    Gateway::from_config(config.gateway, gw.live.metrics().clone()).unwrap()
}

/// Upstream plus gateway with the base config.
pub async fn setup() -> (Upstream, Gw) {
    let upstream = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(BASE_CONFIG, upstream.addr)).await;
    (upstream, gw)
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

pub type TestBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub async fn send(req: Request<TestBody>) -> Reply {
    let client: Client<_, TestBody> = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str, auth: Option<&str>) -> Reply {
    let mut b = Request::get(url);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    send(b.body(full(Bytes::new())).unwrap()).await
}

/// Gets a token from the gateway's issuer with the master key.
pub async fn token(gw: &Gw, scopes: &str) -> String {
    let url = gw.url(&format!(
        "/oauth/token?grant_type=client_credentials&scope={scopes}"
    ));
    let req = Request::post(url)
        .header("authorization", format!("Bearer {MASTER_KEY}"))
        .body(full(Bytes::new()))
        .unwrap();
    let reply = send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

/// Decodes a JWT's header and claims without verifying (tests only).
pub fn decode_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

// === accounts fixture ===

pub const CI_KEY: &str = "cgk_ci-key-for-tests-0123456789";
pub const ALICE_PASSWORD: &str = "alice correct horse";

fn alice_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| chartgate::auth::account::hash_password(ALICE_PASSWORD).unwrap())
}

pub fn accounts_config() -> String {
    let ci_digest = {
        use aws_lc_rs::digest;
        let d = digest::digest(&digest::SHA256, CI_KEY.as_bytes());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    BASE_CONFIG.replace(
        "leeway = \"0s\"",
        "leeway = \"0s\"\nanonymous_pull = [\"public/*\"]\ntoken_header = \"X-Chartgate-Token\"",
    ) + &format!(
        r#"
[[accounts]]
id = "alice"
secret_hash = "{}"
rules = [
  {{ repos = "org1/secret", actions = [] }},
  {{ repos = "org1/*", actions = ["pull", "push"] }},
  {{ repos = "*/*", actions = ["pull"] }},
]

[[accounts]]
id = "ci"
secret_hash = "sha256:{ci_digest}"
rules = [{{ repos = "org2/repo2", actions = ["pull"] }}]

[[accounts]]
id = "old"
key = {{ env = "OLD" }}
expires = "2020-01-01T00:00:00Z"
rules = [{{ repos = "**", actions = ["pull", "push"] }}]
"#,
        alice_hash()
    )
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// The accounts config, validated, fronting `upstream`.
pub fn accounts_gateway_config(upstream: SocketAddr) -> Config {
    config(&accounts_config(), upstream)
}

// === child processes ===

/// Waits (bounded) for a log line containing `needle`.
pub async fn wait_for(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needle: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
            .expect("chartgate exited");
        if line.contains(needle) {
            return line;
        }
    }
}

/// A child process killed when the test ends, pass or fail.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address in the first "listening" log line, text or JSON.
pub fn listening_addr(line: &str) -> SocketAddr {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["addr"].as_str().unwrap().parse().unwrap();
    }
    line.rsplit("addr=").next().unwrap().trim().parse().unwrap()
}

/// The real `chartgate` binary serving `config`, its log lines, and the
/// address it reported listening on.
pub struct Binary {
    pub child: KillOnDrop,
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub addr: SocketAddr,
}

/// Starts the real binary on the config file at `config`, with the signing
/// key in `KEY`, the master key in `MASTER` and `env` besides, logging at
/// info; returns once it reports its listening address. Its log is drained
/// for its whole life, so logging never blocks it.
pub async fn spawn_binary(config: &Path, env: &[(&str, &str)]) -> Binary {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chartgate"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("KEY", &signing_pem().0)
        .env("MASTER", MASTER_KEY)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info");
    spawn_serving(cmd).await
}

/// Starts `cmd` (a `chartgate serve`, however launched) with its stderr
/// drained into log lines; returns once it reports its listening address.
pub async fn spawn_serving(mut cmd: std::process::Command) -> Binary {
    use std::io::{BufRead, BufReader};
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.0.as_mut().unwrap().stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let line = loop {
        let line = wait_for(&mut lines, "listening").await;
        if line.contains("INFO listening addr=") || line.contains("\"message\":\"listening\"") {
            break line;
        }
    };
    Binary {
        child,
        lines,
        addr: listening_addr(&line),
    }
}

/// Sends SIGHUP to `pid` (a reload).
pub fn hup(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP failed");
}

/// A loopback port free a moment ago, for a config that names its port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `grant_type` of an RFC 8693 token exchange.
pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `subject_token_type` of an OIDC id token.
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Posts a token exchange of `id_token` asking for `scope`.
pub async fn exchange(gw: &Gw, id_token: &str, scope: &str) -> Reply {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", EXCHANGE)
        .append_pair("subject_token", id_token)
        .append_pair("subject_token_type", ID_TOKEN)
        .append_pair("scope", scope)
        .finish();
    let req = Request::post(gw.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full(Bytes::from(form)))
        .unwrap();
    send(req).await
}
