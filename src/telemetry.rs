//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), plain text or JSON lines.
//!
//! Nothing in the gateway logs a header map, a token, a secret or a key:
//! credentials are read into types whose `Debug` redacts them.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once; later calls are no-ops.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
