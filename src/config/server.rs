//! The settings bound once at start and owned by `server/`: listeners,
//! the TLS listener, connection limits, timeouts, worker threads and the log
//! format. A reload reads them too, only to warn that a change waits for a
//! restart (see [`super::diff`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::raw::{RawListen, RawLog, RawTls};
use crate::server::tls::{self, CertStore};

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Plain-HTTP listener, if any.
    pub addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub header_read_timeout: Duration,
    /// How long a connection may sit with a read pending and nothing moving
    /// either way: a stalled upload, a silent client, an idle keep-alive.
    pub read_timeout: Duration,
    /// How long a write to the client may stay pending (it stopped reading).
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub worker_threads: Option<usize>,
}

/// The TLS listener, with its certificate already loaded.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub addr: SocketAddr,
    /// The certificate in service; reloadable.
    pub certs: Arc<CertStore>,
    /// rustls settings built around `certs`.
    pub server: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    pub reload_interval: Duration,
    /// Whether client certificates are requested and verified.
    pub client_auth: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable `key=value` lines.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON layer).
    Json,
}

/// Everything `server/` binds at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: ListenConfig,
    pub tls: Option<TlsConfig>,
    pub log_format: LogFormat,
}

impl RawListen {
    /// # Errors
    /// The first invalid `listen.*` key, by name.
    pub fn validate(self, has_tls: bool) -> Result<ListenConfig> {
        ensure!(
            self.max_connections > 0,
            "listen.max_connections must be at least 1"
        );
        for (key, value) in [
            ("listen.header_read_timeout", self.header_read_timeout),
            ("listen.read_timeout", self.read_timeout),
            ("listen.write_timeout", self.write_timeout),
        ] {
            ensure!(!value.is_zero(), "{key} must be more than zero");
        }
        ensure!(
            self.addr
                .is_none_or(|a| a.port() == 0 || self.admin_addr != Some(a)),
            "listen.admin_addr must differ from listen.addr"
        );
        ensure!(
            self.worker_threads.is_none_or(|n| (1..=1024).contains(&n)),
            "listen.worker_threads must be between 1 and 1024"
        );
        ensure!(
            self.addr.is_some() || has_tls,
            "listen.addr is required unless [tls] is configured"
        );
        Ok(ListenConfig {
            addr: self.addr,
            admin_addr: self.admin_addr,
            header_read_timeout: self.header_read_timeout,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
            worker_threads: self.worker_threads,
        })
    }
}

impl RawTls {
    /// # Errors
    /// The first invalid `tls.*` key, or a certificate that does not load.
    pub fn validate(self, base: &Path) -> Result<TlsConfig> {
        ensure!(
            !self.handshake_timeout.is_zero(),
            "tls.handshake_timeout must be more than zero"
        );
        ensure!(
            !self.reload_interval.is_zero(),
            "tls.reload_interval must be more than zero"
        );
        let certs = CertStore::load(base.join(&self.cert), base.join(&self.key))
            .context("tls.cert / tls.key")?;
        let certs = Arc::new(certs);
        let client_ca = self.client_ca.as_ref().map(|p| base.join(p));
        let server =
            tls::server_config(certs.clone(), client_ca.as_deref()).context("tls.client_ca")?;
        Ok(TlsConfig {
            addr: self.addr,
            certs,
            server,
            handshake_timeout: self.handshake_timeout,
            reload_interval: self.reload_interval,
            client_auth: client_ca.is_some(),
        })
    }
}

impl RawLog {
    /// # Errors
    /// `log.format` is neither `text` nor `json`.
    pub fn validate(self) -> Result<LogFormat> {
        match self.format.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => anyhow::bail!("log.format must be \"text\" or \"json\", got {other:?}"),
        }
    }
}
