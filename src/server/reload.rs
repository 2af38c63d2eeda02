//! Live configuration: the [`Gateway`] serving requests can be replaced
//! while the process runs (SIGHUP), so account and rule changes take effect
//! without a restart and without dropping connections.
//!
//! Each request takes the gateway current when it arrives; requests already
//! running finish on the one they started with. A reload that fails to load
//! or validate leaves the running gateway untouched, with the error logged.
//! Listener addresses cannot change on reload (they are already bound).

use std::sync::{Arc, RwLock};

use tracing::{error, info, warn};

use crate::gateway::Gateway;

/// The gateway currently in service.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Gateway>>,
}

impl Live {
    /// Starts with `gateway`.
    pub fn new(gateway: Gateway) -> Live {
        Live {
            current: RwLock::new(Arc::new(gateway)),
        }
    }

    /// The gateway for a request arriving now.
    pub fn get(&self) -> Arc<Gateway> {
        // A poisoned lock only means a writer panicked mid-swap; the Arc
        // inside is still whole, so keep serving it.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `gateway` in service for every request from now on.
    pub fn replace(&self, gateway: Gateway) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(gateway);
    }
}

/// Reloads on every SIGHUP until the process ends: `load` builds a new
/// gateway from the config on disk.
pub async fn on_sighup<F>(live: Arc<Live>, load: F)
where
    F: Fn() -> anyhow::Result<Gateway>,
{
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; config reload disabled");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match load() {
            Ok(gateway) => {
                live.replace(gateway);
                info!("SIGHUP: configuration reloaded");
            }
            Err(e) => {
                error!(error = %format!("{e:#}"), "SIGHUP: reload failed; keeping the running configuration")
            }
        }
    }
}
