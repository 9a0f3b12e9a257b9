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

/// A clock that runs `speedup` times faster than real time: every sleep lasts
/// `1/speedup` of its length and moves this clock's time forward by the rest. Retry windows
/// (the 300 s operation loop) then pass in seconds, with the real schedule of attempts.
#[derive(Debug)]
pub struct FastClock {
    speedup: u32,
    skipped: std::sync::Mutex<std::time::Duration>,
}

impl FastClock {
    pub fn new(speedup: u32) -> Self {
        Self {
            speedup: speedup.max(1),
            skipped: std::sync::Mutex::new(std::time::Duration::ZERO),
        }
    }

    fn skipped(&self) -> std::time::Duration {
        *self.skipped.lock().unwrap()
    }
}

impl tinker_transport::clock::Clock for FastClock {
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.skipped()
    }

    fn unix_now(&self) -> f64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        (now + self.skipped()).as_secs_f64()
    }

    fn sleep(&self, duration: std::time::Duration) -> tinker_transport::clock::Sleep {
        let real = duration / self.speedup;
        *self.skipped.lock().unwrap() += duration - real;
        Box::pin(tokio::time::sleep(real))
    }
}

/// A service client for `env`'s server whose retry loops run on a [`FastClock`] and whose
/// HTTP layer does not retry (only the operation loop does).
pub async fn fast_retry_service(env: &Env) -> ServiceClient {
    use std::sync::Arc;
    let runtime = tinker_transport::clock::Runtime {
        clock: Arc::new(FastClock::new(100)),
        jitter: Arc::new(tinker_transport::clock::FixedJitter(0.0)),
    };
    ServiceClient::builder()
        .base_url(env.server.url())
        .api_key("tml-test-key")
        .max_retries(0)
        .transport(move |t| t.runtime(runtime))
        .build()
        .await
        .unwrap()
}
