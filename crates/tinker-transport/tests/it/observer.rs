//! The request observer: one record per call, with the HTTP-layer retries, the bytes
//! each way and the final status, only for the handle it was attached to.

use std::sync::{Arc, Mutex};

use tinker_testkit::clock::*;
use tinker_testkit::server::{Reply, Server};
use tinker_transport::http::connect::ProxyConfig;
use tinker_transport::observe::RequestObserver;
use tinker_transport::{Env, RequestSpec, Transport};

/// (path, sdk method, status, ok, retries, sent, received) of each record.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<u16>, bool, u32, u64, u64)>>>;

fn recorder() -> (RequestObserver, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let observer: RequestObserver = Arc::new(move |r| {
        sink.lock().unwrap().push((
            r.path.to_owned(),
            r.sdk_method.map(str::to_owned),
            r.status.map(|s| s.as_u16()),
            r.ok,
            r.retries,
            r.bytes_sent,
            r.bytes_received,
        ));
    });
    (observer, seen)
}

#[tokio::test]
async fn one_record_per_call_with_retries_and_bytes() {
    // The first call to /a gets a 503 then a 200; /b always answers 404.
    let server = Server::start(|req, n| match (req.uri.path(), n) {
        ("/a", 0) => Reply::status(503),
        ("/a", _) => Reply::json(200, r#"{"ok":true}"#),
        _ => Reply::json(404, r#"{"detail":"no"}"#),
    })
    .await;
    let plain = Transport::builder()
        .base_url(&server.url)
        .env(Env::from_pairs([("HOME", "/nonexistent")]))
        .no_credential()
        .proxy(ProxyConfig::None)
        .runtime(runtime(RecordingClock::new(0.0)))
        .build()
        .unwrap();
    let (observer, seen) = recorder();
    let observed = plain.with_request_observer(observer);
    let body = br#"{"x":1}"#;
    observed
        .send(
            RequestSpec::post("/a")
                .with_body(&body[..], "application/json")
                .with_sdk_method("T.a"),
        )
        .await
        .unwrap();
    observed.send(RequestSpec::get("/b")).await.unwrap_err();
    plain.send(RequestSpec::get("/b")).await.unwrap_err();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the plain handle reports nothing: {seen:?}");
    let ok = &seen[0];
    assert_eq!((ok.0.as_str(), ok.1.as_deref()), ("/a", Some("T.a")));
    assert_eq!((ok.2, ok.3, ok.4), (Some(200), true, 1));
    assert_eq!(ok.5, 2 * body.len() as u64, "both attempts sent the body");
    assert_eq!(ok.6, br#"{"ok":true}"#.len() as u64);
    let failed = &seen[1];
    assert_eq!(
        (failed.2, failed.3, failed.4, failed.5),
        (Some(404), false, 0, 0)
    );
    assert!(failed.6 > 0, "the error body counts as received");
}
