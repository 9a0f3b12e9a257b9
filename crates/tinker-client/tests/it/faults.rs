//! The futures engine and the sampling retry paths, driven by tinker-local's fault
//! injection: every fault kind at least once.

use tinker_testkit::local as common;

use common::{MODEL, datum, start};
use tinker_client::{ErrorKind, SamplingSource, TrainingClientOptions};
use tinker_types::{AdamParams, LossFn, ModelInput, SamplingParams};

/// Training survives a 408, a 5xx, a 429, a bare 400 and a dropped connection while
/// polling, plus 5xx and 429 on submission: nothing is applied twice (the loss after one
/// step equals the loss of a clean run's step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_futures_survive_poll_and_submit_faults() {
    let faults = "script=retrieve_future#1:408;retrieve_future#2:500;retrieve_future#3:429;\
                  retrieve_future#4:400;retrieve_future#5:0;forward_backward#1:503;optim_step#1:429";
    let env = start(Some(faults)).await;
    let clean = start(None).await;
    let data = vec![datum(&[3, 4, 5, 6, 7, 8])];
    let mut losses = Vec::new();
    for e in [&env, &clean] {
        let mut opts = TrainingClientOptions::rank(4);
        opts.lora.seed = Some(7);
        let tc = e
            .service
            .create_lora_training_client_with(MODEL, opts)
            .await
            .unwrap();
        let fb = tc.forward_backward(data.clone(), LossFn::CrossEntropy);
        let step = tc.optim_step(AdamParams::with_learning_rate(1e-2));
        fb.await.unwrap();
        step.await.unwrap();
        losses.push(
            tc.forward(data.clone(), LossFn::CrossEntropy)
                .await
                .unwrap()
                .metrics["loss:sum"],
        );
    }
    // Same seed, same data, one step each: equal losses mean the retried requests were
    // applied exactly once.
    assert!(
        (losses[0] - losses[1]).abs() < 1e-4 * (1.0 + losses[1].abs()),
        "{losses:?}"
    );
    env.server.shutdown().await;
    clean.server.shutdown().await;
}

/// Sampling: a 429 on submission is backpressure (same request resubmitted), a 410 while
/// polling resubmits with a new seq_id, a 402 pauses, and every sample still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_retries_backpressure_expiry_and_billing() {
    let faults = "script=asample#1:429;retrieve_future#1:410;retrieve_future#2:402;asample#3:503";
    let env = start(Some(faults)).await;
    let sampler = env
        .service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    let out = sampler
        .sample(
            ModelInput::from_tokens(&[1, 2, 3]),
            2,
            SamplingParams::with_max_tokens(3),
        )
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 2);
    let out = sampler
        .sample(
            ModelInput::from_tokens(&[4, 5]),
            1,
            SamplingParams::with_max_tokens(2),
        )
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 1);
    env.server.shutdown().await;
}

/// Fatal statuses surface as typed errors instead of being retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_poll_status_is_an_error() {
    let env = start(Some("script=retrieve_future#1:403")).await;
    let sampler = env
        .service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    let err = sampler
        .sample(
            ModelInput::from_tokens(&[1, 2, 3]),
            1,
            SamplingParams::with_max_tokens(2),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Api);
    assert_eq!(err.status(), Some(403));
    env.server.shutdown().await;
}

/// Random faults everywhere (5xx, 429, 408, 410, drops, stalls): a training step and
/// samples still complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults() {
    let faults = "seed=11,p5xx=0.1,p429=0.05,p408=0.2,p410=0.2,pdrop=0.05,pstall=0.05,stall_ms=50,\
                  routes=retrieve_future|asample|forward_backward|optim_step";
    let env = start(Some(faults)).await;
    let tc = env
        .service
        .create_lora_training_client(MODEL, 4)
        .await
        .unwrap();
    let data = vec![datum(&[9, 8, 7, 6])];
    for _ in 0..2 {
        let fb = tc.forward_backward(data.clone(), LossFn::CrossEntropy);
        let st = tc.optim_step(AdamParams::default());
        fb.await.unwrap();
        st.await.unwrap();
    }
    let sampler = tc.save_weights_and_get_sampling_client().await.unwrap();
    for _ in 0..3 {
        let out = sampler
            .sample(
                ModelInput::from_tokens(&[1, 2]),
                1,
                SamplingParams::with_max_tokens(2),
            )
            .await
            .unwrap();
        assert_eq!(out.sequences.len(), 1);
    }
    env.server.shutdown().await;
}

/// 408s carrying a queue state reach the observer; results larger than the inline limit
/// come as metadata-only answers first (the in-flight byte budget is charged, then the
/// payload fetched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_states_and_metadata_only_answers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let env = common::start_with(Some("seed=3,p408=0.5,routes=retrieve_future"), |c| {
        c.inline_result_limit = 1;
    })
    .await;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let service = tinker_client::ServiceClient::builder()
        .base_url(env.server.url())
        .api_key("tml-test-key")
        .queue_state_observer(move |_state, _reason| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .await
        .unwrap();
    let tc = service.create_lora_training_client(MODEL, 4).await.unwrap();
    for _ in 0..3 {
        let out = tc
            .forward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
            .await
            .unwrap();
        assert_eq!(out.loss_fn_outputs.len(), 1);
    }
    let sampler = tc.save_weights_and_get_sampling_client().await.unwrap();
    let out = sampler
        .sample(
            ModelInput::from_tokens(&[1, 2]),
            2,
            SamplingParams::with_max_tokens(3),
        )
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 2);
    assert!(
        seen.load(Ordering::SeqCst) > 0,
        "no queue state was observed"
    );
    env.server.shutdown().await;
}
