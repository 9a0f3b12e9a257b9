//! Tracing spans shared by the SDK crates, so every operation and HTTP attempt is traced
//! with the same names and fields.
//!
//! * [`operation_span`] (`tinker.operation`, INFO): one public SDK call such as
//!   `forward_backward`; fields `op`, then recorded as they become known: `session_id`,
//!   `model_id`, `seq_id`, `request_id`, `error`.
//! * [`attempt_span`] (`tinker.attempt`, DEBUG): one HTTP attempt; fields `http.method`,
//!   `http.path`, `attempt` (1-based), then `http.status`, `elapsed_ms`, `error`
//!   ([`record_attempt_outcome`]).
//! * [`future_span`] (`tinker.future`, DEBUG): polling one server-side future; fields
//!   `request_id`, then `polls`.

use std::time::Duration;

use tracing::Span;
use tracing::field::Empty;

/// Span names.
pub mod names {
    /// One public SDK operation.
    pub const OPERATION: &str = "tinker.operation";
    /// One HTTP attempt.
    pub const ATTEMPT: &str = "tinker.attempt";
    /// Polling one server-side future.
    pub const FUTURE: &str = "tinker.future";
}

/// Span field names.
pub mod fields {
    /// The operation (`forward_backward`, `sample`, …).
    pub const OP: &str = "op";
    /// The session id.
    pub const SESSION_ID: &str = "session_id";
    /// The model id (training or sampling client).
    pub const MODEL_ID: &str = "model_id";
    /// The request's sequence id.
    pub const SEQ_ID: &str = "seq_id";
    /// The server's future/request id.
    pub const REQUEST_ID: &str = "request_id";
    /// The error text, when the operation or attempt failed.
    pub const ERROR: &str = "error";
    /// HTTP method.
    pub const HTTP_METHOD: &str = "http.method";
    /// HTTP path.
    pub const HTTP_PATH: &str = "http.path";
    /// HTTP status.
    pub const HTTP_STATUS: &str = "http.status";
    /// The 1-based attempt number.
    pub const ATTEMPT: &str = "attempt";
    /// Milliseconds the attempt took.
    pub const ELAPSED_MS: &str = "elapsed_ms";
    /// How many times a future was polled.
    pub const POLLS: &str = "polls";
}

/// The span of one public SDK operation (`tinker.operation`).
pub fn operation_span(op: &str) -> Span {
    tracing::info_span!(
        "tinker.operation",
        op = op,
        session_id = Empty,
        model_id = Empty,
        seq_id = Empty,
        request_id = Empty,
        error = Empty,
    )
}

/// The span of one HTTP attempt (`tinker.attempt`).
pub fn attempt_span(method: &str, path: &str, attempt: u32) -> Span {
    tracing::debug_span!(
        "tinker.attempt",
        http.method = method,
        http.path = path,
        attempt = attempt,
        http.status = Empty,
        elapsed_ms = Empty,
        error = Empty,
    )
}

/// The span of polling one server-side future (`tinker.future`).
pub fn future_span(request_id: &str) -> Span {
    tracing::debug_span!("tinker.future", request_id = request_id, polls = Empty)
}

/// Records how an attempt ended: its status (when a response arrived), its duration and
/// its error (when it failed).
pub fn record_attempt_outcome(
    span: &Span,
    status: Option<u16>,
    elapsed: Duration,
    error: Option<&dyn std::fmt::Display>,
) {
    if let Some(status) = status {
        span.record(fields::HTTP_STATUS, status);
    }
    span.record(
        fields::ELAPSED_MS,
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    );
    if let Some(error) = error {
        span.record(fields::ERROR, tracing::field::display(error));
    }
}
