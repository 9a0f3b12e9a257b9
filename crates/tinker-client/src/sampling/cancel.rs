//! Server-side cancellation of abandoned sampling futures (protocol §3.2): a drop guard
//! that queues the request id, and the holder's loop that sends `cancel_future` in batches.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use tinker_transport::RequestSpec;
use tinker_types::CancelFutureRequest;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::holder::Holder;

/// HTTP timeout of one `cancel_future` call.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Drains the holder's cancel queue: waits for one id, takes up to
/// `sample_cancel_max_batch_size` more that are already queued, sends the batch
/// concurrently. Ends when the holder is gone.
pub(crate) async fn drain_loop(holder: Weak<Holder>, mut queue: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = queue.recv().await {
        let Some(h) = holder.upgrade() else { return };
        let max = usize::try_from(h.dynamic_config().sample_cancel_max_batch_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut batch = vec![first];
        while batch.len() < max {
            match queue.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        join_all(batch.into_iter().map(|id| cancel_one(&h, id))).await;
    }
}

async fn cancel_one(holder: &Holder, request_id: String) {
    if let Err(e) = send_cancel(holder, &request_id).await {
        // The server also stops orphaned work when heartbeats lapse; never re-queue.
        tracing::error!(request_id = %request_id, error = %e, "failed to cancel sampling request");
    }
}

async fn send_cancel(holder: &Holder, request_id: &str) -> Result<()> {
    let body = CancelFutureRequest {
        request_id: request_id.to_owned(),
    };
    let bytes = tinker_types::json::to_vec(&body)?;
    holder
        .send_retrying_quiet("cancel_future", || {
            Ok(RequestSpec::post("/api/v1/cancel_future")
                .with_body(bytes.clone(), tinker_transport::APPLICATION_JSON)
                .with_max_retries(0)
                .with_timeout(CANCEL_TIMEOUT))
        })
        .await?;
    Ok(())
}
