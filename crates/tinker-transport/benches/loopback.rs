//! Loopback benchmark of the transport: requests per second and client CPU per request
//! with 256 concurrent callers against a trivial hyper server, and memory per request in
//! flight.
//!
//! The server runs in a child process (this binary re-executed with `--serve`), so the
//! CPU and memory read from `/proc/self` are the client's alone. Run with
//! `cargo bench -p tinker-transport --bench loopback`. Linux only (reads `/proc`).

#![allow(clippy::print_stdout, clippy::unwrap_used)]
// A benchmark measures real time; there is no SDK clock to inject.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tinker_transport::http::HttpVersion;
use tinker_transport::http::connect::ProxyConfig;
use tinker_transport::{RequestSpec, Transport};

const CALLERS: usize = 256;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(4);
const IN_FLIGHT: usize = 2000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        serve();
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        throughput(&url, HttpVersion::Http1Only).await;
        throughput(&url, HttpVersion::Http2PriorKnowledge).await;
        memory(&url).await;
    });
    child.kill().ok();
    child.wait().ok();
}

fn transport(url: &str, version: HttpVersion) -> Transport {
    Transport::builder()
        .base_url(url)
        .http_version(version)
        .no_credential()
        .proxy(ProxyConfig::None)
        .pool(CALLERS, Duration::from_secs(90))
        .build()
        .unwrap()
}

async fn throughput(url: &str, version: HttpVersion) {
    let t = transport(url, version);
    let body = Bytes::from_static(br#"{"model_id":"m","seq_id":1}"#);
    let run = |until: Instant| {
        let t = t.clone();
        let body = body.clone();
        async move {
            let mut handles = Vec::new();
            for _ in 0..CALLERS {
                let t = t.clone();
                let body = body.clone();
                handles.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let spec = RequestSpec::post("/api/v1/bench")
                            .with_body(body.clone(), "application/json");
                        t.send(spec).await.unwrap();
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for h in handles {
                total += h.await.unwrap();
            }
            total
        }
    };
    run(Instant::now() + WARMUP).await;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let n = run(start + MEASURE).await;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "loopback {version:?}, {CALLERS} callers: {n} requests in {wall:.2} s = {:.0} req/s; \
         client CPU {:.1} µs/request ({:.2} cores)",
        n as f64 / wall,
        cpu / n as f64 * 1e6,
        cpu / wall
    );
}

/// Holds `IN_FLIGHT` requests open on a server that delays its answer, and reads the
/// client's RSS growth.
async fn memory(url: &str) {
    let t = transport(url, HttpVersion::Http1Only);
    // Warm the pool and the allocator with a few requests first.
    for _ in 0..10 {
        t.send(RequestSpec::get("/api/v1/bench")).await.unwrap();
    }
    let before = rss_bytes();
    let mut handles = Vec::new();
    for _ in 0..IN_FLIGHT {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            t.send(RequestSpec::post("/api/v1/slow").with_body(&b"{}"[..], "application/json"))
                .await
                .unwrap();
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = rss_bytes();
    for h in handles {
        h.await.unwrap();
    }
    println!(
        "{IN_FLIGHT} requests in flight (one connection each): client RSS +{:.1} MiB = {:.1} KiB/request",
        (during - before) as f64 / 1048576.0,
        (during - before) as f64 / IN_FLIGHT as f64 / 1024.0
    );
}

fn proc_field(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat: utime and stime in clock ticks (100 Hz).
    let stat = proc_field("/proc/self/stat");
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_bytes() -> i64 {
    proc_field("/proc/self/status")
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The trivial server: `200 {"ok":true}`; `/api/v1/slow` answers after 3 s.
fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("http://{}", listener.local_addr().unwrap());
        let reply = Arc::new(Bytes::from_static(br#"{"ok":true}"#));
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).ok();
            let reply = reply.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let reply = reply.clone();
                        async move {
                            if req.uri().path() == "/api/v1/slow" {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                (*reply).clone(),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
