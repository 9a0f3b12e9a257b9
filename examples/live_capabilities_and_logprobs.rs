//! Server capabilities and prompt logprobs (port of tinkex's
//! `live_capabilities_and_logprobs.exs`): the models the server offers, then the logprob
//! of every prompt token (`compute_logprobs`; the first is `None`, nothing precedes it).
//!
//! tinkex also calls `GET /api/v1/healthz`; this SDK has no health-check call (the Python
//! SDK 0.38 has none either), so that step is left out.
//!
//! ```sh
//! cargo run --release --example live_capabilities_and_logprobs
//! ```
//!
//! Settings: `TINKER_PROMPT`, `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt: String = conn.setting(
        "TINKER_PROMPT",
        "Hello from Tinker capabilities!".to_owned(),
    );
    let service = &conn.service;

    let caps = service.get_server_capabilities().await?;
    println!(
        "Supported models ({} available):",
        caps.supported_models.len()
    );
    let names: Vec<&str> = caps
        .supported_models
        .iter()
        .filter_map(|m| m.model_name.as_deref())
        .collect();
    for m in &caps.supported_models {
        println!(
            "  - {} (context {:?}, trainable {:?}, sampleable {:?})",
            m.model_name.as_deref().unwrap_or("?"),
            m.max_context_length,
            m.trainable,
            m.sampleable
        );
    }
    println!("Model names only: {}", names.join(", "));
    if names.is_empty() {
        return Err("the server offers no models".into());
    }

    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(model))
        .await?;
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    let tokens = tokenizer.encode(&prompt, true)?;
    let logprobs = sampler
        .compute_logprobs(ModelInput::from_tokens(&tokens))
        .await?;
    println!("Prompt: {prompt} ({} tokens)", tokens.len());
    let shown: Vec<String> = logprobs
        .iter()
        .map(|l| l.map_or("None".to_owned(), |v| format!("{v:.2}")))
        .collect();
    println!("Logprobs: [{}]", shown.join(", "));
    if logprobs.len() != tokens.len() || logprobs.first().is_some_and(Option::is_some) {
        return Err("expected one logprob per prompt token, the first None".into());
    }
    conn.close().await
}
