//! Client metrics (port of tinkex's `metrics_live.exs`): reset the session's metrics,
//! sample once (and, beyond tinkex, take two training steps), then print the snapshot:
//! per-operation counters, bytes, retries and latency percentiles (call → result and
//! per HTTP request), and the queue states the server reported.
//!
//! ```sh
//! cargo run --release --example metrics_live
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`, `TINKER_PROMPT`. Offline without `TINKER_API_KEY`.
//! The same figures also go to the `metrics` facade (`tinker_client_*` names), for a
//! Prometheus or OpenTelemetry exporter.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{BoxError, Connection};
use tinker::observe::{LatencySummary, Operation};
use tinker::prelude::*;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn latency(l: &LatencySummary) -> String {
    if l.is_empty() {
        return "no data yet".to_owned();
    }
    format!(
        "count {} mean {:.2} p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
        l.count,
        ms(l.mean),
        ms(l.p50),
        ms(l.p95),
        ms(l.p99),
        ms(l.max)
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt: String = conn.setting(
        "TINKER_PROMPT",
        "Quick metrics check from Tinker".to_owned(),
    );
    let service = &conn.service;
    service.reset_metrics();

    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(model.clone()))
        .await?;
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    let mut params = SamplingParams::with_max_tokens(32);
    params.temperature = 0.7;
    let out = sampler
        .sample(
            ModelInput::from_tokens(&tokenizer.encode(&prompt, true)?),
            1,
            params,
        )
        .result_timeout(Duration::from_secs(30))
        .await?;
    let text = out
        .sequences
        .first()
        .map(|s| tokenizer.decode(&s.tokens, true))
        .transpose()?
        .unwrap_or_default();
    println!("Sampled text: {text}");

    let training = service.create_lora_training_client(&model, 8).await?;
    let data = vec![common::datum(&tokenizer, &prompt, " and a completion.")?];
    for _ in 0..2 {
        let fb = training.forward_backward(data.clone(), LossFn::CrossEntropy);
        let step = training.optim_step(AdamParams::with_learning_rate(1e-4));
        fb.await?;
        step.await?;
    }

    let snapshot = service.metrics();
    println!("\n=== Metrics Snapshot ===");
    for op in &snapshot.operations {
        let r = &op.requests;
        println!(
            "{:<26} calls {:>3} errors {} retries {} | requests {:>3} (polls {}) errors {} \
             http_retries {} sent {} B received {} B",
            op.operation.as_str(),
            op.calls,
            op.errors,
            op.retries,
            r.count,
            r.polls,
            r.errors,
            r.retries,
            r.bytes_sent,
            r.bytes_received
        );
        if op.calls > 0 {
            println!("    call latency (ms):    {}", latency(&op.latency));
        }
        println!("    request latency (ms): {}", latency(&r.latency));
    }
    let totals = snapshot.total_requests();
    println!(
        "Totals: {} requests, {} failed, {} B sent, {} B received",
        totals.count, totals.errors, totals.bytes_sent, totals.bytes_received
    );
    for q in &snapshot.queue_states {
        println!(
            "Queue state {} ({}): {}",
            q.state,
            q.reason.as_deref().unwrap_or("no reason"),
            q.count
        );
    }

    let calls = |op| snapshot.operation(op).map_or(0, |o| o.calls);
    if calls(Operation::Sample) != 1
        || calls(Operation::ForwardBackward) != 2
        || calls(Operation::OptimStep) != 2
    {
        return Err("the snapshot does not count the calls made".into());
    }
    if totals.bytes_sent == 0 || totals.bytes_received == 0 {
        return Err("no bytes counted".into());
    }
    conn.close().await
}
