//! Queue-state reasons and sampling dispatch throttling (port of tinkex's
//! `queue_reasons_and_sampling_throttling.exs`). Offline, the embedded server pauses the
//! sampling queue (`pause=` fault: each sampling future's first two polls say
//! `paused_rate_limit` with a reason), and the client is built to back its sampling
//! dispatch off when that happens.
//!
//! 1. A state-change observer prints `[queue] state=…, reason=…, request_id=…`, and the
//!    client's own warning ("Sampling is paused for sampler …. Reason: …") is printed from
//!    `tracing`.
//! 2. A first sample waits out the pause; the rate-limit report throttled the dispatch.
//! 3. As tinkex's `SamplingDispatch.set_backoff(dispatch, 1000)`, the example sets a 1 s
//!    backoff through [`SamplingClient::dispatch`], then runs two concurrent
//!    `with_rate_limit` jobs of 6 MB each: while throttled each costs 20× (120 MB against
//!    the 10 MiB budget), so the second starts only once the first is done. The
//!    acquisition times show it.
//! 4. The prompt's dispatch estimate (10 bytes a token).
//! 5. A last sample (32 tokens, temperature 0.7) waits out the backoff and succeeds.
//!
//! ```sh
//! cargo run --release --example queue_reasons_and_sampling_throttling
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`. Against a remote server nothing is paused on purpose:
//! steps 1 and 2 then print whatever the server says.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{BoxError, Connection};
use tinker::SampleDispatch;
use tinker::observe::QueueStateChange;
use tinker::prelude::*;
use tinker::transport::Env;
use tokio::time::Instant;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

const PAUSE: &str =
    "pause=sampling:paused_rate_limit:2:server says: concurrent sampler limit hit (demo)";
/// Bytes each throttled job asks for (tinkex's 6_000_000).
const JOB_BYTES: u64 = 6_000_000;
/// How long each job holds its permit.
const JOB_TIME: Duration = Duration::from_millis(200);

fn print_change(change: &QueueStateChange) {
    println!(
        "[queue] state={}, reason={}, request_id={}",
        change.state,
        change.reason.as_deref().unwrap_or("none"),
        change.request_id
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let warnings = tracing_subscriber::fmt::layer()
        .without_time()
        .with_ansi(false)
        .with_filter(Targets::new().with_target("tinker::queue", tracing::Level::WARN));
    tracing::subscriber::set_global_default(Registry::default().with(warnings))?;

    let conn = Connection::open_configured(
        Env::process(),
        |config| {
            config.faults = tinker::local::FaultConfig::parse(PAUSE).expect("a valid fault plan");
        },
        |builder| {
            builder
                .queue_state_change_observer(print_change)
                .sampling_backoff_on_rate_limit(true)
        },
    )
    .await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let sampler = conn
        .service
        .create_sampling_client(SamplingSource::BaseModel(model.clone()))
        .await?;
    let tokenizer = conn.sampler_tokenizer(&sampler).await?;
    let prompt = ModelInput::from_tokens(&tokenizer.encode("Tell me about queue states.", true)?);
    let dispatch = sampler.dispatch();
    println!(
        "[info] sampler ready; dispatch throttled: {}",
        dispatch.is_throttled()
    );

    println!("\n== 1-2. A sample in a paused queue");
    sampler
        .sample(prompt.clone(), 1, SamplingParams::with_max_tokens(4))
        .await?;
    let throttled = dispatch.is_throttled();
    println!("[info] after the sample, dispatch throttled: {throttled}");
    if !conn.remote && !throttled {
        return Err("the paused_rate_limit report did not throttle the sampling dispatch".into());
    }

    println!("\n== 3. Backoff and penalized dispatch");
    dispatch.back_off(Duration::from_secs(1));
    println!(
        "[info] backoff set for 1 s; throttled: {}",
        dispatch.is_throttled()
    );
    let started = Instant::now();
    let job = |name: &'static str| {
        let dispatch = dispatch.clone();
        async move {
            dispatch
                .with_rate_limit(JOB_BYTES, async {
                    let at = started.elapsed();
                    tokio::time::sleep(JOB_TIME).await;
                    (name, at)
                })
                .await
        }
    };
    let (one, two) = tokio::join!(tokio::spawn(job("one")), tokio::spawn(job("two")));
    let mut order = [one?, two?];
    order.sort_by_key(|(_, at)| *at);
    let shown: Vec<String> = order
        .iter()
        .map(|(name, at)| format!("{name} at {} ms", at.as_millis()))
        .collect();
    println!(
        "[info] dispatch acquisition order (penalized bytes, {} B each): {}",
        JOB_BYTES * 20,
        shown.join(", ")
    );
    if order[1].1 < JOB_TIME - Duration::from_millis(20) {
        return Err("the second penalized job did not wait for the first".into());
    }

    println!("\n== 4. Byte estimate");
    println!(
        "[info] estimated prompt bytes: {}",
        SampleDispatch::estimate_bytes(&prompt)
    );

    println!("\n== 5. Sampling after the backoff");
    let mut params = SamplingParams::with_max_tokens(32);
    params.temperature = 0.7;
    let waited = Instant::now();
    let out = sampler.sample(prompt, 1, params).await?;
    println!(
        "[ok] sample returned {} sequence(s) after {} ms",
        out.sequences.len(),
        waited.elapsed().as_millis()
    );
    conn.close().await
}
