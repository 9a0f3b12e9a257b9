//! Observability of the clients: metrics and spans.
//!
//! # Metrics
//!
//! A [`ServiceClient`] and every client it creates (its session and its session-less
//! connection for REST calls share one registry) keep, per [`Operation`]:
//! - **calls** (call → result): how many were made, how many failed, client-level
//!   retries (the operation retry loop, sampling's retry handler), and the latency from
//!   the call to its result (p50/p95/p99);
//! - **HTTP requests** made for them (`retrieve_future` polls included, also counted as
//!   `polls`): count, failures, HTTP-layer retries, body bytes sent and received, and the
//!   latency of each request;
//!
//! and, for the whole session, how often waiting futures reported each queue state and
//! reason (each change of one future's queue state can also be heard as a
//! [`QueueStateChange`]). [`ServiceClient::metrics`] returns a [`MetricsSnapshot`];
//! [`ServiceClient::reset_metrics`] zeroes it. Recording is a few relaxed atomic adds
//! into fixed log-bucket histograms (no lock, no allocation), so it is always on; the
//! `metrics_overhead` bench measures it. [`TrainingClient::metrics`],
//! [`SamplingClient::metrics`] and [`RestClient::metrics`] give the same snapshot; clients
//! opened on their own ([`RestClient::connect`], sampler handles from another process)
//! keep a registry of their own, which their `metrics` returns.
//!
//! Every figure is also sent to the [`metrics`](https://docs.rs/metrics) facade, so any
//! installed recorder (`metrics-exporter-prometheus`, an OpenTelemetry bridge, …) sees it
//! with no code of ours; without a recorder this costs a no-op call. Names and labels:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `tinker_client_operations_total` | counter | `operation`, `status` (`ok`/`error`) |
//! | `tinker_client_operation_duration_seconds` | histogram | `operation`, `status` |
//! | `tinker_client_operation_retries_total` | counter | `operation` |
//! | `tinker_client_http_requests_total` | counter | `operation`, `status` (`2xx`…`5xx`, `none`) |
//! | `tinker_client_http_request_duration_seconds` | histogram | `operation`, `status` |
//! | `tinker_client_http_retries_total` | counter | `operation` |
//! | `tinker_client_bytes_sent_total` | counter | `operation` |
//! | `tinker_client_bytes_received_total` | counter | `operation` |
//! | `tinker_client_polls_total` | counter | `operation` |
//! | `tinker_client_queue_states_total` | counter | `state` |
//!
//! `operation` is [`Operation::as_str`] (`forward_backward`, `sample`, `rest`, …).
//!
//! # Spans
//!
//! Each public client call opens a `tracing` span named after its operation, with the
//! fields `operation`, `session_id`, `model_id`, `seq_id` and `request_id` (recorded once
//! known), then `status` and `error`; the transport's `tinker.request` span of each HTTP
//! call nests inside it. With `tracing-opentelemetry` these become OpenTelemetry spans
//! (see the `telemetry_live` example).

#[doc(hidden)]
pub mod bench_support;
mod histogram;
mod labels;
mod operation;
mod queue_change;
mod registry;
pub(crate) mod spans;

use std::time::Duration;

pub use self::operation::Operation;
pub(crate) use self::queue_change::{ChangeTracker, install as install_queue_change_observer};
pub use self::queue_change::{QueueStateChange, QueueStateChangeObserver};
pub(crate) use self::registry::{Registry, current};

use crate::{RestClient, SamplingClient, ServiceClient, TrainingClient};

/// Count, mean, percentiles and maximum of recorded latencies (all zero when empty).
/// Percentiles come from log-spaced buckets: at most 12.5 % above the exact value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// How many latencies were recorded.
    pub count: u64,
    /// Their mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The largest.
    pub max: Duration,
}

impl LatencySummary {
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The HTTP requests made for one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestMetrics {
    /// Requests sent (each counted once, whatever its HTTP-layer retries).
    pub count: u64,
    /// Requests that failed (an error status or no response).
    pub errors: u64,
    /// HTTP-layer retries of those requests.
    pub retries: u64,
    /// How many of the requests were `retrieve_future` polls.
    pub polls: u64,
    /// Request body bytes sent, every attempt counted.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Latency of each request, retries and backoff included.
    pub latency: LatencySummary,
}

/// The figures of one [`Operation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationMetrics {
    /// Which operation.
    pub operation: Operation,
    /// Calls made (a call still running counts here but not in `latency`).
    pub calls: u64,
    /// Calls that ended in an error.
    pub errors: u64,
    /// Client-level retries (operation retry loop, sampling retry handler).
    pub retries: u64,
    /// From the call to its result (finished calls only).
    pub latency: LatencySummary,
    /// The HTTP requests made for these calls.
    pub requests: RequestMetrics,
}

/// How often waiting futures reported one queue state with one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStateCount {
    /// `active`, `paused_capacity`, `paused_rate_limit`, or what a newer server sends.
    pub state: String,
    /// The server's reason, if it gave one.
    pub reason: Option<String>,
    /// How many polls reported it.
    pub count: u64,
}

/// The metrics of one session at one moment (see the [module docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// One entry per operation that saw any call or request, in [`Operation::ALL`] order.
    pub operations: Vec<OperationMetrics>,
    /// Queue states reported, by state then reason.
    pub queue_states: Vec<QueueStateCount>,
}

impl MetricsSnapshot {
    /// The figures of `op`, if it saw any activity.
    pub fn operation(&self, op: Operation) -> Option<&OperationMetrics> {
        self.operations.iter().find(|o| o.operation == op)
    }

    /// The HTTP figures summed over every operation (latency left empty).
    pub fn total_requests(&self) -> RequestMetrics {
        let mut t = RequestMetrics::default();
        for r in self.operations.iter().map(|o| &o.requests) {
            t.count += r.count;
            t.errors += r.errors;
            t.retries += r.retries;
            t.polls += r.polls;
            t.bytes_sent += r.bytes_sent;
            t.bytes_received += r.bytes_received;
        }
        t
    }
}

impl ServiceClient {
    /// The metrics of this session (every client it created included) so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics_registry().snapshot()
    }

    /// Zeroes this session's metrics.
    pub fn reset_metrics(&self) {
        self.metrics_registry().reset();
    }
}

impl TrainingClient {
    /// The metrics of this client's session (the same as its
    /// [`ServiceClient::metrics`]).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.holder().metrics.snapshot()
    }
}

impl SamplingClient {
    /// The metrics of this client's session: the same as its
    /// [`ServiceClient::metrics`] for a client the service created, this process's own
    /// figures for one made from a sampler handle.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.holder().metrics.snapshot()
    }
}

impl RestClient {
    /// The metrics of this client's connection: the service's (as
    /// [`ServiceClient::metrics`]) for a client it created; for one opened with
    /// [`RestClient::connect`], its own, from its first request after the start-up
    /// (`client/config`, `dynamic_config`).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.holder().metrics.snapshot()
    }
}
