//! The recovery monitor and executor on their own (port of tinkex's
//! `recovery_simulated.exs`). Always offline: the embedded tinker-local plays the service
//! and its `corrupt_after=2` fault flips the run's `corrupted` flag after the second
//! optimizer step. The monitor sees the flag, the executor restores the latest checkpoint
//! into a new model, and the restored model trains on and saves the next checkpoint.
//!
//! ```sh
//! cargo run --release --example recovery_simulated
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{BoxError, Connection};
use tinker::prelude::*;
use tinker::recovery::{
    EventSink, RecoveryEvent, RecoveryExecutor, RecoveryMonitor, RecoveryPolicy, STEP_METADATA_KEY,
};
use tinker::transport::Env;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Offline whatever the environment says: the fault exists only in tinker-local.
    let conn = Connection::open_with(Env::from_pairs(Vec::<(String, String)>::new()), |config| {
        config.faults =
            tinker::local::FaultConfig::parse("corrupt_after=2").expect("a valid fault plan");
    })
    .await?;
    let service = &conn.service;
    let rest = service.create_rest_client().await?;
    let training = service
        .create_lora_training_client("tinker-local/micro", 8)
        .await?;
    let run_id = training.model_id().to_owned();
    let data = vec![common::datum(
        &training.get_tokenizer().await?,
        "Recovery monitor",
        " and executor.",
    )?];
    let train_step = |tc: TrainingClient, data: Vec<Datum>| async move {
        let fb = tc.forward_backward(data, LossFn::CrossEntropy);
        let opt = tc.optim_step(AdamParams::with_learning_rate(2e-2));
        let loss = fb
            .await?
            .metrics
            .get("loss:sum")
            .copied()
            .unwrap_or(f64::NAN);
        opt.await?;
        Ok::<f64, tinker::Error>(loss)
    };
    let with_step = |step: u64| {
        SaveOptions::default().user_metadata(BTreeMap::from([(
            STEP_METADATA_KEY.to_owned(),
            step.to_string(),
        )]))
    };

    train_step(training.clone(), data.clone()).await?;
    let first = training.save_state_with("0001", with_step(1)).await?.path;
    println!("1) Seeded checkpoint {first}");

    // Policy as in tinkex's demo: latest checkpoint, poll 150 ms, backoff 100..400 ms,
    // 3 attempts, optimizer restored.
    let policy = RecoveryPolicy::default()
        .poll_interval(Duration::from_millis(150))
        .backoff(Duration::from_millis(100), Duration::from_millis(400))
        .max_attempts(3)
        .restore_optimizer(true);
    let events = EventSink::new(|e: &RecoveryEvent| println!("   [event] {e:?}"));
    let monitor =
        RecoveryMonitor::start(rest.clone(), &run_id, policy.poll_interval, events.clone());
    let executor = RecoveryExecutor::new(service, policy, events)?;

    let loss_at_checkpoint = training
        .forward(data.clone(), LossFn::CrossEntropy)
        .await?
        .metrics["loss:sum"];
    train_step(training.clone(), data.clone()).await?;
    println!("2) Simulated corruption flag on {run_id} (tinker-local fault corrupt_after=2)");

    let cause = tokio::time::timeout(Duration::from_secs(10), monitor.wait_detected())
        .await
        .map_err(|_| "the monitor did not see the corrupted flag within 10 s")?;
    println!("   monitor: {run_id} found broken ({cause:?})");

    let restored = executor.restore(&run_id, None).await?;
    let new_client = restored.client;
    println!(
        "3) Recovery succeeded from {} -> {} (attempt {}, step {:?})",
        restored.point.tinker_path,
        new_client.model_id(),
        restored.attempt,
        restored.point.step
    );
    monitor.follow(new_client.model_id());

    let loss_restored = new_client
        .forward(data.clone(), LossFn::CrossEntropy)
        .await?
        .metrics["loss:sum"];
    train_step(new_client.clone(), data.clone()).await?;
    let second = new_client.save_state_with("0002", with_step(2)).await?.path;
    println!("4) Checkpoints processed: {first}, {second}");

    let old = rest.get_training_run(&run_id, AccessScope::Owned).await?;
    let new = rest
        .get_training_run(new_client.model_id(), AccessScope::Owned)
        .await?;
    println!(
        "{{clients: 2, last_checkpoint: {}, corrupted: {{{}: {}, {}: {}}}, \
         loss at checkpoint: {loss_at_checkpoint:.4}, after restore: {loss_restored:.4}}}",
        new.last_checkpoint
            .map(|c| c.tinker_path)
            .unwrap_or_default(),
        old.training_run_id,
        old.corrupted,
        new.training_run_id,
        new.corrupted,
    );
    if !old.corrupted || new.corrupted || restored.point.tinker_path != first {
        return Err("unexpected recovery state".into());
    }
    if (loss_at_checkpoint - loss_restored).abs() > 1e-3 * loss_at_checkpoint.abs().max(1.0) {
        return Err("the restored model does not hold the checkpoint's weights".into());
    }
    drop(monitor);
    conn.close().await
}
