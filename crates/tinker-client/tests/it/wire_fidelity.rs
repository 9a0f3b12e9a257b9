//! What the client sends where SDK 0.38 was seen to differ (issue 10), against a scripted
//! server that records every request: the session is created on first use, polls carry
//! the method that started the request, and `get_info` answers from its cache.

use tinker_client::ServiceClient;
use tinker_testkit::{Reply, Server};

const SESSION: &str = "sess-wire-1";
const MODEL_ID: &str = "sess-wire-1:train:0";

async fn scripted() -> Server {
    Server::start(|seen, _| match seen.uri.path() {
        "/api/v1/client/config" | "/api/v1/session_heartbeat" => Reply::json(200, "{}"),
        "/api/v1/client/dynamic_config" => Reply::json(200, r#"{"refresh_interval_sec": 600}"#),
        "/api/v1/get_server_capabilities" => Reply::json(
            200,
            r#"{"supported_models": [{"model_name": "tinker-local/micro"}]}"#,
        ),
        "/api/v1/create_session" => {
            Reply::json(200, &format!(r#"{{"session_id": "{SESSION}"}}"#))
        }
        "/api/v1/create_model" => Reply::json(200, r#"{"request_id": "req-create-1"}"#),
        "/api/v1/retrieve_future" => {
            Reply::json(200, &format!(r#"{{"model_id": "{MODEL_ID}"}}"#))
        }
        "/api/v1/get_info" => Reply::json(
            200,
            &format!(
                r#"{{"model_id": "{MODEL_ID}", "model_data": {{"model_name": "tinker-local/micro"}}}}"#
            ),
        ),
        p if p.ends_with("/finish") => Reply::json(200, "{}"),
        _ => Reply::json(404, r#"{"detail":"not scripted"}"#),
    })
    .await
}

fn client(server: &Server) -> tinker_client::ServiceClientBuilder {
    ServiceClient::builder()
        .base_url(server.url.clone())
        .api_key("tml-wire-test-key")
        .telemetry(false)
}

fn paths(server: &Server) -> Vec<String> {
    server
        .seen()
        .iter()
        .map(|s| s.uri.path().to_owned())
        .collect()
}

#[tokio::test]
async fn a_client_that_only_asks_for_capabilities_creates_no_session() {
    let server = scripted().await;
    let service = client(&server).build().await.unwrap();
    assert!(server.seen().is_empty(), "build sends nothing");
    service.get_server_capabilities().await.unwrap();
    let seen = paths(&server);
    assert!(
        !seen.iter().any(|p| p == "/api/v1/create_session"),
        "{seen:?}"
    );
    assert_eq!(service.session_id(), "");

    // The first call that needs a session creates it, once.
    assert_eq!(service.open_session().await.unwrap(), SESSION);
    assert_eq!(service.open_session().await.unwrap(), SESSION);
    assert_eq!(service.session_id(), SESSION);
    assert_eq!(server.seen_at("/api/v1/create_session").len(), 1);
    service
        .close(tinker_client::CloseStatus::Success, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn polls_carry_the_starting_method_and_get_info_is_cached() {
    let server = scripted().await;
    let service = client(&server).build().await.unwrap();
    let tc = service
        .create_lora_training_client("tinker-local/micro", 4)
        .await
        .unwrap();
    let polls = server.seen_at("/api/v1/retrieve_future");
    assert_eq!(polls.len(), 1);
    let poll = &polls[0];
    assert_eq!(
        poll.header("x-sdk-method"),
        Some("ServiceClient.create_lora_training_client")
    );
    assert_eq!(poll.header("x-sdk-version"), Some("0.38.0"));
    assert_eq!(poll.header("x-stainless-raw-response"), Some("raw"));

    // get_info answers from what the client fetched when it was created.
    assert_eq!(server.seen_at("/api/v1/get_info").len(), 1);
    let info = tc.get_info().await.unwrap();
    assert_eq!(info.model_id, MODEL_ID);
    assert_eq!(server.seen_at("/api/v1/get_info").len(), 1);
    service
        .close(tinker_client::CloseStatus::Success, None)
        .await
        .unwrap();
}
