//! Live configuration: the [`Gateway`] serving requests is replaced while
//! the process runs (SIGHUP), so upstream, account, rule and key changes
//! take effect without a restart and without dropping connections.
//!
//! Each request takes the gateway current when it arrives; requests already
//! running finish on the one they started with. A reload reads, validates
//! and builds the new gateway on a blocking thread (parsing keys and files
//! never pauses traffic), then swaps it in one atomic step and logs each key
//! that changed. Settings bound at start (listeners, TLS listener, limits,
//! timeouts, log format) are named in a warning instead: they take effect
//! after a restart. A reload that fails leaves the running gateway
//! untouched, with the error logged and counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::config::diff::{self, Changes};
use crate::config::Config;
use crate::gateway::Gateway;
use crate::server::tls::CertStore;
use crate::telemetry::metrics::Metrics;

/// The gateway currently in service, and the file it was built from.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Gateway>,
    table: Mutex<toml::Table>,
    metrics: Arc<Metrics>,
}

impl Live {
    /// Starts with `gateway`, built from the file `table`, recording into
    /// `metrics`.
    pub fn new(gateway: Gateway, table: toml::Table, metrics: Arc<Metrics>) -> Live {
        Live {
            current: ArcSwap::from_pointee(gateway),
            table: Mutex::new(table),
            metrics,
        }
    }

    /// The gateway for a request arriving now.
    pub fn get(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// The process-wide metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Reloads from `path`: `certs` (the TLS listener's) first, since their
    /// files may change without the config; then the config, off the
    /// runtime; then one swap. Returns what changed.
    ///
    /// # Errors
    /// The certificate or config does not load; nothing was replaced.
    pub async fn reload(
        &self,
        path: &Path,
        certs: Option<Arc<CertStore>>,
    ) -> anyhow::Result<Changes> {
        let metrics = self.metrics.clone();
        let path: PathBuf = path.to_owned();
        let built = tokio::task::spawn_blocking(move || {
            if let Some(certs) = &certs {
                certs
                    .reload()
                    .context("tls: the new certificate was refused")?;
            }
            let config = Config::load(&path)?;
            let table = config.table.clone();
            Gateway::from_config(config.gateway, metrics).map(|g| (g, table))
        })
        .await
        .context("the reload task failed")
        .and_then(|built| built);
        let (gateway, table) = match built {
            Ok(built) => built,
            Err(e) => {
                self.metrics.reload("failed");
                return Err(e);
            }
        };
        let mut running = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut changes = diff::changes(&running, &table);
        if gateway.signing_kid() != self.get().signing_kid() {
            changes.applied.push(format!(
                "issuer.signing_key (kid {})",
                gateway.signing_kid()
            ));
        }
        self.current.store(Arc::new(gateway));
        *running = table;
        self.metrics.reload("ok");
        Ok(changes)
    }

    /// Puts `gateway` in service for every request from now on.
    pub fn replace(&self, gateway: Gateway) {
        self.current.store(Arc::new(gateway));
    }
}

/// Reloads from `path` on every SIGHUP until the process ends.
pub async fn on_sighup(live: Arc<Live>, path: PathBuf, certs: Option<Arc<CertStore>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; config reload disabled");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match live.reload(&path, certs.clone()).await {
            Ok(changes) => log_changes(&changes),
            Err(e) => {
                error!(error = %format!("{e:#}"), "SIGHUP: reload failed; keeping the running configuration")
            }
        }
    }
}

fn log_changes(changes: &Changes) {
    for key in &changes.restart_only {
        warn!(key = %key, "SIGHUP: {key} changed: takes effect after restart");
    }
    if changes.applied.is_empty() {
        info!("SIGHUP: configuration reloaded; nothing it applies changed");
    } else {
        info!(changed = %changes.applied.join(", "), "SIGHUP: configuration reloaded");
    }
}
