//! A bare hyper 1 forwarder, for bench/run.sh: what hyper and tokio cost
//! when nothing else runs per request. It accepts HTTP/1.1 on one address
//! and streams every request, unchanged, to one upstream through
//! hyper-util's pooled client: no auth, no policy, no logging, no metrics.
//! chartgate's throughput divided by this one's, in the same rounds, is the
//! price of everything chartgate adds on top of hyper. It shares what is
//! not auth or policy with chartgate: the allocator (mimalloc) and the
//! runtime (`chartgate::server::runtime`: current-thread on one worker),
//! so the ratio is not an allocator or scheduler comparison.
//!
//! usage: forwarder LISTEN_ADDR UPSTREAM_ADDR [WORKER_THREADS]
//! Build: `cargo build --release --example forwarder`.

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Incoming>;

async fn forward(
    client: Upstream,
    upstream: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri: Uri = format!("http://{upstream}{path}")
        .parse()
        .expect("a valid target");
    *req.uri_mut() = uri;
    match client.request(req).await {
        Ok(response) => Ok(response),
        Err(e) => {
            eprintln!("forwarder: upstream failed: {e}");
            std::process::exit(1)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: forwarder LISTEN_ADDR UPSTREAM_ADDR [WORKER_THREADS]");
        std::process::exit(64);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM_ADDR is host:port");
    let workers = args
        .get(3)
        .map(|n| n.parse().expect("WORKER_THREADS is a number"));
    chartgate::server::runtime(workers)
        .expect("a tokio runtime")
        .block_on(serve(listen, upstream));
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) {
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    let listener = TcpListener::bind(listen)
        .await
        .expect("LISTEN_ADDR is free");
    println!("forwarder listening on {listen}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| forward(client.clone(), upstream, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
