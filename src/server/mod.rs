//! Listeners: accept loops, TLS handshakes, per-connection tasks, limits
//! and the graceful drain.
//!
//! [`run`] takes pre-bound listeners and a shutdown future, so tests bind
//! port 0 and hand the listener over (no fixed ports, no sleeps). Each
//! connection is served by hyper's HTTP/1.1 or h2 builder (chosen by ALPN,
//! or by a peek at a plain connection's first bytes) with a timer, so the
//! header-read timeout is actually armed, and is watched by
//! a `GracefulShutdown` that the drain waits on, bounded by the grace period.
//! TLS handshakes run inside the connection task, under their own timeout.
//! Every served stream is wrapped in [`stall::Stall`], so a client that
//! stops sending or stops reading is cut off after `listen.read_timeout` or
//! `listen.write_timeout`.

pub mod admin;
pub mod devcert;
pub mod reload;
pub mod shutdown;
pub mod stall;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::{ListenConfig, TlsConfig};
use crate::gateway::ConnInfo;
use crate::telemetry::metrics::{ConnectionGuard, Listener, Metrics};
use admin::Admin;
use reload::Live;
use stall::{Stall, StallTimeouts};

/// Largest request head (line plus headers) read, in bytes; a larger one
/// is answered `431` by hyper.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Pause after a failed `accept` (usually EMFILE), so the loop cannot spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listeners the gateway serves on, already bound.
#[derive(Debug)]
pub struct Listeners {
    /// Plain-HTTP proxy and token endpoint.
    pub plain: Option<TcpListener>,
    /// TLS proxy and token endpoint.
    pub tls: Option<TcpListener>,
    /// `/healthz` and `/readyz`.
    pub admin: Option<TcpListener>,
}

/// The async runtime: `workers` threads, or one per CPU this process may
/// use (affinity and cgroup quota). On one thread a current-thread runtime
/// avoids waking a worker for every event: measured +48% requests/s pinned
/// to one core (bench/run.sh setup). The bench's bare forwarder uses it too,
/// so the two are compared on the same scheduler.
///
/// # Errors
/// The OS refused the runtime's threads or its I/O driver.
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// The HTTP/1.1 and h2 connection builders, configured once. The protocol
/// is known before a connection is served (ALPN, or a peek at a plain
/// connection's first bytes), so each connection gets its own protocol's
/// builder directly: hyper-util's auto builder would put a rewind buffer
/// under every read for the connection's whole life.
#[derive(Clone)]
struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

fn builders(listen: &ListenConfig) -> Builders {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(listen.header_read_timeout)
        // The head limit proper; the buffer cap alone is only checked
        // between reads, so one large read could carry a head past it.
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        // A client that stops reading leaves every open stream holding a
        // send buffer and an upstream read buffer; what one connection can
        // pin grows with both. 256 streams with hyper's 400 KiB buffer let
        // one such client grow the process by 262 MiB; 100 streams (the
        // floor RFC 9113 suggests) with 64 KiB, by 32 MiB (h2flood.rs).
        .max_concurrent_streams(100)
        .max_send_buf_size(64 * 1024)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        // Rapid reset (CVE-2023-44487) and resets the client provokes
        // (CVE-2025-8671) end in GOAWAY past these counts. They are h2's
        // defaults, set here because hyper leaves the first one unset.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        // Pings find dead h2 peers that would otherwise hold a slot forever.
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    Builders { h1, h2 }
}

/// How often an idle h2 connection is pinged, and how long the answer may take.
/// A ping and its answer are traffic, so a `listen.read_timeout` above the
/// interval never closes an h2 connection whose peer answers.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The h2 connection preface's first bytes; no HTTP/1 method starts so.
const H2_PREFACE_START: &[u8] = b"PRI";

/// Waits, bounded, for a plain connection's first bytes and tells whether
/// it speaks h2 (prior knowledge) or HTTP/1.1; `None` if nothing arrived in
/// time. Without this bound a silent socket would hold a connection slot
/// forever: no hyper timer runs before the first byte.
async fn sniff(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let look = async {
        let mut head = [0u8; 3];
        loop {
            let n = stream.peek(&mut head).await.ok().filter(|&n| n > 0)?;
            if n == head.len() || !H2_PREFACE_START.starts_with(&head[..n]) {
                return Some(&head[..n] == H2_PREFACE_START);
            }
            // A preface split across packets: peeking again at once would
            // spin on the same bytes.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(timeout, look).await.ok().flatten()
}

/// Everything a connection task needs, shared by the accept loops.
struct Shared {
    live: Arc<Live>,
    builders: Builders,
    graceful: GracefulShutdown,
    slots: Arc<Semaphore>,
    first_byte_timeout: Duration,
    stall: StallTimeouts,
}

/// Serves one established connection (plain or TLS) until it ends or
/// stalls; the drain waits for it through `watcher`.
#[allow(clippy::too_many_arguments)]
fn serve<S>(
    live: Arc<Live>,
    builders: &Builders,
    h2: bool,
    watcher: Watcher,
    io: S,
    stall: StallTimeouts,
    conn: ConnInfo,
    held: (OwnedSemaphorePermit, ConnectionGuard),
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| live.get().handle(req, conn.clone()));
    // Boxed once per connection: the stall timers must stay pinned.
    let io = TokioIo::new(Box::pin(Stall::new(io, stall)));
    if h2 {
        let connection = watcher.watch(builders.h2.serve_connection(io, svc));
        tokio::spawn(drive(connection, held));
    } else {
        let connection = watcher.watch(builders.h1.serve_connection(io, svc));
        tokio::spawn(drive(connection, held));
    }
}

/// Runs a connection to its end, then frees its slot.
async fn drive(
    connection: impl Future<Output = Result<(), hyper::Error>>,
    held: (OwnedSemaphorePermit, ConnectionGuard),
) {
    if let Err(e) = connection.await {
        debug!(error = %e, "connection ended with an error");
    }
    drop(held);
}

/// Accepts until the listener fails for good; `tls` turns on the handshake.
async fn accept_loop(shared: &Shared, listener: TcpListener, tls: Option<(TlsAcceptor, Duration)>) {
    loop {
        // Reserve a slot before accepting: at the limit, new connections
        // wait in the kernel backlog instead of costing us memory.
        let Ok(permit) = shared.slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let metrics = shared.live.metrics().clone();
        let kind = if tls.is_some() {
            Listener::Tls
        } else {
            Listener::Plain
        };
        let held = (permit, metrics.connection(kind));
        let watcher = shared.graceful.watcher();
        let live = shared.live.clone();
        let builders = shared.builders.clone();
        let first_byte_timeout = shared.first_byte_timeout;
        let stall = shared.stall;
        match &tls {
            None => {
                tokio::spawn(async move {
                    if let Some(h2) = sniff(&stream, first_byte_timeout).await {
                        let conn = ConnInfo::plain(peer);
                        serve(live, &builders, h2, watcher, stream, stall, conn, held);
                    }
                });
            }
            Some((acceptor, timeout)) => {
                let (acceptor, timeout) = (acceptor.clone(), *timeout);
                tokio::spawn(async move {
                    if let Some((stream, conn, h2)) =
                        handshake(acceptor, stream, peer, timeout, &metrics).await
                    {
                        // ALPN already chose the protocol.
                        serve(live, &builders, h2, watcher, stream, stall, conn, held);
                    }
                });
            }
        }
    }
}

/// Runs the TLS handshake under `timeout`; logs and drops failures.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    metrics: &Metrics,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, ConnInfo, bool)> {
    let outcome = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
    metrics.handshake(match &outcome {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "failed",
        Err(_) => "timeout",
    });
    match outcome {
        Ok(Ok(stream)) => {
            let (_, session) = stream.get_ref();
            let client_cn = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(tls::client_common_name)
                .map(Arc::from);
            let h2 = session.alpn_protocol() == Some(b"h2");
            let conn = ConnInfo::new(peer, "https", client_cn);
            Some((stream, conn, h2))
        }
        Ok(Err(e)) => {
            warn!(peer = %peer, reason = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            warn!(peer = %peer, "TLS handshake timed out");
            None
        }
    }
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
    tls: Option<TlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let shared = Shared {
        live,
        builders: builders(&listen),
        graceful: GracefulShutdown::new(),
        slots: Arc::new(Semaphore::new(listen.max_connections)),
        first_byte_timeout: listen.header_read_timeout,
        stall: StallTimeouts {
            read: listen.read_timeout,
            write: listen.write_timeout,
        },
    };
    let draining = admin
        .as_ref()
        .map(|a| a.draining.clone())
        .unwrap_or_default();

    let plain_loop = async {
        match listeners.plain {
            Some(l) => {
                info!(addr = %l.local_addr()?, "listening");
                accept_loop(&shared, l, None).await;
            }
            None => std::future::pending().await,
        }
        Ok::<(), anyhow::Error>(())
    };
    let tls_loop = async {
        match (listeners.tls, &tls) {
            (Some(l), Some(t)) => {
                info!(addr = %l.local_addr()?, client_auth = t.client_auth, "listening (TLS)");
                tokio::spawn(tls::watch(t.certs.clone(), t.reload_interval));
                let acceptor = TlsAcceptor::from(t.server.clone());
                accept_loop(&shared, l, Some((acceptor, t.handshake_timeout))).await;
            }
            _ => std::future::pending().await,
        }
        Ok::<(), anyhow::Error>(())
    };
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
            let counted = shared.live.metrics().connection(Listener::Admin);
            let admin = admin.clone();
            let svc = service_fn(move |req| admin.clone().handle(req));
            let stream = Box::pin(Stall::new(stream, shared.stall));
            // Probes speak HTTP/1.1.
            let conn = shared
                .builders
                .h1
                .serve_connection(TokioIo::new(stream), svc);
            let conn = shared.graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    debug!(error = %e, "admin connection ended with an error");
                }
                drop(counted);
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };

    tokio::select! {
        result = plain_loop => result?,
        result = tls_loop => result?,
        result = admin_loop => result?,
        () = shutdown => {},
    }

    draining.store(true, Ordering::Relaxed);
    info!(grace = ?listen.shutdown_grace, "stopped accepting; draining connections");
    match tokio::time::timeout(listen.shutdown_grace, shared.graceful.shutdown()).await {
        Ok(()) => info!("drained"),
        Err(_) => warn!("grace period ended with connections still open"),
    }
    Ok(())
}

/// Binds the configured listeners.
///
/// # Errors
/// An address is in use or not permitted; the message names it.
pub async fn bind(listen: &ListenConfig, tls: Option<&TlsConfig>) -> anyhow::Result<Listeners> {
    use anyhow::Context;
    async fn bind_one(addr: Option<SocketAddr>, key: &str) -> anyhow::Result<Option<TcpListener>> {
        match addr {
            None => Ok(None),
            Some(addr) => Ok(Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("{key}: cannot bind {addr}"))?,
            )),
        }
    }
    Ok(Listeners {
        plain: bind_one(listen.addr, "listen.addr").await?,
        tls: bind_one(tls.map(|t| t.addr), "tls.addr").await?,
        admin: bind_one(listen.admin_addr, "listen.admin_addr").await?,
    })
}
