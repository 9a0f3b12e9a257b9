//! Large batches and Adam settings (port of tinkex's `adam_and_chunking_live.exs`): 1025
//! one-token datums in one `forward_backward` call (the client splits them into requests
//! of at most 1024 datums, as the SDK does), then an `optim_step` with weight decay and
//! gradient clipping.
//!
//! ```sh
//! cargo run --release --example adam_and_chunking_live
//! ```
//!
//! Settings: `TINKER_CHUNK_COUNT` (1025), `TINKER_BASE_MODEL`. Offline without
//! `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let count: usize = conn.setting("TINKER_CHUNK_COUNT", 1025);

    let training = conn.service.create_lora_training_client(&model, 8).await?;
    let vocab = 200u32; // Token ids every model here knows.
    let data: Vec<Datum> = (0..count)
        .map(|i| {
            let token = (i as u32) % vocab + 1;
            let inputs =
                CrossEntropyInputs::new(vec![i64::from(token)], vec![1.0])?.into_inputs()?;
            Ok(Datum::new(ModelInput::from_tokens(&[token]), inputs))
        })
        .collect::<tinker::Result<_>>()?;
    // The SDK's rule: at most 1024 datums (and about 5 MB) per request.
    println!(
        "[info] {count} datums: the client should send them in {} request(s)",
        count.div_ceil(1024)
    );

    let started = Instant::now();
    let fb = training.forward_backward(data, LossFn::CrossEntropy);
    let mut adam = AdamParams::with_learning_rate(2e-4);
    adam.weight_decay = 0.01;
    adam.grad_clip_norm = 1.0;
    let step = training.optim_step(adam);
    let fb = fb.await?;
    let step = step.await?;
    println!(
        "[ok] forward_backward returned {} output(s) in {:.2?}, loss:sum {:.2}",
        fb.loss_fn_outputs.len(),
        started.elapsed(),
        fb.metrics.get("loss:sum").copied().unwrap_or(f64::NAN)
    );
    println!(
        "[ok] optim_step (lr 2e-4, weight_decay 0.01, grad_clip_norm 1.0) metrics: {:?}",
        step.metrics
    );
    if fb.loss_fn_outputs.len() != count {
        return Err(format!("expected {count} outputs, got {}", fb.loss_fn_outputs.len()).into());
    }
    if let Some(server) = conn.local_server() {
        // Offline, the server's own count shows the split: every chunk and the optimizer
        // step is one executed request.
        let executed = server
            .executions()
            .iter()
            .filter(|((model, _), _)| model == training.model_id())
            .count();
        println!(
            "[info] the embedded server executed {executed} training request(s): {} \
             forward_backward chunk(s) and 1 optim_step",
            executed.saturating_sub(1)
        );
        if executed != count.div_ceil(1024) + 1 {
            return Err("the batch was not split into chunks of at most 1024".into());
        }
    }
    println!("[done]");
    conn.close().await
}
