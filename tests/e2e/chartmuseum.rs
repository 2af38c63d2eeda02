//! The real ChartMuseum v0.16.5 (built by `scripts/tools.sh chartmuseum`),
//! started by a test on a free loopback port with `--storage local` in a
//! directory of the test's own, and stopped by PID when the test ends. Its
//! request log (`--log-json`) is kept in a file: tests read it to prove what
//! ChartMuseum did or never received (docs/PROTOCOL.md §8), and a failure
//! message shows its tail.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::KillOnDrop;
use crate::helm::{blocking, tool};

/// How ChartMuseum is started: the flags a test varies.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--depth`.
    pub depth: u8,
    /// `--context-path`, if any.
    pub context_path: Option<String>,
    /// `--bearer-auth` with this realm, service and public key (PEM) file.
    pub bearer: Option<(String, String, PathBuf)>,
    /// `--auth-anonymous-get` (with `bearer` only).
    pub anonymous_get: bool,
    /// `--tls-cert` and `--tls-key`: serve https.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--tls-ca-cert`: require a client certificate signed by this CA.
    pub tls_client_ca: Option<PathBuf>,
    /// `--allow-overwrite`.
    pub allow_overwrite: bool,
    /// `--debug`: also log each request as it arrives, before any handler
    /// runs (so one that then panics is still in the log).
    pub debug: bool,
}

/// A running ChartMuseum, killed when dropped.
pub struct ChartMuseum {
    pub addr: SocketAddr,
    pub storage: PathBuf,
    log: PathBuf,
    tls: bool,
    context_path: String,
    /// curl's TLS arguments for the test's own probes.
    curl_tls: Vec<String>,
    _child: KillOnDrop,
}

/// One line of ChartMuseum's request log ("Request served").
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub request_id: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// curl flags to reach a ChartMuseum started with `options`: no
/// verification of its test certificate, and the test client certificate
/// beside the CA when it asks for one.
fn curl_tls(options: &Options) -> Vec<String> {
    let mut args = Vec::new();
    if options.tls.is_some() {
        args.push("-k".to_owned());
    }
    if let Some(ca) = &options.tls_client_ca {
        let dir = ca.parent().unwrap();
        for (flag, file) in [("--cert", "client.pem"), ("--key", "client-key.pem")] {
            args.push(flag.to_owned());
            args.push(dir.join(file).display().to_string());
        }
    }
    args
}

/// A fresh, empty work directory for one test: `<tmp>/chartgate-e2e-<tag>-<pid>`.
pub fn work_dir(tag: &str) -> PathBuf {
    let work = std::env::temp_dir().join(format!("chartgate-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    work
}

impl ChartMuseum {
    /// [`ChartMuseum::start`] off the async runtime, storing charts in
    /// `work/storage` and logging to `work/storage.log`.
    pub async fn start_in(options: Options, work: &Path) -> Arc<ChartMuseum> {
        let storage = work.join("storage");
        let cm = blocking(move || {
            ChartMuseum::start(&options, &storage, &storage.with_extension("log"))
        })
        .await;
        Arc::new(cm)
    }

    /// Starts ChartMuseum with `options`, storing charts in `storage` (which
    /// several instances may share) and logging to `log`; returns once
    /// `/health` answers 200.
    /// Another process may take the free port between our probe and
    /// ChartMuseum's bind, so a start that exits early is tried again.
    pub fn start(options: &Options, storage: &Path, log: &Path) -> ChartMuseum {
        std::fs::create_dir_all(storage).unwrap();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::try_start(options, storage, log, port) {
                Ok(cm) => return cm,
                Err(text) => last = text,
            }
        }
        panic!("ChartMuseum did not start; its last log:\n{last}");
    }

    fn try_start(
        options: &Options,
        storage: &Path,
        log: &Path,
        port: u16,
    ) -> Result<ChartMuseum, String> {
        let out = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(tool("chartmuseum"));
        cmd.args(["--listen-host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage", "local", "--storage-local-rootdir"])
            .arg(storage)
            .args(["--depth", &options.depth.to_string()])
            .args(["--log-json", "--log-health"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(ctx) = &options.context_path {
            cmd.args(["--context-path", ctx]);
        }
        if let Some((realm, service, cert)) = &options.bearer {
            cmd.args(["--bearer-auth", "--auth-realm", realm])
                .args(["--auth-service", service, "--auth-cert-path"])
                .arg(cert);
        }
        if options.anonymous_get {
            cmd.arg("--auth-anonymous-get");
        }
        if let Some((cert, key)) = &options.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if let Some(ca) = &options.tls_client_ca {
            cmd.arg("--tls-ca-cert").arg(ca);
        }
        if options.allow_overwrite {
            cmd.arg("--allow-overwrite");
        }
        if options.debug {
            cmd.arg("--debug");
        }
        let mut child = KillOnDrop(Some(cmd.spawn().expect("cannot run chartmuseum")));
        let cm = ChartMuseum {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            storage: storage.to_owned(),
            log: log.to_owned(),
            tls: options.tls.is_some(),
            context_path: options.context_path.clone().unwrap_or_default(),
            curl_tls: curl_tls(options),
            _child: KillOnDrop(None),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = child.0.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("exited with {status}:\n{}", cm.log_tail()));
            }
            if cm.is_healthy() {
                return Ok(ChartMuseum {
                    _child: child,
                    ..cm
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no healthy answer in 20 s:\n{}", cm.log_tail()))
    }

    /// Whether `GET <context path>/health` answers 200.
    fn is_healthy(&self) -> bool {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2"]);
        cmd.args(&self.curl_tls);
        let url = self.health_url();
        let status = cmd.arg(url).output().expect("curl is needed");
        String::from_utf8_lossy(&status.stdout) == "200"
    }

    /// `http://127.0.0.1:PORT` (or https).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `/health` under the context path (ChartMuseum matches nothing
    /// outside it).
    fn health_url(&self) -> String {
        format!("{}{}/health", self.url(), self.context_path)
    }

    /// The last 40 lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until ChartMuseum's log holds every request answered so far:
    /// it logs each one just after answering it, so a marker request sent
    /// now and seen in the log means the earlier lines are written.
    pub fn sync(&self) {
        static MARKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mark = format!(
            "sync-{}-{}",
            std::process::id(),
            MARKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-m", "5", "-H"])
            .arg(format!("X-Request-Id: {mark}"));
        cmd.args(&self.curl_tls);
        cmd.arg(self.health_url()).status().expect("curl is needed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.served().iter().any(|s| s.request_id == mark) {
            assert!(
                Instant::now() < deadline,
                "ChartMuseum never logged {mark}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every request ChartMuseum has logged as served, in order.
    pub fn served(&self) -> Vec<Served> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| {
                v["M"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("Request served"))
            })
            .map(|v| Served {
                method: v["method"].as_str().unwrap_or("").to_owned(),
                path: v["path"].as_str().unwrap_or("").to_owned(),
                status: v["statusCode"].as_u64().unwrap_or(0) as u16,
                request_id: v["reqID"].as_str().unwrap_or("").to_owned(),
            })
            .collect()
    }

    /// The request id of every line in the log: with `debug`, every request
    /// that reached ChartMuseum's router, answered or not.
    pub fn request_ids(&self) -> std::collections::HashSet<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|v| v["reqID"].as_str().map(str::to_owned))
            .collect()
    }

    /// How many `method path` requests ChartMuseum has served.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.served()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    /// The stored chart file `<repo>/<file>` (local storage layout).
    pub fn stored(&self, repo: &str, file: &str) -> PathBuf {
        self.storage.join(repo).join(file)
    }
}
