//! Telemetry of the clients (protocol §6.12): one [`Telemetry`] reporter per session, whose
//! batches go to `POST /api/v1/telemetry` through the session's own transport, and the
//! translation of client [`Error`]s into the reporter's [`ErrorReport`]s and into the
//! diagnostic `GENERIC_EVENT`s the official SDK emits from its futures engine and its holder
//! retry loop.
//!
//! Nothing secret goes into an event: messages and bodies are the redacted excerpts the
//! transport keeps, request headers (which carry the credential) are never recorded, and
//! response headers are filtered.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tinker_telemetry::{ErrorReport, SinkFuture, Telemetry, TelemetryOptions, TelemetrySink};
use tinker_transport::clock::Clock;
use tinker_transport::{APPLICATION_JSON, Env, RequestSpec, Transport, TransportError};
use tinker_types::Severity;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, FailureCategory};
use crate::payload::{FromPayload, Payload, RequestType};

/// What the events below need from the session they report for: its reporter, when
/// telemetry is on, and its injected clock. The session implements it; this module never
/// names the session, which starts its reporter through [`start`].
pub(crate) trait TelemetryScope: Sync {
    /// The session's reporter (`None` when telemetry is off).
    fn reporter(&self) -> Option<&Telemetry>;
    /// The session's injected clock.
    fn clock(&self) -> &Arc<dyn Clock>;
}

/// The telemetry endpoint (§2.8).
const TELEMETRY_PATH: &str = "/api/v1/telemetry";
/// Timeout of one batch upload (§6.3).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends batches with the session's transport: same base URL, credential and TLS settings;
/// normal HTTP retries, 5 s timeout, no `x-sdk-method`. A failed batch is dropped by the
/// reporter.
struct TransportSink {
    transport: Transport,
}

impl TelemetrySink for TransportSink {
    fn send(&self, batch_json: Vec<u8>) -> SinkFuture<'_> {
        Box::pin(async move {
            let spec = RequestSpec::post(TELEMETRY_PATH)
                .with_body(batch_json, APPLICATION_JSON)
                .with_timeout(SEND_TIMEOUT)
                // The SDK passes this timeout as a float, so its header reads `5.0` (its
                // other timeouts are whole numbers, as ours are formatted).
                .with_header(
                    HeaderName::from_static("x-stainless-read-timeout"),
                    HeaderValue::from_static("5.0"),
                );
            self.transport.send(spec).await?;
            Ok(())
        })
    }
}

/// Whether `TINKER_TELEMETRY` (read from the transport's environment) allows telemetry.
pub(crate) fn enabled_by_env(env: &Env) -> bool {
    tinker_telemetry::telemetry_enabled_with(|name| env.get(name))
}

/// Starts the reporter of a session: `SESSION_START` is queued at once for a session;
/// a session-less one reports as `sessionless-<uuid4>`. `None` outside a runtime.
pub(crate) fn start(transport: &Transport, session_id: Option<&str>) -> Option<Telemetry> {
    let sink = TransportSink {
        transport: transport.clone(),
    };
    Telemetry::start_with_clock(
        session_id.map(str::to_owned),
        sink,
        TelemetryOptions::default(),
        transport.runtime().clock.clone(),
    )
    .inspect_err(|e| tracing::debug!(error = %e, "telemetry not started"))
    .ok()
}

/// The official SDK's exception class for an error (the `error_type` of events).
fn error_type(err: &Error) -> &'static str {
    match (err.kind(), err.status()) {
        (ErrorKind::Api | ErrorKind::Expired, Some(status)) => match status {
            400 => "BadRequestError",
            401 => "AuthenticationError",
            402 => "BillingError",
            403 => "PermissionDeniedError",
            404 => "NotFoundError",
            409 => "ConflictError",
            422 => "UnprocessableEntityError",
            429 => "RateLimitError",
            s if s >= 500 => "InternalServerError",
            _ => "APIStatusError",
        },
        (ErrorKind::RequestFailed, _) => "RequestFailedError",
        (ErrorKind::Connection, _) => "APIConnectionError",
        (ErrorKind::Protocol, _) => "APIResponseValidationError",
        (ErrorKind::Cancelled, _) => "CancelledError",
        (ErrorKind::Timeout, _) if err.is_retryable() => "APITimeoutError",
        (ErrorKind::Stuck | ErrorKind::Timeout, _) => "TimeoutError",
        (ErrorKind::Io, _) => "OSError",
        (ErrorKind::Unsupported, _) => "NotImplementedError",
        _ => "ValueError",
    }
}

/// Whether the official SDK counts the error as the user's: a failed request of category
/// `user`, or an HTTP status 400–499 other than 408.
pub(crate) fn is_user_error(err: &Error) -> bool {
    err.category() == Some(FailureCategory::User)
        || err
            .status()
            .is_some_and(tinker_transport::retry::is_user_error_status)
}

/// The transport error under a client error, if any.
fn transport_source(err: &Error) -> Option<&TransportError> {
    std::error::Error::source(err).and_then(|s| s.downcast_ref::<TransportError>())
}

/// A response body for an event: JSON when it parses, else the text. Always the
/// transport's redacted excerpt, never the raw bytes.
fn body_value(err: &TransportError) -> Option<Value> {
    let text = err.body_excerpt()?;
    if text.is_empty() {
        return None;
    }
    Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The `Caused by:` chain of an error (its `source()`s), or `None` without causes.
fn traceback(err: &Error) -> Option<String> {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(format!("Caused by: {cause}"));
        source = cause.source();
    }
    (!causes.is_empty()).then(|| causes.join("\n"))
}

/// Describes a client error for the reporter: type, message, status, body, the cause
/// chain, and whether it is a user error.
pub(crate) fn error_report(err: &Error) -> ErrorReport {
    let mut report = ErrorReport::new(error_type(err), err.message());
    if let Some(status) = err.status() {
        report = report.status(status);
    }
    if let Some(body) = transport_source(err).and_then(body_value) {
        report = report.body(body);
    }
    if let Some(tb) = traceback(err) {
        report = report.traceback(tb);
    }
    report.user_error(is_user_error(err))
}

/// Records an error that ends a public operation (the SDK's `capture_exceptions(fatal=True)`):
/// `user_error` or `UNHANDLED_EXCEPTION`, then `SESSION_END` for a session; waits (up to
/// 30 s) until it is sent.
pub(crate) async fn log_fatal(scope: &dyn TelemetryScope, err: &Error) {
    if let Some(t) = scope.reporter() {
        t.log_fatal_error(&error_report(err), Severity::Error).await;
    }
}

/// Runs `op` and records its error, if any, as fatal ([`log_fatal`]).
pub(crate) async fn capture<T>(
    scope: &dyn TelemetryScope,
    op: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    let result = op.await;
    if let Err(e) = &result {
        log_fatal(scope, e).await;
    }
    result
}

/// Decodes a finished future's payload into its typed result (the SDK's deserialization
/// step). A failure is reported as `APIFuture.result_async.proto_deserialization_error`
/// (protobuf) or `APIFuture.result_async.validation_error` (JSON); the caller re-polls or
/// reports the operation's final error (see [`crate::future::retrieve_decoded`]).
pub(crate) fn decode_reported<T: FromPayload>(
    scope: &dyn TelemetryScope,
    request_id: &str,
    request_type: RequestType,
    payload: Payload,
) -> crate::Result<T> {
    let proto_len = match &payload {
        Payload::Proto(bytes) => Some(bytes.len()),
        Payload::Json(_) => None,
    };
    let result = T::from_payload(payload);
    if let Err(err) = &result
        && let Some(t) = scope.reporter()
    {
        let mut data = object(json!({
            "request_id": request_id,
            "request_type": request_type.as_str(),
            "exception": err.message(),
            "exception_type": error_type(err),
            "model_cls": std::any::type_name::<T>(),
        }));
        let name = match proto_len {
            Some(len) => {
                data.insert("proto_bytes_len".into(), len.into());
                "APIFuture.result_async.proto_deserialization_error"
            }
            None => {
                data.insert("exception_stack".into(), traceback(err).into());
                "APIFuture.result_async.validation_error"
            }
        };
        t.log(name, data, Severity::Error);
    }
    result
}

/// Where a failed attempt of the sampling outer retry handler (§6.5) stands.
pub(crate) struct HandlerAttempt<'a> {
    /// The SDK's name of the retried function.
    pub func: &'a str,
    pub should_retry: bool,
    /// 1 for the first attempt.
    pub attempt_count: u32,
    pub started: Instant,
    /// Unix seconds at `started`, from the injected clock.
    pub started_unix: f64,
}

/// `RetryHandler.execute.exception` for a failed attempt of the sampling outer retry
/// handler: WARNING when it will be retried or is the user's fault, else ERROR.
pub(crate) fn retry_handler_exception(
    scope: &dyn TelemetryScope,
    attempt: &HandlerAttempt<'_>,
    err: &Error,
) {
    let Some(t) = scope.reporter() else { return };
    let elapsed = scope.clock().now() - attempt.started;
    let user = is_user_error(err);
    let start = attempt.started_unix;
    // A lost future surfaces in the SDK as its `RetryableException`, without a status.
    let (exception_type, status) = match err.kind() {
        ErrorKind::Expired => ("RetryableException", None),
        _ => (error_type(err), err.status()),
    };
    let data = json!({
        "func": attempt.func,
        "exception": err.message(),
        "exception_type": exception_type,
        "exception_stack": traceback(err),
        "status_code": status,
        "should_retry": attempt.should_retry,
        "is_user_error": user,
        "attempt_count": attempt.attempt_count,
        "start_time": start,
        "current_time": start + elapsed.as_secs_f64(),
        "elapsed_time": elapsed.as_secs_f64(),
    });
    let severity = if attempt.should_retry || user {
        Severity::Warning
    } else {
        Severity::Error
    };
    t.log("RetryHandler.execute.exception", object(data), severity);
}

/// `APIFuture.result_async.timeout`: the caller's bound on waiting for a result passed.
pub(crate) fn result_timeout(
    scope: &dyn TelemetryScope,
    request_id: Option<&str>,
    request_type: RequestType,
    timeout: Duration,
    iteration: u64,
    elapsed: Duration,
) {
    let Some(t) = scope.reporter() else { return };
    let data = json!({
        "request_id": request_id,
        "request_type": request_type.as_str(),
        "timeout": timeout.as_secs_f64(),
        "iteration": iteration,
        "elapsed_time": elapsed.as_secs_f64(),
    });
    t.log(
        "APIFuture.result_async.timeout",
        object(data),
        Severity::Error,
    );
}

/// One run of the holder retry loop (§6.2), for its per-attempt events.
pub(crate) struct RetryTrace<'a> {
    name: &'a str,
    started: Instant,
    /// Unix seconds at `started`, from the injected clock.
    started_unix: f64,
    attempts: std::sync::atomic::AtomicU32,
}

impl<'a> RetryTrace<'a> {
    pub(crate) fn new(scope: &dyn TelemetryScope, name: &'a str) -> Self {
        Self {
            name,
            started: scope.clock().now(),
            started_unix: scope.clock().unix_now(),
            attempts: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// `InternalClientHolder.execute_with_retries.exception` for a failed attempt (WARNING
    /// when it will be retried or is the user's fault, else ERROR). 402s are left out:
    /// the SDK logs nothing while it sleeps through a billing pause.
    pub(crate) fn attempt_failed(&self, scope: &dyn TelemetryScope, err: &Error) {
        let attempt = self
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let Some(t) = scope.reporter() else { return };
        if err.status() == Some(402) {
            return;
        }
        let elapsed = scope.clock().now() - self.started;
        let retryable = err.is_retryable() && err.kind() != ErrorKind::Expired;
        let user = is_user_error(err);
        let start = self.started_unix;
        let data = json!({
            "func": self.name,
            "exception": err.message(),
            "exception_type": error_type(err),
            "exception_stack": traceback(err),
            "status_code": err.status(),
            "is_retryable": retryable,
            "is_user_error": user,
            "attempt_count": attempt,
            "start_time": start,
            "current_time": start + elapsed.as_secs_f64(),
            "elapsed_time": elapsed.as_secs_f64(),
        });
        let severity = if retryable || user {
            Severity::Warning
        } else {
            Severity::Error
        };
        t.log(
            "InternalClientHolder.execute_with_retries.exception",
            object(data),
            severity,
        );
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// How the futures engine reacts to a transport error (the SDK's `_TransportErrorKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollErrorKind {
    Retry,
    RetryWithBackoff,
    RetryIfBudget,
    RetryableException,
    Fatal,
}

impl PollErrorKind {
    fn of(status: Option<u16>) -> Self {
        match status {
            None | Some(429) => Self::RetryWithBackoff,
            Some(408) => Self::Retry,
            Some(s) if s >= 500 => Self::Retry,
            Some(410) => Self::RetryableException,
            Some(400) => Self::RetryIfBudget,
            Some(_) => Self::Fatal,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::RetryWithBackoff => "retry_with_backoff",
            Self::RetryIfBudget => "retry_if_budget",
            Self::RetryableException => "retryable_exception",
            Self::Fatal => "fatal",
        }
    }
}

/// Response headers safe to record (no cookies, credentials or tokens).
fn safe_headers(headers: &http::HeaderMap) -> Map<String, Value> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !(n.contains("cookie")
                || n.contains("auth")
                || n.contains("token")
                || n.contains("secret")
                || n.contains("key"))
        })
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_owned(),
                value.to_str().ok()?.to_owned().into(),
            ))
        })
        .collect()
}

/// One future being polled, for the `APIFuture.result_async.*` events.
pub(crate) struct PollTrace<'a> {
    request_id: &'a str,
    request_type: &'static str,
    started: Instant,
}

impl<'a> PollTrace<'a> {
    pub(crate) fn new(
        scope: &dyn TelemetryScope,
        request_id: &'a str,
        request_type: &'static str,
    ) -> Self {
        Self {
            request_id,
            request_type,
            started: scope.clock().now(),
        }
    }

    fn base(&self, scope: &dyn TelemetryScope, iteration: u64) -> Map<String, Value> {
        let elapsed = scope.clock().now() - self.started;
        object(json!({
            "request_id": self.request_id,
            "request_type": self.request_type,
            "iteration": iteration,
            "elapsed_time": elapsed.as_secs_f64(),
        }))
    }

    /// `APIFuture.result_async.api_status_error` (or `.connection_error` without a
    /// response) for a failed `retrieve_future` call; ERROR when fatal or a bare 400,
    /// else WARNING. Callers skip 402s inside the billing pause.
    pub(crate) fn transport_error(
        &self,
        scope: &dyn TelemetryScope,
        err: &TransportError,
        iteration: u64,
        bad_request_retries: u32,
        connection_error_retries: u32,
    ) {
        let Some(t) = scope.reporter() else { return };
        let status = err.status().map(|s| s.as_u16());
        let kind = PollErrorKind::of(status);
        // The SDK's `str(e)`: `Error code: <status> - <body>`, or the connection failure.
        let detail = match status {
            Some(s) => format!(
                "Error code: {s} - {}",
                err.body_excerpt().unwrap_or_default()
            ),
            None => err.to_string(),
        };
        let mut data = self.base(scope, iteration);
        data.extend(object(json!({
            "status_code": status.unwrap_or(0),
            "detail": detail,
            "kind": kind.as_str(),
            "should_retry": kind != PollErrorKind::Fatal,
            "is_user_error": status.is_some_and(tinker_transport::retry::is_user_error_status),
            "exception": detail,
            "exception_type": if status.is_some() { "APIStatusError" } else { "APIConnectionError" },
            "bad_request_retries": bad_request_retries,
            "connection_error_retries": connection_error_retries,
        })));
        // Post-mortem context for errors without a clean retry path. The SDK also records
        // the request headers; they carry the credential, so they are left out here.
        if matches!(kind, PollErrorKind::Fatal | PollErrorKind::RetryIfBudget) {
            if let Some(headers) = err.headers() {
                data.insert("response_headers".into(), safe_headers(headers).into());
            }
            if let Some(body) = body_value(err) {
                data.insert("response_body".into(), body);
            }
        }
        let (name, severity) = match (status, kind) {
            (None, _) => ("APIFuture.result_async.connection_error", Severity::Warning),
            (_, PollErrorKind::Fatal | PollErrorKind::RetryIfBudget) => {
                ("APIFuture.result_async.api_status_error", Severity::Error)
            }
            _ => ("APIFuture.result_async.api_status_error", Severity::Warning),
        };
        t.log(name, data, severity);
    }

    /// `APIFuture.result_async.application_error`: the request failed on the server.
    pub(crate) fn application_error(
        &self,
        scope: &dyn TelemetryScope,
        error: &str,
        category: FailureCategory,
        iteration: u64,
    ) {
        let Some(t) = scope.reporter() else { return };
        let user = category == FailureCategory::User;
        let mut data = self.base(scope, iteration);
        data.extend(object(json!({
            "error": error,
            "error_category": match category {
                FailureCategory::User => "User",
                FailureCategory::Server => "Server",
                _ => "Unknown",
            },
            "is_user_error": user,
        })));
        let severity = if user {
            Severity::Warning
        } else {
            Severity::Error
        };
        t.log("APIFuture.result_async.application_error", data, severity);
    }

    /// `APIFuture.result_async.validation_error`: the answer could not be interpreted.
    pub(crate) fn validation_error(&self, scope: &dyn TelemetryScope, err: &Error, iteration: u64) {
        let Some(t) = scope.reporter() else { return };
        let mut data = self.base(scope, iteration);
        data.extend(object(json!({
            "exception": err.message(),
            "exception_type": error_type(err),
            "exception_stack": traceback(err),
        })));
        t.log(
            "APIFuture.result_async.validation_error",
            data,
            Severity::Error,
        );
    }
}
