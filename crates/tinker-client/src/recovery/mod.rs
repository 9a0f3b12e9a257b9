//! Recovery of broken training runs (tinkex's recovery monitor and executor).
//!
//! A run is broken when the server marks it `corrupted` (its REST record,
//! `GET training_runs/{id}`), or when its training client can no longer send (a lost
//! `seq_id`, [`ErrorKind::SequenceBroken`](crate::ErrorKind::SequenceBroken)). Recovery
//! loads the last good checkpoint, with its optimizer state, into a new training client of
//! the same session and lets the loop go on from the step saved with it.
//!
//! * [`RecoveryPolicy`]: attempts, backoff, polling, [`CheckpointStrategy`].
//! * [`RecoveryMonitor`]: polls a run's `corrupted` flag in the background.
//! * [`RecoveryExecutor`]: picks the checkpoint and restores it, with retries.
//! * [`RecoveryEvent`]s (`Detected`, `Restarting`, `Restored`, `Failed`) go to an
//!   [`EventSink`] callback and the `tracing` log.
//! * [`RecoveringTrainer`] puts them together around the user's loop.
//!
//! This module uses only the public API of the clients.

mod events;
mod executor;
mod monitor;
mod policy;
mod trainer;

pub use self::events::{DetectionCause, EventSink, RecoveryEvent};
pub use self::executor::{RecoveryExecutor, RestorePoint, Restored, STEP_METADATA_KEY};
pub use self::monitor::RecoveryMonitor;
pub use self::policy::{CheckpointStrategy, RecoveryPolicy};
pub use self::trainer::{RecoveringTrainer, Resume, Stepped};
