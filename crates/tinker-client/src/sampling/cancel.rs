//! Server-side cancellation of abandoned sampling futures (protocol §3.2): a drop guard
//! that queues the request id; the session's loop (`session::background::cancel_drain_loop`) sends
//! `cancel_future` in batches.

use std::sync::Arc;

use crate::session::Session;

/// Queues `request_id` for cancellation if dropped while armed: a sample's polling was
/// abandoned (the caller dropped its future, timed out, or stuck detection fired).
pub(crate) struct CancelOnDrop {
    holder: Arc<Session>,
    request_id: Option<String>,
}

impl CancelOnDrop {
    pub(crate) fn new(holder: Arc<Session>, request_id: String) -> Self {
        Self {
            holder,
            request_id: Some(request_id),
        }
    }

    /// The polling finished (with a result or an error): nothing to cancel.
    pub(crate) fn disarm(mut self) {
        self.request_id = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.request_id.take() {
            tracing::debug!(request_id = %id, "sample abandoned; queueing cancel_future");
            self.holder.enqueue_cancel(id);
        }
    }
}
