//! Shared set-up of the end-to-end tests: an in-process tinker-local and a client for it.

#![allow(dead_code, clippy::unwrap_used)]

use tinker_client::{ServiceClient, TrainingClient};
use tinker_local::{FaultConfig, LocalServer, LocalServerConfig, LocalServerHandle};
use tinker_types::{CrossEntropyInputs, Datum, ModelInput};

pub const MODEL: &str = "tinker-local/micro";

pub struct Env {
    pub server: LocalServerHandle,
    pub service: ServiceClient,
    _dir: tempfile::TempDir,
}

pub async fn start(faults: Option<&str>) -> Env {
    start_with(faults, |_| {}).await
}

pub async fn start_with(faults: Option<&str>, tweak: impl FnOnce(&mut LocalServerConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LocalServerConfig::new(dir.path());
    if let Some(spec) = faults {
        config.faults = FaultConfig::parse(spec).unwrap();
    }
    config.long_poll = std::time::Duration::from_secs(2);
    tweak(&mut config);
    let server = LocalServer::start(config).await.unwrap();
    let service = ServiceClient::builder()
        .base_url(server.url())
        .api_key("tml-test-key")
        .build()
        .await
        .unwrap();
    Env {
        server,
        service,
        _dir: dir,
    }
}

/// A next-token datum over `tokens` (inputs all but the last, targets all but the first).
pub fn datum(tokens: &[u32]) -> Datum {
    let input = ModelInput::from_tokens(&tokens[..tokens.len() - 1]);
    let targets: Vec<i64> = tokens[1..].iter().map(|&t| i64::from(t)).collect();
    let weights = vec![1.0; targets.len()];
    Datum::new(
        input,
        CrossEntropyInputs::new(targets, weights)
            .unwrap()
            .into_inputs()
            .unwrap(),
    )
}

pub async fn training(env: &Env) -> TrainingClient {
    env.service
        .create_lora_training_client(MODEL, 4)
        .await
        .unwrap()
}
