//! The reporter sending over real HTTP to an in-process hyper server, with a sink written
//! the way the SDK client writes its own (POST the batch, fail on a non-2xx status).

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tinker_telemetry::{BoxError, ErrorReport, Telemetry, TelemetryOptions, TelemetrySink};
use tinker_types::Severity;
use tokio::net::{TcpListener, TcpStream};

type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Serves `POST /api/v1/telemetry` (`{"status":"accepted"}`); any other path answers 500.
async fn server() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if path != "/api/v1/telemetry" {
                                let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                                return Ok::<_, Infallible>(resp);
                            }
                            let json: Value = serde_json::from_slice(&body).unwrap();
                            store.lock().unwrap().push((path, content_type, json));
                            Ok(Response::new(Full::new(Bytes::from_static(
                                br#"{"status":"accepted"}"#,
                            ))))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// POSTs each batch to `http://{addr}{path}`.
fn http_sink(addr: SocketAddr, path: &'static str) -> impl TelemetrySink {
    move |body: Vec<u8>| async move {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::post(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = sender.send_request(req).await?;
        if !resp.status().is_success() {
            return Err(BoxError::from(format!("telemetry: HTTP {}", resp.status())));
        }
        Ok(())
    }
}

#[tokio::test]
async fn batches_are_posted_over_http() {
    let (addr, received) = server().await;
    let t = Telemetry::start(
        Some("sess-http".into()),
        http_sink(addr, "/api/v1/telemetry"),
        TelemetryOptions::default(),
    )
    .unwrap();
    t.log_error(
        &ErrorReport::new("NotFoundError", "no such model").with_status(404),
        Severity::Error,
    );
    assert!(t.close().await);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (path, content_type, batch) = &got[0];
    assert_eq!(path, "/api/v1/telemetry");
    assert_eq!(content_type, "application/json");
    assert_eq!(batch["session_id"], "sess-http");
    let kinds: Vec<&str> = batch["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["SESSION_START", "GENERIC_EVENT"]);
    assert_eq!(batch["events"][1]["event_data"]["status_code"], 404);
    assert_eq!(t.stats().batches_sent, 1);
}

#[tokio::test]
async fn http_errors_drop_the_batch() {
    let (addr, received) = server().await;
    let t = Telemetry::start(
        None,
        http_sink(addr, "/broken"),
        TelemetryOptions::default(),
    )
    .unwrap();
    t.log_error(&ErrorReport::new("E", "x"), Severity::Error);
    assert!(t.close().await);
    assert!(received.lock().unwrap().is_empty());
    let stats = t.stats();
    assert_eq!((stats.batches_failed, stats.dropped_send_failed), (1, 1));
}
