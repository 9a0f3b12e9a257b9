//! What recovery reports while it works, and where the reports go.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// Why a run was found broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DetectionCause {
    /// The monitor read `corrupted: true` in the run's REST record.
    CorruptedFlag,
    /// A request failed (of this kind) and the run's REST record then said `corrupted`.
    FailedRequest(ErrorKind),
    /// The training client lost a `seq_id` ([`ErrorKind::SequenceBroken`]).
    SequenceBroken,
}

/// One step of a recovery, in the order they happen: `Detected`, then per attempt
/// `Restarting` followed by `Restored` or `Failed`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RecoveryEvent {
    /// The run cannot go on.
    Detected {
        /// The broken run (= model id).
        run_id: String,
        /// How it was found.
        cause: DetectionCause,
    },
    /// A restore attempt starts.
    Restarting {
        /// The broken run.
        run_id: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// The `tinker://` checkpoint being loaded.
        checkpoint: String,
    },
    /// A new training client holds the checkpoint's state.
    Restored {
        /// The broken run.
        old_run_id: String,
        /// The new run (its model id).
        new_run_id: String,
        /// The checkpoint it was loaded from.
        checkpoint: String,
        /// The training step stored with the checkpoint, if any.
        step: Option<u64>,
        /// Which attempt succeeded.
        attempt: u32,
    },
    /// An attempt failed.
    Failed {
        /// The broken run.
        run_id: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// Why it failed.
        error: Arc<Error>,
        /// The wait before the next attempt; `None` when recovery gives up.
        retry_in: Option<Duration>,
    },
}

/// The callback an [`EventSink`] calls with each event.
pub(crate) type EventCallback = Arc<dyn Fn(&RecoveryEvent) + Send + Sync>;

/// A callback that receives every [`RecoveryEvent`]; keep it quick (forward to a channel
/// for anything slow).
#[derive(Clone)]
pub struct EventSink(Option<EventCallback>);

impl EventSink {
    /// Events go to `f`.
    pub fn new(f: impl Fn(&RecoveryEvent) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Events go only to the `tracing` log.
    pub fn none() -> Self {
        Self(None)
    }

    /// Logs the event and hands it to the callback.
    pub(crate) fn emit(&self, event: RecoveryEvent) {
        match &event {
            RecoveryEvent::Failed { .. } => tracing::warn!(?event, "recovery"),
            _ => tracing::info!(?event, "recovery"),
        }
        if let Some(f) = &self.0 {
            f(&event);
        }
    }
}

impl Default for EventSink {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "EventSink(callback)"
        } else {
            "EventSink(none)"
        })
    }
}
