//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), with colours only on a terminal.
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
