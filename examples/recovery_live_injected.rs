//! A training loop that survives a corrupted run (port of tinkex's
//! `recovery_live_injected.exs`): a [`RecoveringTrainer`] owns the training client, a
//! monitor polls the run's REST record, and when the run turns `corrupted` the trainer
//! loads the last good checkpoint (with optimizer state) into a new model of the same
//! session; the loop resumes from the step saved with it.
//!
//! ```sh
//! cargo run --release --example recovery_live_injected
//! ```
//!
//! Offline (no `TINKER_API_KEY`), the embedded tinker-local corrupts the run after its 5th
//! optimizer step (fault `corrupt_after=5`). Against a remote service nothing is injected:
//! the same loop runs with recovery armed. Settings: `TINKER_BASE_MODEL`, `TINKER_LR`,
//! `TINKER_STEPS` (10).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{BoxError, Connection};
use tinker::prelude::*;
use tinker::recovery::{EventSink, RecoveringTrainer, RecoveryEvent, RecoveryPolicy};
use tinker::transport::Env;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::open_with(Env::process(), |config| {
        config.faults =
            tinker::local::FaultConfig::parse("corrupt_after=5").expect("a valid fault plan");
    })
    .await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let lr: f64 = conn.setting("TINKER_LR", if conn.remote { 1e-4 } else { 2e-2 });
    let steps: u64 = conn.setting("TINKER_STEPS", 10);
    let service = &conn.service;

    let training = service.create_lora_training_client(&model, 8).await?;
    let tokenizer = training.get_tokenizer().await?;
    let batch = vec![
        common::datum(
            &tokenizer,
            "Recovery restores",
            " the last good checkpoint.",
        )?,
        common::datum(&tokenizer, "The loop resumes", " from the saved step.")?,
    ];

    // Events arrive on a channel; the callback only forwards them.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let events = EventSink::new(move |e: &RecoveryEvent| {
        let _ = tx.send(e.clone());
    });
    let policy = RecoveryPolicy::default()
        .poll_interval(Duration::from_millis(if conn.remote { 1000 } else { 100 }))
        .backoff(Duration::from_millis(200), Duration::from_secs(10))
        .max_attempts(5);
    let mut trainer = RecoveringTrainer::new(service, training, policy, events)?;
    let first_run = trainer.client().model_id().to_owned();

    let saved = trainer.save_checkpoint("recovery-live-1", 0).await?;
    let first = saved
        .done()
        .map_err(|_| "the run broke before its first save")?;
    println!("Saved checkpoint {}", first.tinker_path);

    let mut losses: Vec<Vec<f64>> = vec![Vec::new(); steps as usize];
    let mut step = 0u64;
    let mut resumed = None;
    while step < steps {
        let data = batch.clone();
        let stepped = trainer
            .step(|tc| async move {
                let fb = tc.forward_backward(data, LossFn::CrossEntropy);
                let opt = tc.optim_step(AdamParams::with_learning_rate(lr));
                let out = fb.await?;
                opt.await?;
                Ok(out.metrics.get("loss:sum").copied().unwrap_or(f64::NAN))
            })
            .await?;
        match stepped.done() {
            Ok(loss) => {
                println!(
                    "step {step:>2}  loss:sum {loss:.4}  run {}",
                    trainer.client().model_id()
                );
                losses[step as usize].push(loss);
                step += 1;
            }
            Err(resume) => {
                while let Ok(event) = rx.try_recv() {
                    println!("  event: {}", describe(&event));
                }
                step = resume.step.unwrap_or(0);
                println!(
                    "Recovered from {} -> {}; resuming at step {step}",
                    resume.checkpoint, resume.new_run_id
                );
                resumed = Some(resume);
                continue;
            }
        }
        if step.is_multiple_of(3) && step < steps {
            match trainer
                .save_checkpoint(&format!("step-{step}"), step)
                .await?
                .done()
            {
                Ok(point) => println!("Saved checkpoint {}", point.tinker_path),
                Err(resume) => {
                    step = resume.step.unwrap_or(0);
                    println!("Recovered while saving; resuming at step {step}");
                    resumed = Some(resume);
                }
            }
        }
    }
    while let Ok(event) = rx.try_recv() {
        println!("  event: {}", describe(&event));
    }

    let second = trainer.save_checkpoint("recovery-live-2", step).await?;
    let second = second
        .done()
        .map_err(|_| "the run broke again at the end")?;
    println!("Second checkpoint saved: {}", second.tinker_path);

    let curve: Vec<f64> = losses.iter().filter_map(|l| l.last().copied()).collect();
    println!("Loss curve (last value per step): {curve:.4?}");
    println!("Recoveries: {}", trainer.recoveries());
    match resumed {
        Some(resume) => {
            let at = resume.step.unwrap_or(0) as usize;
            let (before, after) = (losses[at][0], *losses[at].last().unwrap_or(&f64::NAN));
            println!(
                "Step {at} before the corruption: loss:sum {before:.4}; after the restore: {after:.4} \
                 (run {} -> {})",
                resume.old_run_id, resume.new_run_id
            );
            if (before - after).abs() > 1e-3 * before.abs().max(1.0) {
                return Err(format!("restored loss {after} differs from {before}").into());
            }
            let old = service
                .create_rest_client()
                .await?
                .get_training_run(&first_run, AccessScope::Owned)
                .await?;
            println!("REST record of {first_run}: corrupted = {}", old.corrupted);
        }
        None if conn.remote => println!("No corruption occurred (none is injected remotely)"),
        None => return Err("the injected corruption was never recovered".into()),
    }
    if curve.last() >= curve.first() {
        return Err(format!("the loss did not fall: {curve:?}").into());
    }
    conn.close().await
}

fn describe(event: &RecoveryEvent) -> String {
    match event {
        RecoveryEvent::Detected { run_id, cause } => format!("detected {run_id} ({cause:?})"),
        RecoveryEvent::Restarting {
            attempt,
            checkpoint,
            ..
        } => format!("restarting (attempt {attempt}) from {checkpoint}"),
        RecoveryEvent::Restored {
            old_run_id,
            new_run_id,
            step,
            ..
        } => format!("restored {old_run_id} -> {new_run_id} at step {step:?}"),
        RecoveryEvent::Failed {
            attempt,
            error,
            retry_in,
            ..
        } => format!("attempt {attempt} failed: {error} (retry in {retry_in:?})"),
        other => format!("{other:?}"),
    }
}
