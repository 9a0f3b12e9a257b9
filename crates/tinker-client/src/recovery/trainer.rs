//! [`RecoveringTrainer`]: a training client that replaces itself when its run breaks.

use std::collections::BTreeMap;
use std::future::Future;

use tinker_types::AccessScope;

use super::events::{DetectionCause, EventSink};
use super::executor::{RecoveryExecutor, RestorePoint, STEP_METADATA_KEY};
use super::monitor::RecoveryMonitor;
use super::policy::RecoveryPolicy;
use crate::error::{ErrorKind, FailureCategory, Result};
use crate::service::ServiceClient;
use crate::training::{SaveOptions, TrainingClient};

/// How a step ended: done, or the run broke and was restored (redo from the checkpoint).
#[derive(Debug)]
#[non_exhaustive]
pub enum Stepped<T> {
    /// The step ran; its value.
    Done(T),
    /// The run broke; a new client holds the checkpoint's state. Continue from
    /// [`Resume::step`].
    Resumed(Resume),
}

impl<T> Stepped<T> {
    /// `Ok` with the step's value, or `Err` with where to resume.
    pub fn done(self) -> std::result::Result<T, Resume> {
        match self {
            Self::Done(v) => Ok(v),
            Self::Resumed(r) => Err(r),
        }
    }
}

/// Where a recovered loop goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resume {
    /// The step stored with the checkpoint: the loop's next step (None for a checkpoint
    /// saved without one).
    pub step: Option<u64>,
    /// The checkpoint loaded.
    pub checkpoint: String,
    /// The broken run.
    pub old_run_id: String,
    /// The new run.
    pub new_run_id: String,
    /// How the break was found.
    pub cause: DetectionCause,
}

/// Owns the current [`TrainingClient`] and swaps it for one restored from the last good
/// checkpoint when the run breaks: the monitor reads `corrupted` from the run's REST
/// record, or a step fails with a server-side request failure (then the REST record is
/// read to confirm) or a lost `seq_id`. Events go to the [`EventSink`].
///
/// The loop stays simple: run each step through [`RecoveringTrainer::step`], save through
/// [`RecoveringTrainer::save_checkpoint`] (which stores the step with the checkpoint), and
/// on [`Stepped::Resumed`] continue from the step it names:
///
/// ```no_run
/// # async fn demo(service: tinker_client::ServiceClient, data: Vec<tinker_types::Datum>)
/// #     -> tinker_client::Result<()> {
/// use tinker_client::recovery::{EventSink, RecoveringTrainer, RecoveryPolicy};
/// use tinker_types::{AdamParams, LossFn};
///
/// let client = service.create_lora_training_client("tinker-local/micro", 8).await?;
/// let mut trainer =
///     RecoveringTrainer::new(&service, client, RecoveryPolicy::default(), EventSink::none())?;
/// let mut step = 0;
/// trainer.save_checkpoint("step-0", 0).await?;
/// while step < 20 {
///     let batch = data.clone();
///     let stepped = trainer
///         .step(|tc| async move {
///             let fb = tc.forward_backward(batch, LossFn::CrossEntropy);
///             let opt = tc.optim_step(AdamParams::default());
///             let out = fb.await?;
///             opt.await?;
///             Ok(out)
///         })
///         .await?;
///     match stepped.done() {
///         Ok(_out) => step += 1,
///         Err(resume) => step = resume.step.unwrap_or(0),
///     }
///     if step % 5 == 0 {
///         trainer.save_checkpoint(&format!("step-{step}"), step).await?;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RecoveringTrainer {
    executor: RecoveryExecutor,
    monitor: RecoveryMonitor,
    client: TrainingClient,
    last_good: Option<RestorePoint>,
    recoveries: u32,
}

impl RecoveringTrainer {
    /// Takes over `client` (a training client of `service`'s session) and starts the
    /// monitor. Needs a tokio runtime.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid policy.
    pub fn new(
        service: &ServiceClient,
        client: TrainingClient,
        policy: RecoveryPolicy,
        events: EventSink,
    ) -> Result<Self> {
        let executor = RecoveryExecutor::new(service, policy, events.clone())?;
        let monitor = RecoveryMonitor::start(
            executor.rest().clone(),
            client.model_id(),
            executor.policy().poll_interval,
            events,
        );
        Ok(Self {
            executor,
            monitor,
            client,
            last_good: None,
            recoveries: 0,
        })
    }

    /// The current training client (replaced by each recovery).
    pub fn client(&self) -> &TrainingClient {
        &self.client
    }

    /// The monitor of the current run.
    pub fn monitor(&self) -> &RecoveryMonitor {
        &self.monitor
    }

    /// How many recoveries succeeded.
    pub fn recoveries(&self) -> u32 {
        self.recoveries
    }

    /// The checkpoint last saved through this trainer or restored by it.
    pub fn last_good(&self) -> Option<&RestorePoint> {
        self.last_good.as_ref()
    }

    /// Runs one step with the current client. If the run is broken (found by the monitor
    /// before the step, or by the step's failure), restores it and answers
    /// [`Stepped::Resumed`]; the step's partial work is discarded with the broken run.
    ///
    /// # Errors
    /// The step's own error when it does not mean a broken run;
    /// [`ErrorKind::RecoveryFailed`] when the restore gave up.
    pub async fn step<T, F, Fut>(&mut self, f: F) -> Result<Stepped<T>>
    where
        F: FnOnce(TrainingClient) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if let Some(cause) = self.monitor.detected() {
            return self.recover(cause).await.map(Stepped::Resumed);
        }
        match f(self.client.clone()).await {
            Ok(value) => Ok(Stepped::Done(value)),
            Err(e) => match self.diagnose(&e).await {
                Some(cause) => self.recover(cause).await.map(Stepped::Resumed),
                None => Err(e),
            },
        }
    }

    /// Saves the full state (`save_state`) as `name` with `step` in its metadata, and
    /// remembers it as the last good checkpoint. A broken run is restored as in
    /// [`RecoveringTrainer::step`] (nothing is saved then).
    ///
    /// # Errors
    /// As [`RecoveringTrainer::step`].
    pub async fn save_checkpoint(
        &mut self,
        name: &str,
        step: u64,
    ) -> Result<Stepped<RestorePoint>> {
        let metadata = BTreeMap::from([(STEP_METADATA_KEY.to_owned(), step.to_string())]);
        let name = name.to_owned();
        let saved = self
            .step(|tc| async move {
                tc.save_state_with(&name, SaveOptions::default().user_metadata(metadata))
                    .await
            })
            .await?;
        Ok(match saved {
            Stepped::Done(resp) => {
                let point = RestorePoint::new(resp.path, Some(step));
                self.last_good = Some(point.clone());
                Stepped::Done(point)
            }
            Stepped::Resumed(r) => Stepped::Resumed(r),
        })
    }

    /// Whether a step's error means the run is broken, and how it was found.
    async fn diagnose(&self, e: &crate::Error) -> Option<DetectionCause> {
        let run_id = self.client.model_id();
        let policy = self.executor.policy();
        if e.kind() == ErrorKind::SequenceBroken && policy.recover_sequence_broken {
            self.monitor.report(run_id, DetectionCause::SequenceBroken);
        } else if e.kind() == ErrorKind::RequestFailed
            && e.category() != Some(FailureCategory::User)
            && self.monitor.detected().is_none()
        {
            // A server-side failure may or may not be corruption: the run's record says.
            match self
                .executor
                .rest()
                .get_training_run(run_id, AccessScope::Owned)
                .await
            {
                Ok(run) if run.corrupted => {
                    self.monitor
                        .report(run_id, DetectionCause::FailedRequest(e.kind()));
                }
                Ok(_) => {}
                Err(check) => {
                    tracing::debug!(run = %run_id, error = %check, "recovery: run check failed");
                }
            }
        }
        self.monitor.detected()
    }

    async fn recover(&mut self, cause: DetectionCause) -> Result<Resume> {
        let old_run_id = self.client.model_id().to_owned();
        let restored = self
            .executor
            .restore(&old_run_id, self.last_good.as_ref())
            .await?;
        self.monitor.follow(restored.client.model_id());
        self.client = restored.client;
        self.last_good = Some(restored.point.clone());
        self.recoveries += 1;
        Ok(Resume {
            step: restored.point.step,
            checkpoint: restored.point.tinker_path,
            old_run_id,
            new_run_id: self.client.model_id().to_owned(),
            cause,
        })
    }
}
