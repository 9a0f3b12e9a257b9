//! Watching a run for corruption: a background task polls its REST record.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tinker_types::AccessScope;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::events::{DetectionCause, EventSink, RecoveryEvent};
use crate::rest::RestClient;

/// The watched run and whether it was found broken.
#[derive(Debug)]
struct Watched {
    run_id: String,
    detected: Option<DetectionCause>,
}

#[derive(Debug)]
struct Shared {
    watched: Mutex<Watched>,
    changed: Notify,
    events: EventSink,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Polls one training run's REST record (`GET training_runs/{id}`) every interval and
/// reports it once when it reads `corrupted: true` (event
/// [`RecoveryEvent::Detected`] with [`DetectionCause::CorruptedFlag`]). A failed poll is
/// logged and the run stays watched. The task stops when the monitor is dropped.
#[derive(Debug)]
pub struct RecoveryMonitor {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl RecoveryMonitor {
    /// Watches `run_id`, polling every `interval` through `rest` (no polling when
    /// `interval` is zero: detection then comes only from [`RecoveryMonitor::report`]).
    /// Needs a tokio runtime.
    pub fn start(rest: RestClient, run_id: &str, interval: Duration, events: EventSink) -> Self {
        let shared = Arc::new(Shared {
            watched: Mutex::new(Watched {
                run_id: run_id.to_owned(),
                detected: None,
            }),
            changed: Notify::new(),
            events,
        });
        let task =
            (!interval.is_zero()).then(|| tokio::spawn(poll(rest, shared.clone(), interval)));
        Self { shared, task }
    }

    /// The watched run.
    pub fn run_id(&self) -> String {
        self.shared.lock().run_id.clone()
    }

    /// How the watched run was found broken, if it was.
    pub fn detected(&self) -> Option<DetectionCause> {
        self.shared.lock().detected
    }

    /// Marks `run_id` broken (if it is the watched run and not already marked) and emits
    /// `Detected`. Returns whether this call marked it.
    pub fn report(&self, run_id: &str, cause: DetectionCause) -> bool {
        self.shared.report(run_id, cause)
    }

    /// Watches another run from now on (the one a recovery created).
    pub fn follow(&self, run_id: &str) {
        let mut w = self.shared.lock();
        w.run_id = run_id.to_owned();
        w.detected = None;
    }

    /// Waits until the watched run is found broken.
    pub async fn wait_detected(&self) -> DetectionCause {
        loop {
            let notified = self.shared.changed.notified();
            if let Some(cause) = self.detected() {
                return cause;
            }
            notified.await;
        }
    }
}

impl Shared {
    fn report(&self, run_id: &str, cause: DetectionCause) -> bool {
        let mut w = self.lock();
        if w.run_id != run_id || w.detected.is_some() {
            return false;
        }
        w.detected = Some(cause);
        drop(w);
        self.events.emit(RecoveryEvent::Detected {
            run_id: run_id.to_owned(),
            cause,
        });
        self.changed.notify_waiters();
        true
    }
}

impl Drop for RecoveryMonitor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn poll(rest: RestClient, shared: Arc<Shared>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let (run_id, done) = {
            let w = shared.lock();
            (w.run_id.clone(), w.detected.is_some())
        };
        if done {
            continue;
        }
        match rest.get_training_run(&run_id, AccessScope::Owned).await {
            Ok(run) if run.corrupted => {
                shared.report(&run_id, DetectionCause::CorruptedFlag);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(run = %run_id, error = %e, "recovery monitor: poll failed"),
        }
    }
}
