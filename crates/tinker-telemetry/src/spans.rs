//! Tracing spans shared by the SDK crates, so every operation, request and HTTP attempt is
//! traced with the same names and fields. The names and fields match the spans
//! `tinker-transport` opens itself (it does not depend on this crate).
//!
//! * [`operation_span`] (`tinker.operation`, INFO): one SDK operation such as
//!   `forward_backward` (the transport's retry loop uses the same name and `operation`
//!   field); recorded as they become known: `session_id`, `model_id`, `seq_id`,
//!   `request_id`, `error`.
//! * [`request_span`] (`tinker.request`, INFO): one API request with its retries; fields
//!   `http.method`, `path`, `sdk_method`, then `status`, `retries`.
//! * [`attempt_span`] (`tinker.attempt`, DEBUG): one HTTP attempt; field `attempt`, then
//!   `status`, `elapsed_ms`, `error` ([`record_attempt_outcome`]).
//! * [`future_span`] (`tinker.future`, DEBUG): polling one server-side future; fields
//!   `request_id`, then `polls`.

use std::time::Duration;

use tracing::Span;
use tracing::field::Empty;

/// Span names.
pub mod names {
    /// One SDK operation.
    pub const OPERATION: &str = "tinker.operation";
    /// One API request (all its attempts).
    pub const REQUEST: &str = "tinker.request";
    /// One HTTP attempt.
    pub const ATTEMPT: &str = "tinker.attempt";
    /// Polling one server-side future.
    pub const FUTURE: &str = "tinker.future";
}

/// Span field names.
pub mod fields {
    /// The operation (`forward_backward`, `sample`, …).
    pub const OPERATION: &str = "operation";
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
    /// The API path.
    pub const PATH: &str = "path";
    /// The SDK method name sent in the request headers.
    pub const SDK_METHOD: &str = "sdk_method";
    /// HTTP status.
    pub const STATUS: &str = "status";
    /// How many retries a request took.
    pub const RETRIES: &str = "retries";
    /// The attempt number.
    pub const ATTEMPT: &str = "attempt";
    /// Milliseconds the attempt took.
    pub const ELAPSED_MS: &str = "elapsed_ms";
    /// How many times a future was polled.
    pub const POLLS: &str = "polls";
}

/// The span of one SDK operation (`tinker.operation`).
pub fn operation_span(operation: &str) -> Span {
    tracing::info_span!(
        "tinker.operation",
        operation = operation,
        session_id = Empty,
        model_id = Empty,
        seq_id = Empty,
        request_id = Empty,
        error = Empty,
    )
}

/// The span of one API request with its retries (`tinker.request`).
pub fn request_span(method: &str, path: &str, sdk_method: &str) -> Span {
    tracing::info_span!(
        "tinker.request",
        http.method = method,
        path = path,
        sdk_method = sdk_method,
        status = Empty,
        retries = Empty,
    )
}

/// The span of one HTTP attempt (`tinker.attempt`).
pub fn attempt_span(attempt: u32) -> Span {
    tracing::debug_span!(
        "tinker.attempt",
        attempt = attempt,
        status = Empty,
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
        span.record(fields::STATUS, status);
    }
    span.record(
        fields::ELAPSED_MS,
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    );
    if let Some(error) = error {
        span.record(fields::ERROR, tracing::field::display(error));
    }
}
