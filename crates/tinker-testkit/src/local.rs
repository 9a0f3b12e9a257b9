//! An in-process tinker-local (temp dir, fault spec, fast long-poll) and clients for it,
//! for end-to-end tests of the SDK (feature `local`).

use tinker_client::{ServiceClient, TrainingClient};
use tinker_local::{FaultConfig, LocalServer, LocalServerConfig, LocalServerHandle};
use tinker_types::{CrossEntropyInputs, Datum, ModelInput};

/// The base model every local test trains.
pub const MODEL: &str = "tinker-local/micro";

/// A running tinker-local and a service client for it (both stopped on drop).
#[derive(Debug)]
pub struct Env {
    /// The server.
    pub server: LocalServerHandle,
    /// A client with the test key.
    pub service: ServiceClient,
    _dir: tempfile::TempDir,
}

/// Starts tinker-local in a fresh temp dir with the fault spec `faults` (see
/// `FaultConfig::parse`) and a 2 s long-poll.
pub async fn start(faults: Option<&str>) -> Env {
    start_with(faults, |_| {}).await
}

/// Like [`start`], with `tweak` applied to the config last.
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
    // Tests read the session id up front; the session would otherwise start lazily.
    service.open_session().await.unwrap();
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

/// A LoRA (rank 4) training client on [`MODEL`].
pub async fn training(env: &Env) -> TrainingClient {
    env.service
        .create_lora_training_client(MODEL, 4)
        .await
        .unwrap()
}

/// A service client for `env`'s server whose retry loops run on a [`FastClock`](crate::clock::FastClock) and whose
/// HTTP layer does not retry (only the operation loop does).
pub async fn fast_retry_service(env: &Env) -> ServiceClient {
    use std::sync::Arc;
    let runtime = tinker_transport::clock::Runtime {
        clock: Arc::new(crate::clock::FastClock::new(100)),
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

/// A session-less REST client for `base_url`, trusting `ca` (DER) when given.
pub async fn rest_client(base_url: &str, ca: Option<Vec<u8>>) -> tinker_client::RestClient {
    use tinker_transport::http::connect::{ProxyConfig, TlsConfig};
    let mut builder = tinker_transport::Transport::builder()
        .base_url(base_url)
        .env(tinker_transport::Env::from_pairs([(
            "HOME",
            "/nonexistent",
        )]))
        .api_key("tml-test-key".to_owned().into())
        .proxy(ProxyConfig::None);
    if let Some(ca) = ca {
        let mut tls = TlsConfig::default();
        tls.webpki_roots = false;
        tls.native_roots = false;
        tls.extra_ca_certs = vec![ca];
        builder = builder.tls(tls);
    }
    tinker_client::RestClient::connect(builder.build().unwrap())
        .await
        .unwrap()
}
