//! The differential oracle: chartgate's decisions against ChartMuseum's own
//! bearer mode, both real. For each setup (depth 0-3, and a context path),
//! three ChartMuseums share one storage directory: one with no auth behind
//! chartgate, one in `--bearer-auth` mode with chartgate's public key, and
//! one in bearer mode with `--auth-anonymous-get`, which decides for the
//! repositories chartgate serves anonymously. Generated requests (every
//! method, canonical and hostile paths, seven kinds of credential) go to
//! chartgate and, unchanged, straight to bearer-mode ChartMuseum. A request
//! counts as forwarded when the unauthenticated ChartMuseum's request log
//! holds its request id: it runs with `--debug`, which logs every request as
//! it arrives, before any handler (docs/PROTOCOL.md §8).
//!
//! - A **bypass** is a request chartgate forwarded that bearer-mode
//!   ChartMuseum refuses (401, or no route): the test fails on any.
//! - **Stricter** is a request chartgate refused that ChartMuseum serves:
//!   each must fall in a class docs/SECURITY.md explains, or the test fails.
//! - **Registry requests** (`/v2`, a fifth of the mix, the same credentials
//!   and mutations plus a Docker-form token for one chart) have no
//!   ChartMuseum counterpart: the bridge answers them from ChartMuseum's
//!   API with the client's request id. One that led to any ChartMuseum
//!   request must be one its credential authorizes, judged from the raw
//!   target; any other is a bypass.
//!
//! `CHARTGATE_ORACLE_REQUESTS` sets the total (default 10,000);
//! `scripts/oracle.sh N` runs it alone. The report is printed and written to
//! `$CARGO_TARGET_TMPDIR/oracle-report.txt`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chartmuseum::{ChartMuseum, Options};
use crate::common::*;
use crate::helm::Helm;
use crate::tokens;

const REALM: &str = "http://localhost:8080/oauth/token";
const SERVICE: &str = "localhost:8080";
/// Requests in flight at once, per setup.
const WORKERS: usize = 4;

/// One configuration both sides run with.
struct Setup {
    name: &'static str,
    depth: u8,
    context_path: Option<&'static str>,
    /// chartgate's `anonymous_pull`: repositories whose first segment is
    /// `public`, at this depth.
    anonymous: bool,
}

const SETUPS: [Setup; 5] = [
    Setup {
        name: "depth0",
        depth: 0,
        context_path: None,
        anonymous: false,
    },
    Setup {
        name: "depth1",
        depth: 1,
        context_path: None,
        anonymous: true,
    },
    Setup {
        name: "depth2",
        depth: 2,
        context_path: None,
        anonymous: true,
    },
    Setup {
        name: "depth3",
        depth: 3,
        context_path: None,
        anonymous: true,
    },
    Setup {
        name: "depth2-ctx",
        depth: 2,
        context_path: Some("/cm"),
        anonymous: true,
    },
];

/// The credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Cred {
    None,
    BadSignature,
    Expired,
    Pull,
    Push,
    PullPush,
    /// A pull,push token for another repository.
    OtherRepo,
    /// A pull,push token in the Docker form for one OCI name,
    /// `repository:<repo>/mychart`, as registry clients ask for.
    OciChart,
}

/// Every kind, weighted towards the ones that grant something, so that a
/// fair share of the mix is served and compared.
const CREDS: [Cred; 12] = [
    Cred::None,
    Cred::BadSignature,
    Cred::Expired,
    Cred::Pull,
    Cred::Pull,
    Cred::Push,
    Cred::PullPush,
    Cred::PullPush,
    Cred::PullPush,
    Cred::PullPush,
    Cred::OtherRepo,
    Cred::OciChart,
];

/// Paths after the context path, as ChartMuseum's route table and its
/// neighbours give them.
const TEMPLATES: &[&str] = &[
    "/",
    "/info",
    "/health",
    "/metrics",
    "/static/main.css",
    "/artifacthub-repo.yml",
    "/index.yaml",
    "/charts/{file}",
    "/{repo}/index.yaml",
    "/{repo}/index.yaml",
    "/{repo}/charts/{file}",
    "/{repo}/charts/{file}",
    "/{repo}/charts/{file}.prov",
    "/{repo}/artifacthub-repo.yml",
    "/{repo}/health",
    "/{repo}/info",
    "/api/{repo}/charts",
    "/api/{repo}/charts",
    "/api/{repo}/charts/{name}",
    "/api/{repo}/charts/{name}/{version}",
    "/api/{repo}/charts/{name}/{version}",
    "/api/{repo}/charts/{name}/{version}/templates",
    "/api/{repo}/charts/{name}/{version}/values",
    "/api/{repo}/prov",
    "/api/{repo}/charts/{file}",
    "/api/{repo}/index.yaml",
    "/api/charts",
    "/api/health",
    "/charts",
    "/prov",
    "/{repo}/charts",
    "/{repo}/prov",
    "/{repo}/api/charts",
    "/{repo}/api/charts/{name}/{version}",
];

/// Registry paths, served by chartgate's OCI bridge from ChartMuseum's API
/// (ChartMuseum has no `/v2`). `{digest}` is the stored chart's SHA-256, so
/// a by-digest read finds it.
const V2_TEMPLATES: &[&str] = &[
    "/v2/",
    "/v2/_catalog",
    "/v2/{repo}/{name}/tags/list",
    "/v2/{repo}/{name}/tags/list?n=1",
    "/v2/{repo}/{name}/manifests/{version}",
    "/v2/{repo}/{name}/manifests/{version}",
    "/v2/{repo}/{name}/manifests/{version}",
    "/v2/{repo}/{name}/manifests/{digest}",
    "/v2/{repo}/{name}/blobs/{digest}",
    "/v2/{repo}/{name}/blobs/{digest}",
    "/v2/{repo}/{name}/blobs/uploads/",
    "/v2/{repo}/{name}/blobs/uploads/6f9619ff-8b86-4011-b42d-00c04fc964ff",
    "/v2/{repo}/{name}/referrers/{digest}",
];

const METHODS: &[&str] = &[
    "GET", "GET", "GET", "GET", "GET", "GET", "HEAD", "HEAD", "HEAD", "POST", "POST", "POST",
    "DELETE", "DELETE", "PUT", "PATCH", "OPTIONS", "get", "FOO", "TRACE",
];

/// Hostile edits, one applied to 30% of requests.
const MUTATIONS: &[&str] = &[
    "dot-segment",
    "dotdot-segment",
    "double-slash",
    "trailing-slash",
    "encoded-slash",
    "encoded-dot",
    "encoded-letter",
    "upper-case",
    "semicolon",
    "query",
    "fragment",
    "nul-byte",
    "control-byte",
    "non-utf8",
    "overlong-utf8",
    "backslash",
    "empty-repo",
    "extra-segment",
    "missing-segment",
    "ctx-no-boundary",
    "ctx-missing",
    "method-override",
    "forwarded-uri",
];

/// xorshift64*: deterministic, so a failing run can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The repositories requests name at `depth` (ChartMuseum's namespace
/// `repo` at depth 0).
fn repos(depth: u8) -> Vec<String> {
    if depth == 0 {
        return vec!["repo".to_owned()];
    }
    let tail = |last: &str| {
        let mut segments: Vec<String> = (1..depth).map(|i| format!("repo{i}")).collect();
        if let Some(l) = segments.last_mut() {
            *l = last.to_owned();
        }
        segments
    };
    let mut out = Vec::new();
    for first in ["org1", "org2", "public", "ORG1", "org10"] {
        let mut segments = vec![first.to_owned()];
        segments.extend(tail(&format!("repo{}", depth - 1)));
        out.push(segments.join("/"));
    }
    if depth >= 2 {
        let mut segments = vec!["org1".to_owned()];
        segments.extend(tail("repo9"));
        out.push(segments.join("/"));
    }
    out
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    id: String,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    cred: Cred,
    mutation: &'static str,
    /// A registry request (`/v2`), judged by what it needs, not against
    /// ChartMuseum's bearer mode.
    registry: bool,
}

fn generate(
    setup: &Setup,
    repos: &[String],
    digest: &str,
    i: usize,
    rng: &mut Rng,
) -> (Case, String) {
    let registry = rng.below(5) == 0;
    let template = if registry {
        rng.pick(V2_TEMPLATES)
    } else {
        rng.pick(TEMPLATES)
    };
    // Half the time a method the route table has for this path, so that a
    // fair share of the mix reaches a route.
    let method = if rng.below(2) == 0 {
        natural_method(template, rng)
    } else {
        rng.pick(METHODS)
    };
    let mut repo = repos[rng.below(repos.len())].clone();
    let mutation = if rng.below(10) < 3 {
        rng.pick(MUTATIONS)
    } else {
        "none"
    };
    // The repository as the path spells it: none at depth 0, where
    // ChartMuseum's namespace is `repo`.
    let token_repo = repo.clone();
    if setup.depth == 0 {
        repo.clear();
    }
    match mutation {
        "empty-repo" => repo.clear(),
        "extra-segment" if repo.is_empty() => repo.push_str("extra"),
        "extra-segment" => repo.push_str("/extra"),
        "missing-segment" => {
            repo.truncate(repo.rfind('/').unwrap_or(0));
        }
        _ => {}
    }
    let name = rng.pick(&["mychart", "other"]);
    let version = rng.pick(&["0.1.0", "9.9.9"]);
    let with_repo = if repo.is_empty() && mutation != "empty-repo" {
        String::new()
    } else {
        format!("/{repo}")
    };
    let path = template
        .replace("/{repo}", &with_repo)
        .replace("{file}", &format!("{name}-{version}.tgz"))
        .replace("{name}", name)
        .replace("{version}", version)
        .replace("{digest}", digest);
    let path = mutate(path.into_bytes(), mutation, rng);
    let ctx = setup.context_path.unwrap_or("");
    // The registry API is at the host's root whatever the context path.
    let mut target = match mutation {
        _ if registry => Vec::new(),
        "ctx-no-boundary" if !ctx.is_empty() => format!("{ctx}x").into_bytes(),
        "ctx-missing" => Vec::new(),
        _ => ctx.as_bytes().to_vec(),
    };
    target.extend_from_slice(&path);
    let mut headers = Vec::new();
    match mutation {
        "method-override" => headers.push(("x-http-method-override", "DELETE".to_owned())),
        "forwarded-uri" => {
            headers.push(("x-original-url", format!("{ctx}/{token_repo}/index.yaml")));
            headers.push(("x-forwarded-uri", format!("{ctx}/{token_repo}/index.yaml")));
        }
        _ => {}
    }
    let cred = rng.pick(&CREDS);
    let id = format!("oracle-{}-{i}", setup.name);
    let case = Case {
        id,
        method,
        target,
        headers,
        cred,
        mutation,
        registry,
    };
    (case, token_repo)
}

/// A method ChartMuseum routes for `template`.
fn natural_method(template: &str, rng: &mut Rng) -> &'static str {
    match template {
        "/api/{repo}/charts" => rng.pick(&["GET", "POST"]),
        "/api/{repo}/prov" => "POST",
        "/api/{repo}/charts/{name}/{version}" => rng.pick(&["GET", "HEAD", "DELETE"]),
        "/api/{repo}/charts/{name}" | "/{repo}/index.yaml" => rng.pick(&["GET", "HEAD"]),
        "/v2/{repo}/{name}/manifests/{version}" => rng.pick(&["GET", "HEAD", "PUT"]),
        "/v2/{repo}/{name}/blobs/{digest}" => rng.pick(&["GET", "HEAD"]),
        "/v2/{repo}/{name}/blobs/uploads/" => "POST",
        "/v2/{repo}/{name}/blobs/uploads/6f9619ff-8b86-4011-b42d-00c04fc964ff" => {
            rng.pick(&["PATCH", "PUT", "GET"])
        }
        _ => "GET",
    }
}

fn mutate(mut p: Vec<u8>, mutation: &str, rng: &mut Rng) -> Vec<u8> {
    let slashes: Vec<usize> = (0..p.len()).filter(|&i| p[i] == b'/').collect();
    let slash = |rng: &mut Rng| rng.pick(&slashes);
    let anywhere = 1 + rng.below(p.len().max(1));
    match mutation {
        "dot-segment" => insert(&mut p, slash(rng), b"/."),
        "dotdot-segment" => insert(&mut p, slash(rng), b"/x/.."),
        "double-slash" => insert(&mut p, slash(rng), b"/"),
        "trailing-slash" => p.push(b'/'),
        "encoded-slash" => {
            let s = slash(rng);
            if s > 0 {
                p.splice(s..=s, b"%2F".iter().copied());
            } else {
                p.extend_from_slice(b"%2Findex.yaml");
            }
        }
        "encoded-dot" => match p.iter().position(|&b| b == b'.') {
            Some(d) => drop(p.splice(d..=d, b"%2E".iter().copied())),
            None => p.extend_from_slice(b"/%2E%2E"),
        },
        "encoded-letter" => match p.iter().position(|b| b.is_ascii_lowercase()) {
            Some(l) => {
                let hex = format!("%{:02X}", p[l]);
                drop(p.splice(l..=l, hex.into_bytes()));
            }
            None => p.extend_from_slice(b"%69ndex.yaml"),
        },
        "upper-case" => {
            let start = slash(rng) + 1;
            for b in p[start..].iter_mut().take_while(|b| **b != b'/') {
                b.make_ascii_uppercase();
            }
        }
        "semicolon" => {
            let s = slash(rng);
            let end = p[s + 1..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(p.len(), |e| s + 1 + e);
            insert(&mut p, end, b";v=1");
        }
        "query" => {
            let query: &[u8] = rng.pick(&[&b"?force"[..], &b"?a=b&c"[..], &b"?"[..]]);
            p.extend_from_slice(query);
        }
        "fragment" => p.extend_from_slice(b"#frag"),
        "nul-byte" => insert(&mut p, anywhere, b"\0"),
        "control-byte" => {
            let b = rng.pick(&[1u8, 0x7f, b'\t', 0x1b]);
            insert(&mut p, anywhere, &[b]);
        }
        "non-utf8" => insert(&mut p, anywhere, b"\xff"),
        "overlong-utf8" => insert(&mut p, slash(rng), b"/%c0%ae%c0%ae"),
        "backslash" => {
            let s = slash(rng);
            p[s] = b'\\';
            if s == 0 {
                p.insert(0, b'/');
            }
        }
        _ => {}
    }
    p
}

fn insert(p: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(p.len());
    p.splice(at..at, bytes.iter().copied());
}

/// What came back from one server.
#[derive(Debug, Clone, Default)]
struct Answer {
    status: u16,
    /// gin's middleware ran (it echoes `X-Request-Id`); Go's HTTP server
    /// refuses unparsable requests before it, without one.
    reached_router: bool,
    body: Vec<u8>,
    content_length: Option<usize>,
    challenge: String,
}

/// ChartMuseum's answer when no route matches (router.go).
const NO_ROUTE: &[u8] = b"{\"error\":\"not found\"}";

impl Answer {
    /// Whether ChartMuseum served it: its router ran, found a route and did
    /// not refuse the credential.
    fn served(&self) -> bool {
        self.reached_router && self.status != 401 && !self.is_no_route()
    }
    /// ChartMuseum's no-route 404; to HEAD, Go sends its length without
    /// the body.
    fn is_no_route(&self) -> bool {
        self.status == 404
            && (self.body == NO_ROUTE
                || (self.body.is_empty() && self.content_length == Some(NO_ROUTE.len())))
    }
    /// The namespace of a pull challenge, if this is one.
    fn pull_namespace(&self) -> Option<&str> {
        let scope = self
            .challenge
            .split("scope=\"artifact-repository:")
            .nth(1)?;
        scope.strip_suffix(":pull\"")
    }
}

/// One HTTP/1.1 exchange over a fresh connection, with the target written
/// exactly as generated (hyper's client would refuse some of them).
async fn exchange(addr: SocketAddr, case: &Case, auth: Option<&str>) -> Answer {
    let mut head = Vec::new();
    head.extend_from_slice(case.method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(&case.target);
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &str, value: &str| {
        head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    };
    line("host", &addr.to_string());
    line("x-request-id", &case.id);
    if let Some(a) = auth {
        line("authorization", &format!("Bearer {a}"));
    }
    for (name, value) in &case.headers {
        line(name, value);
    }
    line("content-length", "0");
    line("connection", "close");
    head.extend_from_slice(b"\r\n");
    let io = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&head).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = match tokio::time::timeout(Duration::from_secs(10), io).await {
        Ok(Ok(reply)) => reply,
        // A server may reset a connection it refused mid-request.
        Ok(Err(_)) | Err(_) => return Answer::default(),
    };
    parse(&reply)
}

fn parse(reply: &[u8]) -> Answer {
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(reply.len());
    let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
    let raw_head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let challenge = raw_head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .map(|l| l[17..].trim().to_owned())
        .unwrap_or_default();
    let content_length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    Answer {
        status,
        content_length,
        reached_router: head.lines().any(|l| l.starts_with("x-request-id:")),
        body: reply.get(split + 4..).unwrap_or_default().to_vec(),
        challenge,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use aws_lc_rs::digest;
    digest::digest(&digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether chartgate's `anonymous_pull` for `setup` covers `namespace`.
fn is_anonymous(setup: &Setup, namespace: &str) -> bool {
    let segments: Vec<&str> = namespace.split('/').collect();
    setup.anonymous && segments.len() == setup.depth as usize && segments[0] == "public"
}

/// Whether the path part of `target` (before `?`) is canonical as
/// docs/SECURITY.md defines it: `/`-separated segments of
/// `[A-Za-z0-9._+-]`, none empty, `.` or `..`, no trailing slash.
fn is_canonical(target: &[u8]) -> bool {
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path == b"/" {
        return true;
    }
    path.first() == Some(&b'/')
        && path[1..].split(|&b| b == b'/').all(|segment| {
            !segment.is_empty()
                && segment != b"."
                && segment != b".."
                && segment
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(b))
        })
}

/// Why chartgate refusing what ChartMuseum serves is deliberate
/// (docs/SECURITY.md, "Stricter than ChartMuseum"), or None.
fn stricter_class(setup: &Setup, case: &Case, anonymous_verdict: bool) -> Option<&'static str> {
    let ctx = setup.context_path.unwrap_or("").as_bytes();
    if !ctx.is_empty() && case.target.starts_with(ctx) && case.target.get(ctx.len()) != Some(&b'/')
    {
        return Some("context path not ending on a segment boundary");
    }
    if !is_canonical(&case.target) {
        return Some("non-canonical path, refused before auth");
    }
    if anonymous_verdict && matches!(case.cred, Cred::BadSignature | Cred::Expired) {
        return Some("invalid credential on an anonymous repository");
    }
    None
}

/// Whether a registry request may lead to ChartMuseum requests: its path
/// names `<repository>/<chart>/…` in canonical form, and the credential
/// grants the action its method needs on that repository (and chart, for
/// an OCI-form token), or the repository is anonymous and it only reads.
/// Judged from the raw target, independently of chartgate's own parser;
/// the client's headers do not count, as the bridge's own requests to
/// ChartMuseum carry none of them (no method override, no original URL).
fn registry_authorized(setup: &Setup, case: &Case, token_repo: &str) -> bool {
    let path = case.target.split(|&b| b == b'?').next().unwrap_or_default();
    let Ok(path) = std::str::from_utf8(path) else {
        return false;
    };
    let Some(rest) = path.strip_prefix("/v2/") else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let depth = setup.depth as usize;
    if segments.len() < depth + 2 {
        return false;
    }
    let namespace = if depth == 0 {
        "repo".to_owned()
    } else {
        segments[..depth].join("/")
    };
    let chart = segments[depth];
    let reads = matches!(case.method, "GET" | "HEAD");
    let own = namespace == token_repo
        && match case.cred {
            Cred::Pull => reads,
            Cred::Push | Cred::PullPush => true,
            Cred::OciChart => chart == "mychart",
            Cred::None | Cred::BadSignature | Cred::Expired | Cred::OtherRepo => false,
        };
    // Anyone may read an anonymous repository, unless the credential they
    // present is invalid.
    let anonymous = reads
        && is_anonymous(setup, &namespace)
        && !matches!(case.cred, Cred::BadSignature | Cred::Expired);
    own || anonymous
}

/// Per-setup outcome.
#[derive(Default)]
struct Tally {
    requests: usize,
    /// Registry requests, and those that led to ChartMuseum requests.
    registry: usize,
    registry_forwarded: usize,
    forwarded: usize,
    served: usize,
    bypasses: Vec<String>,
    stricter: BTreeMap<&'static str, usize>,
    unexplained: Vec<String>,
}

/// Tokens for each repository and credential kind, from the gateway's own
/// issuer (the master key may be granted any scope).
async fn mint_all(gw: &Gw, repos: &[String]) -> HashMap<(String, Cred), String> {
    let mut out = HashMap::new();
    for (i, repo) in repos.iter().enumerate() {
        for (cred, actions) in [
            (Cred::Pull, "pull"),
            (Cred::Push, "push"),
            (Cred::PullPush, "pull,push"),
        ] {
            out.insert(
                (repo.clone(), cred),
                token(gw, &format!("artifact-repository:{repo}:{actions}")).await,
            );
        }
        let both = out[&(repo.clone(), Cred::PullPush)].clone();
        out.insert(
            (repo.clone(), Cred::BadSignature),
            tokens::bad_signature(&both),
        );
        out.insert((repo.clone(), Cred::Expired), tokens::expired(&both));
        let other = if repos.len() > 1 {
            let scope = format!(
                "artifact-repository:{}:pull,push",
                repos[(i + 1) % repos.len()]
            );
            token(gw, &scope).await
        } else {
            // At depth 0 the issuer names only `repo`: re-sign its claims
            // for another name.
            tokens::resign(&both, |claims| claims["access"][0]["name"] = "org1".into())
        };
        out.insert((repo.clone(), Cred::OtherRepo), other);
        let oci = if repos.len() > 1 {
            format!("{repo}/mychart")
        } else {
            "mychart".to_owned()
        };
        // OCI names are lower case: the issuer grants no Docker-form scope
        // for `ORG1/…`, so such a case carries a token that grants nothing.
        let oci_token = if oci == oci.to_lowercase() {
            token(gw, &format!("repository:{oci}:pull,push")).await
        } else {
            tokens::bad_signature(&both)
        };
        out.insert((repo.clone(), Cred::OciChart), oci_token);
    }
    out
}

/// The gateway config for `setup`: failure limits lifted, so hundreds of
/// bad tokens from one address never lock the good ones out.
fn gateway_config(setup: &Setup, upstream: SocketAddr, staging: &Path) -> chartgate::Config {
    let mut chartmuseum = format!("depth = {}\n", setup.depth);
    if let Some(ctx) = setup.context_path {
        chartmuseum.push_str(&format!("context_path = \"{ctx}\"\n"));
    }
    let mut auth = "leeway = \"0s\"\nmax_failures_per_account = 1000000000\nmax_failures_per_address = 1000000000\n".to_owned();
    if setup.anonymous {
        let mut pattern = vec!["public"];
        pattern.extend(std::iter::repeat_n("*", setup.depth as usize - 1));
        auth.push_str(&format!("anonymous_pull = [\"{}\"]\n", pattern.join("/")));
    }
    let text = BASE_CONFIG
        .replace("depth = 2\n", &chartmuseum)
        .replace("leeway = \"0s\"\n", &auth)
        .replace(
            "[issuer]",
            &format!("[oci]\nstaging_dir = \"{}\"\n\n[issuer]", staging.display()),
        );
    config(&text, upstream)
}

struct Servers {
    open: ChartMuseum,
    bearer: ChartMuseum,
    anonymous: ChartMuseum,
}

fn start_servers(setup: &Setup, root: &Path, chart: &Path, repos: &[String]) -> Servers {
    let storage = root.join(setup.name);
    for repo in repos {
        let dir = if setup.depth == 0 {
            storage.clone()
        } else {
            storage.join(repo)
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(chart, dir.join("mychart-0.1.0.tgz")).unwrap();
    }
    let key = root.join("chartgate.pub.pem");
    let base = Options {
        depth: setup.depth,
        context_path: setup.context_path.map(str::to_owned),
        ..Options::default()
    };
    let open = Options {
        debug: true,
        ..base.clone()
    };
    let bearer = Options {
        bearer: Some((REALM.into(), SERVICE.into(), key)),
        ..base
    };
    let anonymous = Options {
        anonymous_get: true,
        ..bearer.clone()
    };
    Servers {
        open: ChartMuseum::start(&open, &storage, &storage.with_extension("open.log")),
        bearer: ChartMuseum::start(&bearer, &storage, &storage.with_extension("bearer.log")),
        anonymous: ChartMuseum::start(
            &anonymous,
            &storage,
            &storage.with_extension("anonymous.log"),
        ),
    }
}

/// The request as the gateway would forward it, which is what ChartMuseum
/// is asked about: hyper's URI parser drops a `#fragment` from the request
/// target before the gateway sees it (docs/SECURITY.md), so the gateway
/// authorizes and forwards the target without it, while Go's server, given
/// the raw target, would keep `#frag` in the path.
fn as_forwarded(case: &Case) -> Case {
    let mut case = case.clone();
    if let Some(hash) = case.target.iter().position(|&b| b == b'#') {
        case.target.truncate(hash);
    }
    case
}

/// One request's verdicts: (chartgate's answer, ChartMuseum's, whether the
/// anonymous-get instance decided).
async fn judge(
    gw: SocketAddr,
    servers: &Servers,
    setup: &Setup,
    case: &Case,
    token: Option<&str>,
) -> (Answer, Answer, bool) {
    let ours = exchange(gw, case, token).await;
    if case.registry {
        return (ours, Answer::default(), false);
    }
    let forwarded = as_forwarded(case);
    let mut theirs = exchange(servers.bearer.addr, &forwarded, token).await;
    let mut anonymous = false;
    if theirs.status == 401 {
        if let Some(ns) = theirs.pull_namespace() {
            if is_anonymous(setup, ns) {
                theirs = exchange(servers.anonymous.addr, &forwarded, token).await;
                anonymous = true;
            }
        }
    }
    (ours, theirs, anonymous)
}

async fn run_setup(setup: &'static Setup, root: PathBuf, chart: PathBuf, count: usize) -> Tally {
    let repos = repos(setup.depth);
    let (r, c, rs) = (root.clone(), chart.clone(), repos.clone());
    let servers = Arc::new(
        tokio::task::spawn_blocking(move || start_servers(setup, &r, &c, &rs))
            .await
            .unwrap(),
    );
    let staging = root.join(setup.name).with_extension("staging");
    let gw = spawn_gateway(gateway_config(setup, servers.open.addr, &staging)).await;
    let digest = format!("sha256:{}", sha256_hex(&std::fs::read(&chart).unwrap()));
    let tokens = Arc::new(mint_all(&gw, &repos).await);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ setup.depth as u64 ^ (count as u64) << 8);
    let cases: Vec<(Case, String)> = (0..count)
        .map(|i| generate(setup, &repos, &digest, i, &mut rng))
        .collect();
    let cases = Arc::new(cases);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (cases, next, servers, tokens) =
            (cases.clone(), next.clone(), servers.clone(), tokens.clone());
        let addr = gw.addr;
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((case, repo)) = cases.get(i) else {
                    return out;
                };
                let token = tokens.get(&(repo.clone(), case.cred)).map(String::as_str);
                let verdicts = judge(addr, &servers, setup, case, token).await;
                out.push((i, verdicts));
            }
        }));
    }
    let mut results = Vec::with_capacity(count);
    for w in workers {
        results.extend(w.await.unwrap());
    }
    let s = servers.clone();
    let forwarded: HashSet<String> = tokio::task::spawn_blocking(move || {
        s.open.sync();
        s.open.request_ids()
    })
    .await
    .unwrap();
    let mut tally = Tally::default();
    for (i, (ours, theirs, anonymous)) in results {
        let case = &cases[i].0;
        tally.requests += usize::from(!case.registry);
        let was_forwarded = forwarded.contains(&case.id);
        let describe = || {
            format!(
                "{} {} {:?} cred={:?} mutation={} gateway={} chartmuseum={} {}",
                setup.name,
                case.method,
                String::from_utf8_lossy(&case.target),
                case.cred,
                case.mutation,
                ours.status,
                theirs.status,
                theirs.challenge
            )
        };
        if case.registry {
            tally.registry += 1;
            tally.registry_forwarded += usize::from(was_forwarded);
            if was_forwarded && !registry_authorized(setup, case, &cases[i].1) {
                tally.bypasses.push(describe());
            }
            continue;
        }
        tally.forwarded += usize::from(was_forwarded);
        tally.served += usize::from(theirs.served());
        if was_forwarded && !theirs.served() {
            tally.bypasses.push(describe());
        } else if !was_forwarded && theirs.served() {
            match stricter_class(setup, case, anonymous) {
                Some(class) => *tally.stricter.entry(class).or_default() += 1,
                None => tally.unexplained.push(describe()),
            }
        }
    }
    drop(gw);
    tally
}

fn report(tallies: &[(&str, Tally)], elapsed: Duration) -> String {
    let mut out = String::from(
        "differential oracle: chartgate vs ChartMuseum v0.16.5 --bearer-auth\n\
         setup        requests forwarded cm-served bypasses stricter unexplained\n",
    );
    let mut totals = [0usize; 6];
    for (name, t) in tallies {
        let stricter: usize = t.stricter.values().sum();
        let row = [
            t.requests,
            t.forwarded,
            t.served,
            t.bypasses.len(),
            stricter,
            t.unexplained.len(),
        ];
        out.push_str(&format!(
            "{name:<12} {:>8} {:>9} {:>9} {:>8} {:>8} {:>11}\n",
            row[0], row[1], row[2], row[3], row[4], row[5]
        ));
        for (total, v) in totals.iter_mut().zip(row) {
            *total += v;
        }
    }
    out.push_str(&format!(
        "{:<12} {:>8} {:>9} {:>9} {:>8} {:>8} {:>11}\n",
        "total", totals[0], totals[1], totals[2], totals[3], totals[4], totals[5]
    ));
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, t) in tallies {
        for (class, n) in &t.stricter {
            *classes.entry(class).or_default() += n;
        }
    }
    for (class, n) in classes {
        out.push_str(&format!("stricter, explained: {n:>7}  {class}\n"));
    }
    out.push_str("registry (/v2) requests, and those that led to ChartMuseum requests:\n");
    for (name, t) in tallies {
        out.push_str(&format!(
            "{name:<12} {:>8} {:>9}\n",
            t.registry, t.registry_forwarded
        ));
    }
    out.push_str(&format!("in {:.1} s\n", elapsed.as_secs_f64()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_never_forwards_what_bearer_mode_chartmuseum_refuses() {
    let total: usize = std::env::var("CHARTGATE_ORACLE_REQUESTS")
        .ok()
        .map(|v| v.parse().expect("CHARTGATE_ORACLE_REQUESTS is a number"))
        .unwrap_or(10_000);
    let root = std::env::temp_dir().join(format!("chartgate-e2e-oracle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("chartgate.pub.pem"), &signing_pem().1).unwrap();
    let r = root.clone();
    let chart = tokio::task::spawn_blocking(move || {
        let helm = Helm::new(3, r.join("helm"));
        let src = r.join("mychart");
        helm.ok(&["create", src.to_str().unwrap()], &[]);
        helm.ok(
            &["package", src.to_str().unwrap(), "--version", "0.1.0"],
            &[],
        );
        helm.home().join("mychart-0.1.0.tgz")
    })
    .await
    .unwrap();
    let started = Instant::now();
    let mut tallies = Vec::new();
    for setup in &SETUPS {
        let tally = run_setup(setup, root.clone(), chart.clone(), total / SETUPS.len()).await;
        tallies.push((setup.name, tally));
    }
    let text = report(&tallies, started.elapsed());
    eprintln!("{text}");
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oracle-report.txt");
    std::fs::write(&file, &text).unwrap();
    let bypasses: Vec<&String> = tallies.iter().flat_map(|(_, t)| &t.bypasses).collect();
    let unexplained: Vec<&String> = tallies.iter().flat_map(|(_, t)| &t.unexplained).collect();
    let first = |v: &[&String]| {
        v.iter()
            .take(20)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        bypasses.is_empty() && unexplained.is_empty(),
        "{text}\nbypasses:\n{}\nstricter than ChartMuseum, unexplained:\n{}",
        first(&bypasses),
        first(&unexplained)
    );
    assert!(
        unexplained.is_empty(),
        "{text}\nstricter than ChartMuseum, unexplained:\n{}",
        first(&unexplained)
    );
    // Not vacuous: in every setup both sides served and refused a fair
    // share of the mix.
    for (name, t) in &tallies {
        assert!(
            t.forwarded * 10 > t.requests && t.served * 10 > t.requests,
            "{name}: too little was served to compare\n{text}"
        );
        assert!(
            t.forwarded * 10 < t.requests * 9,
            "{name}: nearly all forwarded\n{text}"
        );
        assert!(
            t.registry_forwarded > 0 && t.registry_forwarded < t.registry,
            "{name}: the registry requests were all refused or all forwarded\n{text}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_generator_covers_every_credential_and_mutation() {
    let repos = repos(2);
    let mut rng = Rng(7);
    let cases: Vec<Case> = (0..5_000)
        .map(|i| generate(&SETUPS[4], &repos, "sha256:0", i, &mut rng).0)
        .collect();
    for cred in CREDS {
        assert!(cases.iter().any(|c| c.cred == cred), "{cred:?}");
    }
    for m in MUTATIONS {
        assert!(cases.iter().any(|c| c.mutation == *m), "{m}");
    }
    assert!(cases.iter().any(|c| c.registry) && cases.iter().any(|c| !c.registry));
    assert!(cases.iter().any(|c| is_canonical(&c.target)));
    assert!(cases.iter().any(|c| !is_canonical(&c.target)));
}
