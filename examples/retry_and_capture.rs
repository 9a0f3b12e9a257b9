//! Retries and error capture (port of tinkex's `retry_and_capture.exs`): a sample whose
//! first two attempts fail (offline, the embedded server answers its first two polls with
//! 410, "the promise expired") is retried by the sampling client's retry handler with a
//! public [`RetryConfig`] (200 ms base delay, no jitter, so the delays are 200 then
//! 400 ms), each retry printed from the client's `tracing` event; the client metrics
//! count the retries; a failure would be captured to the telemetry reporter as an
//! exception event before the example exits with it.
//!
//! ```sh
//! cargo run --release --example retry_and_capture
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY` (a remote server
//! injects no faults: the sample then succeeds at once).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::io::IsTerminal;
use std::time::Duration;

use common::{BoxError, Connection};
use tinker::RetryConfig;
use tinker::observe::Operation;
use tinker::prelude::*;
use tinker::telemetry::ErrorReport;
use tinker::transport::Env;
use tinker::types::Severity;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The retry handler's own event ("retrying sample", with the attempt, delay and error).
    let retries = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stdout().is_terminal())
        .with_filter(
            Targets::new().with_target("tinker_client::sampling::retry", tracing::Level::DEBUG),
        );
    tracing::subscriber::set_global_default(Registry::default().with(retries))?;

    let conn = Connection::open_with(Env::process(), |config| {
        config.faults =
            tinker::local::FaultConfig::parse("script=retrieve_future#1:410;retrieve_future#2:410")
                .expect("a valid fault plan");
    })
    .await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let service = &conn.service;
    let config = RetryConfig::default()
        .retry_delays(Duration::from_millis(200), Duration::from_secs(10))
        .jitter_factor(0.0);
    println!(
        "Retry config: base delay {:?}, max {:?}, jitter {}",
        config.retry_delay_base, config.retry_delay_max, config.jitter_factor
    );
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(model))
        .await?
        .with_retry_config(config);

    let result = sampler
        .sample(
            ModelInput::from_tokens(&[1, 2, 3]),
            1,
            SamplingParams::with_max_tokens(8),
        )
        .await;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            // Capture: the error goes to telemetry as an exception event, then out.
            if let Some(reporter) = service.get_telemetry() {
                let report = ErrorReport::new("SampleError", e.to_string());
                reporter.log_error(&report, Severity::Error);
                reporter.flush();
                reporter.wait_until_drained().await;
            }
            return Err(format!("Retries exhausted: {e}").into());
        }
    };
    let sample = service
        .metrics()
        .operation(Operation::Sample)
        .copied()
        .ok_or("no sample in the metrics")?;
    println!(
        "Final result: succeeded on attempt {} with {} token(s) ({} retries, {} requests, {} failed)",
        sample.retries + 1,
        out.sequences.first().map_or(0, |s| s.tokens.len()),
        sample.retries,
        sample.requests.count,
        sample.requests.errors
    );
    if !conn.remote && sample.retries != 2 {
        return Err(format!("expected 2 retries offline, got {}", sample.retries).into());
    }
    conn.close().await
}
