//! Watching the gateway: logs ([`init`], text or JSON, filtered by
//! `RUST_LOG`, default `info`), [`metrics`] for Prometheus, the [`audit`]
//! trail of publishes and token requests, and W3C [`trace`] context.
//!
//! Nothing in the gateway logs a header map, a token, a secret or a key:
//! credentials are read into types whose `Debug` redacts them, and the
//! access line and audit events carry only named, non-secret fields.

pub mod access;
pub mod audit;
pub mod metrics;
pub mod trace;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber writing `format` to stderr. Safe to call
/// once; later calls are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
    };
}
