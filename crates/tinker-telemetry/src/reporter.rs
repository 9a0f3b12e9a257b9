//! [`Telemetry`]: the event reporter of one session holder (docs/protocol.md §6.12).
//!
//! Events are queued (at most [`MAX_QUEUE_SIZE`]; excess events are dropped and counted)
//! and sent by a background task in batches of at most [`MAX_BATCH_SIZE`] every
//! [`FLUSH_INTERVAL`], or at once when an error is logged. [`Telemetry::close`] waits up to
//! [`DRAIN_TIMEOUT`] for the queue to drain. A batch the sink fails to send is dropped and
//! counted.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use snafu::Snafu;
use tinker_transport::clock::{Clock, SystemClock};
use tinker_types::{Severity, TelemetryEvent, TelemetrySendRequest};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error_report::ErrorReport;
use crate::events::EventFactory;
use crate::platform::{platform_name, process_uuid};
use crate::sink::TelemetrySink;

/// The SDK version reported in every batch: the official SDK release this port matches.
pub const SDK_VERSION: &str = "0.38.0";
/// Events per batch, at most.
pub const MAX_BATCH_SIZE: usize = 100;
/// Queued events, at most; events beyond are dropped.
pub const MAX_QUEUE_SIZE: usize = 10_000;
/// How often the queue is flushed.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// How long [`Telemetry::close`] and fatal errors wait for the queue to drain.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one batch may take to send before it is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Tunables of a [`Telemetry`]; the defaults are the official SDK's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TelemetryOptions {
    /// `sdk_version` of the batches ([`SDK_VERSION`]).
    pub sdk_version: String,
    /// `platform` of the batches (the OS name, e.g. `Linux`).
    pub platform: String,
    /// [`FLUSH_INTERVAL`].
    pub flush_interval: Duration,
    /// [`MAX_QUEUE_SIZE`].
    pub max_queue_size: usize,
    /// [`MAX_BATCH_SIZE`].
    pub max_batch_size: usize,
    /// [`SEND_TIMEOUT`].
    pub send_timeout: Duration,
    /// [`DRAIN_TIMEOUT`].
    pub drain_timeout: Duration,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        Self {
            sdk_version: SDK_VERSION.to_owned(),
            platform: platform_name().to_owned(),
            flush_interval: FLUSH_INTERVAL,
            max_queue_size: MAX_QUEUE_SIZE,
            max_batch_size: MAX_BATCH_SIZE,
            send_timeout: SEND_TIMEOUT,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

/// Why a [`Telemetry`] could not start.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The reporter's background task needs a tokio runtime.
    #[snafu(display("telemetry must be started inside a tokio runtime"))]
    NoRuntime,
}

/// Counters of a [`Telemetry`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TelemetryStats {
    /// Events waiting in the queue.
    pub queued: usize,
    /// Events accepted into the queue so far.
    pub logged: u64,
    /// Events in batches the sink accepted.
    pub sent: u64,
    /// Events dropped because the queue was full (or the reporter closed).
    pub dropped_queue_full: u64,
    /// Events dropped because their batch failed to send.
    pub dropped_send_failed: u64,
    /// Batches the sink accepted.
    pub batches_sent: u64,
    /// Batches that failed.
    pub batches_failed: u64,
}

struct Shared {
    session_id: String,
    sessionless: bool,
    options: TelemetryOptions,
    factory: EventFactory,
    sink: Box<dyn TelemetrySink>,
    queue: Mutex<VecDeque<TelemetryEvent>>,
    /// Events accepted so far (only changed under the queue lock).
    pushed: AtomicU64,
    /// Events taken out of the queue and sent or dropped.
    flushed: watch::Sender<u64>,
    trigger: Notify,
    closed: AtomicBool,
    sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_send_failed: AtomicU64,
    batches_sent: AtomicU64,
    batches_failed: AtomicU64,
}

struct Handle {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// The telemetry reporter of one session (or of a session-less client). Cloning shares it;
/// the background task stops when the last clone is dropped or on [`close`](Self::close).
#[derive(Clone)]
pub struct Telemetry {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("session_id", &self.handle.shared.session_id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Telemetry {
    /// Starts a reporter for `session_id` (or, with `None`, a session-less one whose batches
    /// carry `sessionless-<uuid4>` and which emits no session start/end events), sending
    /// through `sink`. A session reporter queues `SESSION_START` at once.
    ///
    /// Must be called inside a tokio runtime (it spawns the flush task).
    pub fn start(
        session_id: Option<String>,
        sink: impl TelemetrySink,
        options: TelemetryOptions,
    ) -> Result<Self, TelemetryError> {
        Self::start_with_clock(session_id, sink, options, Arc::new(SystemClock))
    }

    /// [`Self::start`] with events stamped by `clock` (a client passes its transport's
    /// injected clock).
    ///
    /// # Errors
    /// Must be called inside a tokio runtime (it spawns the flush task).
    pub fn start_with_clock(
        session_id: Option<String>,
        sink: impl TelemetrySink,
        options: TelemetryOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TelemetryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let sessionless = session_id.is_none();
        let session_id =
            session_id.unwrap_or_else(|| format!("sessionless-{}", uuid::Uuid::new_v4()));
        let shared = Arc::new(Shared {
            session_id,
            sessionless,
            options,
            factory: EventFactory::new(clock),
            sink: Box::new(sink),
            queue: Mutex::new(VecDeque::new()),
            pushed: AtomicU64::new(0),
            flushed: watch::Sender::new(0),
            trigger: Notify::new(),
            closed: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_send_failed: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            batches_failed: AtomicU64::new(0),
        });
        if !sessionless {
            shared.enqueue(vec![shared.factory.session_start()]);
        }
        let task = runtime.spawn(run(shared.clone()));
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// [`start`](Self::start) with default options when `TINKER_TELEMETRY` allows it;
    /// `None` when telemetry is disabled or there is no tokio runtime (logged at debug).
    pub fn from_env(session_id: Option<String>, sink: impl TelemetrySink) -> Option<Self> {
        if !crate::enabled::telemetry_enabled() {
            return None;
        }
        Self::start(session_id, sink, TelemetryOptions::default())
            .inspect_err(|e| tracing::debug!(error = %e, "telemetry not started"))
            .ok()
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The `session_id` of the batches (the session's, or `sessionless-<uuid4>`).
    pub fn session_id(&self) -> &str {
        &self.shared().session_id
    }

    /// Queues a `GENERIC_EVENT` (sent with the next periodic flush). `name` should be low
    /// cardinality. Returns `false` when the event was dropped (queue full or closed).
    pub fn log(&self, name: &str, data: Map<String, Value>, severity: Severity) -> bool {
        let shared = self.shared();
        shared.enqueue(vec![shared.factory.generic(name, data, severity)])
    }

    /// Queues an error (a `user_error` generic event for user errors, else
    /// `UNHANDLED_EXCEPTION` with `severity`) and triggers a flush without waiting for it.
    pub fn log_error(&self, report: &ErrorReport, severity: Severity) -> bool {
        let shared = self.shared();
        let logged = shared.enqueue(vec![shared.factory.for_error(report, severity)]);
        shared.trigger.notify_one();
        logged
    }

    /// Queues a fatal error: the error event, then `SESSION_END` (for a session reporter);
    /// triggers a flush and waits (up to the drain timeout) until it is sent.
    pub async fn log_fatal_error(&self, report: &ErrorReport, severity: Severity) -> bool {
        let shared = self.shared();
        let mut events = vec![shared.factory.for_error(report, severity)];
        if !shared.sessionless {
            events.push(shared.factory.session_end());
        }
        let logged = shared.enqueue(events);
        shared.trigger.notify_one();
        self.wait_until_drained().await;
        if logged {
            tracing::info!(session_id = %shared.session_id, "exception logged for session");
        }
        logged
    }

    /// Runs `operation`; when it fails, logs the error (described by `report`) before
    /// returning it unchanged — the official SDK's `capture_exceptions`. With `fatal` the
    /// error ends the session ([`log_fatal_error`](Self::log_fatal_error)).
    pub async fn capture<T, E>(
        &self,
        fatal: bool,
        severity: Severity,
        operation: impl Future<Output = Result<T, E>>,
        report: impl FnOnce(&E) -> ErrorReport,
    ) -> Result<T, E> {
        let result = operation.await;
        if let Err(err) = &result {
            let report = report(err);
            if fatal {
                self.log_fatal_error(&report, severity).await;
            } else {
                self.log_error(&report, severity);
            }
        }
        result
    }

    /// Asks the background task to flush now.
    pub fn flush(&self) {
        self.shared().trigger.notify_one();
    }

    /// Waits until every event queued so far has been sent (or dropped), up to the drain
    /// timeout. Returns whether it drained in time.
    pub async fn wait_until_drained(&self) -> bool {
        let shared = self.shared();
        let target = shared.pushed.load(Ordering::SeqCst);
        let mut flushed = shared.flushed.subscribe();
        tokio::time::timeout(
            shared.options.drain_timeout,
            flushed.wait_for(|done| *done >= target),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Flushes what is queued, waits up to the drain timeout for it to be sent, then stops
    /// the background task. Events logged afterwards are dropped. Returns whether the queue
    /// drained in time (a warning is logged otherwise).
    pub async fn close(&self) -> bool {
        let shared = self.shared();
        shared.closed.store(true, Ordering::SeqCst);
        shared.trigger.notify_one();
        let drained = self.wait_until_drained().await;
        if !drained {
            tracing::warn!(session_id = %shared.session_id, "timed out draining telemetry during shutdown");
        }
        if let Some(task) = lock(&self.handle.task).take() {
            task.abort();
        }
        drained
    }

    /// The reporter's counters.
    pub fn stats(&self) -> TelemetryStats {
        let s = self.shared();
        TelemetryStats {
            queued: lock(&s.queue).len(),
            logged: s.pushed.load(Ordering::SeqCst),
            sent: s.sent.load(Ordering::SeqCst),
            dropped_queue_full: s.dropped_queue_full.load(Ordering::SeqCst),
            dropped_send_failed: s.dropped_send_failed.load(Ordering::SeqCst),
            batches_sent: s.batches_sent.load(Ordering::SeqCst),
            batches_failed: s.batches_failed.load(Ordering::SeqCst),
        }
    }
}

impl Shared {
    /// Queues all of `events`, or none of them when they do not fit.
    fn enqueue(&self, events: Vec<TelemetryEvent>) -> bool {
        let n = events.len() as u64;
        let mut queue = lock(&self.queue);
        if self.closed.load(Ordering::SeqCst) {
            self.dropped_queue_full.fetch_add(n, Ordering::SeqCst);
            return false;
        }
        if queue.len() + events.len() > self.options.max_queue_size {
            drop(queue);
            self.dropped_queue_full.fetch_add(n, Ordering::SeqCst);
            tracing::warn!(dropped = n, "telemetry queue full, dropping events");
            return false;
        }
        queue.extend(events);
        self.pushed.fetch_add(n, Ordering::SeqCst);
        true
    }

    /// Sends everything queued, batch by batch.
    async fn flush(&self) {
        loop {
            let events: Vec<TelemetryEvent> = {
                let mut queue = lock(&self.queue);
                let n = queue.len().min(self.options.max_batch_size.max(1));
                queue.drain(..n).collect()
            };
            if events.is_empty() {
                return;
            }
            let n = events.len() as u64;
            let batch = TelemetrySendRequest {
                events,
                platform: self.options.platform.clone(),
                sdk_version: self.options.sdk_version.clone(),
                session_id: self.session_id.clone(),
                process_uuid: process_uuid(),
            };
            let outcome = match serde_json::to_vec(&batch) {
                Ok(body) => {
                    match tokio::time::timeout(self.options.send_timeout, self.sink.send(body))
                        .await
                    {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(_) => Err("timed out".to_owned()),
                    }
                }
                Err(e) => Err(format!("could not serialize: {e}")),
            };
            match outcome {
                Ok(()) => {
                    self.sent.fetch_add(n, Ordering::SeqCst);
                    self.batches_sent.fetch_add(1, Ordering::SeqCst);
                }
                Err(error) => {
                    tracing::warn!(%error, events = n, "dropping telemetry batch that failed to send");
                    self.dropped_send_failed.fetch_add(n, Ordering::SeqCst);
                    self.batches_failed.fetch_add(1, Ordering::SeqCst);
                }
            }
            // Counted either way, so waiting for a drain never hangs on a failing sink.
            self.flushed.send_modify(|done| *done += n);
        }
    }
}

/// The background task: flush every interval, or when triggered.
async fn run(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.trigger.notified() => {}
            () = tokio::time::sleep(shared.options.flush_interval) => {}
        }
        shared.flush().await;
    }
}
