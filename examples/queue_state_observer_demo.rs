//! Queue-state observers (port of tinkex's `queue_state_observer_demo.exs`): a sample and a
//! forward/backward pass wait in paused queues, and one of three observers reports it.
//! Offline, the embedded server pauses both queues with its `pause=` fault: each sampling
//! future's first two polls say `paused_rate_limit`, each training future's first two say
//! `paused_capacity`, both with a reason; then the calls complete.
//!
//! `OBSERVER_MODE` picks the observer:
//! * `builtin` (default): the client's own warning (`tracing`, target `tinker::queue`),
//!   printed here by a `tracing-subscriber` layer. As in the SDK, sampling warns at once
//!   but training and model creation only once a pause has lasted 15 minutes, so this
//!   short demo shows the sampling warning only.
//! * `custom`: a [`ServiceClientBuilder::queue_state_observer`] closure printing
//!   `RATE LIMITED` / `OUT OF CAPACITY` lines for every report.
//! * `telemetry`: the warning off, and a
//!   [`ServiceClientBuilder::queue_state_change_observer`] printing each change of a
//!   request's queue state with its request id and operation (tinkex's
//!   `[:tinkex, :queue, :state_change]` event).
//!
//! Whatever the mode, the client metrics count every report; offline the example fails if
//! they do not show both paused states.
//!
//! ```sh
//! OBSERVER_MODE=telemetry cargo run --release --example queue_state_observer_demo
//! ```
//!
//! Settings: `OBSERVER_MODE`, `TINKER_BASE_MODEL`. Unlike the tinkex script, the training
//! datum has weights (the golden run's 400 came from their absence).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::observe::QueueStateChange;
use tinker::prelude::*;
use tinker::transport::Env;
use tinker::types::QueueState;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// The embedded server's paused queues.
const PAUSES: &str = "pause=sampling:paused_rate_limit:2:concurrent sampler weights limit hit (demo);\
                      training:paused_capacity:2:running short on capacity (demo)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Builtin,
    Custom,
    Telemetry,
}

fn custom_observer(state: &QueueState, reason: Option<&str>) {
    let reason = reason.unwrap_or("no reason given");
    match state {
        QueueState::PausedRateLimit => println!("[custom] RATE LIMITED: {reason}"),
        QueueState::PausedCapacity => println!("[custom] OUT OF CAPACITY: {reason}"),
        other => println!("[custom] queue {other}"),
    }
}

fn telemetry_observer(change: &QueueStateChange) {
    println!(
        "[telemetry] Queue state: {} (reason: {}, request {}, operation {})",
        change.state,
        change.reason.as_deref().unwrap_or("none"),
        change.request_id,
        change.operation.as_str()
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let env = Env::process();
    let mode = match env.get("OBSERVER_MODE").as_deref() {
        None | Some("" | "builtin") => Mode::Builtin,
        Some("custom") => Mode::Custom,
        Some("telemetry") => Mode::Telemetry,
        Some(other) => {
            return Err(
                format!("OBSERVER_MODE {other:?}: use builtin, custom or telemetry").into(),
            );
        }
    };
    if mode == Mode::Builtin {
        // The client's default queue warning, as it would appear in a program's log.
        let warnings = tracing_subscriber::fmt::layer()
            .without_time()
            .with_ansi(false)
            .with_filter(Targets::new().with_target("tinker::queue", tracing::Level::WARN));
        tracing::subscriber::set_global_default(Registry::default().with(warnings))?;
    }
    println!("Observer mode: {mode:?}");

    let conn = Connection::open_configured(
        env,
        |config| {
            config.faults = tinker::local::FaultConfig::parse(PAUSES).expect("a valid fault plan");
        },
        |builder| match mode {
            Mode::Builtin => builder,
            Mode::Custom => builder.queue_state_observer(custom_observer),
            Mode::Telemetry => builder
                .queue_state_warnings(false)
                .queue_state_change_observer(telemetry_observer),
        },
    )
    .await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");

    println!("\n== Part 1: sampling ({model})");
    let sampler = conn
        .service
        .create_sampling_client(SamplingSource::BaseModel(model.clone()))
        .await?;
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    let prompt = tokenizer.encode("Hello, world!", true)?;
    let mut params = SamplingParams::with_max_tokens(16);
    params.temperature = 0.7;
    let out = sampler
        .sample(ModelInput::from_tokens(&prompt), 1, params)
        .await?;
    println!("[success] Got {} sample(s)", out.sequences.len());

    println!("\n== Part 2: training (LoRA rank 8)");
    let training = conn.service.create_lora_training_client(&model, 8).await?;
    let datum = common::datum(&tokenizer, "Training sample text", "")?;
    let fb = training
        .forward_backward(vec![datum], LossFn::CrossEntropy)
        .await?;
    let loss = fb.metrics.get("loss:sum").copied().unwrap_or(f64::NAN);
    println!("[success] forward_backward loss:sum = {loss:.4}");

    println!("\n== Queue states the client metrics counted");
    let counted = conn.service.metrics().queue_states;
    for c in &counted {
        println!(
            "  {:<18} x{:<3} reason: {}",
            c.state,
            c.count,
            c.reason.as_deref().unwrap_or("none")
        );
    }
    if !conn.remote {
        for state in ["paused_rate_limit", "paused_capacity"] {
            if !counted.iter().any(|c| c.state == state) {
                return Err(format!(
                    "the embedded server paused a queue, but no {state} was reported"
                )
                .into());
            }
        }
    }
    conn.close().await
}
