//! The reporter sending over real HTTP to an in-process hyper server, with a sink written
//! the way the SDK client writes its own (POST the batch, fail on a non-2xx status).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tinker_telemetry::{BoxError, ErrorReport, Telemetry, TelemetryOptions, TelemetrySink};
use tinker_testkit::{Reply, Server};
use tinker_types::Severity;
use tokio::net::TcpStream;

const TELEMETRY_PATH: &str = "/api/v1/telemetry";

/// Serves `POST /api/v1/telemetry` (`{"status":"accepted"}`); any other path answers 500.
async fn server() -> Server {
    Server::start(|seen, _| {
        if seen.uri.path() == TELEMETRY_PATH {
            Reply::json(200, r#"{"status":"accepted"}"#)
        } else {
            Reply::json(500, "{}")
        }
    })
    .await
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
    let server = server().await;
    let t = Telemetry::start(
        Some("sess-http".into()),
        http_sink(server.addr, TELEMETRY_PATH),
        TelemetryOptions::default(),
    )
    .unwrap();
    t.log_error(
        &ErrorReport::new("NotFoundError", "no such model").status(404),
        Severity::Error,
    );
    assert!(t.close().await);
    let got = server.seen();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri.path(), TELEMETRY_PATH);
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let batch: Value = serde_json::from_slice(&got[0].body).unwrap();
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
    let server = server().await;
    let t = Telemetry::start(
        None,
        http_sink(server.addr, "/broken"),
        TelemetryOptions::default(),
    )
    .unwrap();
    t.log_error(&ErrorReport::new("E", "x"), Severity::Error);
    assert!(t.close().await);
    assert!(server.seen_at(TELEMETRY_PATH).is_empty());
    assert_eq!(server.seen_at("/broken").len(), 1);
    let stats = t.stats();
    assert_eq!((stats.batches_failed, stats.dropped_send_failed), (1, 1));
}
