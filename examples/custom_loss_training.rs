//! Training on a loss computed in your own code (port of tinkex's
//! `custom_loss_training.exs`): `forward_backward_custom` hands the closure every datum's
//! logprobs; the closure returns the loss (here the mean negative log-likelihood), its
//! gradient with respect to each logprob, and a metric (`custom_perplexity:mean`). The client
//! then applies exactly that gradient.
//!
//! ```sh
//! cargo run --release --example custom_loss_training
//! ```
//!
//! Settings: `TINKER_PROMPT`, `TINKER_STEPS` (3), `TINKER_LR` (5e-3 locally, 1e-4
//! remotely), `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{BoxError, Connection};
use tinker::prelude::*;

/// Mean negative log-likelihood over all tokens of all datums, its gradient
/// (`-1/n` for every logprob) and the perplexity `exp(nll)` as a metric.
fn mean_nll(_data: &[Datum], logprobs: &[Vec<f32>]) -> tinker::Result<CustomLossOutput> {
    let n: usize = logprobs.iter().map(Vec::len).sum();
    let n = n.max(1) as f64;
    let sum: f64 = logprobs.iter().flatten().map(|&l| f64::from(l)).sum();
    let nll = -sum / n;
    let gradients = logprobs
        .iter()
        .map(|lp| vec![(-1.0 / n) as f32; lp.len()])
        .collect();
    Ok(CustomLossOutput::new(nll, gradients).metric("custom_perplexity:mean", nll.exp()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt: String = conn.setting(
        "TINKER_PROMPT",
        "Name three planets in the solar system.".to_owned(),
    );
    let steps: u32 = conn.setting("TINKER_STEPS", 3);
    let lr: f64 = conn.setting("TINKER_LR", if conn.remote { 1e-4 } else { 5e-3 });

    let training = conn.service.create_lora_training_client(&model, 16).await?;
    let tokenizer = training.get_tokenizer().await?;
    let datum = common::datum(&tokenizer, &prompt, "")?;

    let mut losses = Vec::new();
    for step in 1..=steps {
        let started = Instant::now();
        let out = training
            .forward_backward_custom(vec![datum.clone()], mean_nll)
            .await?;
        training
            .optim_step(AdamParams::with_learning_rate(lr))
            .await?;
        let loss = out.metrics.get("loss:sum").copied().unwrap_or(f64::NAN);
        let ppl = out
            .metrics
            .get("custom_perplexity:mean")
            .copied()
            .unwrap_or(f64::NAN);
        println!(
            "step {step}/{steps}: custom loss (mean NLL) {loss:.4}, custom_perplexity {ppl:.2}, \
             in {} ms",
            started.elapsed().as_millis()
        );
        losses.push(loss);
    }
    println!("losses per step: {losses:?}");
    if let (Some(first), Some(last)) = (losses.first(), losses.last())
        && steps > 1
        && last >= first
    {
        return Err(format!("the custom loss did not fall: {losses:?}").into());
    }
    conn.close().await
}
