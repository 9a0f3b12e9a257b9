//! The CLI with a prompt file and JSON output (port of tinkex's
//! `cli_run_prompt_file.exs`): writes the prompt to a file, runs
//! `tinker -f json sample --base-model M --prompt-file F --output O` and reads the result.
//!
//! ```sh
//! cargo build --release -p tinker-cli && cargo run --release --example cli_run_prompt_file
//! ```
//!
//! The file holds `TINKER_PROMPT_TOKENS` when set (token ids, as a JSON array such as
//! `[1, 2, 3]` or `{"tokens": [...]}`), else the text `TINKER_PROMPT` ("Hello from a
//! prompt file"). No `--max-tokens` is passed, so the server's default applies (128 on
//! tinker-local). Offline without `TINKER_API_KEY`; remote default model
//! `meta-llama/Llama-3.1-8B`.

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
    let content = match conn.env.get("TINKER_PROMPT_TOKENS") {
        Some(tokens) if !tokens.trim().is_empty() => tokens,
        _ => conn.setting("TINKER_PROMPT", "Hello from a prompt file".to_owned()),
    };

    let scratch = tempfile::tempdir()?;
    let prompt_file = scratch.path().join("tinker_prompt.txt");
    let output = scratch.path().join("tinker_output.json");
    std::fs::write(&prompt_file, &content)?;
    println!(
        "Prompt file {} ({} bytes)",
        prompt_file.display(),
        content.len()
    );
    let args: Vec<String> = vec![
        "-f".into(),
        "json".into(),
        "sample".into(),
        "--base-model".into(),
        model.clone(),
        "--prompt-file".into(),
        prompt_file.display().to_string(),
        "--output".into(),
        output.display().to_string(),
    ];
    let started = Instant::now();
    let stdout = cli::run(cli::command(&conn, scratch.path())?, &args)?;
    print!("{stdout}");

    let json = std::fs::read_to_string(&output)?;
    println!("JSON output written to {}:", output.display());
    println!("{}", json.trim_end());
    let response: tinker::SampleResponse = serde_json::from_str(&json)?;
    let seq = response
        .sequences
        .first()
        .ok_or("the CLI's output holds no sequence")?;
    let logprobs = seq.logprobs.as_ref().map_or(0, Vec::len);
    if seq.tokens.is_empty() {
        return Err("the sampled sequence is empty".into());
    }
    println!(
        "Parsed: {} sequence(s); the first has {} tokens, {logprobs} logprobs, stop_reason {} ({:.1?})",
        response.sequences.len(),
        seq.tokens.len(),
        seq.stop_reason,
        started.elapsed()
    );
    conn.close().await
}
