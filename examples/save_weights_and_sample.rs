//! Snapshot the weights and sample from them in one call (port of tinkex's
//! `save_weights_and_sample.exs`): `save_weights_and_get_sampling_client` saves ephemeral
//! sampler weights and returns a sampling client for them; its tokenizer comes from the
//! sampler's metadata.
//!
//! ```sh
//! cargo run --release --example save_weights_and_sample
//! ```
//!
//! Settings: `TINKER_PROMPT`, `TINKER_MAX_TOKENS` (32), `TINKER_LORA_RANK` (8),
//! `TINKER_BASE_MODEL` (remote default `Qwen/Qwen3-8B`). Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("Qwen/Qwen3-8B");
    let prompt: String = conn.setting("TINKER_PROMPT", "Hello from Tinker!".to_owned());
    let max_tokens: u32 = conn.setting("TINKER_MAX_TOKENS", 32);
    let rank: u32 = conn.setting("TINKER_LORA_RANK", 8);
    println!("[setup] base_model={model} rank={rank} max_tokens={max_tokens}");

    let training = conn
        .service
        .create_lora_training_client(&model, rank)
        .await?;
    println!("[setup] training client {}", training.model_id());
    let sampler = training.save_weights_and_get_sampling_client().await?;
    println!(
        "[save] sampling session {} (model path {})",
        sampler.sampling_session_id(),
        sampler.model_path().unwrap_or("none: ephemeral weights")
    );
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    println!(
        "[tokenizer] resolved from the sampler's base model {:?}",
        sampler.base_model()
    );

    let tokens = tokenizer.encode(&prompt, true)?;
    let out = sampler
        .sample(
            ModelInput::from_tokens(&tokens),
            1,
            SamplingParams::with_max_tokens(max_tokens),
        )
        .await?;
    let seq = out.sequences.first().ok_or("no sequence returned")?;
    println!("== SAMPLE ({} tokens) ==", seq.tokens.len());
    println!("{prompt}{}", tokenizer.decode(&seq.tokens, true)?);
    conn.close().await
}
