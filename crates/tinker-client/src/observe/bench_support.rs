//! Entry points for the `metrics_overhead` bench only (not part of the API): the
//! recording paths of a session's metrics registry without a server.

use std::sync::Arc;
use std::time::Duration;

use tinker_transport::Transport;
use tinker_transport::clock::SystemClock;

use super::{Operation, Registry};

/// A registry to record into.
#[derive(Debug)]
pub struct RecordBench {
    registry: Arc<Registry>,
}

impl Default for RecordBench {
    fn default() -> Self {
        Self {
            registry: Registry::new(Arc::new(SystemClock)),
        }
    }
}

impl RecordBench {
    /// One latency into one histogram.
    pub fn histogram(&self, d: Duration) {
        self.registry.record_latency_only(Operation::Sample, d);
    }

    /// A finished call of `forward_backward` (counters, histogram, facade).
    pub fn finish(&self, d: Duration) {
        self.registry.finish(Operation::ForwardBackward, true, d);
    }

    /// `transport` reporting its calls to this registry.
    pub fn observe(&self, transport: &Transport) -> Transport {
        transport.with_request_observer(self.registry.request_observer())
    }

    /// A whole operation wrapper (span, task-local scope, timing) around a ready future.
    pub async fn wrap_ready(&self) -> crate::Result<()> {
        self.registry
            .instrument(Operation::OptimStep, Some("s"), async { Ok(()) })
            .await
    }

    /// Requests counted so far.
    pub fn requests(&self) -> u64 {
        self.registry.snapshot().total_requests().count
    }
}
