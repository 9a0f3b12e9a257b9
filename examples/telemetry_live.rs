//! Client telemetry and tracing (port of tinkex's `telemetry_live.exs`): a `tracing`
//! logger prints each client operation and HTTP request as it ends (tinkex's HTTP
//! logger), custom events go to the telemetry reporter around one sample, the reporter is
//! flushed; beyond tinkex, the same spans are exported through OpenTelemetry
//! (`tracing-opentelemetry`, here into the SDK's in-memory exporter; an OTLP exporter
//! plugs in the same way) and printed as a tree with their ids.
//!
//! ```sh
//! cargo run --release --example telemetry_live
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`. Telemetry must be on (`TINKER_TELEMETRY` unset or not
//! `0`). Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use common::{BoxError, Connection};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Map, Value, json};
use tinker::prelude::*;
use tinker::types::Severity;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

fn data(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The attributes worth showing for one span.
fn describe(span: &SpanData) -> String {
    let keep = [
        "session_id",
        "model_id",
        "seq_id",
        "request_id",
        "path",
        "status",
        "retries",
    ];
    let attrs: Vec<String> = span
        .attributes
        .iter()
        .filter(|kv| keep.contains(&kv.key.as_str()))
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    let took = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    format!(
        "{} [{:.1} ms] {}",
        span.name,
        took.as_secs_f64() * 1e3,
        attrs.join(" ")
    )
}

fn print_tree(spans: &[SpanData]) {
    let ids: HashMap<SpanId, &SpanData> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let mut children: HashMap<SpanId, Vec<&SpanData>> = HashMap::new();
    for s in spans {
        children.entry(s.parent_span_id).or_default().push(s);
    }
    fn walk(s: &SpanData, depth: usize, children: &HashMap<SpanId, Vec<&SpanData>>) {
        println!("{}{}", "  ".repeat(depth + 1), describe(s));
        let mut kids = children
            .get(&s.span_context.span_id())
            .cloned()
            .unwrap_or_default();
        kids.sort_by_key(|k| k.start_time);
        for k in kids {
            walk(k, depth + 1, children);
        }
    }
    let mut roots: Vec<&SpanData> = spans
        .iter()
        .filter(|s| !ids.contains_key(&s.parent_span_id))
        .collect();
    roots.sort_by_key(|s| s.start_time);
    for r in roots {
        walk(r, 0, &children);
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The client's spans only (not the embedded server's): operations and HTTP requests.
    let client_spans = || {
        Targets::new()
            .with_target("tinker_client", tracing::Level::INFO)
            .with_target("tinker_transport", tracing::Level::INFO)
    };
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let logger = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .with_filter(client_spans());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("telemetry_live"))
        .with_filter(client_spans());
    tracing::subscriber::set_global_default(Registry::default().with(logger).with(otel))?;

    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt = "Write a single sentence about telemetry.";
    // The session (and its reporter) starts on first use; open it now.
    conn.service.open_session().await?;
    let reporter = conn
        .service
        .get_telemetry()
        .ok_or("telemetry is disabled (TINKER_TELEMETRY=0); this example needs it")?;
    reporter.log(
        "example.start",
        data(json!({"base_model": model, "prompt": prompt})),
        Severity::Info,
    );

    let sampler = conn
        .service
        .create_sampling_client(SamplingSource::BaseModel(model.clone()))
        .await?;
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    let tokens = tokenizer.encode(prompt, true)?;
    let mut params = SamplingParams::with_max_tokens(32);
    params.temperature = 0.7;
    let out = sampler
        .sample(ModelInput::from_tokens(&tokens), 1, params)
        .result_timeout(Duration::from_secs(15))
        .await?;
    for seq in &out.sequences {
        println!(
            "Sampled {} tokens (stop reason {:?}): {}",
            seq.tokens.len(),
            seq.stop_reason,
            tokenizer.decode(&seq.tokens, true)?
        );
    }
    reporter.log(
        "example.complete",
        data(json!({"model": model, "tokens": tokens.len()})),
        Severity::Info,
    );
    reporter.flush();
    let drained = reporter.wait_until_drained().await;
    println!("Flushed telemetry (drained: {drained}); closing.");
    conn.close().await?;

    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    println!("\nOpenTelemetry spans exported ({}):", spans.len());
    print_tree(&spans);
    let sample = spans
        .iter()
        .find(|s| s.name == "sample")
        .ok_or("no `sample` span was exported")?;
    let nested = spans
        .iter()
        .filter(|s| s.parent_span_id == sample.span_context.span_id() && s.name == "tinker.request")
        .count();
    if nested < 2 {
        return Err(format!(
            "expected the sample's asample and poll requests under it, got {nested}"
        )
        .into());
    }
    if !drained {
        return Err("the telemetry reporter did not drain".into());
    }
    Ok(())
}
