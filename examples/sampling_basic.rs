//! Basic sampling (port of tinkex's `sampling_basic.exs`): sample continuations of a
//! prompt from a base model and decode them.
//!
//! ```sh
//! cargo run --release --example sampling_basic
//! ```
//!
//! Settings: `TINKER_PROMPT`, `TINKER_MAX_TOKENS` (64), `TINKER_TEMPERATURE` (0.7),
//! `TINKER_NUM_SAMPLES` (1), `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt: String = conn.setting("TINKER_PROMPT", "Hello from Tinker!".to_owned());
    let max_tokens: u32 = conn.setting("TINKER_MAX_TOKENS", 64);
    let temperature: f64 = conn.setting("TINKER_TEMPERATURE", 0.7);
    let num_samples: u32 = conn.setting("TINKER_NUM_SAMPLES", 1);

    let sampler = conn
        .service
        .create_sampling_client(SamplingSource::BaseModel(model.clone()))
        .await?;
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    let tokens = tokenizer.encode(&prompt, true)?;
    let mut params = SamplingParams::with_max_tokens(max_tokens);
    params.temperature = temperature;
    println!(
        "Sampling {num_samples} sequence(s) from {model} (prompt of {} tokens) ...",
        tokens.len()
    );
    let out = sampler
        .sample(ModelInput::from_tokens(&tokens), num_samples, params)
        .await?;
    println!("Received {} sequence(s):", out.sequences.len());
    for (i, seq) in out.sequences.iter().enumerate() {
        let text = tokenizer.decode(&seq.tokens, true)?;
        println!(
            "Sample {}: {} tokens, stop reason {:?}: {prompt}{text}",
            i + 1,
            seq.tokens.len(),
            seq.stop_reason
        );
    }
    if out.sequences.len() != num_samples as usize {
        return Err(format!(
            "asked for {num_samples} samples, got {}",
            out.sequences.len()
        )
        .into());
    }
    conn.close().await
}
