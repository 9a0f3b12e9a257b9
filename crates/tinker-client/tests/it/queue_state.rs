//! Paused queues (tinker-local's `pause=` fault): the queue state and reason the server
//! reports while a future waits reach the caller's observer and the metrics, and the call
//! still completes.

use std::sync::{Arc, Mutex};

use tinker_client::{SamplingSource, ServiceClient};
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
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    let out = sampler
        .sample(
            ModelInput::from_tokens(&[1, 2, 3]),
            1,
            SamplingParams::with_max_tokens(3),
        )
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 1);
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

