//! Paused queues (tinker-local's `pause=` fault): the queue state and reason the server
//! reports while a future waits reach the caller's observer and the metrics, and the call
//! still completes.

use std::sync::{Arc, Mutex};

use tinker_client::{SamplingClient, SamplingSource, ServiceClient};
use tinker_testkit::local as common;
use tinker_types::{LossFn, ModelInput, QueueState, SamplingParams};

use common::{Env, MODEL, datum};

type Seen = Arc<Mutex<Vec<(QueueState, Option<String>)>>>;

/// A service client for `env` that records every reported queue state.
async fn observed_service(env: &Env) -> (ServiceClient, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let service = ServiceClient::builder()
        .base_url(env.server.url())
        .api_key("tml-test-key")
        .queue_state_observer(move |state, reason| {
            record
                .lock()
                .unwrap()
                .push((state.clone(), reason.map(str::to_owned)));
        })
        .build()
        .await
        .unwrap();
    (service, seen)
}

/// A sampler on [`MODEL`] of `service`.
async fn sampler_of(service: &ServiceClient) -> SamplingClient {
    service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap()
}

/// One sample of two tokens after `prompt`; panics unless it arrives.
async fn sample(sampler: &SamplingClient, prompt: &[u32]) {
    let out = sampler
        .sample(
            ModelInput::from_tokens(prompt),
            1,
            SamplingParams::with_max_tokens(2),
        )
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 1);
}

fn paused(seen: &Seen) -> Vec<(QueueState, Option<String>)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s != QueueState::Active)
        .cloned()
        .collect()
}

/// A sampling queue paused for three polls per future: the observer sees
/// `paused_rate_limit` with the server's reason three times, the metrics count them, and
/// the sample arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sampling_queue_is_observed_and_the_sample_completes() {
    let env = common::start(Some(
        "pause=sampling:paused_rate_limit:3:server says: too many samplers (test)",
    ))
    .await;
    let (service, seen) = observed_service(&env).await;
    sample(&sampler_of(&service).await, &[1, 2, 3]).await;
    let reason = Some("server says: too many samplers (test)".to_owned());
    assert_eq!(
        paused(&seen),
        vec![(QueueState::PausedRateLimit, reason.clone()); 3]
    );
    let counted = service.metrics().queue_states;
    assert!(
        counted
            .iter()
            .any(|c| c.state == "paused_rate_limit" && c.reason == reason && c.count == 3),
        "{counted:?}"
    );
    env.server.shutdown().await;
}

/// A training queue paused for a while, with no reason: the forward pass waits it out and
/// completes; the observer saw `paused_capacity` with no reason (the client's stock
/// reason is its own business).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_training_queue_is_observed_and_training_completes() {
    let env = common::start(Some("pause=training:paused_capacity:300ms")).await;
    let (service, seen) = observed_service(&env).await;
    let tc = service.create_lora_training_client(MODEL, 4).await.unwrap();
    let out = tc
        .forward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
        .await
        .unwrap();
    assert_eq!(out.loss_fn_outputs.len(), 1);
    let got = paused(&seen);
    assert!(!got.is_empty(), "no paused state observed");
    assert!(
        got.iter().all(|g| *g == (QueueState::PausedCapacity, None)),
        "{got:?}"
    );
    env.server.shutdown().await;
}

/// The change observer hears each change of one future's queue state once, with the
/// request id and the operation: three identical paused reports are one change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_observer_hears_each_change_once_with_the_request() {
    use tinker_client::observe::{Operation, QueueStateChange};
    let env = common::start(Some("pause=sampling:paused_capacity:3:maintenance")).await;
    let changes: Arc<Mutex<Vec<QueueStateChange>>> = Arc::default();
    let record = changes.clone();
    let service = ServiceClient::builder()
        .base_url(env.server.url())
        .api_key("tml-test-key")
        .queue_state_change_observer(move |c| record.lock().unwrap().push(c.clone()))
        .build()
        .await
        .unwrap();
    let sampler = sampler_of(&service).await;
    for prompt in [[1, 2], [3, 4]] {
        sample(&sampler, &prompt).await;
    }
    let changes = changes.lock().unwrap().clone();
    assert_eq!(changes.len(), 2, "one per sample: {changes:?}");
    for c in &changes {
        assert_eq!(c.state, QueueState::PausedCapacity);
        assert_eq!(c.reason.as_deref(), Some("maintenance"));
        assert_eq!(c.operation, Operation::Sample);
    }
    assert!(!changes[0].request_id.is_empty());
    assert_ne!(changes[0].request_id, changes[1].request_id);
    env.server.shutdown().await;
}

/// With `sampling_backoff_on_rate_limit`, a sample whose queue says `paused_rate_limit`
/// throttles the session's dispatch (off by default, as in the SDK); a `paused_capacity`
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_queue_throttles_sampling_dispatch_when_asked() {
    for (faults, backoff, throttled) in [
        ("pause=sampling:paused_rate_limit:1", true, true),
        ("pause=sampling:paused_rate_limit:1", false, false),
        ("pause=sampling:paused_capacity:1", true, false),
    ] {
        let env = common::start(Some(faults)).await;
        let service = ServiceClient::builder()
            .base_url(env.server.url())
            .api_key("tml-test-key")
            .sampling_backoff_on_rate_limit(backoff)
            .build()
            .await
            .unwrap();
        let sampler = sampler_of(&service).await;
        assert!(!sampler.dispatch().is_throttled());
        sample(&sampler, &[1, 2]).await;
        assert_eq!(
            sampler.dispatch().is_throttled(),
            throttled,
            "{faults}, backoff {backoff}"
        );
        env.server.shutdown().await;
    }
}

/// The dispatch handle: a backoff throttles dispatch, so two jobs that each ask for more
/// than the byte budget once penalised run one after the other; a sample then waits out
/// the backoff and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_backoff_penalises_bytes_and_delays_samples() {
    use std::time::Duration;
    use tinker_client::SampleDispatch;
    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let now = std::time::Instant::now;
    let env = common::start(None).await;
    let sampler = sampler_of(&env.service).await;
    let prompt = ModelInput::from_tokens(&[1, 2, 3]);
    assert_eq!(SampleDispatch::estimate_bytes(&prompt), 30);
    let dispatch = sampler.dispatch();
    // 1 MiB is well inside the 10 MiB budget, unless penalised 20×.
    let job = |started: std::time::Instant| {
        let dispatch = dispatch.clone();
        async move {
            dispatch
                .with_rate_limit(1 << 20, async {
                    let at = started.elapsed();
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    at
                })
                .await
        }
    };
    let started = now();
    let (a, b) = tokio::join!(job(started), job(started));
    assert!(
        a.max(b) < Duration::from_millis(100),
        "unthrottled: {a:?} {b:?}"
    );

    dispatch.back_off(Duration::from_millis(500));
    assert!(dispatch.is_throttled());
    let started = now();
    let (a, b) = tokio::join!(job(started), job(started));
    assert!(
        a.max(b) >= Duration::from_millis(140),
        "penalised, the second waits for the first: {a:?} {b:?}"
    );
    let started = now();
    sample(&sampler, &[1, 2, 3]).await;
    // The jobs took ~300 ms of the 500 ms backoff; the sample waited for the rest.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    env.server.shutdown().await;
}
