//! The CLI with an inline prompt (port of tinkex's `cli_run_text.exs`): runs
//! `tinker sample --base-model M --prompt P …` and checks it printed every sample.
//!
//! ```sh
//! cargo build --release -p tinker-cli && cargo run --release --example cli_run_text
//! ```
//!
//! Without `TINKER_API_KEY` the CLI talks to an embedded `tinker-local` server started by
//! the example; with it, to that service. Unlike tinkex, the key is never echoed: it
//! reaches the CLI through its environment, not its arguments.
//!
//! Settings: `TINKER_PROMPT` ("Hello from the CLI runner"), `TINKER_MAX_TOKENS` (64),
//! `TINKER_TEMPERATURE` (0.7), `TINKER_NUM_SAMPLES` (1), `TINKER_BASE_MODEL` (remote
//! default `meta-llama/Llama-3.1-8B`), `TINKER_CLI` (the binary).

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "common/cli.rs"]
mod cli;
mod common;

use std::time::Instant;

use common::{BoxError, Connection};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt: String = conn.setting("TINKER_PROMPT", "Hello from the CLI runner".to_owned());
    let max_tokens: u32 = conn.setting("TINKER_MAX_TOKENS", 64);
    let temperature: f64 = conn.setting("TINKER_TEMPERATURE", 0.7);
    let num_samples: u32 = conn.setting("TINKER_NUM_SAMPLES", 1);

    let scratch = tempfile::tempdir()?;
    let args: Vec<String> = [
        "sample",
        "--base-model",
        &model,
        "--prompt",
        &prompt,
        "--max-tokens",
        &max_tokens.to_string(),
        "--temperature",
        &temperature.to_string(),
        "--num-samples",
        &num_samples.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let started = Instant::now();
    let stdout = cli::run(cli::command(&conn, scratch.path())?, &args)?;
    print!("{stdout}");

    let samples = stdout
        .lines()
        .filter(|l| l.starts_with("Sample ") && l.ends_with(':'))
        .count();
    let complete = format!("Sampling complete ({num_samples} sequences)");
    if samples != num_samples as usize || !stdout.contains(&complete) {
        return Err(
            format!("expected {num_samples} sample(s) and {complete:?} in the output").into(),
        );
    }
    println!(
        "The CLI sampled {samples} sequence(s) from {model} in {:.1?}",
        started.elapsed()
    );
    conn.close().await
}
