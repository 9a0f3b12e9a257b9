//! Saving and restoring training state (port of tinkex's `training_persistence_live.exs`):
//! `save_state` with a TTL, `load_state_with_optimizer` into the same client, and a fresh
//! training client created from the checkpoint with its optimizer state. The loss of the
//! same batch, computed by the original and the restored client, shows the weights came
//! back.
//!
//! ```sh
//! cargo run --release --example training_persistence_live
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`, `TINKER_LR` (5e-3 locally, 1e-4 remotely). Offline
//! without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let lr: f64 = conn.setting("TINKER_LR", if conn.remote { 1e-4 } else { 5e-3 });
    let service = &conn.service;

    let training = service.create_lora_training_client(&model, 8).await?;
    let tokenizer = training.get_tokenizer().await?;
    let batch = vec![common::datum(
        &tokenizer,
        "Checkpoints keep",
        " the weights and the optimizer state.",
    )?];
    for _ in 0..2 {
        let fb = training.forward_backward(batch.clone(), LossFn::CrossEntropy);
        let step = training.optim_step(AdamParams::with_learning_rate(lr));
        fb.await?;
        step.await?;
    }
    let loss =
        |out: &ForwardBackwardOutput| out.metrics.get("loss:sum").copied().unwrap_or(f64::NAN);
    let trained = loss(
        &training
            .forward(batch.clone(), LossFn::CrossEntropy)
            .await?,
    );
    println!("Trained 2 steps: loss:sum {trained:.4}");

    let seconds = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let name = format!("demo-checkpoint-{seconds}");
    let saved = training
        .save_state_with(&name, SaveOptions::default().ttl_seconds(86_400))
        .await?;
    println!("Saved checkpoint to {} (TTL 86400 s)", saved.path);

    training.load_state_with_optimizer(&saved.path).await?;
    println!("Reloaded checkpoint with optimizer state");

    let fresh = service
        .create_training_client_from_state_with_optimizer(&saved.path)
        .await?;
    let restored = loss(&fresh.forward(batch, LossFn::CrossEntropy).await?);
    println!(
        "Created a fresh training client with optimizer state: {}, loss:sum {restored:.4}",
        fresh.model_id()
    );
    if (restored - trained).abs() > 1e-3 * trained.abs().max(1.0) {
        return Err(format!("restored loss {restored} differs from the saved {trained}").into());
    }
    conn.close().await
}
