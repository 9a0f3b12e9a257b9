//! Error kinds and call details at the client boundary, over real HTTP against an
//! in-process hyper server that scripts one fault per test: a malformed reply is the
//! server's fault (`Protocol`, not a user error), a transport timeout is `Timeout`, and
//! request id, retries and elapsed time reach `tinker_client::Error`.

use std::time::Duration;

use tinker_client::{ErrorKind, ServiceClient, TrainingClientOptions};
use tinker_testkit::{Reply, Server};

/// What the scripted route answers.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `create_session` answers 503 with an `x-request-id`, every time.
    Unavailable,
    /// `create_session` answers after 5 s (the client's read timeout is 200 ms).
    Stall,
    /// `retrieve_future` answers `200 [1, 2, 3]`: JSON, but not a future result.
    MalformedFuture,
    /// `retrieve_future` answers a 64 KiB body (the client's limit is 4 KiB).
    HugeFuture,
}

/// Serves the start-up routes normally and `fault` on its route.
async fn server(fault: Fault) -> Server {
    Server::start(move |seen, _| answer(fault, seen.uri.path())).await
}

fn answer(fault: Fault, path: &str) -> Reply {
    let json = |status: u16, body: &str| {
        Reply::json(status, body).with_header("x-request-id", "req-scripted-7")
    };
    match (fault, path) {
        (Fault::Unavailable, "/api/v1/create_session") => json(503, r#"{"detail":"down"}"#),
        (Fault::Stall, "/api/v1/create_session") => {
            json(200, r#"{"session_id":"s1"}"#).after(Duration::from_secs(5))
        }
        (_, "/api/v1/create_session") => json(200, r#"{"session_id":"s1"}"#),
        (_, "/api/v1/create_model") => json(200, r#"{"request_id":"r1"}"#),
        (Fault::MalformedFuture, "/api/v1/retrieve_future") => json(200, "[1, 2, 3]"),
        (Fault::HugeFuture, "/api/v1/retrieve_future") => {
            json(200, &format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024)))
        }
        _ => json(200, "{}"),
    }
}

fn builder(url: &str) -> tinker_client::ServiceClientBuilder {
    ServiceClient::builder()
        .base_url(url)
        .api_key("tml-error-kinds-test-key")
        .telemetry(false)
}

#[tokio::test]
async fn an_http_failure_carries_request_id_retries_and_elapsed() {
    let server = server(Fault::Unavailable).await;
    let url = &server.url;
    let err = builder(url)
        .max_retries(2)
        .build()
        .await
        .unwrap()
        .open_session()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Api, "{err:?}");
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.request_id(), Some("req-scripted-7"), "{err:?}");
    assert_eq!(err.retries(), 2, "{err:?}");
    let elapsed = err.elapsed().expect("elapsed time of the call");
    // Two backoff sleeps of the HTTP layer (at least 0.375 s each with jitter).
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(format!("{err:?}").contains("req-scripted-7"));
}

#[tokio::test]
async fn a_read_timeout_is_a_timeout_with_its_retries() {
    let server = server(Fault::Stall).await;
    let url = &server.url;
    let err = builder(url)
        .max_retries(1)
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
        .open_session()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(
        err.is_retryable(),
        "an HTTP timeout may succeed when retried"
    );
    assert!(!err.is_user_error());
    assert_eq!(err.retries(), 1, "{err:?}");
    assert!(err.elapsed().unwrap() >= Duration::from_millis(400));
}

#[tokio::test]
async fn a_malformed_reply_is_a_protocol_error_not_a_user_error() {
    let server = server(Fault::MalformedFuture).await;
    let url = &server.url;
    let service = builder(url).max_retries(0).build().await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        service.create_lora_training_client_with("base-model", TrainingClientOptions::rank(4)),
    )
    .await
    .expect("the malformed reply fails the call")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err:?}");
    assert!(!err.is_user_error(), "{err:?}");
    // The failure is the decoding of the retrieve_future reply, not an earlier step.
    assert!(err.to_string().contains("must be a JSON object"), "{err}");
}

/// A future result over the transport's size limit fails the call at once with
/// `ResponseTooLarge` (it is not polled again: every poll would be as large).
#[tokio::test]
async fn a_reply_over_the_size_limit_fails_without_retrying() {
    let server = server(Fault::HugeFuture).await;
    let url = &server.url;
    let service = builder(url)
        .transport(|t| t.max_response_bytes(4096))
        .build()
        .await
        .unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        service.create_lora_training_client_with("base-model", TrainingClientOptions::rank(4)),
    )
    .await
    .expect("an oversized reply is not polled forever")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseTooLarge, "{err:?}");
    assert!(!err.is_retryable() && !err.is_user_error());
}
