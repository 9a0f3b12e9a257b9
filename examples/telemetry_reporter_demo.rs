//! The telemetry reporter (port of tinkex's `telemetry_reporter_demo.exs`): custom events
//! at each severity, a captured error, a sample, an explicit flush and drain, a burst of
//! events, and the close that sends `SESSION_END`. The reporter's counters show what it
//! sent; offline, the embedded server's record of received events confirms it.
//!
//! ```sh
//! cargo run --release --example telemetry_reporter_demo
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`. Telemetry must be on (`TINKER_TELEMETRY` unset or not
//! `0`). Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use serde_json::{Map, Value, json};
use tinker::prelude::*;
use tinker::telemetry::ErrorReport;
use tinker::types::Severity;

/// An event's data from a JSON object literal.
fn data(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt = "Explain telemetry in one sentence.";
    let service = &conn.service;
    // The session (and its reporter) starts on first use, as in SDK 0.38: open it now.
    service.open_session().await?;
    let reporter = service
        .get_telemetry()
        .ok_or("telemetry is disabled (TINKER_TELEMETRY=0); this example needs it")?;
    println!("1) Reporter for session {}", reporter.session_id());

    reporter.log(
        "demo.started",
        data(json!({"base_model": model, "prompt_length": prompt.len()})),
        Severity::Info,
    );
    reporter.log("demo.info", data(json!({"level": "info"})), Severity::Info);
    reporter.log(
        "demo.warning",
        data(json!({"level": "warning"})),
        Severity::Warning,
    );
    reporter.log(
        "demo.debug",
        data(json!({"level": "debug"})),
        Severity::Debug,
    );
    println!("2) Logged 4 custom events (info, info, warning, debug)");

    let failure: Result<(), String> = Err("demo failure (handled)".to_owned());
    if let Err(e) = &failure {
        reporter.log_error(&ErrorReport::new("DemoError", e.clone()), Severity::Warning);
    }
    println!("3) Logged a handled error as an exception event");

    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(model))
        .await?;
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    let out = sampler
        .sample(
            ModelInput::from_tokens(&tokenizer.encode(prompt, true)?),
            1,
            SamplingParams::with_max_tokens(32),
        )
        .await?;
    let tokens = out.sequences.first().map_or(0, |s| s.tokens.len());
    let text = out
        .sequences
        .first()
        .map(|s| tokenizer.decode(&s.tokens, true))
        .transpose()?
        .unwrap_or_default();
    println!(
        "4) Sampled {tokens} tokens: {}",
        text.chars().take(80).collect::<String>()
    );
    reporter.log(
        "demo.sampling_complete",
        data(json!({"tokens_generated": tokens})),
        Severity::Info,
    );

    reporter.log("demo.before_drain", Map::new(), Severity::Info);
    reporter.flush();
    let drained = reporter.wait_until_drained().await;
    println!("5) Queue drained: {drained}");

    for index in 0..5 {
        reporter.log(
            "demo.batch_event",
            data(json!({"index": index})),
            Severity::Info,
        );
    }
    println!("6) Logged 5 batch events");
    reporter.log("demo.completing", Map::new(), Severity::Info);

    let stats_before_close = reporter.stats();
    // Closing the session closes the reporter: SESSION_END and a final flush.
    let server = conn.end_session().await?;
    println!("7) Closed; counters before closing: {stats_before_close:?}");
    if let Some(server) = server {
        let received = server.telemetry_events();
        server.shutdown().await;
        let demo = received
            .iter()
            .filter(|e| {
                e.get("event_name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with("demo."))
            })
            .count();
        println!(
            "The embedded server received {} event(s), {demo} of them demo.*",
            received.len()
        );
        if demo != 12 {
            return Err(format!("expected 12 demo.* events at the server, got {demo}").into());
        }
    }
    if !drained {
        return Err("the reporter did not drain".into());
    }
    Ok(())
}
