//! Server-side cancellation of abandoned sampling futures (protocol §3.2): a drop guard
//! that queues the request id; the holder's loop (`holder::cancel_drain_loop`) sends
//! `cancel_future` in batches.

use std::sync::Arc;

use crate::holder::Holder;

/// Queues `request_id` for cancellation if dropped while armed: a sample's polling was
/// abandoned (the caller dropped its future, timed out, or stuck detection fired).
pub(crate) struct CancelOnDrop {
    holder: Arc<Holder>,
    request_id: Option<String>,
}

impl CancelOnDrop {
    pub(crate) fn new(holder: Arc<Holder>, request_id: String) -> Self {
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
