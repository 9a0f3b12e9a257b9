//! Telemetry end to end (§6.12): what a client sends to `/api/v1/telemetry` of an
//! in-process tinker-local, read back with `telemetry_events()`.

use tinker_testkit::local as common;

use serde_json::Value;
use tinker_client::{CloseStatus, ErrorKind, RestClient, ServiceClient, ServiceClientBuilder};
use tinker_local::{FaultConfig, LocalServer, LocalServerConfig, LocalServerHandle};
use tinker_transport::{Env, SecretString, Transport};
use tinker_types::LossFn;

const API_KEY: &str = "tml-test-key";

struct Local {
    server: LocalServerHandle,
    _dir: tempfile::TempDir,
}

async fn local(faults: Option<&str>) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LocalServerConfig::new(dir.path());
    if let Some(spec) = faults {
        config.faults = FaultConfig::parse(spec).unwrap();
    }
    config.long_poll = std::time::Duration::from_secs(2);
    let server = LocalServer::start(config).await.unwrap();
    Local { server, _dir: dir }
}

fn builder(local: &Local) -> ServiceClientBuilder {
    ServiceClient::builder()
        .base_url(local.server.url())
        .api_key(API_KEY)
}

/// The events the server received with this name (`event_name` of generic events, else
/// `event`).
fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["event_name"] == name || (e.get("event_name").is_none() && e["event"] == name)
        })
        .collect()
}

/// No event carries the credential, in any field.
fn assert_no_secret(events: &[Value]) {
    let text = serde_json::to_string(events).unwrap();
    assert!(
        !text.contains(API_KEY),
        "the API key leaked into telemetry: {text}"
    );
    assert!(!text.to_ascii_lowercase().contains("x-api-key"), "{text}");
}

#[tokio::test]
async fn session_start_has_the_envelope_and_close_drains_the_queue() {
    let local = local(None).await;
    let service = builder(&local).telemetry(true).build().await.unwrap();
    service.open_session().await.unwrap();
    let telemetry = service.get_telemetry().expect("telemetry is on");
    assert_eq!(telemetry.session_id(), service.session_id());

    // SESSION_START waits in the queue (flushes are every 10 s) until close drains it.
    service.close(CloseStatus::Success, None).await.unwrap();
    let events = local.server.telemetry_events();
    let starts = named(&events, "SESSION_START");
    assert_eq!(starts.len(), 1, "{events:#?}");
    let start = starts[0];
    assert_eq!(start["session_id"], service.session_id());
    assert_eq!(start["platform"], tinker_telemetry::platform_name());
    assert_eq!(start["sdk_version"], "0.38.0");
    assert_eq!(start["process_uuid"], tinker_telemetry::process_uuid());
    let process = uuid::Uuid::parse_str(start["process_uuid"].as_str().unwrap()).unwrap();
    assert_eq!(process.get_version_num(), 4);
    assert_eq!(start["event_session_index"], 0);
    assert_eq!(start["severity"], "INFO");
    assert!(
        start["timestamp"].as_str().unwrap().ends_with('Z'),
        "{start}"
    );
    assert!(
        named(&events, "SESSION_END").is_empty(),
        "no fatal error, no end"
    );

    let stats = telemetry.stats();
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.sent, 1);
    assert_eq!(stats.batches_failed, 0);
    assert_no_secret(&events);
}

#[tokio::test]
async fn a_fatal_404_while_polling_is_a_user_error_and_ends_the_session() {
    let local = local(Some("script=retrieve_future#1:404")).await;
    let service = builder(&local).telemetry(true).build().await.unwrap();
    service.open_session().await.unwrap();
    let err = service
        .create_lora_training_client(common::MODEL, 4)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");

    // A fatal error is sent before the call returns: no close, no waiting.
    let events = local.server.telemetry_events();
    let polled = named(&events, "APIFuture.result_async.api_status_error");
    assert_eq!(polled.len(), 1, "{events:#?}");
    let data = &polled[0]["event_data"];
    assert_eq!(data["status_code"], 404);
    assert_eq!(data["kind"], "fatal");
    assert_eq!(data["should_retry"], false);
    assert_eq!(data["is_user_error"], true);
    assert_eq!(data["request_type"], "CreateModel");
    assert_eq!(data["iteration"], 0);
    assert!(data["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        data.get("request_headers").is_none(),
        "request headers carry the key"
    );
    assert_eq!(polled[0]["severity"], "ERROR");

    let user = named(&events, "user_error");
    assert_eq!(user.len(), 1, "{events:#?}");
    assert_eq!(user[0]["event"], "GENERIC_EVENT");
    assert_eq!(user[0]["severity"], "WARNING");
    assert_eq!(user[0]["event_data"]["status_code"], 404);
    assert_eq!(user[0]["event_data"]["error_type"], "NotFoundError");
    assert!(named(&events, "UNHANDLED_EXCEPTION").is_empty());

    let end = named(&events, "SESSION_END");
    assert_eq!(end.len(), 1, "{events:#?}");
    assert!(end[0]["duration"].as_str().unwrap().starts_with("0:00:"));
    // Indices are per holder and increase in order of logging.
    let index = |e: &Value| e["event_session_index"].as_u64().unwrap();
    assert!(index(polled[0]) < index(user[0]) && index(user[0]) < index(end[0]));
    assert_no_secret(&events);
}

#[tokio::test]
async fn a_refused_request_reports_the_retry_loop_and_the_user_error() {
    let local = local(Some("script=get_server_capabilities#1:403")).await;
    let service = builder(&local).telemetry(true).build().await.unwrap();
    let err = service.get_server_capabilities().await.unwrap_err();
    assert_eq!(err.status(), Some(403));

    let events = local.server.telemetry_events();
    let attempts = named(
        &events,
        "InternalClientHolder.execute_with_retries.exception",
    );
    assert_eq!(attempts.len(), 1, "{events:#?}");
    let data = &attempts[0]["event_data"];
    assert_eq!(data["status_code"], 403);
    assert_eq!(data["is_retryable"], false);
    assert_eq!(data["is_user_error"], true);
    assert_eq!(data["attempt_count"], 0);
    assert_eq!(data["exception_type"], "PermissionDeniedError");
    assert_eq!(attempts[0]["severity"], "WARNING");

    let user = named(&events, "user_error");
    assert_eq!(user.len(), 1, "{events:#?}");
    assert_eq!(user[0]["event_data"]["status_code"], 403);
    assert!(
        user[0]["event_data"]["body"].is_object() || user[0]["event_data"]["body"].is_string(),
        "{user:?}"
    );
    // The capabilities call ran on the session-less connection, which (as the SDK's)
    // reports errors but has no session to end.
    assert_eq!(named(&events, "SESSION_END").len(), 0);
    assert_no_secret(&events);
}

#[tokio::test]
async fn server_errors_then_a_fatal_one_produce_the_diagnostic_events() {
    // No HTTP-level retries, so the 503 reaches the holder retry loop (§6.2), which
    // retries it after 1 s; the poll sees a 500 (retried at once), then a fatal 404.
    let local = local(Some(
        "script=get_server_capabilities#1:503;retrieve_future#1:500;retrieve_future#2:404",
    ))
    .await;
    let service = builder(&local)
        .max_retries(0)
        .telemetry(true)
        .build()
        .await
        .unwrap();
    service.open_session().await.unwrap();
    service.get_server_capabilities().await.unwrap();
    let err = service
        .create_lora_training_client(common::MODEL, 4)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));

    let events = local.server.telemetry_events();

    let polled = named(&events, "APIFuture.result_async.api_status_error");
    assert_eq!(polled.len(), 2, "{events:#?}");
    let (first, second) = (&polled[0]["event_data"], &polled[1]["event_data"]);
    assert_eq!(
        (first["status_code"].clone(), first["kind"].clone()),
        (500.into(), "retry".into())
    );
    assert_eq!(first["should_retry"], true);
    assert_eq!(first["is_user_error"], false);
    assert_eq!(first["iteration"], 0);
    assert_eq!(polled[0]["severity"], "WARNING");
    assert!(first.get("response_body").is_none(), "retries stay light");
    assert_eq!(
        (second["status_code"].clone(), second["kind"].clone()),
        (404.into(), "fatal".into())
    );
    assert_eq!(second["iteration"], 1);
    assert_eq!(polled[1]["severity"], "ERROR");
    assert!(second.get("response_headers").is_some(), "{second}");
    assert_eq!(first["request_id"], second["request_id"]);

    assert_eq!(named(&events, "user_error").len(), 1);
    assert_eq!(named(&events, "SESSION_END").len(), 1);
    assert_eq!(named(&events, "SESSION_START").len(), 1);
    assert_no_secret(&events);
    service.close(CloseStatus::Errored, None).await.unwrap();

    // The capabilities call ran on the session-less connection (as in SDK 0.38), whose
    // reporter sends its queue at close.
    let events = local.server.telemetry_events();
    let attempts = named(
        &events,
        "InternalClientHolder.execute_with_retries.exception",
    );
    assert_eq!(attempts.len(), 1, "{events:#?}");
    let data = &attempts[0]["event_data"];
    assert_eq!(data["status_code"], 503);
    assert_eq!(data["is_retryable"], true);
    assert_eq!(data["is_user_error"], false);
    assert_eq!(data["exception_type"], "InternalServerError");
    assert_eq!(attempts[0]["severity"], "WARNING");
}

#[tokio::test]
async fn telemetry_off_sends_nothing() {
    let local = local(Some("script=retrieve_future#1:404")).await;
    let service = builder(&local).telemetry(false).build().await.unwrap();
    service.open_session().await.unwrap();
    assert!(service.get_telemetry().is_none());
    let err = service
        .create_lora_training_client(common::MODEL, 4)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    service.close(CloseStatus::Errored, None).await.unwrap();

    // TINKER_TELEMETRY=0 in the client's environment turns it off too.
    let env = Env::from_pairs([("TINKER_TELEMETRY", "0")]);
    let service = ServiceClientBuilder::with_env(env)
        .base_url(local.server.url())
        .api_key(API_KEY)
        .build()
        .await
        .unwrap();
    assert!(service.get_telemetry().is_none());
    service.close(CloseStatus::Success, None).await.unwrap();

    assert!(local.server.telemetry_events().is_empty());
}

#[tokio::test]
async fn sessionless_clients_report_errors_without_session_events() {
    let local = local(None).await;
    let transport = Transport::builder()
        .base_url(local.server.url())
        .env(Env::from_pairs::<_, String>([(
            "TINKER_TELEMETRY",
            "1".to_owned(),
        )]))
        .api_key(SecretString::from(API_KEY.to_owned()))
        .build()
        .unwrap();
    let rest = RestClient::connect(transport).await.unwrap();
    let telemetry = rest.get_telemetry().expect("on by default");
    let session_id = telemetry.session_id().to_owned();
    let uuid = session_id
        .strip_prefix("sessionless-")
        .expect("sessionless id");
    assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);

    let err = rest
        .get_training_run("no-such-run", Default::default())
        .await
        .unwrap_err();
    assert!(err.is_user_error(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Api);

    let events = local.server.telemetry_events();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e["session_id"] == session_id.as_str())
    );
    assert!(named(&events, "SESSION_START").is_empty(), "{events:#?}");
    assert!(named(&events, "SESSION_END").is_empty(), "{events:#?}");
    let user = named(&events, "user_error");
    assert_eq!(user.len(), 1, "{events:#?}");
    assert_eq!(user[0]["event_data"]["status_code"], err.status().unwrap());
    assert_no_secret(&events);
}

#[tokio::test]
async fn a_request_failing_on_the_server_reports_an_application_error() {
    let local = local(None).await;
    let service = builder(&local).telemetry(true).build().await.unwrap();
    service.open_session().await.unwrap();
    let training = service
        .create_lora_training_client(common::MODEL, 4)
        .await
        .unwrap();
    // A token id far outside the vocabulary: the server fails the request (category user).
    let err = training
        .forward_backward(
            vec![common::datum(&[1, 2_000_000, 3])],
            LossFn::CrossEntropy,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RequestFailed, "{err:?}");
    assert!(err.is_user_error());

    let events = local.server.telemetry_events();
    let failed = named(&events, "APIFuture.result_async.application_error");
    assert_eq!(failed.len(), 1, "{events:#?}");
    let data = &failed[0]["event_data"];
    assert_eq!(data["error_category"], "User");
    assert_eq!(data["is_user_error"], true);
    assert_eq!(data["request_type"], "ForwardBackward");
    assert!(data["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(failed[0]["severity"], "WARNING");
    let user = named(&events, "user_error");
    assert_eq!(user.len(), 1, "{events:#?}");
    assert_eq!(user[0]["event_data"]["error_type"], "RequestFailedError");
    assert!(user[0]["event_data"].get("status_code").is_none());
    assert_eq!(named(&events, "SESSION_END").len(), 1);
    assert_no_secret(&events);
}

#[tokio::test]
async fn dropping_the_clients_still_sends_what_is_queued() {
    let local = local(None).await;
    let service = builder(&local).telemetry(true).build().await.unwrap();
    service.open_session().await.unwrap();
    let session_id = service.open_session().await.unwrap().to_owned();
    // SESSION_START is queued (the next periodic flush is 10 s away); no close.
    drop(service);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let events = local.server.telemetry_events();
        if let Some(start) = named(&events, "SESSION_START").first() {
            assert_eq!(start["session_id"], session_id.as_str());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing sent after drop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A training result that does not decode: a cut-short protobuf `ForwardBackwardOutput`
/// reports `APIFuture.result_async.proto_deserialization_error`, a wrong-shaped JSON
/// `OptimStepResponse` reports `APIFuture.result_async.validation_error`, once per answer:
/// the result is polled again (1 + 3 re-polls, beyond the SDK, issue 9) before the
/// operation ends with one fatal report.
#[tokio::test]
async fn undecodable_training_results_report_the_decode_events() {
    // create_model takes poll #1; the training operation's first poll is #2.
    for (fault, event) in [
        (
            "corrupt",
            "APIFuture.result_async.proto_deserialization_error",
        ),
        ("badjson", "APIFuture.result_async.validation_error"),
    ] {
        let script: Vec<String> = (2..=5)
            .map(|n| format!("retrieve_future#{n}:{fault}"))
            .collect();
        let local = local(Some(&format!("script={}", script.join(";")))).await;
        let service = builder(&local).telemetry(true).build().await.unwrap();
        service.open_session().await.unwrap();
        let training = service
            .create_lora_training_client(common::MODEL, 4)
            .await
            .unwrap();
        let (err, request_type, model) = if fault == "corrupt" {
            let err = training
                .forward_backward(vec![common::datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
                .await
                .unwrap_err();
            (err, "ForwardBackward", "ForwardBackwardOutput")
        } else {
            let err = training
                .optim_step(tinker_types::AdamParams::default())
                .await
                .unwrap_err();
            (err, "OptimStep", "OptimStepResponse")
        };
        assert_eq!(err.kind(), ErrorKind::Protocol, "{fault}: {err:?}");

        let events = local.server.telemetry_events();
        let decoded = named(&events, event);
        assert_eq!(decoded.len(), 4, "{fault}: {events:#?}");
        let data = &decoded[0]["event_data"];
        assert_eq!(data["request_type"], request_type);
        assert!(data["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(
            data["model_cls"].as_str().unwrap().ends_with(model),
            "{data}"
        );
        assert!(data["exception"].as_str().is_some_and(|e| !e.is_empty()));
        if fault == "corrupt" {
            assert!(data["proto_bytes_len"].as_u64().unwrap() > 0, "{data}");
        }
        assert_eq!(decoded[0]["severity"], "ERROR");
        assert_eq!(
            named(&events, "UNHANDLED_EXCEPTION").len(),
            1,
            "{events:#?}"
        );
        assert_eq!(named(&events, "SESSION_END").len(), 1, "{events:#?}");
        assert_no_secret(&events);
    }
}
