//! The training loop (a port of tinkex's `training_loop.exs`, made meaningful): fine-tune a
//! LoRA adapter on a small question/answer dataset, print the loss of every step, save
//! sampler weights and sample an answer from the fine-tuned model.
//!
//! ```sh
//! cargo run --release --example training_loop
//! ```
//!
//! Without `TINKER_API_KEY` it starts an embedded `tinker-local` server (a tiny transformer
//! on the CPU) and trains on it, offline. With `TINKER_API_KEY` (and optionally
//! `TINKER_BASE_URL`) the same binary trains on that server.
//!
//! Settings (environment): `TINKER_BASE_MODEL` (default `tinker-local/micro` locally,
//! `meta-llama/Llama-3.2-1B` remotely), `TINKER_STEPS` (default 30), `TINKER_LR`
//! (default 5e-3 locally, 1e-4 remotely), `TINKER_LORA_RANK` (default 16),
//! `TINKER_SAMPLE_PROMPT`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use tinker::prelude::*;
use tinker::tokenizer::Tokenizer;
use tinker::transport::Env;

/// The shipped dataset: 32 `{"prompt", "completion"}` pairs.
const DATASET: &str = include_str!("../crates/tinker-local/corpus/training_loop.jsonl");

#[derive(serde::Deserialize)]
struct Pair {
    prompt: String,
    completion: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a setting from `env`, falling back to `default` when unset or unparsable.
fn env_or<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> T {
    env.get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One datum per pair: the model reads prompt + completion and is trained to predict the
/// completion's tokens (prompt positions have weight 0).
fn build_batch(tokenizer: &Tokenizer, pairs: &[Pair]) -> Result<(Vec<Datum>, f64), BoxError> {
    let mut batch = Vec::with_capacity(pairs.len());
    let mut total_weight = 0.0;
    for pair in pairs {
        let prompt = tokenizer.encode(&pair.prompt, true)?;
        let completion = tokenizer.encode(&pair.completion, false)?;
        let all: Vec<u32> = prompt.iter().chain(&completion).copied().collect();
        let input = ModelInput::from_tokens(&all[..all.len() - 1]);
        let targets: Vec<i64> = all[1..].iter().map(|&t| i64::from(t)).collect();
        let weights: Vec<f32> = (1..all.len())
            .map(|i| if i >= prompt.len() { 1.0 } else { 0.0 })
            .collect();
        total_weight += weights.iter().map(|&w| f64::from(w)).sum::<f64>();
        batch.push(Datum::new(
            input,
            CrossEntropyInputs::new(targets, weights)?.into_inputs()?,
        ));
    }
    Ok((batch, total_weight))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let report = run(Env::process()).await?;
    if let (Some(first), Some(last)) = (report.losses.first(), report.losses.last()) {
        println!(
            "Done on the {} server: loss per token {first:.3} -> {last:.3}, {} sample(s)",
            if report.remote { "remote" } else { "embedded" },
            report.samples.len()
        );
    }
    Ok(())
}

/// What a run did, for the tests.
#[derive(Debug)]
struct Report {
    /// Whether it trained on a server named by `TINKER_API_KEY`/`TINKER_BASE_URL`.
    remote: bool,
    /// Loss per completion token, one per step.
    losses: Vec<f64>,
    /// The decoded samples.
    samples: Vec<String>,
}

/// The whole example, with its settings read from `env` (the process environment in
/// `main`, a fixed set in the tests).
async fn run(env: Env) -> Result<Report, BoxError> {
    let remote = env.get("TINKER_API_KEY").is_some_and(|k| !k.is_empty());
    let data_dir = tempfile::tempdir()?;
    let (service, server) = if remote {
        let service = tinker::ServiceClientBuilder::with_env(env.clone())
            .build()
            .await?;
        println!("Using the Tinker service at {}", service.base_url());
        (service, None)
    } else {
        let config = tinker::local::LocalServerConfig::new(data_dir.path());
        let server = tinker::local::LocalServer::start(config).await?;
        println!(
            "No TINKER_API_KEY set: started an embedded tinker-local server at {} (CPU, offline)",
            server.url()
        );
        let service = ServiceClient::builder()
            .base_url(server.url())
            .api_key("tml-local-example")
            .build()
            .await?;
        (service, Some(server))
    };

    let default_model = if remote {
        "meta-llama/Llama-3.2-1B"
    } else {
        "tinker-local/micro"
    };
    let base_model: String = env_or(&env, "TINKER_BASE_MODEL", default_model.to_owned());
    let steps: u32 = env_or(&env, "TINKER_STEPS", 30);
    let learning_rate: f64 = env_or(&env, "TINKER_LR", if remote { 1e-4 } else { 5e-3 });
    let rank: u32 = env_or(&env, "TINKER_LORA_RANK", 16);
    let sample_prompt: String = env_or(
        &env,
        "TINKER_SAMPLE_PROMPT",
        "What is the capital of France?".to_owned(),
    );

    println!(
        "Session {} | model {base_model} | LoRA rank {rank} | {steps} steps | lr {learning_rate}",
        service.session_id()
    );
    let training = service
        .create_lora_training_client(&base_model, rank)
        .await?;
    println!("Training client ready: {}", training.model_id());

    let tokenizer = training.get_tokenizer().await?;
    let pairs: Vec<Pair> = DATASET
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let (batch, total_weight) = build_batch(&tokenizer, &pairs)?;
    println!(
        "Dataset: {} examples, {total_weight} completion tokens per step",
        batch.len()
    );

    let adam = AdamParams::with_learning_rate(learning_rate);
    let mut losses = Vec::with_capacity(steps as usize);
    let started = Instant::now();
    for step in 1..=steps {
        // Submitted back to back: the optimizer step is queued behind the gradients.
        let fb = training.forward_backward(batch.clone(), LossFn::CrossEntropy);
        let opt = training.optim_step(adam);
        let fb = fb.await?;
        opt.await?;
        let loss_sum = fb.metrics.get("loss:sum").copied().unwrap_or(f64::NAN);
        losses.push(loss_sum / total_weight);
        println!(
            "step {step:>3}/{steps}: loss {:.4} per token (loss:sum {loss_sum:.2})",
            loss_sum / total_weight
        );
    }
    println!("Trained {steps} steps in {:.1?}", started.elapsed());

    let path = training
        .save_weights_for_sampler("training-loop")
        .await?
        .path;
    println!("Saved sampler weights: {path}");

    let sampler = service
        .create_sampling_client(SamplingSource::ModelPath(path))
        .await?;
    let prompt = ModelInput::from_tokens(&tokenizer.encode(&sample_prompt, true)?);
    let params = SamplingParams {
        max_tokens: Some(24),
        temperature: 0.1,
        ..SamplingParams::default()
    };
    let out = sampler.sample(prompt, 1, params).await?;
    let mut samples = Vec::with_capacity(out.sequences.len());
    for seq in &out.sequences {
        let text = tokenizer.decode(&seq.tokens, true)?;
        println!("[sample] {sample_prompt}{text}");
        samples.push(text);
    }

    service.close(CloseStatus::Success, None).await?;
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(Report {
        remote,
        losses,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that only accepts one key, standing in for the real service.
    async fn keyed_server(dir: &std::path::Path, key: &str) -> tinker::local::LocalServerHandle {
        let mut config = tinker::local::LocalServerConfig::new(dir);
        config.api_key = Some(key.to_owned());
        tinker::local::LocalServer::start(config).await.unwrap()
    }

    /// With `TINKER_API_KEY` and `TINKER_BASE_URL` set, the example trains on that server
    /// (not an embedded one) with that key, and its loss falls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trains_on_the_server_named_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let server = keyed_server(dir.path(), "tml-example-secret").await;
        let env = Env::from_pairs([
            ("TINKER_API_KEY", "tml-example-secret".to_owned()),
            ("TINKER_BASE_URL", server.url().to_string()),
            ("TINKER_BASE_MODEL", "tinker-local/micro".to_owned()),
            ("TINKER_STEPS", "4".to_owned()),
            ("TINKER_LR", "5e-3".to_owned()),
            ("TINKER_TELEMETRY", "0".to_owned()),
        ]);
        let report = run(env).await.unwrap();
        assert!(report.remote);
        assert_eq!(report.losses.len(), 4);
        assert!(
            report.losses[3] < report.losses[0],
            "loss did not fall: {:?}",
            report.losses
        );
        assert_eq!(report.samples.len(), 1);
        // The run's session is on this server: it saw our training run.
        assert!(!server.usage_records().is_empty());
        server.shutdown().await;
    }

    /// A key the server does not accept is an authentication error, not a silent fallback
    /// to the embedded server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_key_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let server = keyed_server(dir.path(), "tml-the-right-key").await;
        let env = Env::from_pairs([
            ("TINKER_API_KEY", "tml-a-wrong-key".to_owned()),
            ("TINKER_BASE_URL", server.url().to_string()),
        ]);
        let err = run(env).await.unwrap_err().to_string();
        assert!(err.contains("401"), "{err}");
        assert!(!err.contains("tml-a-wrong-key"), "the key leaked: {err}");
        server.shutdown().await;
    }
}
