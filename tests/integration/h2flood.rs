//! HTTP/2 floods an attacker would send, hand-encoded frame by frame over
//! plain TCP (the plain listener takes h2 with prior knowledge): rapid
//! reset (CVE-2023-44487), batched or one frame at a time, and its
//! server-provoked twin (CVE-2025-8671); streams reset after they were
//! forwarded; CONTINUATION floods; streams beyond the advertised cap; PING
//! and SETTINGS floods that never read a reply; flow-control windows pushed
//! past 2^31-1; and a client that opens every stream and never reads.
//!
//! Every test runs on loopback with bounded counts and timeouts, and
//! asserts what the server did (GOAWAY codes, resets, bytes it took, memory
//! it grew by) and what reached the upstream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::common::*;

// === a tiny HTTP/2 encoder (RFC 9113, RFC 7541) ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The largest frame payload a peer must accept (SETTINGS_MAX_FRAME_SIZE default).
const MAX_FRAME: usize = 16_384;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24);
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = values
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// An HPACK integer with a `prefix`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, prefix: u8, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(u8::try_from(n).unwrap());
        return;
    }
    out.push(u8::try_from(max).unwrap());
    n -= max;
    while n >= 128 {
        out.push(u8::try_from(n % 128).unwrap() | 0x80);
        n /= 128;
    }
    out.push(u8::try_from(n).unwrap());
}

/// A header block of literals without indexing, with new names and no
/// Huffman coding (RFC 7541 §6.2.2): the decoder keeps no state from it.
fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00);
        hpack_int(&mut out, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The header block of an authorized pull of the index.
fn pull_block(token: &str) -> Vec<u8> {
    hpack(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", INDEX),
        ("authorization", &format!("Bearer {token}")),
    ])
}

/// A complete request on `stream`: one HEADERS frame, no body.
fn request(stream: u32, block: &[u8]) -> Vec<u8> {
    frame(HEADERS, END_STREAM | END_HEADERS, stream, block)
}

const PULL: &str = "artifact-repository:org1/repo1:pull";
const INDEX: &str = "/org1/repo1/index.yaml";

// === reading what the server sends ===

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
    /// `(last stream id, error code)` of a GOAWAY.
    fn goaway(&self) -> Option<(u32, u32)> {
        (self.kind == GOAWAY).then(|| (self.u32_at(0) & 0x7fff_ffff, self.u32_at(4)))
    }
    /// The error code of a RST_STREAM.
    fn reset(&self) -> Option<u32> {
        (self.kind == RST_STREAM).then(|| self.u32_at(0))
    }
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<Frame> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
        payload,
    })
}

/// A raw h2 connection: the test writes frames, a task reads every frame
/// the server sends (so the server is never blocked on us) until it closes.
struct Conn {
    w: OwnedWriteHalf,
    rx: mpsc::UnboundedReceiver<Frame>,
    /// Frames received so far.
    seen: Vec<Frame>,
    /// The server closed its side.
    closed: bool,
    /// What the server advertised in its first SETTINGS.
    advertised: Vec<(u16, u32)>,
}

impl Conn {
    /// Connects, exchanges prefaces and SETTINGS (acknowledging the server's).
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (mut r, mut w) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(f) = read_frame(&mut r).await {
                if tx.send(f).is_err() {
                    break;
                }
            }
        });
        w.write_all(&[PREFACE, &settings(&[])].concat())
            .await
            .unwrap();
        let mut conn = Conn {
            w,
            rx,
            seen: Vec::new(),
            closed: false,
            advertised: Vec::new(),
        };
        let first = tokio::time::timeout(Duration::from_secs(5), conn.rx.recv())
            .await
            .expect("no SETTINGS from the server")
            .expect("the server closed instead of speaking h2");
        assert_eq!(
            (first.kind, first.flags & ACK),
            (SETTINGS, 0),
            "the server's first frame is its SETTINGS"
        );
        conn.advertised = first
            .payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect();
        conn.w
            .write_all(&frame(SETTINGS, ACK, 0, &[]))
            .await
            .unwrap();
        conn
    }

    fn advertised(&self, id: u16) -> Option<u32> {
        self.advertised
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
    }

    /// Takes whatever has arrived, without waiting.
    fn poll(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(f) => self.seen.push(f),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Collects frames until the server closes or `within` passes.
    async fn until_closed(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.closed {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(f)) => self.seen.push(f),
                Ok(None) => self.closed = true,
                Err(_) => return,
            }
        }
    }

    /// Collects frames until none arrives for `quiet`, or the server closes.
    async fn until_quiet(&mut self, quiet: Duration) {
        while !self.closed {
            match tokio::time::timeout(quiet, self.rx.recv()).await {
                Ok(Some(f)) => self.seen.push(f),
                Ok(None) => self.closed = true,
                Err(_) => return,
            }
        }
    }

    fn goaway(&self) -> Option<(u32, u32)> {
        self.seen.iter().find_map(Frame::goaway)
    }

    /// Streams the server reset, with the reason.
    fn resets(&self) -> Vec<(u32, u32)> {
        self.seen
            .iter()
            .filter_map(|f| f.reset().map(|code| (f.stream, code)))
            .collect()
    }

    /// Streams the server answered with a response head.
    fn answered(&self) -> Vec<u32> {
        self.seen
            .iter()
            .filter(|f| f.kind == HEADERS)
            .map(|f| f.stream)
            .collect()
    }
}

/// An ordinary client with h2 prior knowledge: the status of one GET and
/// the length of its body.
async fn h2_get(addr: SocketAddr, path: &str, authorization: &str) -> (StatusCode, usize) {
    use http_body_util::BodyExt;
    let go = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("http://{addr}{path}"))
            .header("authorization", authorization)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        (
            status,
            resp.into_body().collect().await.unwrap().to_bytes().len(),
        )
    };
    tokio::time::timeout(Duration::from_secs(5), go)
        .await
        .expect("an ordinary h2 client was not served within 5 s")
}

/// Asserts an ordinary h2 client gets the index, promptly.
async fn still_serves(addr: SocketAddr, token: &str) {
    let asked = Instant::now();
    let (status, _) = h2_get(addr, INDEX, &format!("Bearer {token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "an ordinary client waited {:?}",
        asked.elapsed()
    );
}

/// Waits until the upstream's request count stops moving (bounded).
async fn settled_hits(up: &Upstream) -> usize {
    let started = || up.started.load(SeqCst);
    let mut last = started();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = started();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// A gateway whose upstream takes requests and never answers, with an
/// upstream timeout long enough to outlast the test.
async fn hanging_setup() -> (Upstream, Gw) {
    let up = spawn_upstream(Behaviour::Hang).await;
    let text = BASE_CONFIG.replace("timeout = \"2s\"", "timeout = \"60s\"");
    assert_ne!(text, BASE_CONFIG);
    let gw = spawn_gateway(config(&text, up.addr)).await;
    (up, gw)
}

/// The SETTINGS_MAX_CONCURRENT_STREAMS the gateway advertises.
async fn stream_cap(addr: SocketAddr) -> u32 {
    Conn::open(addr)
        .await
        .advertised(SETTINGS_MAX_CONCURRENT_STREAMS)
        .expect("no SETTINGS_MAX_CONCURRENT_STREAMS advertised")
}

// === rapid reset, and resets the server is made to send ===

/// The frames sent after a stream's request, given its id.
type FollowUp = fn(u32) -> Vec<u8>;

/// Streams an attacker tries to open on one connection.
const ATTACK_STREAMS: u32 = 10_000;

/// Opens up to `streams` streams, each an authorized pull followed
/// by `then(stream)`, until the server sends GOAWAY or hangs up. `split`
/// writes every frame on its own and lets the server run in between (so it
/// can take each stream before its reset arrives); otherwise 50 streams go
/// per write, as a flooder would batch them. Returns the connection, closed
/// or given up on after 5 s, and the streams written.
async fn open_and_abort(
    addr: SocketAddr,
    token: &str,
    then: FollowUp,
    split: bool,
    streams: u32,
) -> (Conn, u32) {
    let block = pull_block(token);
    let mut conn = Conn::open(addr).await;
    let mut sent = 0u32;
    'attack: while sent < streams {
        conn.poll();
        if conn.closed || conn.goaway().is_some() {
            break;
        }
        let id = 2 * sent + 1;
        if split {
            for bytes in [request(id, &block), then(id)] {
                if conn.w.write_all(&bytes).await.is_err() {
                    break 'attack;
                }
                tokio::task::yield_now().await;
            }
            sent += 1;
        } else {
            let mut batch = Vec::new();
            for id in (id..).step_by(2).take(50) {
                batch.extend(request(id, &block));
                batch.extend(then(id));
            }
            if conn.w.write_all(&batch).await.is_err() {
                break;
            }
            sent += 50;
        }
    }
    conn.until_closed(Duration::from_secs(5)).await;
    (conn, sent)
}

#[tokio::test]
async fn rapid_reset_is_cut_off_before_it_reaches_the_upstream() {
    let (up, gw) = setup().await;
    let t = token(&gw, PULL).await;
    let cap = stream_cap(gw.addr).await;
    let before = settled_hits(&up).await;
    let (conn, sent) = open_and_abort(
        gw.addr,
        &t,
        |id| rst_stream(id, CANCEL),
        false,
        ATTACK_STREAMS,
    )
    .await;
    let hits = settled_hits(&up).await - before;
    let goaway = conn.goaway();
    eprintln!(
        "rapid reset: {sent} streams written, GOAWAY {goaway:?}, \
         {hits} requests reached the upstream"
    );
    let (last_stream, code) = goaway.expect("no GOAWAY for a rapid-reset flood");
    assert_eq!(code, ENHANCE_YOUR_CALM);
    assert!(conn.closed, "the connection stayed open after its GOAWAY");
    assert!(
        sent < ATTACK_STREAMS,
        "the attacker wrote all {ATTACK_STREAMS} streams"
    );
    // Stream ids are odd: the server looked at `last_stream / 2 + 1`.
    assert!(
        last_stream / 2 < cap,
        "the server took {} streams before calling it off",
        last_stream / 2 + 1
    );
    assert!(
        hits <= cap as usize,
        "{hits} cancelled requests reached the upstream"
    );
    // Others are still served, over h2 and HTTP/1.1.
    still_serves(gw.addr, &t).await;
    let r = get(&gw.url(INDEX), Some(&format!("Bearer {t}"))).await;
    assert_eq!(r.status, 200);
}

/// The same flood one frame per write, the server running in between: it
/// takes each stream before its reset arrives, so h2's rapid-reset counter
/// (streams reset while waiting to be taken) never fills and the
/// connection lives on. What must hold instead: a taken stream's work is
/// dropped with its reset, so none of it reaches the upstream in bulk,
/// and other clients are served meanwhile.
#[tokio::test]
async fn rapid_reset_one_frame_per_read_costs_no_upstream_work() {
    let (up, gw) = setup().await;
    let t = token(&gw, PULL).await;
    let cap = stream_cap(gw.addr).await;
    let before = settled_hits(&up).await;
    let started = Instant::now();
    let (conn, sent) =
        open_and_abort(gw.addr, &t, |id| rst_stream(id, CANCEL), true, 10 * cap).await;
    let elapsed = started.elapsed();
    let hits = settled_hits(&up).await - before;
    eprintln!(
        "rapid reset, one frame per read: {sent} streams in {elapsed:?}, GOAWAY {:?}, \
         {hits} requests reached the upstream, {} responses",
        conn.goaway(),
        conn.answered().len()
    );
    assert!(sent > cap, "only {sent} streams were written");
    assert!(
        hits <= cap as usize,
        "{hits} cancelled requests reached the upstream"
    );
    still_serves(gw.addr, &t).await;
}

/// Streams each made to fail with a stream error, which the server answers
/// with its own RST_STREAM ("MadeYouReset", CVE-2025-8671): resets the
/// rapid-reset counter does not see, counted by the local-error limit.
#[tokio::test]
async fn provoked_resets_are_cut_off_too() {
    let (up, gw) = setup().await;
    let t = token(&gw, PULL).await;
    let cap = stream_cap(gw.addr).await;
    // (name, what follows each request, the reset it provokes)
    let provocations: [(&str, FollowUp, u32); 2] = [
        (
            "stream window overflow",
            |id| window_update(id, 0x7fff_ffff),
            FLOW_CONTROL_ERROR,
        ),
        (
            "PRIORITY on itself",
            |id| {
                frame(
                    PRIORITY,
                    0,
                    id,
                    &[id.to_be_bytes().as_slice(), &[15]].concat(),
                )
            },
            PROTOCOL_ERROR,
        ),
    ];
    for (name, provoke, reason) in provocations {
        let before = settled_hits(&up).await;
        let (conn, sent) = open_and_abort(gw.addr, &t, provoke, false, ATTACK_STREAMS).await;
        let hits = settled_hits(&up).await - before;
        let provoked = conn.resets().iter().filter(|(_, c)| *c == reason).count();
        let goaway = conn.goaway();
        eprintln!(
            "provoked resets ({name}): {sent} streams written, {provoked} resets read, \
             GOAWAY {goaway:?}, {hits} requests reached the upstream"
        );
        assert!(provoked > 0, "{name}: provoked no reset");
        let (last_stream, code) = goaway.unwrap_or_else(|| panic!("{name}: no GOAWAY"));
        assert_eq!(code, ENHANCE_YOUR_CALM, "{name}");
        assert!(conn.closed, "{name}: the connection stayed open");
        // The limit is 1024 server-sent resets per connection.
        assert!(
            last_stream / 2 < 1024 + cap,
            "{name}: the server took {} streams before calling it off",
            last_stream / 2 + 1
        );
        assert!(
            hits <= cap as usize,
            "{name}: {hits} reset requests reached the upstream"
        );
    }
    still_serves(gw.addr, &t).await;
}

/// An upstream that takes requests and never answers, counting the
/// connections open to it now and ever.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (open, total) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (open2, total2) = (open.clone(), total.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let open = open2.clone();
            open.fetch_add(1, SeqCst);
            total2.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                open.fetch_sub(1, SeqCst);
            });
        }
    });
    (addr, open, total)
}

/// The reset variant rapid-reset limits cannot count: each stream is reset
/// only once the gateway has forwarded it. The upstream request must be
/// cancelled with it, or resets would pile up upstream work past the cap.
#[tokio::test]
async fn a_reset_stream_cancels_its_upstream_request() {
    let (up_addr, open, total) = counting_upstream().await;
    let text = BASE_CONFIG.replace("timeout = \"2s\"", "timeout = \"60s\"");
    let gw = spawn_gateway(config(&text, up_addr)).await;
    let t = token(&gw, PULL).await;
    let block = pull_block(&t);
    let mut conn = Conn::open(gw.addr).await;
    let cap = conn.advertised(SETTINGS_MAX_CONCURRENT_STREAMS).unwrap();

    let rounds = cap + 44;
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..rounds {
        let id = 2 * i + 1;
        conn.w.write_all(&request(id, &block)).await.unwrap();
        while total.load(SeqCst) <= i as usize {
            assert!(
                Instant::now() < deadline,
                "stream {id} never reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        conn.w.write_all(&rst_stream(id, CANCEL)).await.unwrap();
    }
    let mut left = open.load(SeqCst);
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = open.load(SeqCst);
    }
    conn.poll();
    eprintln!(
        "late resets: {rounds} streams forwarded then reset, {left} upstream requests left open, \
         GOAWAY {:?}",
        conn.goaway()
    );
    assert_eq!(total.load(SeqCst), rounds as usize);
    assert_eq!(
        left, 0,
        "cancelled requests still hold upstream connections"
    );
}

// === CONTINUATION floods ===

/// Makes the payload of each CONTINUATION frame in turn.
type Payloads = Box<dyn FnMut() -> Vec<u8>>;

/// What the attacker may send before the server must have hung up.
const CONTINUATION_BUDGET: usize = 1 << 20;

/// Sends a HEADERS frame on stream 1 carrying `first` without END_HEADERS,
/// then CONTINUATION frames carrying `next()`, never ending the block, one
/// frame per write with a pause for the server to read (so the count is
/// honest), until the server hangs up, 4x the budget is sent, or 10 s
/// pass. Returns the bytes written before the hang-up was seen, and the
/// GOAWAY code.
async fn continuation_flood(
    addr: SocketAddr,
    first: &[u8],
    mut next: impl FnMut() -> Vec<u8>,
) -> (usize, u32) {
    let mut conn = Conn::open(addr).await;
    let mut bytes = frame(HEADERS, END_STREAM, 1, first);
    let mut written = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while written < 4 * CONTINUATION_BUDGET && Instant::now() < deadline {
        conn.poll();
        if conn.closed || conn.goaway().is_some() {
            break;
        }
        if conn.w.write_all(&bytes).await.is_err() {
            break;
        }
        written += bytes.len();
        bytes = frame(CONTINUATION, 0, 1, &next());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    conn.until_closed(Duration::from_secs(5)).await;
    assert!(
        conn.closed,
        "still open after {written} bytes of CONTINUATION"
    );
    assert!(
        conn.answered().is_empty(),
        "an endless header block was answered"
    );
    let (_, code) = conn.goaway().expect("hung up without a GOAWAY");
    (written, code)
}

#[tokio::test]
async fn continuation_floods_are_cut_off_early() {
    let (up, gw) = setup().await;
    let t = token(&gw, PULL).await;
    let before = settled_hits(&up).await;
    // A literal header whose value is `len` bytes long, of which only the
    // name is here: the rest is to come in CONTINUATION frames.
    let open_literal = |len| {
        let mut block = hpack(&[(":method", "GET")]);
        block.push(0x00);
        hpack_int(&mut block, 7, 5);
        block.extend_from_slice(b"x-big");
        hpack_int(&mut block, 7, len);
        block
    };
    let pad = "p".repeat(1000);
    let mut n = 0;
    let cases: [(&str, Vec<u8>, Payloads, u32); 4] = [
        (
            "full frames of well-formed headers",
            pull_block(&t),
            Box::new(move || {
                let mut block = Vec::new();
                while block.len() + 1100 < MAX_FRAME {
                    n += 1;
                    block.extend(hpack(&[(&format!("x-pad-{n}"), &pad)]));
                }
                block
            }),
            ENHANCE_YOUR_CALM,
        ),
        (
            "full frames of a 1 GiB literal",
            open_literal(1 << 30),
            Box::new(|| vec![b'a'; MAX_FRAME]),
            PROTOCOL_ERROR,
        ),
        (
            "1-byte frames of a literal under the header-list limit",
            open_literal(60_000),
            Box::new(|| vec![b'a']),
            ENHANCE_YOUR_CALM,
        ),
        (
            "empty frames",
            pull_block(&t),
            Box::new(Vec::new),
            ENHANCE_YOUR_CALM,
        ),
    ];
    for (name, first, next, want) in cases {
        let (bytes, code) = continuation_flood(gw.addr, &first, next).await;
        eprintln!("CONTINUATION flood, {name}: GOAWAY {code:#x} after {bytes} bytes");
        assert_eq!(code, want, "{name}");
        assert!(bytes < CONTINUATION_BUDGET, "{name}: {bytes} bytes taken");
    }
    assert_eq!(
        settled_hits(&up).await,
        before,
        "a flood reached the upstream"
    );
    still_serves(gw.addr, &t).await;
}

// === the concurrent-stream cap ===

#[tokio::test]
async fn streams_beyond_the_advertised_cap_are_refused() {
    let (up, gw) = hanging_setup().await;
    let t = token(&gw, PULL).await;
    let block = pull_block(&t);
    let mut conn = Conn::open(gw.addr).await;
    eprintln!("advertised SETTINGS: {:?}", conn.advertised);
    let cap = conn
        .advertised(SETTINGS_MAX_CONCURRENT_STREAMS)
        .expect("no SETTINGS_MAX_CONCURRENT_STREAMS advertised");
    assert!(
        (100..=256).contains(&cap),
        "SETTINGS_MAX_CONCURRENT_STREAMS {cap}"
    );
    let header_list = conn.advertised(SETTINGS_MAX_HEADER_LIST_SIZE);
    assert!(
        header_list.is_some_and(|n| n <= 64 * 1024),
        "SETTINGS_MAX_HEADER_LIST_SIZE {header_list:?}"
    );

    const EXCESS: u32 = 50;
    let ids: Vec<u32> = (0..cap + EXCESS).map(|i| 2 * i + 1).collect();
    for batch in ids.chunks(64) {
        let bytes: Vec<u8> = batch.iter().flat_map(|&id| request(id, &block)).collect();
        conn.w.write_all(&bytes).await.unwrap();
    }
    up.wait_started(cap as usize).await;
    conn.until_quiet(Duration::from_millis(500)).await;
    let refused: Vec<u32> = conn
        .resets()
        .iter()
        .filter(|(_, c)| *c == REFUSED_STREAM)
        .map(|(id, _)| *id)
        .collect();
    let hits = settled_hits(&up).await;
    eprintln!(
        "cap {cap}: {} of {} streams refused, {hits} reached the upstream",
        refused.len(),
        ids.len()
    );
    // Exactly the streams past the cap are refused; the others wait on the
    // upstream, which saw no more than the cap.
    assert_eq!(refused, ids[cap as usize..], "refused streams");
    assert_eq!(conn.resets().len(), refused.len(), "{:?}", conn.resets());
    assert!(conn.answered().is_empty());
    assert_eq!(hits, cap as usize);
    assert!(!conn.closed && conn.goaway().is_none());

    // A refused stream holds no slot: cancel one open stream and the next
    // new one is taken and forwarded.
    let next = 2 * (cap + EXCESS) + 1;
    conn.w.write_all(&rst_stream(1, CANCEL)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.w.write_all(&request(next, &block)).await.unwrap();
    up.wait_started(cap as usize + 1).await;
    conn.until_quiet(Duration::from_millis(300)).await;
    assert!(!conn.resets().iter().any(|(id, _)| *id == next));
}

// === PING and SETTINGS floods that never read a reply ===

/// Bytes an attacker may push, replies unread, before the server must stop
/// taking them: loopback kernel buffers (here at most 4 MiB sending and
/// 32 MiB receiving per socket) plus the server's own, with room to spare.
const UNREAD_FLOOD_BUDGET: usize = 64 << 20;

/// Floods copies of `unit` and never reads, until writes stall for a
/// second, the server hangs up, or the budget is spent; meanwhile an
/// ordinary client must be served promptly. Returns the bytes taken.
async fn flood_without_reading(gw: &Gw, token: &str, name: &str, unit: &[u8]) -> usize {
    let socket = TcpSocket::new_v4().unwrap();
    // Small buffers on the attacker's side, so what is counted is mostly
    // what the server took in.
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(gw.addr).await.unwrap();
    s.write_all(&[PREFACE, &settings(&[])].concat())
        .await
        .unwrap();
    let batch: Vec<u8> = unit.repeat(64 * 1024 / unit.len());
    let mut written = 0;
    let started = Instant::now();
    let outcome = loop {
        if written >= UNREAD_FLOOD_BUDGET {
            break "the budget was spent";
        }
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(&batch)).await {
            Ok(Ok(())) => written += batch.len(),
            Ok(Err(_)) => break "closed by the server",
            Err(_) => break "writes stalled",
        }
    };
    eprintln!(
        "{name} flood: {outcome} after {written} bytes ({} frames) in {:?}",
        written / unit.len(),
        started.elapsed()
    );
    // The attacker is still connected, or just cut off: others are served.
    still_serves(gw.addr, token).await;
    drop(s);
    assert!(
        written < UNREAD_FLOOD_BUDGET,
        "the server kept taking {name} frames whose replies were never read"
    );
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_cannot_queue_replies_without_bound() {
    let (_up, gw) = setup().await;
    let t = token(&gw, PULL).await;
    let ping = frame(PING, 0, 0, b"flooding");
    flood_without_reading(&gw, &t, "PING", &ping).await;
    let settings = settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 65_535)]);
    flood_without_reading(&gw, &t, "SETTINGS", &settings).await;
}

// === flow-control windows ===

#[tokio::test]
async fn window_overflows_and_zero_increments_are_connection_errors() {
    let (_up, gw) = setup().await;
    let t = token(&gw, PULL).await;
    // RFC 9113 §6.5.2 calls for FLOW_CONTROL_ERROR on an initial window
    // over 2^31-1; h2 refuses the value as a PROTOCOL_ERROR, which is as
    // final.
    let cases: [(&str, Vec<u8>, &[u32]); 4] = [
        (
            "WINDOW_UPDATE 2^31-1 on stream 0",
            window_update(0, 0x7fff_ffff),
            &[FLOW_CONTROL_ERROR],
        ),
        (
            "two WINDOW_UPDATEs of 2^30 on stream 0",
            [window_update(0, 1 << 30), window_update(0, 1 << 30)].concat(),
            &[FLOW_CONTROL_ERROR],
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE 2^31",
            settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31)]),
            &[FLOW_CONTROL_ERROR, PROTOCOL_ERROR],
        ),
        (
            "WINDOW_UPDATE 0 on stream 0",
            window_update(0, 0),
            &[PROTOCOL_ERROR],
        ),
    ];
    for (name, bytes, want) in cases {
        let mut conn = Conn::open(gw.addr).await;
        conn.w.write_all(&bytes).await.unwrap();
        conn.until_closed(Duration::from_secs(5)).await;
        eprintln!("{name}: GOAWAY {:?}, closed {}", conn.goaway(), conn.closed);
        let (_, code) = conn.goaway().unwrap_or_else(|| panic!("{name}: no GOAWAY"));
        assert!(want.contains(&code), "{name}: GOAWAY code {code:#x}");
        assert!(conn.closed, "{name}: the connection stayed open");
    }
    still_serves(gw.addr, &t).await;
}

#[tokio::test]
async fn a_stream_window_overflow_resets_only_that_stream() {
    let (up, gw) = hanging_setup().await;
    let t = token(&gw, PULL).await;
    let mut conn = Conn::open(gw.addr).await;
    conn.w
        .write_all(&request(1, &pull_block(&t)))
        .await
        .unwrap();
    up.wait_started(1).await;
    conn.w
        .write_all(&window_update(1, 0x7fff_ffff))
        .await
        .unwrap();
    conn.w
        .write_all(&frame(PING, 0, 0, b"stillup?"))
        .await
        .unwrap();
    conn.until_quiet(Duration::from_millis(500)).await;
    assert_eq!(conn.resets(), [(1, FLOW_CONTROL_ERROR)]);
    assert!(
        conn.seen
            .iter()
            .any(|f| f.kind == PING && f.flags & ACK != 0 && f.payload == b"stillup?"),
        "the connection did not survive a stream error"
    );
    assert!(!conn.closed && conn.goaway().is_none());
}

// === a client that never reads ===

/// Per path: `/…/big…` answers `size` bytes made on demand, anything else
/// 64 KiB. Counts requests and the bytes the gateway pulled out of it. Its
/// sockets have small fixed send buffers, so few bytes wait in its kernel.
async fn big_body_upstream(size: usize) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    const CHUNK: usize = 16 * 1024;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(8 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = socket.listen(1024).unwrap();
    let addr = l.local_addr().unwrap();
    let (requests, pulled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (requests2, pulled2) = (requests.clone(), pulled.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (requests, pulled) = (requests2.clone(), pulled2.clone());
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                requests.fetch_add(1, SeqCst);
                let chunks = if req.uri().path().contains("big") {
                    size / CHUNK
                } else {
                    4
                };
                let pulled = pulled.clone();
                let body = http_body_util::StreamBody::new(tokio_stream::iter((0..chunks).map(
                    move |_| {
                        pulled.fetch_add(CHUNK, SeqCst);
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(
                            vec![b'c'; CHUNK],
                        )))
                    },
                )));
                let resp = hyper::Response::builder()
                    .header("content-type", "application/x-tar")
                    .header("content-length", (chunks * CHUNK).to_string())
                    .body(body)
                    .unwrap();
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, requests, pulled)
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .expect("no VmRSS");
    kb * 1024
}

/// What one connection may make the gateway hold for a client that reads
/// nothing (the peer is dropped by the keep-alive ping after about 40 s).
const NEVER_READ_BUDGET: usize = 96 << 20;

/// A client that opens every stream it may for large downloads, grants
/// all the window h2 allows, and never reads a byte: the gateway process
/// (its own, so its memory can be measured) must not grow without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_pins_bounded_memory() {
    let (up_addr, requests, pulled) = big_body_upstream(16 << 20).await;
    let dir = std::env::temp_dir().join(format!("chartgate-h2mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    std::fs::write(&path, BASE_CONFIG.replace("UPSTREAM", &up_addr.to_string())).unwrap();
    let Binary { child, addr, .. } = spawn_binary(&path, &[]).await;
    let auth = format!("Bearer {MASTER_KEY}");
    // A normal download first: the path works, and the allocator is warm.
    let (status, len) = h2_get(addr, "/org1/repo1/charts/small-0.1.0.tgz", &auth).await;
    assert_eq!((status, len), (StatusCode::OK, 64 * 1024));
    let (requests_before, rss_before) = (requests.load(SeqCst), rss(child.id()));

    let cap = stream_cap(addr).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let windows = [
        PREFACE,
        &settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0x7fff_ffff)]),
        &window_update(0, 0x7fff_ffff - 65_535),
    ]
    .concat();
    s.write_all(&windows).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, SETTINGS);
    s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    let block = hpack(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/org1/repo1/charts/big-0.1.0.tgz"),
        ("authorization", &auth),
    ]);
    let all: Vec<u8> = (0..cap + 50)
        .flat_map(|i| request(2 * i + 1, &block))
        .collect();
    s.write_all(&all).await.unwrap();
    // From here on, nothing is read. Wait for the gateway to stop pulling.
    let mut last = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = pulled.load(SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    let forwarded = requests.load(SeqCst) - requests_before;
    let grown = rss(child.id()).saturating_sub(rss_before);
    eprintln!(
        "never-reading client: {forwarded} downloads forwarded (cap {cap}), gateway RSS grew \
         {} MiB ({} KiB per stream), {} MiB pulled from the upstream",
        grown >> 20,
        (grown >> 10) / forwarded.max(1),
        last >> 20
    );
    assert!(forwarded > 0 && forwarded <= cap as usize, "{forwarded}");
    assert!(
        grown < NEVER_READ_BUDGET,
        "one never-reading connection grew the gateway by {} MiB",
        grown >> 20
    );
    // Meanwhile others are served.
    let (status, _) = h2_get(addr, INDEX, &auth).await;
    assert_eq!(status, StatusCode::OK);
    drop(s);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
