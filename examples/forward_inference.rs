//! Forward-only inference (port of tinkex's `forward_inference.exs`): the logprob the
//! model gives each next token of a prompt, without training.
//!
//! ```sh
//! cargo run --release --example forward_inference
//! ```
//!
//! Settings: `TINKER_PROMPT`, `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt: String = conn.setting("TINKER_PROMPT", "Hello from forward inference!".to_owned());

    let training = conn.service.create_lora_training_client(&model, 16).await?;
    println!("Training client {} on {model}", training.model_id());
    let tokenizer = training.get_tokenizer().await?;
    let datum = common::datum(&tokenizer, &prompt, "")?;
    println!("Token count: {}", datum.model_input.length()? + 1);

    let started = Instant::now();
    let out = training.forward(vec![datum], LossFn::CrossEntropy).await?;
    println!("Forward pass in {} ms", started.elapsed().as_millis());
    println!("Output type: {}", out.loss_fn_output_type);
    println!("Metrics: {:?}", out.metrics);
    println!("Number of loss_fn_outputs: {}", out.loss_fn_outputs.len());

    let logprobs = out
        .loss_fn_outputs
        .first()
        .and_then(|o| o.get("logprobs"))
        .and_then(|t| t.to_dense_f32(0.0))
        .ok_or("the forward pass returned no logprobs")?;
    let (mean, min, max) = common::stats(&logprobs);
    println!(
        "logprobs: {} values, first {:?}",
        logprobs.len(),
        &logprobs[..logprobs.len().min(5)]
    );
    println!("mean {mean:.4}, min {min:.4}, max {max:.4}");
    if logprobs.iter().any(|&l| !l.is_finite() || l > 0.0) {
        return Err("a logprob is not a finite non-positive number".into());
    }
    conn.close().await
}
