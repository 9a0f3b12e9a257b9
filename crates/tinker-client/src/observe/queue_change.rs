//! Queue-state change events: what tinkex sends as `[:tinkex, :queue, :state_change]`. A
//! listener set with
//! [`ServiceClientBuilder::queue_state_change_observer`](crate::ServiceClientBuilder::queue_state_change_observer)
//! hears, for each waiting future, the queue states the server reports, once per change
//! of `(state, reason)`, with the request id and the operation; unlike the plain
//! [`QueueStateObserver`](crate::QueueStateObserver), which hears every report without
//! saying whose.

use std::sync::{Arc, OnceLock};

use tinker_types::QueueState;

use super::Operation;
use crate::session::Session;

/// One change of a waiting request's queue state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStateChange {
    /// The new state (`active`, `paused_capacity`, `paused_rate_limit`, or what a newer
    /// server sends).
    pub state: QueueState,
    /// The server's reason, if it gave one.
    pub reason: Option<String>,
    /// The future that waits (the id `retrieve_future` polls).
    pub request_id: String,
    /// The operation it belongs to ([`Operation::RetrieveFuture`] when polled outside one).
    pub operation: Operation,
}

/// The callback of [`QueueStateChange`]s; it runs on the polling task, so it should be
/// quick.
pub type QueueStateChangeObserver = Arc<dyn Fn(&QueueStateChange) + Send + Sync>;

/// The session's listener (a session extension), set once when the session starts.
#[derive(Default)]
pub(crate) struct ChangeListener(OnceLock<QueueStateChangeObserver>);

/// Sets `session`'s listener (the first one set stays).
pub(crate) fn install(session: &Session, listener: QueueStateChangeObserver) {
    let _ = session
        .extensions
        .get_or_default::<ChangeListener>()
        .0
        .set(listener);
}

/// Tells the listener of one future's queue states about each change.
pub(crate) struct ChangeTracker {
    listener: Option<QueueStateChangeObserver>,
    last: Option<(QueueState, Option<String>)>,
}

impl ChangeTracker {
    /// A tracker for one future of `session`.
    pub(crate) fn new(session: &Session) -> Self {
        Self {
            listener: session
                .extensions
                .get_or_default::<ChangeListener>()
                .0
                .get()
                .cloned(),
            last: None,
        }
    }

    /// Records a report; calls the listener if `(state, reason)` differs from the last.
    pub(crate) fn report(&mut self, request_id: &str, state: &QueueState, reason: Option<&str>) {
        let Some(listener) = &self.listener else {
            return;
        };
        if self
            .last
            .as_ref()
            .is_some_and(|(s, r)| s == state && r.as_deref() == reason)
        {
            return;
        }
        self.last = Some((state.clone(), reason.map(str::to_owned)));
        listener(&QueueStateChange {
            state: state.clone(),
            reason: reason.map(str::to_owned),
            request_id: request_id.to_owned(),
            operation: super::current().unwrap_or(Operation::RetrieveFuture),
        });
    }
}
