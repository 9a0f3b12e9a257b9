//! [`TelemetrySink`]: where batches go. The SDK client implements it with its transport
//! (`POST /api/v1/telemetry`, 5 s timeout); this crate never does I/O itself.

use std::future::Future;
use std::pin::Pin;

/// A boxed error from a sink.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The boxed future a [`TelemetrySink`] returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// Sends one batch: the JSON body of `POST /api/v1/telemetry`
/// (`{"events", "platform", "sdk_version", "session_id", "process_uuid"}`).
///
/// An error drops the batch (it is counted, never retried here: the transport already
/// retries transient failures). Any `Fn(Vec<u8>) -> impl Future<Output = Result<(), E>>`
/// closure is a sink.
pub trait TelemetrySink: Send + Sync + 'static {
    /// Sends `batch_json`.
    fn send(&self, batch_json: Vec<u8>) -> SinkFuture<'_>;
}

impl<F, Fut, E> TelemetrySink for F
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn send(&self, batch_json: Vec<u8>) -> SinkFuture<'_> {
        let fut = self(batch_json);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
