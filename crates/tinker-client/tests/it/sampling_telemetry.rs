//! Telemetry of sampling end to end (§6.12): the holder retry loop around `asample`, the
//! outer `RetryHandler`, the caller's result timeout, as received by an in-process
//! tinker-local (`telemetry_events()`).

use tinker_testkit::local as common;

use std::time::Duration;

use serde_json::Value;
use tinker_client::{CloseStatus, ErrorKind, SamplingClient, SamplingSource, ServiceClient};
use tinker_local::{FaultConfig, LocalServer, LocalServerConfig, LocalServerHandle};
use tinker_types::{LossFn, ModelInput, SamplingParams};

const API_KEY: &str = "tml-test-key";

struct Local {
    server: LocalServerHandle,
    service: ServiceClient,
    _dir: tempfile::TempDir,
}

/// A server with `faults` and a client with telemetry on.
async fn local(faults: &str) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LocalServerConfig::new(dir.path());
    config.faults = FaultConfig::parse(faults).unwrap();
    config.long_poll = Duration::from_secs(2);
    let server = LocalServer::start(config).await.unwrap();
    let service = ServiceClient::builder()
        .base_url(server.url())
        .api_key(API_KEY)
        .telemetry(true)
        .build()
        .await
        .unwrap();
    Local {
        server,
        service,
        _dir: dir,
    }
}

async fn sampler(local: &Local) -> SamplingClient {
    local
        .service
        .create_sampling_client(SamplingSource::BaseModel(common::MODEL.into()))
        .await
        .unwrap()
}

fn prompt() -> ModelInput {
    ModelInput::from_tokens(&[3, 4, 5, 6])
}

/// The events with this `event_name` (generic events) or `event`.
fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["event_name"] == name || (e.get("event_name").is_none() && e["event"] == name)
        })
        .collect()
}

/// Closes the client (which sends what telemetry still queues) and returns every event
/// the server received.
async fn closed_events(local: &Local) -> Vec<Value> {
    local
        .service
        .close(CloseStatus::Success, None)
        .await
        .unwrap();
    local.server.telemetry_events()
}

/// A 503 on `asample` is retried by the holder retry loop, reported as
/// `InternalClientHolder.execute_with_retries.exception` under the SDK's function name; a
/// 429 is backpressure and reports nothing; the sample succeeds and nothing is fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asample_failures_report_the_holder_retry_loop() {
    let local = local("script=asample#1:503;asample#2:429").await;
    let sampler = sampler(&local).await;
    let resp = sampler
        .sample(prompt(), 1, SamplingParams::with_max_tokens(2))
        .await
        .unwrap();
    assert_eq!(resp.sequences.len(), 1);

    let events = closed_events(&local).await;
    let attempts = named(
        &events,
        "InternalClientHolder.execute_with_retries.exception",
    );
    assert_eq!(attempts.len(), 1, "the 429 reports nothing: {events:#?}");
    let data = &attempts[0]["event_data"];
    assert_eq!(data["func"], "SamplingClient._send_asample_request");
    assert_eq!(data["status_code"], 503);
    assert_eq!(data["is_retryable"], true);
    assert_eq!(data["is_user_error"], false);
    assert_eq!(data["attempt_count"], 0);
    assert_eq!(data["exception_type"], "InternalServerError");
    assert_eq!(attempts[0]["severity"], "WARNING");
    assert!(named(&events, "RetryHandler.execute.exception").is_empty());
    assert!(named(&events, "SESSION_END").is_empty(), "{events:#?}");
    assert!(!serde_json::to_string(&events).unwrap().contains(API_KEY));
}

/// A lost sample future (410) is resubmitted by the outer retry handler, which reports
/// `RetryHandler.execute.exception` (a `RetryableException`, retried); a fatal 404 while
/// polling `compute_logprobs` is reported by the handler (not retried, a user error) and
/// then once as the operation's fatal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outer_retry_handler_reports_each_failed_attempt() {
    let local = local("script=retrieve_future#1:410;retrieve_future#3:404").await;
    let sampler = sampler(&local).await;
    sampler
        .sample(prompt(), 1, SamplingParams::with_max_tokens(2))
        .await
        .unwrap();
    let err = sampler.compute_logprobs(prompt()).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");

    let events = local.server.telemetry_events();
    let attempts = named(&events, "RetryHandler.execute.exception");
    assert_eq!(attempts.len(), 2, "{events:#?}");
    let lost = &attempts[0]["event_data"];
    assert_eq!(lost["func"], "SamplingClient.sample.<locals>._sample_async");
    assert_eq!(lost["exception_type"], "RetryableException");
    assert!(lost["status_code"].is_null(), "{lost}");
    assert_eq!(lost["should_retry"], true);
    // As in the SDK, whose user-error test finds the 410 among the exception's causes.
    assert_eq!(lost["is_user_error"], true);
    assert_eq!(lost["attempt_count"], 1);
    assert!(lost["elapsed_time"].as_f64().unwrap() >= 0.0);
    assert_eq!(attempts[0]["severity"], "WARNING");

    let fatal = &attempts[1]["event_data"];
    assert_eq!(
        fatal["func"],
        "SamplingClient.compute_logprobs.<locals>._compute_logprobs_async"
    );
    assert_eq!(fatal["exception_type"], "NotFoundError");
    assert_eq!(fatal["status_code"], 404);
    assert_eq!(fatal["should_retry"], false);
    assert_eq!(fatal["is_user_error"], true);
    assert_eq!(fatal["attempt_count"], 1);
    assert_eq!(attempts[1]["severity"], "WARNING");

    let polled = named(&events, "APIFuture.result_async.api_status_error");
    let kinds: Vec<_> = polled
        .iter()
        .map(|e| e["event_data"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["retryable_exception", "fatal"], "{events:#?}");
    assert!(
        polled
            .iter()
            .all(|e| e["event_data"]["request_type"] == "Sample")
    );
    // The end of the operation is reported once, not by each layer.
    assert_eq!(named(&events, "user_error").len(), 1, "{events:#?}");
    assert_eq!(named(&events, "SESSION_END").len(), 1, "{events:#?}");
}

/// `result_timeout` bounds the caller's wait on a sample that never finishes: a typed
/// timeout error, `APIFuture.result_async.timeout` naming the request, and the sample
/// cancelled on the server (§3.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_result_timeout_is_reported_and_cancels_the_sample() {
    // Every poll of a future answers 408 (try again): the sample never completes.
    let local = local("p408=1.0").await;
    let sampler = sampler(&local).await;
    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let started = std::time::Instant::now();
    let err = sampler
        .sample(prompt(), 1, SamplingParams::with_max_tokens(2))
        .result_timeout(Duration::from_millis(800))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let mut cancelled = Vec::new();
    for _ in 0..100 {
        cancelled = local.server.cancel_requests();
        if !cancelled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");

    // Not an error of the session: the event waits for the next flush (here, the close).
    let events = closed_events(&local).await;
    let timeouts = named(&events, "APIFuture.result_async.timeout");
    assert_eq!(timeouts.len(), 1, "{events:#?}");
    let data = &timeouts[0]["event_data"];
    assert_eq!(data["request_type"], "Sample");
    assert_eq!(data["timeout"], 0.8);
    assert!(data["iteration"].as_u64().unwrap() >= 1, "{data}");
    assert!(data["elapsed_time"].as_f64().unwrap() >= 0.8, "{data}");
    assert_eq!(timeouts[0]["severity"], "ERROR");
    let request_id = data["request_id"].as_str().unwrap().to_owned();
    assert!(request_id.starts_with(sampler.sampling_session_id()));
    assert!(err.message().contains(&request_id), "{err}");
    assert_eq!(cancelled, [request_id]);
    assert!(named(&events, "SESSION_END").is_empty(), "{events:#?}");
}

/// A training operation whose caller stops waiting keeps its place in the model's order
/// and runs anyway: the next step succeeds and the timed-out one executed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_result_timeout_leaves_the_operation_running() {
    let local = local("latency_ms=300-300,routes=retrieve_future").await;
    let training = local
        .service
        .create_lora_training_client(common::MODEL, 4)
        .await
        .unwrap();
    let err = training
        .forward_backward(vec![common::datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
        .result_timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    training
        .optim_step(tinker_types::AdamParams::default())
        .await
        .unwrap();
    let executions = local.server.executions();
    assert!(executions.len() >= 2, "{executions:?}");
    assert!(executions.iter().all(|(_, n)| *n == 1), "{executions:?}");

    let events = closed_events(&local).await;
    let data = &named(&events, "APIFuture.result_async.timeout")[0]["event_data"];
    assert_eq!(data["request_type"], "ForwardBackward");
    assert_eq!(data["timeout"], 0.1);
}

/// A sample result that does not decode (a cut-short protobuf) reports
/// `APIFuture.result_async.proto_deserialization_error` for every answer; it is polled
/// again (beyond the SDK: the result is stored, issue 9) a bounded number of times, then
/// the outer retry handler does not retry it, and the operation ends with one fatal report.
/// A JSON answer where a protobuf is due is refused without a decode event, as in the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_sample_result_reports_the_decode_event() {
    // Every answer of the first sample (1 + 3 re-polls) is corrupt, then every answer of
    // the second is JSON.
    let script: Vec<String> = (1..=8)
        .map(|n| {
            let fault = if n <= 4 { "corrupt" } else { "badjson" };
            format!("retrieve_future#{n}:{fault}")
        })
        .collect();
    let local = local(&format!("script={}", script.join(";"))).await;
    let sampler = sampler(&local).await;
    for _ in 0..2 {
        let err = sampler
            .sample(prompt(), 1, SamplingParams::with_max_tokens(2))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err:?}");
    }

    let events = local.server.telemetry_events();
    let decoded = named(
        &events,
        "APIFuture.result_async.proto_deserialization_error",
    );
    assert_eq!(decoded.len(), 4, "{events:#?}");
    let data = &decoded[0]["event_data"];
    assert_eq!(data["request_type"], "Sample");
    assert!(data["proto_bytes_len"].as_u64().unwrap() > 0, "{data}");
    assert!(
        data["model_cls"]
            .as_str()
            .unwrap()
            .ends_with("SampleResponse"),
        "{data}"
    );
    assert!(
        data["request_id"]
            .as_str()
            .unwrap()
            .starts_with(sampler.sampling_session_id())
    );
    assert!(named(&events, "APIFuture.result_async.validation_error").is_empty());
    let attempts = named(&events, "RetryHandler.execute.exception");
    assert_eq!(attempts.len(), 2, "{events:#?}");
    assert!(
        attempts
            .iter()
            .all(|a| a["event_data"]["should_retry"] == false && a["severity"] == "ERROR")
    );
    assert_eq!(
        named(&events, "UNHANDLED_EXCEPTION").len(),
        2,
        "{events:#?}"
    );
}
