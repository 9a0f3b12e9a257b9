//! What the always-on client metrics cost: one histogram record, one finished call
//! (counters, histogram and the `metrics` facade with no recorder installed), the whole
//! operation wrapper (span, task-local, timing) around a ready future, and one HTTP call
//! over loopback with and without the metrics observer on the transport.
//!
//! `cargo bench -p tinker-client --bench metrics_overhead`

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use tinker_client::observe::bench_support::RecordBench;
use tinker_transport::http::connect::ProxyConfig;
use tinker_transport::{RequestSpec, Transport};

fn records(c: &mut Criterion) {
    let bench = RecordBench::default();
    let mut i = 0u64;
    c.bench_function("histogram_record", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            bench.histogram(Duration::from_micros(i % 5_000_000));
        });
    });
    c.bench_function("finished_call_record", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            bench.finish(Duration::from_micros(i % 5_000_000));
        });
    });
    c.bench_function("operation_wrapper_ready_future", |b| {
        b.iter(|| bench.wrap_ready().now_or_never().unwrap().unwrap());
    });
}

fn loopback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(serve());
    let plain = Transport::builder()
        .base_url(&url)
        .no_credential()
        .proxy(ProxyConfig::None)
        .build()
        .unwrap();
    let bench = RecordBench::default();
    let observed = bench.observe(&plain);
    let body = bytes::Bytes::from_static(br#"{"model_id":"m","seq_id":1}"#);
    let mut group = c.benchmark_group("loopback_call");
    for (name, t) in [("metrics_off", &plain), ("metrics_on", &observed)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let spec = RequestSpec::post("/api/v1/forward")
                    .with_body(body.clone(), "application/json");
                rt.block_on(t.send(spec)).unwrap()
            });
        });
    }
    group.finish();
    assert!(bench.requests() > 0);
}

/// A loopback HTTP/1 server answering every request with a small JSON body and keeping
/// nothing (a recording test server would slow down as the bench goes on).
async fn serve() -> String {
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).ok();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(br#"{"ok":true}"#)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

criterion_group!(benches, records, loopback);
criterion_main!(benches);
