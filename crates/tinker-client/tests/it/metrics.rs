//! Client metrics against a real tinker-local: per-operation counts, bytes, latency
//! percentiles, retries under injected faults, queue states, reset, and the `metrics`
//! facade.

use std::sync::OnceLock;

use tinker_client::SamplingSource;
use tinker_client::observe::{LatencySummary, Operation};
use tinker_testkit::local as common;
use tinker_types::{AdamParams, LossFn, ModelInput, SamplingParams};

use common::{MODEL, datum, start};

fn assert_ordered(what: &str, l: &LatencySummary) {
    assert!(l.count > 0, "{what}: no latency recorded");
    assert!(
        l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max && !l.max.is_zero(),
        "{what}: {l:?}"
    );
}

/// Three training steps and two samples: the counts match the calls made, bytes flow
/// both ways, percentiles are ordered, the injected 503 on `forward_backward` and 500 on a
/// poll show up as retries and failed requests, the injected 408s as queue states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_counts_steps_samples_retries_and_queue_states() {
    // Scripted: a 503 on the first submission, a 500 on a poll; random (seeded): 408s
    // with an `active` queue state on polls.
    let faults = "seed=3,p408=0.4,script=forward_backward#1:503;retrieve_future#3:500";
    let env = start(Some(faults)).await;
    let service = &env.service;
    let tc = service.create_lora_training_client(MODEL, 4).await.unwrap();
    for step in 0..3u32 {
        let fb = tc.forward_backward(vec![datum(&[3, 4, 5, 6, 7 + step])], LossFn::CrossEntropy);
        let opt = tc.optim_step(AdamParams::with_learning_rate(1e-2));
        fb.await.unwrap();
        opt.await.unwrap();
    }
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    for _ in 0..2 {
        let out = sampler
            .sample(
                ModelInput::from_tokens(&[1, 2, 3]),
                1,
                SamplingParams::with_max_tokens(3),
            )
            .await
            .unwrap();
        assert_eq!(out.sequences.len(), 1);
    }

    let m = service.metrics();
    let fb = m
        .operation(Operation::ForwardBackward)
        .expect("forward_backward");
    assert_eq!((fb.calls, fb.errors), (3, 0), "{fb:?}");
    assert_eq!(fb.latency.count, 3);
    assert_ordered("forward_backward", &fb.latency);
    assert_ordered("forward_backward requests", &fb.requests.latency);
    // One submission per step (the 503 is retried inside its request), plus polls.
    assert!(fb.requests.count >= 6 && fb.requests.polls >= 3, "{fb:?}");
    assert!(fb.requests.retries >= 1, "the 503 was retried: {fb:?}");
    assert!(
        fb.requests.bytes_sent > 0 && fb.requests.bytes_received > 0,
        "{fb:?}"
    );

    let opt = m.operation(Operation::OptimStep).expect("optim_step");
    // Every client of the session shares its metrics.
    let from_training = tc.metrics();
    assert_eq!(
        from_training
            .operation(Operation::OptimStep)
            .map(|o| o.calls),
        Some(3)
    );
    assert_eq!(
        (opt.calls, opt.errors, opt.latency.count),
        (3, 0, 3),
        "{opt:?}"
    );
    assert_ordered("optim_step", &opt.latency);

    let sample = m.operation(Operation::Sample).expect("sample");
    assert_eq!((sample.calls, sample.errors), (2, 0), "{sample:?}");
    assert!(sample.requests.bytes_received > 0 && sample.requests.polls >= 2);
    assert_ordered("sample", &sample.latency);

    let create = m.operation(Operation::CreateModel).expect("create_model");
    assert_eq!(create.calls, 1);
    let sessions = m
        .operation(Operation::CreateSamplingSession)
        .expect("sampling session");
    assert_eq!(sessions.calls, 1);

    // The 500 on a poll is a failed request of whichever operation was polling.
    let totals = m.total_requests();
    assert!(totals.errors >= 1, "{m:?}");
    assert!(totals.bytes_sent >= fb.requests.bytes_sent);
    let active: u64 = m
        .queue_states
        .iter()
        .filter(|q| q.state == "active")
        .map(|q| q.count)
        .sum();
    assert!(
        active >= 1,
        "the injected 408s report an active queue: {m:?}"
    );

    service.reset_metrics();
    let after = service.metrics();
    assert!(
        after.operation(Operation::ForwardBackward).is_none(),
        "{after:?}"
    );
    assert!(after.queue_states.is_empty());
    env.server.shutdown().await;
}

/// A failed call counts as an error of its operation (a datum the server rejects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_count_as_errors() {
    let env = start(None).await;
    let rest = env.service.create_rest_client().await.unwrap();
    let err = rest
        .get_training_run("no-such-run", tinker_client::AccessScope::Owned)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let m = env.service.metrics();
    let r = m.operation(Operation::Rest).expect("rest");
    assert_eq!((r.calls, r.errors), (1, 1), "{r:?}");
    assert!(r.requests.errors >= 1);
    env.server.shutdown().await;
}

/// A sampling client's metrics are its session's, and the operation retry loop's inner
/// retries of `asample` (here after an injected 503) count as retries of the sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_client_metrics_count_inner_asample_retries() {
    let env = start(Some("script=asample#1:503")).await;
    let service = common::fast_retry_service(&env).await;
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    sampler
        .sample(
            ModelInput::from_tokens(&[1, 2]),
            1,
            SamplingParams::with_max_tokens(2),
        )
        .await
        .unwrap();
    let m = sampler.metrics();
    let s = m.operation(Operation::Sample).expect("sample");
    assert_eq!((s.calls, s.errors, s.retries), (1, 0, 1), "{s:?}");
    assert_eq!(s.requests.errors, 1, "the 503: {s:?}");
    assert_eq!(m, service.metrics());
    env.server.shutdown().await;
}

/// A REST client opened on its own keeps metrics of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_rest_client_has_its_own_metrics() {
    let env = start(None).await;
    let rest = common::rest_client(&env.server.url(), None).await;
    assert!(rest.metrics().operation(Operation::Rest).is_none());
    let err = rest
        .get_training_run("no-such-run", tinker_client::AccessScope::Owned)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let m = rest.metrics();
    let r = m.operation(Operation::Rest).expect("rest");
    assert_eq!((r.calls, r.errors, r.requests.count), (1, 1, 1), "{r:?}");
    assert!(r.requests.bytes_received > 0, "{r:?}");
    // The service's own session saw none of it.
    assert!(env.service.metrics().operation(Operation::Rest).is_none());
    env.server.shutdown().await;
}

/// The `metrics` facade receives the named metrics with their labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_receives_named_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    let snapshotter = SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    });
    let env = start(None).await;
    let tc = env
        .service
        .create_lora_training_client(MODEL, 4)
        .await
        .unwrap();
    tc.forward_backward(vec![datum(&[3, 4, 5])], LossFn::CrossEntropy)
        .await
        .unwrap();
    let snap = snapshotter.snapshot().into_vec();
    let find = |name: &str, labels: &[(&str, &str)]| {
        snap.iter().find(|(key, _, _, _)| {
            let k = key.key();
            k.name() == name
                && labels
                    .iter()
                    .all(|(l, v)| k.labels().any(|x| x.key() == *l && x.value() == *v))
        })
    };
    let ops = find(
        "tinker_client_operations_total",
        &[("operation", "forward_backward"), ("status", "ok")],
    )
    .expect("operations counter");
    assert!(
        matches!(ops.3, DebugValue::Counter(n) if n >= 1),
        "{:?}",
        ops.3
    );
    let dur = find(
        "tinker_client_operation_duration_seconds",
        &[("operation", "forward_backward"), ("status", "ok")],
    )
    .expect("duration histogram");
    assert!(
        matches!(&dur.3, DebugValue::Histogram(v) if !v.is_empty()),
        "{:?}",
        dur.3
    );
    for name in [
        "tinker_client_http_requests_total",
        "tinker_client_bytes_sent_total",
        "tinker_client_bytes_received_total",
        "tinker_client_polls_total",
    ] {
        let got = find(name, &[("operation", "forward_backward")]);
        assert!(
            matches!(got, Some((_, _, _, DebugValue::Counter(n))) if *n > 0),
            "{name}: {got:?}"
        );
    }
    assert!(
        find(
            "tinker_client_http_request_duration_seconds",
            &[("status", "2xx")]
        )
        .is_some()
    );
    env.server.shutdown().await;
}
