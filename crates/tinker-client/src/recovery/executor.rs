//! Restoring a broken run: pick the checkpoint, load it into a new training client, retry
//! with backoff, give up with a typed error.

use std::sync::Arc;

use tinker_types::{AccessScope, Checkpoint};

use super::events::{EventSink, RecoveryEvent};
use super::policy::{CheckpointStrategy, RecoveryPolicy};
use crate::error::{Error, ErrorKind, Result};
use crate::rest::RestClient;
use crate::service::ServiceClient;
use crate::training::TrainingClient;

/// The checkpoint metadata key under which [`RecoveringTrainer`](super::RecoveringTrainer)
/// stores the training step, so that a restored loop knows where to resume.
pub const STEP_METADATA_KEY: &str = "step";

/// A checkpoint a run can be restored from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestorePoint {
    /// Its `tinker://` path.
    pub tinker_path: String,
    /// The training step stored with it ([`STEP_METADATA_KEY`]), if any.
    pub step: Option<u64>,
}

impl RestorePoint {
    /// A restore point at `tinker_path`, saved after `step`.
    pub fn new(tinker_path: impl Into<String>, step: Option<u64>) -> Self {
        Self {
            tinker_path: tinker_path.into(),
            step,
        }
    }

    fn of(checkpoint: &Checkpoint) -> Self {
        let step = checkpoint
            .user_metadata
            .as_ref()
            .and_then(|m| m.get(STEP_METADATA_KEY))
            .and_then(|s| s.parse().ok());
        Self::new(checkpoint.tinker_path.clone(), step)
    }
}

/// A successful restore.
#[derive(Debug)]
#[non_exhaustive]
pub struct Restored {
    /// The new training client, holding the checkpoint's weights (and optimizer state).
    pub client: TrainingClient,
    /// Where it came from.
    pub point: RestorePoint,
    /// The attempt that succeeded (from 1).
    pub attempt: u32,
}

/// Restores broken runs into new training clients of the same session, by the policy.
#[derive(Debug, Clone)]
pub struct RecoveryExecutor {
    service: ServiceClient,
    rest: RestClient,
    policy: RecoveryPolicy,
    events: EventSink,
}

impl RecoveryExecutor {
    /// An executor that creates the new clients through `service`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an invalid policy, or a `service` whose session
    /// does not exist yet (it is created with its first training client).
    pub fn new(service: &ServiceClient, policy: RecoveryPolicy, events: EventSink) -> Result<Self> {
        policy.validate()?;
        Ok(Self {
            rest: service.session_rest_client().ok_or_else(|| {
                Error::invalid(
                    "the service client has no session yet: create its training client first",
                )
            })?,
            service: service.clone(),
            policy,
            events,
        })
    }

    /// The policy.
    pub fn policy(&self) -> &RecoveryPolicy {
        &self.policy
    }

    pub(crate) fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// The checkpoint the policy picks for `run_id`: with [`CheckpointStrategy::Latest`]
    /// the run's latest training checkpoint, else `fallback` (the checkpoint the run was
    /// restored from).
    ///
    /// # Errors
    /// REST errors; [`ErrorKind::RecoveryFailed`] when there is no checkpoint at all.
    pub async fn select_checkpoint(
        &self,
        run_id: &str,
        fallback: Option<&RestorePoint>,
    ) -> Result<RestorePoint> {
        if let CheckpointStrategy::Specific(path) = &self.policy.checkpoint {
            return Ok(RestorePoint::new(path.clone(), None));
        }
        let run = self
            .rest
            .get_training_run(run_id, AccessScope::Owned)
            .await?;
        match (run.last_checkpoint.as_ref(), fallback) {
            (Some(latest), _) => Ok(RestorePoint::of(latest)),
            (None, Some(fallback)) => Ok(fallback.clone()),
            (None, None) => Err(no_checkpoint(run_id)),
        }
    }

    /// Restores `run_id`: up to `max_attempts` times, picks the checkpoint and creates a new
    /// training client from it, waiting the policy's backoff after a failure. Emits
    /// `Restarting`, then `Restored` or `Failed`, per attempt.
    ///
    /// # Errors
    /// [`ErrorKind::RecoveryFailed`] when every attempt failed (its source is the last
    /// attempt's error) or the run has no checkpoint.
    pub async fn restore(&self, run_id: &str, fallback: Option<&RestorePoint>) -> Result<Restored> {
        let max = self.policy.max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.attempt(run_id, fallback, attempt).await {
                Ok(restored) => return Ok(restored),
                Err(e) if e.kind() == ErrorKind::RecoveryFailed => return Err(e),
                Err(e) => Arc::new(e),
            };
            let retry_in = (attempt < max).then(|| self.policy.delay_after(attempt));
            self.events.emit(RecoveryEvent::Failed {
                run_id: run_id.to_owned(),
                attempt,
                error: error.clone(),
                retry_in,
            });
            match retry_in {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    return Err(Error::new(
                        ErrorKind::RecoveryFailed,
                        format!(
                            "recovery of training run {run_id} gave up after {attempt} \
                             attempt(s); the last failed with: {error}"
                        ),
                    )
                    .with_source(SharedError(error)));
                }
            }
        }
    }

    async fn attempt(
        &self,
        run_id: &str,
        fallback: Option<&RestorePoint>,
        attempt: u32,
    ) -> Result<Restored> {
        let point = self.select_checkpoint(run_id, fallback).await?;
        self.events.emit(RecoveryEvent::Restarting {
            run_id: run_id.to_owned(),
            attempt,
            checkpoint: point.tinker_path.clone(),
        });
        let client = if self.policy.restore_optimizer {
            self.service
                .create_training_client_from_state_with_optimizer(&point.tinker_path)
                .await?
        } else {
            self.service
                .create_training_client_from_state(&point.tinker_path)
                .await?
        };
        self.events.emit(RecoveryEvent::Restored {
            old_run_id: run_id.to_owned(),
            new_run_id: client.model_id().to_owned(),
            checkpoint: point.tinker_path.clone(),
            step: point.step,
            attempt,
        });
        Ok(Restored {
            client,
            point,
            attempt,
        })
    }
}

fn no_checkpoint(run_id: &str) -> Error {
    Error::new(
        ErrorKind::RecoveryFailed,
        format!("training run {run_id} is broken and has no checkpoint to restore from"),
    )
}

/// The last attempt's error as the source of the final one (events keep their own copy).
#[derive(Debug)]
struct SharedError(Arc<Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}
