//! Memory under attack, measured on the real binary: a spray of Basic
//! guesses that runs argon2 as fast as the gateway allows, hundreds of
//! silent and half-sent connections against a small connection cap, and
//! oversized heads and bodies. Each phase asserts the answers the attack
//! got, that the gateway's peak resident memory grew by less than its
//! budget, and that the gateway is still serving afterwards.
//!
//! Peak growth is `VmHWM` after the phase minus `VmRSS` before it, with the
//! kernel's high-water mark reset (`clear_refs` 5) at the start of the
//! phase, so a short spike between two samples is still counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Failures per account before `429`.
const PER_ACCOUNT: usize = 3;
/// The limits: per address lifted, so the spray from one address keeps
/// reaching argon2.
fn limits() -> String {
    format!(
        "leeway = \"0s\"\nmax_failures_per_account = {PER_ACCOUNT}\n\
         max_failures_per_address = 1000000"
    )
}
/// The connection cap in the test config (the default is 10,000).
const MAX_CONNECTIONS: usize = 256;
/// `header_read_timeout` in `BASE_CONFIG`; also the first-byte timeout.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// `max_upload_bytes` in `BASE_CONFIG`.
const UPLOAD_CAP: usize = 1_048_576;

/// The gateway binary on loopback, killed when dropped.
struct RunningGateway {
    child: KillOnDrop,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_gateway(upstream: SocketAddr) -> RunningGateway {
    let dir = std::env::temp_dir().join(format!("chartgate-exhaust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chartgate.toml");
    let text = accounts_config()
        .replace("leeway = \"0s\"", &limits())
        .replace(
            "shutdown_grace = \"5s\"",
            &format!("shutdown_grace = \"5s\"\nmax_connections = {MAX_CONNECTIONS}"),
        )
        .replace("UPSTREAM", &upstream.to_string());
    std::fs::write(&path, text).unwrap();
    let Binary { child, addr, .. } = spawn_binary(&path, &[("OLD", OLD_KEY)]).await;
    RunningGateway { child, addr, dir }
}

/// A `/proc/PID/status` field, in bytes.
fn status_bytes(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// Peak resident growth of a process from now on.
struct Peak {
    pid: u32,
    before: usize,
}

impl Peak {
    fn start(pid: u32) -> Peak {
        // 5 resets the peak resident set size (VmHWM) to the current one.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        Peak {
            pid,
            before: status_bytes(pid, "VmRSS:"),
        }
    }

    fn grown(&self) -> usize {
        status_bytes(self.pid, "VmHWM:").saturating_sub(self.before)
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// A good request must be answered this fast once an attack is over.
const PROMPT: Duration = Duration::from_secs(2);

/// An authorized pull, answered `200` within [`PROMPT`]; returns how long it took.
async fn serves_promptly(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let reply = tokio::time::timeout(
        PROMPT,
        get(
            &format!("http://{addr}/org1/repo1/index.yaml"),
            Some(&format!("Bearer {MASTER_KEY}")),
        ),
    )
    .await
    .expect("a good request was not answered promptly after the attack");
    assert_eq!(reply.status, 200, "{}", reply.text());
    started.elapsed()
}

/// Writes `request` on a fresh connection and returns the status code of
/// the reply, or `None` if the connection closed without one. Write errors
/// are ignored: the server may answer and close before taking it all.
async fn raw_status(addr: SocketAddr, request: Vec<u8>) -> Option<u16> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&request).await;
        // Keep the write half open (no FIN) until the reply is read.
        w
    });
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no reply and no close within 10 s");
    // Never wait on the writer: a server that stopped reading would stall it.
    writer.abort();
    let head = String::from_utf8_lossy(&head);
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// Counts of statuses (0: no reply, a transport error).
type Tally = BTreeMap<u16, usize>;

fn tally(statuses: impl IntoIterator<Item = Option<u16>>) -> Tally {
    let mut t = Tally::new();
    for s in statuses {
        *t.entry(s.unwrap_or(0)).or_default() += 1;
    }
    t
}

// === phase budgets ===
//
// Measured on a 2-core machine with the debug binary (docs/SECURITY.md has
// the figures): the spray +45 MiB, the idle connections +1 MiB, the
// oversized requests +6 MiB. Each budget leaves a margin of about three
// times or more, and stays far below the regression it is there to catch.

/// argon2 working memory per check with the default parameters (m = 19456 KiB).
const ARGON2_WORKING_MEMORY: usize = 19 << 20;

/// Concurrent argon2 checks the gateway allows: one per core, at least two
/// (as in `auth::authn`; the child sees the same CPUs as this process).
fn argon2_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// The Basic spray: the pooled working memory is one buffer per slot. The
/// budget allows twice that plus 64 MiB for everything else (140 MiB on
/// 2 cores). Allocating a buffer per check instead grew the same spray by
/// 844 MiB on 2 cores.
fn spray_budget() -> usize {
    2 * argon2_slots() * ARGON2_WORKING_MEMORY + (64 << 20)
}
/// Silent and half-sent connections at the cap: 64 KiB for each of the 256
/// held at once would be this much.
const IDLE_BUDGET: usize = 16 << 20;
/// Oversized heads (hyper buffers at most 64 KiB of head per connection,
/// 128 such connections here) and bodies.
const OVERSIZE_BUDGET: usize = 32 << 20;

// === the attacks ===

const SPRAY_CONNECTIONS: usize = 256;
const SPRAY_FOR: Duration = Duration::from_secs(8);

/// Guesses from `SPRAY_CONNECTIONS` keep-alive connections for `SPRAY_FOR`:
/// one in four keeps trying the real argon2 account `alice` (locked by
/// then, so `429` before any check) and moves on to made-up ids; the rest
/// guess ids that do not exist, which costs the same argon2 run (the
/// decoy). Every guess is distinct, so no two share a check.
async fn basic_spray(addr: SocketAddr) -> Tally {
    let url = format!("http://{addr}/org1/repo1/index.yaml");
    let deadline = Instant::now() + SPRAY_FOR;
    let tasks: Vec<_> = (0..SPRAY_CONNECTIONS)
        .map(|task| {
            let url = url.clone();
            tokio::spawn(async move {
                let client: Client<_, TestBody> =
                    Client::builder(TokioExecutor::new()).build_http();
                let mut alice = task % 4 == 0;
                let mut seen = Vec::new();
                for n in 0.. {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let credential = if alice {
                        basic("alice", &format!("wrong-{task}-{n}"))
                    } else {
                        basic(&format!("ghost-{task}-{n}"), &format!("guess-{n}"))
                    };
                    let req = Request::get(&url)
                        .header("authorization", credential)
                        .body(full(Bytes::new()))
                        .unwrap();
                    // A check waits at most 5 s for an argon2 slot.
                    let status =
                        match tokio::time::timeout(Duration::from_secs(20), client.request(req))
                            .await
                        {
                            Ok(Ok(resp)) => Some(resp.status().as_u16()),
                            _ => None,
                        };
                    alice &= status != Some(429);
                    seen.push(status);
                }
                seen
            })
        })
        .collect();
    tally(join_all(tasks).await.into_iter().flatten())
}

const SILENT: usize = 384;
const HALF_SENT: usize = 128;

/// Opens `SILENT` connections that never send a byte and `HALF_SENT` that
/// send half a request head, then one more byte every 100 ms, and never finish it: twice
/// the connection cap. While they are held, a good request is made; it is
/// served once timeouts free slots. Returns how long each attacker stayed
/// connected, and how long the good request took.
async fn idle_and_half_sent(addr: SocketAddr) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let mut attackers = Vec::new();
    for i in 0..SILENT + HALF_SENT {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let trickle = i >= SILENT;
        attackers.push(tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let closed = async {
                if trickle {
                    let head = b"GET /org1/repo1/index.yaml HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                    if s.write_all(head).await.is_err() {
                        return;
                    }
                    loop {
                        tokio::select! {
                            r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                        if s.write_all(b"a").await.is_err() {
                            return;
                        }
                    }
                } else {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(15), closed)
                .await
                .map(|()| started.elapsed())
        }));
    }
    // Every slot is taken (or about to be): a real client still gets in.
    let good = tokio::spawn(async move {
        let began = Instant::now();
        let reply = tokio::time::timeout(
            Duration::from_secs(15),
            get(
                &format!("http://{addr}/org1/repo1/index.yaml"),
                Some(&format!("Bearer {MASTER_KEY}")),
            ),
        )
        .await
        .expect("a good request starved behind silent connections");
        assert_eq!(reply.status, 200);
        began.elapsed()
    });
    let mut held = Vec::new();
    for a in attackers {
        held.push(
            a.await
                .unwrap()
                .expect("an idle or half-sent connection was never cut off"),
        );
    }
    (held, good.await.unwrap())
}

/// Heads and bodies over the limits, `per_kind` of each kind at once:
/// a header line over 64 KiB (sent without its end, so the server takes all
/// of it before refusing), 200 small headers (over hyper's count), bodies
/// declared over the upload cap, and chunked bodies that pass it.
async fn oversized(addr: SocketAddr, per_kind: usize) -> [(&'static str, Tally); 4] {
    let auth = format!("Authorization: Bearer {MASTER_KEY}\r\n");
    let long_head = format!(
        "GET /org1/repo1/index.yaml HTTP/1.1\r\nHost: x\r\n{auth}X-Big: {}",
        "a".repeat(66 * 1024)
    );
    let many_headers = format!(
        "GET /org1/repo1/index.yaml HTTP/1.1\r\nHost: x\r\n{auth}{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let declared = format!(
        "POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\n{auth}\
         Content-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n"
    );
    // One 64 KiB chunk past the cap, without the last chunk.
    let chunk = [
        format!("{:x}\r\n", 64 * 1024).into_bytes(),
        vec![b'c'; 64 * 1024],
    ]
    .concat();
    let chunked = [
        format!(
            "POST /api/org1/repo1/charts HTTP/1.1\r\nHost: x\r\n{auth}\
             Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes(),
        chunk
            .iter()
            .copied()
            .chain(b"\r\n".iter().copied())
            .collect::<Vec<u8>>()
            .repeat(UPLOAD_CAP / (64 * 1024) + 1),
    ]
    .concat();
    let kinds = [
        ("head over 64 KiB", long_head.into_bytes()),
        ("200 headers", many_headers.into_bytes()),
        ("declared body over the cap", declared.into_bytes()),
        ("chunked body over the cap", chunked),
    ];
    let mut out = Vec::new();
    for (name, request) in kinds {
        let replies = join_all(
            (0..per_kind)
                .map(|_| tokio::spawn(raw_status(addr, request.clone())))
                .collect(),
        )
        .await;
        out.push((name, tally(replies)));
    }
    out.try_into().unwrap()
}

async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_leave_memory_bounded_and_the_gateway_serving() {
    let up = spawn_upstream(Behaviour::Normal).await;
    let mut gw = start_gateway(up.addr).await;
    let pid = gw.child.id();
    // Warm up: the path works and the allocator has seen a request.
    serves_promptly(gw.addr).await;
    let idle_rss = status_bytes(pid, "VmRSS:");

    // (a) Basic guesses against argon2-hashed and unknown accounts. alice
    // is guessed until locked first, so the spray meets the limiter too.
    let url = format!("http://{}/org1/repo1/index.yaml", gw.addr);
    let peak = Peak::start(pid);
    let began = Instant::now();
    for i in 0..PER_ACCOUNT {
        let r = get(&url, Some(&basic("alice", &format!("wrong-{i}")))).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let spray = basic_spray(gw.addr).await;
    let spray_took = began.elapsed();
    let spray_grown = peak.grown();
    // Still locked, even with her right password.
    let locked = get(&url, Some(&basic("alice", ALICE_PASSWORD))).await;
    let after_spray = serves_promptly(gw.addr).await;
    eprintln!(
        "basic spray: {PER_ACCOUNT} guesses at alice, then {SPRAY_CONNECTIONS} connections for \
         {SPRAY_FOR:?} ({spray_took:?} in all), statuses {spray:?}, peak RSS +{:.1} MiB \
         (budget {} MiB, idle RSS {:.1} MiB); next good request in {after_spray:?}",
        mib(spray_grown),
        spray_budget() >> 20,
        mib(idle_rss)
    );
    let answered: usize = spray.values().sum();
    assert!(
        spray.keys().all(|s| [401, 429, 503].contains(s)),
        "unexpected answers to guesses (0 = no answer): {spray:?}"
    );
    // Every 401 is one argon2 run (a real hash or the decoy): the spray
    // really kept the password checks busy.
    let checks = spray.get(&401).copied().unwrap_or(0);
    assert!(
        checks >= 4 * argon2_slots(),
        "only {checks} guesses reached argon2: {spray:?}"
    );
    // Each connection that tried alice was refused before any check.
    assert!(
        spray.get(&429).copied().unwrap_or(0) >= SPRAY_CONNECTIONS / 4,
        "guesses at a locked account were not refused: {spray:?}"
    );
    assert!(answered > SPRAY_CONNECTIONS, "{spray:?}");
    assert_eq!(locked.status, 429, "{}", locked.text());
    assert!(!locked.header("retry-after").is_empty());
    assert!(
        spray_grown < spray_budget(),
        "a Basic spray grew the gateway by {:.1} MiB (budget {} MiB)",
        mib(spray_grown),
        spray_budget() >> 20
    );
    let hits = up.hits();

    // (b) Silent and half-sent connections, twice the cap.
    let peak = Peak::start(pid);
    let (held, good_took) = idle_and_half_sent(gw.addr).await;
    let idle_grown = peak.grown();
    let after_idle = serves_promptly(gw.addr).await;
    let longest = held.iter().max().copied().unwrap_or_default();
    let shortest = held.iter().min().copied().unwrap_or_default();
    eprintln!(
        "idle/half-sent: {SILENT} silent + {HALF_SENT} half-sent against a cap of \
         {MAX_CONNECTIONS}: cut off after {shortest:?}..{longest:?}, a good request during the \
         attack took {good_took:?}, peak RSS +{:.1} MiB; next good request in {after_idle:?}",
        mib(idle_grown)
    );
    // The cap was really reached: connections past it waited for a slot
    // before their own timeout began.
    assert!(
        longest >= HEADER_TIMEOUT * 2 - Duration::from_millis(300),
        "every attacker was cut off within {longest:?}: the cap was never reached"
    );
    assert!(shortest >= HEADER_TIMEOUT - Duration::from_millis(300));
    assert!(
        idle_grown < IDLE_BUDGET,
        "idle connections grew the gateway by {:.1} MiB (budget {} MiB)",
        mib(idle_grown),
        IDLE_BUDGET >> 20
    );
    assert_eq!(
        up.hits(),
        hits + 2,
        "only the good requests reach the upstream"
    );
    let hits = up.hits();

    // (c) Oversized heads and bodies.
    let peak = Peak::start(pid);
    let began = Instant::now();
    let replies = oversized(gw.addr, 64).await;
    let oversize_took = began.elapsed();
    let oversize_grown = peak.grown();
    let after_oversize = serves_promptly(gw.addr).await;
    eprintln!(
        "oversized: {replies:?} in {oversize_took:?}, peak RSS +{:.1} MiB; next good request \
         in {after_oversize:?}",
        mib(oversize_grown)
    );
    let [(_, long_head), (_, many), (_, declared), (_, chunked)] = &replies;
    assert_eq!(long_head, &Tally::from([(431, 64)]));
    assert_eq!(many, &Tally::from([(431, 64)]));
    assert_eq!(declared, &Tally::from([(413, 64)]));
    assert_eq!(chunked, &Tally::from([(413, 64)]));
    assert!(
        oversize_grown < OVERSIZE_BUDGET,
        "oversized requests grew the gateway by {:.1} MiB (budget {} MiB)",
        mib(oversize_grown),
        OVERSIZE_BUDGET >> 20
    );
    let seen = up.seen.lock().unwrap().clone();
    assert!(
        seen[hits..].iter().all(|r| r.body.len() <= UPLOAD_CAP),
        "the upstream received an oversized body"
    );
    let exited = gw.child.0.as_mut().unwrap().try_wait().unwrap();
    assert!(exited.is_none(), "the gateway exited: {exited:?}");
}
