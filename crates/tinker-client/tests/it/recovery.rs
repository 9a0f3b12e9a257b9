//! Recovery of corrupted runs, end to end over HTTP against an in-process tinker-local with
//! the `corrupt_after` fault: a loop survives, its loss curve goes on from the checkpoint,
//! events come in order, and exhausted attempts are a typed error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinker_testkit::local as common;

use common::{datum, start, training};
use tinker_client::recovery::{
    DetectionCause, EventSink, RecoveringTrainer, RecoveryEvent, RecoveryMonitor, RecoveryPolicy,
};
use tinker_client::{ErrorKind, TrainingClient};
use tinker_types::{AccessScope, AdamParams, Datum, LossFn};

/// Collects events as short strings (`detected`, `restarting#1`, …).
fn recorder() -> (EventSink, Arc<Mutex<Vec<RecoveryEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = seen.clone();
        EventSink::new(move |e| seen.lock().unwrap().push(e.clone()))
    };
    (sink, seen)
}

fn names(events: &[RecoveryEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            RecoveryEvent::Detected { .. } => "detected".to_owned(),
            RecoveryEvent::Restarting { attempt, .. } => format!("restarting#{attempt}"),
            RecoveryEvent::Restored { attempt, .. } => format!("restored#{attempt}"),
            RecoveryEvent::Failed {
                attempt, retry_in, ..
            } => format!(
                "failed#{attempt}{}",
                if retry_in.is_some() { "" } else { "!" }
            ),
            _ => "other".to_owned(),
        })
        .collect()
}

fn batch() -> Vec<Datum> {
    vec![
        datum(&[5, 17, 33, 2, 41, 9, 12, 7]),
        datum(&[3, 8, 21, 34, 55, 6]),
    ]
}

/// One training step: forward/backward then an optimizer step; its `loss:sum`.
async fn train_step(tc: TrainingClient, data: Vec<Datum>) -> tinker_client::Result<f64> {
    let fb = tc.forward_backward(data, LossFn::CrossEntropy);
    let opt = tc.optim_step(AdamParams::with_learning_rate(2e-2));
    let out = fb.await?;
    opt.await?;
    Ok(out.metrics["loss:sum"])
}

fn fast_policy() -> RecoveryPolicy {
    RecoveryPolicy::default()
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .poll_interval(Duration::from_millis(50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_survives_a_corrupted_run_and_its_loss_curve_goes_on() {
    // The 5th optimizer step corrupts the run; checkpoints every 3 steps.
    let env = start(Some("corrupt_after=5")).await;
    let tc = training(&env).await;
    let first_run = tc.model_id().to_owned();
    let (sink, seen) = recorder();
    let mut trainer = RecoveringTrainer::new(&env.service, tc, fast_policy(), sink).unwrap();

    // loss_at[s]: every loss measured at step s, in order (a redone step has two).
    let mut loss_at: Vec<Vec<f64>> = vec![Vec::new(); 8];
    let mut resumes = Vec::new();
    let mut step = 0u64;
    trainer
        .save_checkpoint("step-0", 0)
        .await
        .unwrap()
        .done()
        .unwrap();
    while step < 8 {
        match trainer
            .step(|tc| train_step(tc, batch()))
            .await
            .unwrap()
            .done()
        {
            Ok(loss) => {
                loss_at[step as usize].push(loss);
                step += 1;
            }
            Err(resume) => {
                step = resume.step.expect("the checkpoint stores its step");
                resumes.push(resume);
                continue;
            }
        }
        if step.is_multiple_of(3)
            && let Err(resume) = trainer
                .save_checkpoint(&format!("step-{step}"), step)
                .await
                .unwrap()
                .done()
        {
            step = resume.step.unwrap();
            resumes.push(resume);
        }
    }

    // One recovery, from the checkpoint saved after step 3 (steps 3 and 4 ran, then the
    // run broke), into the session's next model.
    assert_eq!(resumes.len(), 1, "{resumes:?}");
    let resume = &resumes[0];
    assert_eq!(resume.step, Some(3));
    assert_eq!(resume.old_run_id, first_run);
    assert!(
        resume
            .checkpoint
            .ends_with(&format!("{first_run}/weights/step-3"))
    );
    assert_eq!(resume.new_run_id, trainer.client().model_id());
    assert_ne!(resume.new_run_id, first_run);
    assert!(matches!(
        resume.cause,
        DetectionCause::CorruptedFlag | DetectionCause::FailedRequest(ErrorKind::RequestFailed)
    ));
    assert_eq!(trainer.recoveries(), 1);

    // Events, in order.
    let events = seen.lock().unwrap().clone();
    assert_eq!(names(&events), ["detected", "restarting#1", "restored#1"]);
    match &events[2] {
        RecoveryEvent::Restored {
            old_run_id,
            new_run_id,
            step,
            ..
        } => {
            assert_eq!(old_run_id, &first_run);
            assert_eq!(new_run_id, &resume.new_run_id);
            assert_eq!(*step, Some(3));
        }
        other => panic!("{other:?}"),
    }

    // The loss curve goes on: steps 3 and 4 ran twice, from the same state (weights and
    // optimizer moments of the step-3 checkpoint), so with the same losses; the steps
    // after the restore train further (below the checkpoint's loss, far below the start).
    for s in [3, 4] {
        let (before, after) = (loss_at[s][0], loss_at[s][1]);
        assert!(
            (before - after).abs() <= 1e-4 * before.abs().max(1.0),
            "step {s}: {before} before the corruption, {after} after the restore"
        );
    }
    let curve: Vec<f64> = loss_at.iter().map(|l| *l.last().unwrap()).collect();
    assert!(
        curve[..4].windows(2).all(|w| w[1] < w[0])
            && curve[5..]
                .iter()
                .all(|l| *l < curve[3] && *l < curve[0] / 4.0),
        "the loss should go on falling after the restore: {curve:?}"
    );

    // The REST records: the old run is corrupted, the new one is not.
    let rest = env.service.create_rest_client().await.unwrap();
    let old = rest
        .get_training_run(&first_run, AccessScope::Owned)
        .await
        .unwrap();
    let new = rest
        .get_training_run(trainer.client().model_id(), AccessScope::Owned)
        .await
        .unwrap();
    assert!(old.corrupted && !new.corrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_attempts_are_a_typed_error() {
    // Every restore is refused (422 before the handler), so both attempts fail.
    let env = start(Some(
        "corrupt_after=1,script=load_weights#1:422;load_weights#2:422",
    ))
    .await;
    let tc = training(&env).await;
    let run = tc.model_id().to_owned();
    let (sink, seen) = recorder();
    // No monitor: the failed request is what finds the corruption.
    let policy = fast_policy().poll_interval(Duration::ZERO).max_attempts(2);
    let mut trainer = RecoveringTrainer::new(&env.service, tc, policy, sink).unwrap();
    trainer
        .save_checkpoint("start", 0)
        .await
        .unwrap()
        .done()
        .unwrap();
    trainer
        .step(|tc| train_step(tc, batch()))
        .await
        .unwrap()
        .done()
        .unwrap();

    let err = trainer
        .step(|tc| train_step(tc, batch()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RecoveryFailed, "{err}");
    assert!(err.to_string().contains("after 2 attempt"), "{err}");
    let source = std::error::Error::source(&err).expect("the last attempt's error");
    assert!(source.to_string().contains("422"), "{source}");
    assert_eq!(trainer.recoveries(), 0);
    assert_eq!(trainer.client().model_id(), run);

    let events = seen.lock().unwrap().clone();
    assert_eq!(
        names(&events),
        [
            "detected",
            "restarting#1",
            "failed#1",
            "restarting#2",
            "failed#2!"
        ]
    );
    assert!(matches!(
        events[0],
        RecoveryEvent::Detected {
            cause: DetectionCause::FailedRequest(ErrorKind::RequestFailed),
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_reads_the_corrupted_flag_once() {
    let env = start(Some("corrupt_after=1")).await;
    let tc = training(&env).await;
    let (sink, seen) = recorder();
    let monitor = RecoveryMonitor::start(
        env.service.create_rest_client().await.unwrap(),
        tc.model_id(),
        Duration::from_millis(20),
        sink,
    );
    // Not corrupted yet: a few polls find nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(monitor.detected(), None);
    train_step(tc.clone(), batch()).await.unwrap();
    let cause = tokio::time::timeout(Duration::from_secs(5), monitor.wait_detected())
        .await
        .expect("the monitor sees the flag");
    assert_eq!(cause, DetectionCause::CorruptedFlag);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(names(&seen.lock().unwrap()), ["detected"]);

    // The corrupted run refuses work with a server-side failure.
    let err = train_step(tc, batch()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RequestFailed);
    assert!(!err.is_user_error(), "{err}");
    assert!(err.to_string().contains("corrupted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_error_is_not_a_broken_run() {
    let env = start(None).await;
    let tc = training(&env).await;
    let (sink, seen) = recorder();
    let mut trainer = RecoveringTrainer::new(&env.service, tc, fast_policy(), sink).unwrap();
    let err = trainer
        .step(|tc| train_step(tc, Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(trainer.recoveries(), 0);
    assert!(seen.lock().unwrap().is_empty());
}
