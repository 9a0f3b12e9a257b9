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

/// The shipped dataset: 32 `{"prompt", "completion"}` pairs.
const DATASET: &str = include_str!("../crates/tinker-local/corpus/training_loop.jsonl");

#[derive(serde::Deserialize)]
struct Pair {
    prompt: String,
    completion: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
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
    let remote = std::env::var("TINKER_API_KEY").is_ok_and(|k| !k.is_empty());
    let data_dir = tempfile::tempdir()?;
    let (service, server) = if remote {
        let service = ServiceClient::from_env().await?;
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
    let base_model: String = env_or("TINKER_BASE_MODEL", default_model.to_owned());
    let steps: u32 = env_or("TINKER_STEPS", 30);
    let learning_rate: f64 = env_or("TINKER_LR", if remote { 1e-4 } else { 5e-3 });
    let rank: u32 = env_or("TINKER_LORA_RANK", 16);
    let sample_prompt: String = env_or(
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
    let started = Instant::now();
    for step in 1..=steps {
        // Submitted back to back: the optimizer step is queued behind the gradients.
        let fb = training.forward_backward(batch.clone(), LossFn::CrossEntropy);
        let opt = training.optim_step(adam);
        let fb = fb.await?;
        opt.await?;
        let loss_sum = fb.metrics.get("loss:sum").copied().unwrap_or(f64::NAN);
        println!(
            "step {step:>3}/{steps}: loss {:.4} per token (loss:sum {loss_sum:.2})",
            loss_sum / total_weight
        );
    }
    println!("Trained {steps} steps in {:.1?}", started.elapsed());

    let saved = training.save_weights_for_sampler("training-loop").await?;
    let path = saved
        .path
        .ok_or("save_weights_for_sampler returned no path")?;
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
    for seq in &out.sequences {
        let text = tokenizer.decode(&seq.tokens, true)?;
        println!("[sample] {sample_prompt}{text}");
    }

    service.close(CloseStatus::Success, None).await?;
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}
