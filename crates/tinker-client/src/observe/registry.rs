//! [`Registry`]: the per-session store of client metrics (atomic counters and
//! [`Histogram`]s, one slot per [`Operation`]), fed by the operation wrapper, the
//! transport's request observer and the futures poller; and its mirror into the `metrics`
//! facade (names in the [module docs](super)).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use tinker_transport::clock::Clock;
use tinker_transport::observe::{RequestObserver, RequestRecord};
use tinker_types::QueueState;
use tracing::Instrument;

use super::histogram::Histogram;
use super::labels;
use super::spans::{self, OpSpan};
use super::{MetricsSnapshot, Operation, OperationMetrics, QueueStateCount, RequestMetrics};
use crate::error::Result;

/// Distinct (state, reason) pairs kept; further reasons count under [`OTHER_REASON`].
const MAX_QUEUE_KEYS: usize = 64;
/// The reason that further distinct reasons are counted under.
const OTHER_REASON: &str = "(other reasons)";

tokio::task_local! {
    /// The operation (and its span) the current task works for.
    static CURRENT: OpSpan;
}

/// The operation the current task works for, if any.
pub(crate) fn current() -> Option<Operation> {
    CURRENT.try_with(|c| c.operation).ok()
}

/// Runs `f` on the current operation's span, if there is one.
pub(crate) fn with_current_span(f: impl FnOnce(&tracing::Span)) {
    let _ = CURRENT.try_with(|c| f(&c.span));
}

#[derive(Debug, Default)]
struct OpSlot {
    calls: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    latency: Histogram,
    requests: AtomicU64,
    request_errors: AtomicU64,
    request_retries: AtomicU64,
    polls: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    request_latency: Histogram,
}

impl OpSlot {
    fn reset(&self) {
        for c in [
            &self.calls,
            &self.errors,
            &self.retries,
            &self.requests,
            &self.request_errors,
            &self.request_retries,
            &self.polls,
            &self.bytes_sent,
            &self.bytes_received,
        ] {
            c.store(0, Relaxed);
        }
        self.latency.reset();
        self.request_latency.reset();
    }
}

/// The metrics of one session (shared by all its clients). Cheap to record into.
pub(crate) struct Registry {
    slots: Box<[OpSlot]>,
    queue: Mutex<BTreeMap<(String, Option<String>), u64>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn status_label(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// The class of an HTTP status (`2xx` …), or `none` without a response: a label of few
/// values.
fn http_status_label(status: Option<http::StatusCode>) -> &'static str {
    match status.map(|s| s.as_u16() / 100) {
        Some(1) => "1xx",
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "none",
    }
}

impl Registry {
    /// An empty registry timing with `clock`.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            slots: Operation::ALL.iter().map(|_| OpSlot::default()).collect(),
            queue: Mutex::new(BTreeMap::new()),
            clock,
        })
    }

    fn slot(&self, op: Operation) -> &OpSlot {
        &self.slots[op.index()]
    }

    /// The transport observer that records every HTTP call of the session: under the
    /// task's current operation, else under the operation its route names.
    pub(crate) fn request_observer(self: &Arc<Self>) -> RequestObserver {
        let registry = Arc::downgrade(self);
        Arc::new(move |r: &RequestRecord<'_>| {
            if let Some(registry) = registry.upgrade() {
                registry.record_request(r);
            }
        })
    }

    fn record_request(&self, r: &RequestRecord<'_>) {
        let poll = r.path.ends_with("/retrieve_future") || r.path.ends_with("/retrieve_futures");
        let op = current().unwrap_or_else(|| Operation::classify(r.path, r.sdk_method));
        let slot = self.slot(op);
        slot.requests.fetch_add(1, Relaxed);
        if !r.ok {
            slot.request_errors.fetch_add(1, Relaxed);
        }
        if poll {
            slot.polls.fetch_add(1, Relaxed);
        }
        slot.request_retries
            .fetch_add(u64::from(r.retries), Relaxed);
        slot.bytes_sent.fetch_add(r.bytes_sent, Relaxed);
        slot.bytes_received.fetch_add(r.bytes_received, Relaxed);
        slot.request_latency.record(r.elapsed);

        let status = http_status_label(r.status);
        labels::count(
            &labels::op_status_key("tinker_client_http_requests_total", op, status),
            1,
        );
        labels::record(
            &labels::op_status_key("tinker_client_http_request_duration_seconds", op, status),
            r.elapsed.as_secs_f64(),
        );
        if r.retries > 0 {
            labels::count(
                &labels::op_key("tinker_client_http_retries_total", op),
                u64::from(r.retries),
            );
        }
        labels::count(
            &labels::op_key("tinker_client_bytes_sent_total", op),
            r.bytes_sent,
        );
        labels::count(
            &labels::op_key("tinker_client_bytes_received_total", op),
            r.bytes_received,
        );
        if poll {
            labels::count(&labels::op_key("tinker_client_polls_total", op), 1);
        }
    }

    /// Wraps one client call: a span named after `op` (created now, so it is a child of
    /// the caller's span), the call counted, its latency from now to its result timed,
    /// and everything inside attributed to `op`.
    pub(crate) fn instrument<T, F: Future<Output = Result<T>>>(
        self: &Arc<Self>,
        op: Operation,
        session_id: Option<&str>,
        fut: F,
    ) -> impl Future<Output = Result<T>> + use<T, F> {
        let span = spans::operation_span(op, session_id);
        self.instrument_in(
            OpSpan {
                operation: op,
                span,
            },
            fut,
        )
    }

    /// [`Registry::instrument`] for a REST call, whose span also names the SDK method.
    pub(crate) fn instrument_rest<T, F: Future<Output = Result<T>>>(
        self: &Arc<Self>,
        op: Operation,
        sdk_method: &str,
        session_id: Option<&str>,
        fut: F,
    ) -> impl Future<Output = Result<T>> + use<T, F> {
        let span = spans::rest_span(op, sdk_method, session_id);
        self.instrument_in(
            OpSpan {
                operation: op,
                span,
            },
            fut,
        )
    }

    fn instrument_in<T, F: Future<Output = Result<T>>>(
        self: &Arc<Self>,
        scope: OpSpan,
        fut: F,
    ) -> impl Future<Output = Result<T>> + use<T, F> {
        let started = self.clock.now();
        let registry = self.clone();
        let op = scope.operation;
        let span = scope.span.clone();
        self.slot(op).calls.fetch_add(1, Relaxed);
        // A combinator, not an `async` block awaiting `fut`: the block would hold `fut`
        // twice (the captured value and the awaited one, rust-lang/rust#62958), doubling
        // the state every operation in flight keeps (a sample's task: 15 KB instead of 7).
        CURRENT
            .scope(scope, fut)
            .instrument(span.clone())
            .map(move |result| {
                let elapsed = registry.clock.now() - started;
                registry.finish(op, result.is_ok(), elapsed);
                span.record("status", status_label(result.is_ok()));
                if let Err(e) = &result {
                    span.record("error", tracing::field::display(e));
                }
                result
            })
    }

    pub(super) fn finish(&self, op: Operation, ok: bool, elapsed: Duration) {
        let slot = self.slot(op);
        if !ok {
            slot.errors.fetch_add(1, Relaxed);
        }
        slot.latency.record(elapsed);
        let status = status_label(ok);
        labels::count(
            &labels::op_status_key("tinker_client_operations_total", op, status),
            1,
        );
        labels::record(
            &labels::op_status_key("tinker_client_operation_duration_seconds", op, status),
            elapsed.as_secs_f64(),
        );
    }

    /// Records into the call-latency histogram of `op` only (the bench's floor).
    pub(super) fn record_latency_only(&self, op: Operation, elapsed: Duration) {
        self.slot(op).latency.record(elapsed);
    }

    /// Counts one retry of a client-level retry loop (the operation retry loop, the
    /// sampling retry handler) under the current operation, else under `fallback`.
    pub(crate) fn retried(&self, fallback: Operation) {
        let op = current().unwrap_or(fallback);
        self.slot(op).retries.fetch_add(1, Relaxed);
        metrics::counter!("tinker_client_operation_retries_total", "operation" => op.as_str())
            .increment(1);
    }

    /// Counts one queue state a future reported while waiting.
    pub(crate) fn queue_state(&self, state: &QueueState, reason: Option<&str>) {
        let state = state.as_str();
        metrics::counter!("tinker_client_queue_states_total", "state" => state.to_owned())
            .increment(1);
        let mut map = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (state.to_owned(), reason.map(str::to_owned));
        let key = if map.contains_key(&key) || map.len() < MAX_QUEUE_KEYS {
            key
        } else {
            (key.0, Some(OTHER_REASON.to_owned()))
        };
        *map.entry(key).or_default() += 1;
    }

    /// A copy of every figure; operations with no activity are left out.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let operations = Operation::ALL
            .iter()
            .zip(self.slots.iter())
            .filter(|(_, s)| s.calls.load(Relaxed) > 0 || s.requests.load(Relaxed) > 0)
            .map(|(op, s)| OperationMetrics {
                operation: *op,
                calls: s.calls.load(Relaxed),
                errors: s.errors.load(Relaxed),
                retries: s.retries.load(Relaxed),
                latency: s.latency.summary(),
                requests: RequestMetrics {
                    count: s.requests.load(Relaxed),
                    errors: s.request_errors.load(Relaxed),
                    retries: s.request_retries.load(Relaxed),
                    polls: s.polls.load(Relaxed),
                    bytes_sent: s.bytes_sent.load(Relaxed),
                    bytes_received: s.bytes_received.load(Relaxed),
                    latency: s.request_latency.summary(),
                },
            })
            .collect();
        let queue_states = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((state, reason), count)| QueueStateCount {
                state: state.clone(),
                reason: reason.clone(),
                count: *count,
            })
            .collect();
        MetricsSnapshot {
            operations,
            queue_states,
        }
    }

    /// Zeroes every figure (not atomically as a whole: records made meanwhile may survive).
    pub(crate) fn reset(&self) {
        for s in self.slots.iter() {
            s.reset();
        }
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
