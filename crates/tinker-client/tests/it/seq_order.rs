//! No lost `seq_id` (issue 9, case 3): a request that cannot be encoded holds no id, and a
//! request that fails for good after holding one breaks the client's order so that later
//! calls fail at once instead of waiting forever behind the gap.

use tinker_testkit::local as common;

use std::time::Duration;

use common::{MODEL, datum, start, training};
use tinker_client::ErrorKind;
use tinker_types::{AdamParams, LossFn};

/// Long enough for a healthy call on a busy 2-core machine, far shorter than "forever".
const BOUND: Duration = Duration::from_secs(60);

/// A token id of u32::MAX is refused before a seq_id is reserved: the next call runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencodable_token_reserves_no_seq_id() {
    let env = start(None).await;
    let tc = training(&env).await;
    // u32::MAX only in the model input (the targets are i64 and fine).
    let bad = datum(&[u32::MAX, 2, 3, 4]);
    let err = tc
        .forward_backward(vec![bad], LossFn::CrossEntropy)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("int32"), "{err}");

    let good = vec![datum(&[1, 2, 3, 4])];
    let fb = tokio::time::timeout(BOUND, tc.forward_backward(good, LossFn::CrossEntropy))
        .await
        .expect("the call after a refused one must not wait for a lost seq_id")
        .unwrap();
    assert!(fb.metrics.contains_key("loss:sum"));
    tokio::time::timeout(BOUND, tc.optim_step(AdamParams::default()))
        .await
        .expect("optim_step hung")
        .unwrap();
    // Nothing of the refused call reached the server: seq_ids 1 and 2 ran, once each.
    let mut ran: Vec<i64> = env
        .server
        .executions()
        .into_iter()
        .filter(|((model, _), _)| model == tc.model_id())
        .map(|((_, seq), n)| {
            assert_eq!(n, 1);
            seq
        })
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, vec![1, 2]);
    env.server.shutdown().await;
}

/// A forward_backward answered 503 on every attempt fails after the retry window; the
/// call reserved behind it and every later call then fail at once with SequenceBroken
/// (naming the lost seq_id and the 503), while a request accepted before keeps polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_failing_for_good_breaks_the_order_instead_of_hanging() {
    let env = start(Some("seed=5,p5xx=1,routes=forward_backward")).await;
    let service = common::fast_retry_service(&env).await;
    let tc = service.create_lora_training_client(MODEL, 4).await.unwrap();
    let data = vec![datum(&[5, 6, 7, 8])];

    // seq_id 1: accepted before the failure; it must still resolve normally.
    let before = tc.optim_step(AdamParams::default());
    // seq_id 2: 5xx on every attempt. seq_id 3: reserved behind it, not yet sent.
    let fb = tc.forward_backward(data.clone(), LossFn::CrossEntropy);
    let after = tc.optim_step(AdamParams::default());

    let err = tokio::time::timeout(BOUND, fb)
        .await
        .expect("the failing forward_backward never gave up")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Api, "{err}");
    assert!(err.status().is_some_and(|s| s >= 500), "{err}");
    tokio::time::timeout(BOUND, before)
        .await
        .expect("a request accepted before the failure hung")
        .unwrap();

    let err = tokio::time::timeout(BOUND, after)
        .await
        .expect("the call reserved behind the lost seq_id hung")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SequenceBroken, "{err}");
    assert!(err.message().contains("seq_id 2"), "{err}");
    assert!(err.message().contains("forward_backward"), "{err}");
    assert!(err.message().contains("checkpoint"), "{err}");

    // A later call fails at once, before anything is sent.
    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(BOUND, tc.optim_step(AdamParams::default()))
        .await
        .expect("a later call hung")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SequenceBroken, "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let err = tc.save_state("x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SequenceBroken, "{err}");
    // Only seq_id 1 ran.
    let ran: Vec<i64> = env
        .server
        .executions()
        .into_iter()
        .filter(|((model, _), _)| model == tc.model_id())
        .map(|((_, seq), _)| seq)
        .collect();
    assert_eq!(ran, vec![1]);
    env.server.shutdown().await;
}
