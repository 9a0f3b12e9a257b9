//! The default queue-state warning (the SDK's `QueueStateLogger` and the sampling
//! client's own): when the server says a request's queue is paused, warn through
//! `tracing` at most once a minute, with the server's reason or the SDK's stock one.
//! Training and model creation wait out a 15-minute grace period first (it can take a
//! while to make room); sampling warns at once. On by default;
//! [`ServiceClientBuilder::queue_state_warnings`](crate::ServiceClientBuilder::queue_state_warnings)
//! turns it off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tinker_transport::clock::Clock;
use tinker_types::QueueState;
use tokio::time::Instant;

use crate::future::QueueStateObserver;
use crate::session::Session;

/// A pause is reported only once it has lasted this long (training, model creation).
const PAUSE_GRACE_PERIOD: Duration = Duration::from_secs(15 * 60);
/// At most one warning per this interval and logger.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What is waiting in the queue; decides the message and the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// `create_model` and friends ("Model creation for <base model> is paused").
    ModelCreation,
    /// Training requests of one model ("Training for <model id> is paused").
    Training,
    /// Samples of one sampling session ("Sampling is paused for sampler <id>").
    Sampling,
}

#[derive(Debug, Default)]
struct LoggerState {
    last_state: Option<QueueState>,
    state_since: Option<Instant>,
    last_logged: Option<Instant>,
}

/// One logger per waiting thing (a model, a sampler), shared by its requests.
#[derive(Debug)]
pub(crate) struct QueueStateLogger {
    what: Queued,
    identifier: String,
    clock: Arc<dyn Clock>,
    state: Mutex<LoggerState>,
}

impl QueueStateLogger {
    pub(crate) fn new(what: Queued, identifier: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            what,
            identifier: identifier.into(),
            clock,
            state: Mutex::new(LoggerState::default()),
        }
    }

    /// The warning to emit for this report, if any (and records that it was emitted).
    fn message(&self, state: &QueueState, reason: Option<&str>) -> Option<String> {
        let now = self.clock.now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.last_state.as_ref() != Some(state) {
            s.last_state = Some(state.clone());
            s.state_since = Some(now);
        }
        if *state == QueueState::Active {
            return None;
        }
        if self.what != Queued::Sampling
            && s.state_since
                .is_some_and(|since| now - since < PAUSE_GRACE_PERIOD)
        {
            return None;
        }
        if s.last_logged.is_some_and(|at| now - at < LOG_INTERVAL) {
            return None;
        }
        s.last_logged = Some(now);
        drop(s);
        let reason = match reason.filter(|r| !r.is_empty()) {
            Some(r) => r.to_owned(),
            None => match (state, self.what) {
                (QueueState::PausedRateLimit, Queued::Sampling) => {
                    "concurrent sampler weights limit hit".to_owned()
                }
                (QueueState::PausedRateLimit, _) => {
                    "concurrent training clients rate limit hit".to_owned()
                }
                (QueueState::PausedCapacity, _) => {
                    "Tinker backend is running short on capacity, please wait".to_owned()
                }
                _ => "unknown".to_owned(),
            },
        };
        Some(match self.what {
            Queued::ModelCreation => format!(
                "Model creation for {} is paused. Reason: {reason}.",
                self.identifier
            ),
            Queued::Training => {
                format!(
                    "Training for {} is paused. Reason: {reason}.",
                    self.identifier
                )
            }
            Queued::Sampling => format!(
                "Sampling is paused for sampler {}. Reason: {reason}",
                self.identifier
            ),
        })
    }

    fn observe(&self, state: &QueueState, reason: Option<&str>) {
        if let Some(message) = self.message(state, reason) {
            tracing::warn!(target: "tinker::queue", queue_state = ?state, "{message}");
        }
    }
}

/// The session's switch (a session extension): warnings are on unless turned off.
#[derive(Debug, Default)]
pub(crate) struct QueueWarningsOff(AtomicBool);

/// Turns the default warning off for every client of `session`.
pub(crate) fn silence(session: &Session) {
    session
        .extensions
        .get_or_default::<QueueWarningsOff>()
        .0
        .store(true, Ordering::Relaxed);
}

/// The observer a request gets: the caller's (if any), plus the session's default
/// warning unless it was turned off.
pub(crate) fn observer_for(
    session: &Session,
    user: Option<QueueStateObserver>,
    what: Queued,
    identifier: &str,
) -> Option<QueueStateObserver> {
    let off = session
        .extensions
        .get_or_default::<QueueWarningsOff>()
        .0
        .load(Ordering::Relaxed);
    let clock = session.transport.runtime().clock.clone();
    with_default_warning(user, !off, what, identifier, clock)
}

/// `user` plus, when `warn`, a fresh [`QueueStateLogger`].
fn with_default_warning(
    user: Option<QueueStateObserver>,
    warn: bool,
    what: Queued,
    identifier: &str,
    clock: Arc<dyn Clock>,
) -> Option<QueueStateObserver> {
    if !warn {
        return user;
    }
    let logger = QueueStateLogger::new(what, identifier, clock);
    Some(Arc::new(move |state: &QueueState, reason: Option<&str>| {
        logger.observe(state, reason);
        if let Some(user) = &user {
            user(state, reason);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinker_transport::clock::TokioClock;

    fn logger(what: Queued) -> QueueStateLogger {
        QueueStateLogger::new(what, "m-1", Arc::new(TokioClock::starting_at(0.0)))
    }

    #[tokio::test(start_paused = true)]
    async fn sampling_warns_at_once_then_once_a_minute() {
        let l = logger(Queued::Sampling);
        assert_eq!(l.message(&QueueState::Active, None), None);
        assert_eq!(
            l.message(&QueueState::PausedRateLimit, None).as_deref(),
            Some(
                "Sampling is paused for sampler m-1. Reason: concurrent sampler weights limit hit"
            )
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(l.message(&QueueState::PausedCapacity, Some("x")), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            l.message(&QueueState::PausedCapacity, Some("maintenance"))
                .as_deref(),
            Some("Sampling is paused for sampler m-1. Reason: maintenance")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn training_waits_out_the_grace_period_of_one_state() {
        let l = logger(Queued::Training);
        assert_eq!(l.message(&QueueState::PausedCapacity, None), None);
        tokio::time::advance(Duration::from_secs(14 * 60)).await;
        assert_eq!(l.message(&QueueState::PausedCapacity, None), None);
        // A change of state restarts the grace period.
        assert_eq!(l.message(&QueueState::PausedRateLimit, None), None);
        tokio::time::advance(Duration::from_secs(15 * 60)).await;
        assert_eq!(
            l.message(&QueueState::PausedRateLimit, None).as_deref(),
            Some("Training for m-1 is paused. Reason: concurrent training clients rate limit hit.")
        );
        let c = logger(Queued::ModelCreation);
        assert_eq!(c.message(&QueueState::PausedCapacity, Some("")), None);
        tokio::time::advance(Duration::from_secs(15 * 60)).await;
        assert_eq!(
            c.message(&QueueState::PausedCapacity, Some("")).as_deref(),
            Some(
                "Model creation for m-1 is paused. Reason: Tinker backend is running short on capacity, please wait."
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_callers_observer_still_runs_and_warnings_can_be_off() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let user: QueueStateObserver = Arc::new(move |s: &QueueState, r: Option<&str>| {
            record
                .lock()
                .unwrap()
                .push((s.clone(), r.map(str::to_owned)));
        });
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(0.0));
        let both = with_default_warning(
            Some(user.clone()),
            true,
            Queued::Sampling,
            "s",
            clock.clone(),
        )
        .unwrap();
        both(&QueueState::PausedCapacity, Some("r"));
        assert_eq!(seen.lock().unwrap().len(), 1);
        let off =
            with_default_warning(Some(user), false, Queued::Sampling, "s", clock.clone()).unwrap();
        off(&QueueState::Active, None);
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert!(with_default_warning(None, false, Queued::Training, "m", clock).is_none());
    }
}
