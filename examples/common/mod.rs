//! What every example shares: the choice between the embedded `tinker-local` server and
//! the service named by `TINKER_API_KEY`/`TINKER_BASE_URL`, settings read from the
//! environment, and the tokenization of a prompt/completion datum.
//!
//! Included by each example with `mod common;`; not every example uses every item.
#![allow(dead_code)]

use tinker::prelude::*;
use tinker::tokenizer::Tokenizer;
use tinker::transport::Env;

/// The API key the examples use with the embedded server (any `tml-` key works there).
pub(crate) const LOCAL_API_KEY: &str = "tml-local-example";

/// The error type of the examples' `main`.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connected [`ServiceClient`], plus the embedded server (and its data folder) when no
/// `TINKER_API_KEY` is set.
pub(crate) struct Connection {
    /// The client.
    pub service: ServiceClient,
    /// Whether it talks to a server named by the environment (not the embedded one).
    pub remote: bool,
    /// The settings the example reads.
    pub env: Env,
    server: Option<tinker::local::LocalServerHandle>,
    // Held so the embedded server's data outlives it.
    _data_dir: tempfile::TempDir,
}

impl Connection {
    /// Connects as `training_loop` does: the service given by `TINKER_API_KEY` (and
    /// `TINKER_BASE_URL`) when the key is set, else a fresh embedded `tinker-local`.
    pub(crate) async fn open(env: Env) -> Result<Self, BoxError> {
        Self::open_with(env, |_| {}).await
    }

    /// Like [`Connection::open`], with `tweak` applied to the embedded server's config
    /// (e.g. a fault plan); unused against a remote server.
    pub(crate) async fn open_with(
        env: Env,
        tweak: impl FnOnce(&mut tinker::local::LocalServerConfig),
    ) -> Result<Self, BoxError> {
        Self::open_configured(env, tweak, |b| b).await
    }

    /// Like [`Connection::open_with`], with `client` applied to the client's builder
    /// (observers, switches), remote or embedded.
    pub(crate) async fn open_configured(
        env: Env,
        tweak: impl FnOnce(&mut tinker::local::LocalServerConfig),
        client: impl FnOnce(tinker::ServiceClientBuilder) -> tinker::ServiceClientBuilder,
    ) -> Result<Self, BoxError> {
        let remote = env.get("TINKER_API_KEY").is_some_and(|k| !k.is_empty());
        let data_dir = tempfile::tempdir()?;
        let (service, server) = if remote {
            let service = client(tinker::ServiceClientBuilder::with_env(env.clone()))
                .build()
                .await?;
            println!("Using the Tinker service at {}", service.base_url());
            (service, None)
        } else {
            let mut config = tinker::local::LocalServerConfig::new(data_dir.path());
            tweak(&mut config);
            let server = tinker::local::LocalServer::start(config).await?;
            println!(
                "No TINKER_API_KEY set: started an embedded tinker-local server at {} (CPU, offline)",
                server.url()
            );
            let service = client(
                ServiceClient::builder()
                    .base_url(server.url())
                    .api_key(LOCAL_API_KEY),
            )
            .build()
            .await?;
            (service, Some(server))
        };
        Ok(Self {
            service,
            remote,
            env,
            server,
            _data_dir: data_dir,
        })
    }

    /// Connects with the process environment.
    pub(crate) async fn from_process_env() -> Result<Self, BoxError> {
        Self::open(Env::process()).await
    }

    /// `TINKER_BASE_MODEL`, else `remote_default` on a remote server and
    /// `tinker-local/micro` on the embedded one.
    pub(crate) fn base_model(&self, remote_default: &str) -> String {
        let default = if self.remote {
            remote_default
        } else {
            "tinker-local/micro"
        };
        self.setting("TINKER_BASE_MODEL", default.to_owned())
    }

    /// A setting from the environment, `default` when unset or unparsable.
    pub(crate) fn setting<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.env
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The embedded server, when there is one (for figures only it can give).
    pub(crate) fn local_server(&self) -> Option<&tinker::local::LocalServerHandle> {
        self.server.as_ref()
    }

    /// Ends the session and stops the embedded server.
    pub(crate) async fn close(self) -> Result<(), BoxError> {
        if let Some(server) = self.end_session().await? {
            server.shutdown().await;
        }
        Ok(())
    }

    /// Ends the session and returns the embedded server, still running, so the example can
    /// read what it recorded; the caller shuts it down.
    pub(crate) async fn end_session(
        self,
    ) -> Result<Option<tinker::local::LocalServerHandle>, BoxError> {
        self.service.close(CloseStatus::Success, None).await?;
        Ok(self.server)
    }
}

impl Connection {
    /// The tokenizer of a sampler's base model: the SDK's
    /// [`SamplingClient::get_tokenizer`], which finds tinker-local's models on the server's
    /// own hub routes (protocol §10.3) and other models on the Hugging Face Hub.
    pub(crate) async fn sampler_tokenizer(
        &self,
        sampler: &SamplingClient,
    ) -> Result<Tokenizer, BoxError> {
        Ok(sampler.get_tokenizer().await?)
    }
}

/// A datum that trains the model to continue `prompt` with `completion`: targets are the
/// next tokens, weights are 1 on the completion's tokens only (all tokens when
/// `completion` is empty).
pub(crate) fn datum(
    tokenizer: &Tokenizer,
    prompt: &str,
    completion: &str,
) -> Result<Datum, BoxError> {
    let prompt = tokenizer.encode(prompt, true)?;
    let completion = tokenizer.encode(completion, false)?;
    let all: Vec<u32> = prompt.iter().chain(&completion).copied().collect();
    if all.len() < 2 {
        return Err("a datum needs at least two tokens".into());
    }
    let first_weighted = if completion.is_empty() {
        1
    } else {
        prompt.len()
    };
    let input = ModelInput::from_tokens(&all[..all.len() - 1]);
    let targets: Vec<i64> = all[1..].iter().map(|&t| i64::from(t)).collect();
    let weights: Vec<f32> = (1..all.len())
        .map(|i| if i >= first_weighted { 1.0 } else { 0.0 })
        .collect();
    Ok(Datum::new(
        input,
        CrossEntropyInputs::new(targets, weights)?.into_inputs()?,
    ))
}

/// Mean, min and max of `values` (NaN for an empty slice).
pub(crate) fn stats(values: &[f32]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (sum / values.len() as f64, f64::from(min), f64::from(max))
}
