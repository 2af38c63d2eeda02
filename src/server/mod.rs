//! Listeners: accept loops, per-connection tasks, limits and graceful drain.
//!
//! [`run`] takes pre-bound listeners and a shutdown future, so tests bind
//! port 0 and hand the listener over (no fixed ports, no sleeps). Each
//! connection is served by hyper-util's auto builder (HTTP/1.1 and h2) with
//! a timer, so the header-read timeout is actually armed, and is watched by
//! a `GracefulShutdown` that the drain waits on, bounded by the grace period.

pub mod admin;
pub mod reload;
pub mod shutdown;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::ListenConfig;
use crate::gateway::ConnInfo;
use admin::Admin;
use reload::Live;

/// Largest request head (line plus headers) read, in bytes; a larger one
/// is answered `431` by hyper.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Pause after a failed `accept` (usually EMFILE), so the loop cannot spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listeners the gateway serves on, already bound.
#[derive(Debug)]
pub struct Listeners {
    /// Proxy and token endpoint.
    pub main: TcpListener,
    /// `/healthz` and `/readyz`.
    pub admin: Option<TcpListener>,
}

fn builder(listen: &ListenConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listen.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// Serves the gateway in `live` on `listeners` until `shutdown` resolves,
/// then drains open connections for at most `listen.shutdown_grace`.
///
/// # Errors
/// Only on failures to set up; per-connection errors are logged.
pub async fn run(
    listeners: Listeners,
    live: Arc<Live>,
    admin: Option<Arc<Admin>>,
    listen: ListenConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = builder(&listen);
    let slots = Arc::new(Semaphore::new(listen.max_connections));
    let draining = admin
        .as_ref()
        .map(|a| a.draining.clone())
        .unwrap_or_default();
    let main_addr = listeners.main.local_addr()?;
    info!(addr = %main_addr, "listening");

    let admin_loop = async {
        let (Some(listener), Some(admin)) = (listeners.admin, admin) else {
            return std::future::pending().await;
        };
        info!(addr = %listener.local_addr()?, "admin listening");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let admin = admin.clone();
            let svc = service_fn(move |req| admin.clone().handle(req));
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };

    let main_loop = async {
        loop {
            // Reserve a slot before accepting: at the limit, new connections
            // wait in the kernel backlog instead of costing us memory.
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (stream, peer) = match listeners.main.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conn_info = ConnInfo {
                peer,
                proto: "http",
            };
            let live = live.clone();
            let svc = service_fn(move |req: Request<Incoming>| live.get().handle(req, conn_info));
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
    };

    tokio::select! {
        () = main_loop => {},
        result = admin_loop => result?,
        () = shutdown => {},
    }

    draining.store(true, Ordering::Relaxed);
    info!(grace = ?listen.shutdown_grace, "stopped accepting; draining connections");
    match tokio::time::timeout(listen.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => info!("drained"),
        Err(_) => warn!("grace period ended with connections still open"),
    }
    Ok(())
}

/// Binds the configured listeners.
///
/// # Errors
/// An address is in use or not permitted; the message names it.
pub async fn bind(listen: &ListenConfig) -> anyhow::Result<Listeners> {
    use anyhow::Context;
    let main = TcpListener::bind(listen.addr)
        .await
        .with_context(|| format!("listen.addr: cannot bind {}", listen.addr))?;
    let admin = match listen.admin_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen.admin_addr: cannot bind {addr}"))?,
        ),
        None => None,
    };
    Ok(Listeners { main, admin })
}
