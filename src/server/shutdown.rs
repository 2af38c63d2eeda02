//! The shutdown signal: SIGTERM (how Kubernetes and systemd ask a process to
//! drain) or SIGINT (Ctrl-C in a terminal).

use tracing::info;

/// Resolves when SIGTERM or SIGINT arrives, logging which.
///
/// # Errors
/// The signal handlers could not be installed.
pub async fn signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, draining"),
        _ = int.recv() => info!("SIGINT received, draining"),
    }
    Ok(())
}
