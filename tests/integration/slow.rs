//! Slow clients against the stall timeouts (`listen.read_timeout`,
//! `listen.write_timeout`): stalled uploads (Content-Length, chunked, over
//! TLS with h1 and h2) and a client that stops reading a 64 MiB response
//! are cut off, and so is the upstream connection serving them; a dripping
//! upload and a slow steady download are not; an idle keep-alive closes.
//!
//! Each test sets the timeout under test to 300 ms and the other limits
//! (header read, upstream response) to 30 s, so only the stall timeout can
//! explain a close within `BOUND`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chartgate::server::devcert::{self, DevPki};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;
use crate::tls::{tmp_dir, with_tls};

/// The stall timeout under test.
const STALL: Duration = Duration::from_millis(300);
/// How soon after a stall the connection must be gone: far below the 30 s
/// every other limit is set to.
const BOUND: Duration = Duration::from_secs(5);

/// The base config with the given `[listen]` timeouts and a 30 s upstream
/// response timeout.
fn slow_config(read: &str, write: &str, header: &str) -> String {
    let from = "header_read_timeout = \"1s\"\n";
    let upstream = "\ntimeout = \"2s\"\n";
    assert!(BASE_CONFIG.contains(from) && BASE_CONFIG.contains(upstream));
    BASE_CONFIG
        .replace(
            from,
            &format!(
                "header_read_timeout = \"{header}\"\nread_timeout = \"{read}\"\nwrite_timeout = \"{write}\"\n"
            ),
        )
        .replace(upstream, "\ntimeout = \"30s\"\n")
}

/// Only the read stall timeout is short.
fn read_stall_config() -> String {
    slow_config("300ms", "30s", "30s")
}

fn push_head(framing: &str) -> String {
    format!(
        "POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n{framing}\r\n\r\n"
    )
}

/// Reads until the peer closes (EOF or an error such as a reset) and
/// returns how long that took and what arrived; panics after `BOUND`.
async fn closed_within(s: &mut (impl AsyncRead + Unpin), since: Instant) -> (Duration, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "connection still open {BOUND:?} after the stall"
    );
    (since.elapsed(), got)
}

/// Waits (bounded) until the upstream has recorded `n` requests, whole or
/// aborted.
async fn recorded(up: &Upstream, n: usize) -> Recorded {
    let deadline = Instant::now() + BOUND;
    while up.hits() < n {
        assert!(
            Instant::now() < deadline,
            "upstream never finished request {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    up.last()
}

/// Reads one response head; returns it as text.
async fn read_head(s: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, s.read(&mut byte))
            .await
            .expect("no response head")
            .expect("read failed");
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    String::from_utf8(got).unwrap()
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("no content-length")
}

/// A stalled upload: the client's connection closes within `BOUND`, no
/// sooner than the stall timeout, and the upstream is left with a
/// truncated body. Works over any stream (plain or TLS).
async fn assert_stalled_upload_is_cut_off(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    up: &Upstream,
    framing: &str,
    partial: &[u8],
) {
    s.write_all(push_head(framing).as_bytes()).await.unwrap();
    s.write_all(partial).await.unwrap();
    s.flush().await.unwrap();
    let stalled = Instant::now();
    // The upload is streaming upstream before the client stalls.
    up.wait_started(1).await;
    let (after, reply) = closed_within(&mut s, stalled).await;
    assert!(
        after >= STALL,
        "closed after {after:?}, before the stall timeout"
    );
    let seen = recorded(up, 1).await;
    assert_eq!(
        seen.body.as_ref(),
        b"<aborted>",
        "the upstream got a complete body"
    );
    eprintln!(
        "stalled upload ({framing}): closed {after:?} after the stall; client got {:?}",
        String::from_utf8_lossy(&reply).lines().next()
    );
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_and_the_upstream_sees_it_truncated() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&read_stall_config(), up.addr)).await;
    let s = TcpStream::connect(gw.addr).await.unwrap();
    assert_stalled_upload_is_cut_off(s, &up, "Content-Length: 1000", &[b'a'; 100]).await;
}

#[tokio::test]
async fn a_stalled_chunked_upload_is_cut_off_likewise() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&read_stall_config(), up.addr)).await;
    let s = TcpStream::connect(gw.addr).await.unwrap();
    let chunk = format!("64\r\n{}\r\n", "a".repeat(100));
    assert_stalled_upload_is_cut_off(s, &up, "Transfer-Encoding: chunked", chunk.as_bytes()).await;
}

#[tokio::test]
async fn a_dripping_upload_is_not_cut_off() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&read_stall_config(), up.addr)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let body: Vec<u8> = (0..20u8).map(|i| b'a' + i).collect();
    s.write_all(push_head(&format!("Content-Length: {}", body.len())).as_bytes())
        .await
        .unwrap();
    // One byte every third of the timeout: 2 s in all, nearly seven
    // timeouts, so a total deadline would have cut it.
    let start = Instant::now();
    for b in &body {
        tokio::time::sleep(STALL / 3).await;
        s.write_all(&[*b]).await.unwrap();
    }
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert_eq!(recorded(&up, 1).await.body.as_ref(), &body[..]);
    eprintln!("dripping upload: completed after {:?}", start.elapsed());
}

// === a large download ===

/// A chart of `size` bytes served in 64 KiB chunks; records how much was
/// produced and when the body was dropped unfinished.
struct Chart {
    left: u64,
    produced: Arc<AtomicU64>,
    aborted: Arc<Mutex<Option<Instant>>>,
}

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl hyper::body::Body for Chart {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64);
        self.left -= n;
        self.produced.fetch_add(n, SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &CHUNK[..n as usize],
        )))))
    }
}

impl Drop for Chart {
    fn drop(&mut self) {
        if self.left > 0 {
            *self.aborted.lock().unwrap() = Some(Instant::now());
        }
    }
}

/// An upstream whose every answer is a `size`-byte chart.
struct BigUpstream {
    addr: SocketAddr,
    produced: Arc<AtomicU64>,
    aborted: Arc<Mutex<Option<Instant>>>,
    closed: Arc<AtomicBool>,
}

async fn spawn_big_upstream(size: u64) -> BigUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let produced = Arc::new(AtomicU64::new(0));
    let aborted = Arc::new(Mutex::new(None));
    let closed = Arc::new(AtomicBool::new(false));
    let (p, a, c) = (produced.clone(), aborted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (p, a, c) = (p.clone(), a.clone(), c.clone());
            let svc = service_fn(move |_req: Request<Incoming>| {
                let chart = Chart {
                    left: size,
                    produced: p.clone(),
                    aborted: a.clone(),
                };
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/x-tar")
                            .header("content-length", size)
                            .body(chart)
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                c.store(true, SeqCst);
            });
        }
    });
    BigUpstream {
        addr,
        produced,
        aborted,
        closed,
    }
}

const BIG: u64 = 64 * 1024 * 1024;

fn download_request() -> String {
    format!(
        "GET /org1/repo1/charts/big-0.1.0.tgz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_upstream_dropped() {
    let up = spawn_big_upstream(BIG).await;
    // Only the write stall timeout is short.
    let gw = spawn_gateway(config(&slow_config("30s", "300ms", "30s"), up.addr)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(download_request().as_bytes()).await.unwrap();
    let sent = Instant::now();
    // Never read. The gateway fills the socket, its write stalls, and it
    // must then close both this connection and the upstream one.
    let deadline = sent + BOUND;
    let aborted = loop {
        if let Some(at) = *up.aborted.lock().unwrap() {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "upstream still streaming {BOUND:?} after the request ({} bytes produced)",
            up.produced.load(SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let produced = up.produced.load(SeqCst);
    assert!(produced < BIG, "the upstream sent the whole chart");
    // The upstream connection itself is gone, not parked in a pool.
    let deadline = Instant::now() + BOUND;
    while !up.closed.load(SeqCst) {
        assert!(Instant::now() < deadline, "upstream connection still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What the client can still read ends early: the response is truncated.
    let (_, got) = closed_within(&mut s, Instant::now()).await;
    assert!(
        (got.len() as u64) < BIG,
        "the client got all {} bytes",
        got.len()
    );
    eprintln!(
        "stopped reader: upstream dropped {:?} after the request, having produced {} MiB; client had {} MiB buffered",
        aborted - sent,
        produced >> 20,
        got.len() >> 20
    );
}

#[tokio::test]
async fn a_slow_steady_download_is_not_cut_off() {
    // Both stall timeouts are short. The client sends nothing while it
    // downloads, so the gateway's read side stays pending throughout; each
    // of its reads frees room for the gateway's writes well within the
    // timeout. Its small receive buffer, and a chart far larger than the
    // gateway's send buffer (at most 4 MiB here), keep the gateway writing
    // for most of the download instead of parking it all in the kernel.
    let size = 16 * 1024 * 1024;
    let up = spawn_big_upstream(size).await;
    let gw = spawn_gateway(config(&slow_config("300ms", "300ms", "30s"), up.addr)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut s = socket.connect(gw.addr).await.unwrap();
    s.write_all(download_request().as_bytes()).await.unwrap();
    let start = Instant::now();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length = content_length(&head);
    assert_eq!(length as u64, size);
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    let download = tokio::time::timeout(Duration::from_secs(60), async {
        while got < length {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {got} of {length} bytes");
            got += n;
        }
    })
    .await;
    assert!(download.is_ok(), "download did not finish");
    let took = start.elapsed();
    // The upstream finished the chart: the gateway was still writing, not
    // cut off, until the client had all but its buffers' worth.
    let finished = up.produced.load(SeqCst);
    assert!(up.aborted.lock().unwrap().is_none(), "upstream cut off");
    assert!(took > 3 * STALL, "too fast to prove anything: {took:?}");
    eprintln!("slow download: {length} bytes in {took:?}; upstream produced {finished}");
}

// === idle keep-alive ===

/// Sends one request on `s` and reads its whole response.
async fn one_request(s: &mut TcpStream) {
    let req =
        format!("GET /org1/repo1/index.yaml HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = vec![0u8; content_length(&head)];
    s.read_exact(&mut body).await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_read_timeout() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&read_stall_config(), up.addr)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    one_request(&mut s).await;
    let idle = Instant::now();
    let (after, got) = closed_within(&mut s, idle).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(after >= STALL, "closed after {after:?}");
    eprintln!("idle keep-alive (read_timeout 300ms): closed after {after:?}");
}

/// Not our timer: hyper (1.12) starts its header-read timeout as soon as a
/// keep-alive connection goes idle, so that timeout alone already bounds
/// idle HTTP/1.1 connections. Pinned here so a hyper upgrade that changes
/// it is noticed.
#[tokio::test]
async fn the_header_read_timeout_also_closes_an_idle_keep_alive() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let text = slow_config("30s", "30s", "300ms");
    let gw = spawn_gateway(config(&text, up.addr)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    one_request(&mut s).await;
    let idle = Instant::now();
    let (after, got) = closed_within(&mut s, idle).await;
    assert!(after >= STALL, "closed after {after:?}");
    eprintln!(
        "idle keep-alive (header_read_timeout 300ms): closed after {after:?}, sent {:?}",
        String::from_utf8_lossy(&got)
    );
}

// === over TLS ===

fn tls_client(pki: &DevPki, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).unwrap())
        .unwrap();
    let mut c = rustls::ClientConfig::builder_with_provider(chartgate::server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(c))
}

#[tokio::test]
async fn stalled_uploads_over_tls_are_cut_off_on_h1_and_h2() {
    let dir = tmp_dir("stall");
    let pki = devcert::generate(&["localhost"], "ci-bot").unwrap();
    pki.write(&dir).unwrap();
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(
        &with_tls(&read_stall_config(), &dir, false),
        up.addr,
    ))
    .await;
    let addr = gw.tls_addr.unwrap();
    let connect = |alpn: &'static [u8]| {
        let connector = tls_client(&pki, alpn);
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            connector
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap()
        }
    };

    // HTTP/1.1, Content-Length, stalled after a tenth of the body.
    let s = connect(b"http/1.1").await;
    assert_stalled_upload_is_cut_off(s, &up, "Content-Length: 1000", &[b'a'; 100]).await;

    // h2: one DATA frame, then nothing, not even a ping.
    let s = connect(b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(&[b'a'; 100]))))
        .await
        .unwrap();
    let req = Request::post(format!(
        "https://localhost:{}/api/org1/repo1/charts",
        addr.port()
    ))
    .header("authorization", format!("Bearer {MASTER_KEY}"))
    .body(StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
    .unwrap();
    let response = tokio::spawn(sender.send_request(req));
    up.wait_started(2).await;
    let stalled = Instant::now();
    let ended = tokio::time::timeout(BOUND, conn).await;
    assert!(
        ended.is_ok(),
        "h2 connection still open {BOUND:?} after the stall"
    );
    let after = stalled.elapsed();
    let reply = response.await.unwrap();
    assert!(
        reply
            .as_ref()
            .map_or(true, |r| r.status().is_server_error()),
        "{reply:?}"
    );
    let seen = recorded(&up, 2).await;
    assert_eq!(seen.body.as_ref(), b"<aborted>");
    eprintln!("stalled h2 upload: connection gone {after:?} after the stall");
    drop(tx);
    std::fs::remove_dir_all(&dir).unwrap();
}

// === the upstream response deadline ===

#[tokio::test]
async fn the_upstream_deadline_starts_when_the_upload_has_been_sent() {
    // A 500 ms response deadline, generous stall timeouts: an upload that
    // keeps moving for three deadlines still succeeds...
    let cfg = slow_config("30s", "30s", "30s")
        .replace("\ntimeout = \"30s\"\n", "\ntimeout = \"500ms\"\n");
    let up = spawn_upstream(Behaviour::Normal).await;
    let gw = spawn_gateway(config(&cfg, up.addr)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let body = b"0123456789abcdef";
    s.write_all(push_head(&format!("Content-Length: {}", body.len())).as_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    for chunk in body.chunks(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(chunk).await.unwrap();
    }
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    assert!(start.elapsed() > Duration::from_millis(1500));
    assert_eq!(recorded(&up, 1).await.body.as_ref(), &body[..]);

    // ...while an upstream silent after the body still gets the 504.
    let hang = spawn_upstream(Behaviour::Hang).await;
    let gw = spawn_gateway(config(&cfg, hang.addr)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(push_head(&format!("Content-Length: {}", body.len())).as_bytes())
        .await
        .unwrap();
    s.write_all(body).await.unwrap();
    let sent = Instant::now();
    let head = tokio::time::timeout(BOUND, read_head(&mut s))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    assert!(
        sent.elapsed() >= Duration::from_millis(450),
        "{:?}",
        sent.elapsed()
    );
}
