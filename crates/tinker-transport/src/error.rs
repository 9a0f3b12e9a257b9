//! The one public error type of the crate, [`TransportError`], and its [`ErrorKind`].
//!
//! The error is opaque: callers ask it questions (`kind()`, `status()`, `is_retryable()`, …)
//! instead of matching on variants, so new failure causes never break them. Internally the
//! cause is a snafu enum that stays private to the crate.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use snafu::Snafu;

/// What went wrong, coarse enough to act on. Status kinds follow the SDK's exception table
/// (protocol §1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// HTTP 400.
    BadRequest,
    /// HTTP 401.
    Authentication,
    /// HTTP 402: the account cannot be billed (triggers the billing pause).
    Billing,
    /// HTTP 403.
    PermissionDenied,
    /// HTTP 404.
    NotFound,
    /// HTTP 409.
    Conflict,
    /// HTTP 422.
    UnprocessableEntity,
    /// HTTP 429.
    RateLimit,
    /// HTTP 5xx.
    InternalServer,
    /// Any other non-success status (other 4xx, unfollowed 3xx).
    Status,
    /// The request never produced a complete response: refused, reset, truncated, TLS,
    /// proxy or DNS failure, or a "bare 400" converted to a connection error.
    Connection,
    /// A connect, read or operation timeout.
    Timeout,
    /// The response arrived but could not be decoded (content encoding or JSON).
    Decode,
    /// No usable credential (missing, malformed, expired, command failed) or the token
    /// exchange failed. Never retried by the transport.
    Credential,
    /// The request or configuration was invalid before anything was sent.
    InvalidRequest,
    /// The response body (as sent, or after content decoding) exceeded the transport's
    /// size limit ([`TransportBuilder::max_response_bytes`](crate::TransportBuilder::max_response_bytes));
    /// [`TransportError::size_limit`] tells the limit. Never retried: the same request
    /// would get the same answer.
    ResponseTooLarge,
    /// The endpoint family's circuit breaker is open: nothing was sent
    /// ([`TransportBuilder::circuit_breaker`](crate::TransportBuilder::circuit_breaker)).
    /// Not retried; [`TransportError::circuit_retry_in`] tells when trial calls resume.
    CircuitOpen,
}

impl ErrorKind {
    /// The kind for a non-success HTTP status.
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::BadRequest,
            401 => Self::Authentication,
            402 => Self::Billing,
            403 => Self::PermissionDenied,
            404 => Self::NotFound,
            409 => Self::Conflict,
            422 => Self::UnprocessableEntity,
            429 => Self::RateLimit,
            s if s >= 500 => Self::InternalServer,
            _ => Self::Status,
        }
    }
}

/// Internal causes. Only the crate builds these; callers see [`TransportError`].
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub(crate) enum Cause {
    #[snafu(display("HTTP status {status}"))]
    Status { status: StatusCode },
    #[snafu(display(
        "HTTP 400 with an empty body (connection-level rejection); the connection pool was replaced"
    ))]
    BareBadRequest,
    #[snafu(display("connection failed"))]
    Connect { source: BoxError },
    #[snafu(display("connection closed before the response was complete"))]
    Body { source: BoxError },
    #[snafu(display("{what} timed out after {after:?}"))]
    TimedOut { what: &'static str, after: Duration },
    #[snafu(display("could not decode the {encoding} response body"))]
    ContentDecoding {
        encoding: String,
        source: std::io::Error,
    },
    #[snafu(display("could not decode the response JSON"))]
    Json { source: serde_json::Error },
    #[snafu(display("could not encode the request JSON"))]
    EncodeJson { source: serde_json::Error },
    #[snafu(display("could not compress the request body"))]
    Compress { source: std::io::Error },
    #[snafu(display("{message}"))]
    Credential { message: String },
    #[snafu(display("invalid request: {message}"))]
    Invalid { message: String },
    #[snafu(display("the {what} exceeds the limit of {limit} bytes"))]
    TooLarge { what: &'static str, limit: u64 },
    #[snafu(display("too many redirects (more than {max})"))]
    TooManyRedirects { max: usize },
    #[snafu(display(
        "the {family} circuit breaker is open after repeated failures; trial calls resume in {:.1} s",
        retry_in.as_secs_f64()
    ))]
    CircuitOpen {
        family: crate::circuit::EndpointFamily,
        retry_in: Duration,
    },
}

/// A boxed future of a transport result (the futures of the stack's services).
pub(crate) type BoxFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, TransportError>> + Send>>;

/// A boxed error from the HTTP stack (hyper, rustls, io) kept as a `source()`.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every transport operation.
///
/// Opaque by design: use [`kind`](Self::kind), [`status`](Self::status),
/// [`is_retryable`](Self::is_retryable) and the other accessors. `Display` shows a short
/// message (without repeating the `source()` chain); no credential ever appears in it,
/// in `Debug`, or in the body excerpt, whose secret-looking values are redacted.
pub struct TransportError {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    cause: Cause,
    method: Option<http::Method>,
    path: Option<String>,
    status: Option<StatusCode>,
    headers: Option<HeaderMap>,
    body: Option<Bytes>,
    idempotency_key: Option<String>,
    retries: u32,
    elapsed: Option<Duration>,
    /// Raised by the authentication step: never retried by the HTTP layer (§6.1).
    auth_flow: bool,
}

/// At most this many bytes of an error body are kept for `body_excerpt`.
const EXCERPT_LIMIT: usize = 2048;

impl TransportError {
    pub(crate) fn new(kind: ErrorKind, cause: Cause) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                cause,
                method: None,
                path: None,
                status: None,
                headers: None,
                body: None,
                idempotency_key: None,
                retries: 0,
                elapsed: None,
                auth_flow: false,
            }),
        }
    }

    pub(crate) fn connect(source: impl Into<BoxError>) -> Self {
        Self::new(
            ErrorKind::Connection,
            Cause::Connect {
                source: source.into(),
            },
        )
    }

    pub(crate) fn broken_body(source: impl Into<BoxError>) -> Self {
        Self::new(
            ErrorKind::Connection,
            Cause::Body {
                source: source.into(),
            },
        )
    }

    pub(crate) fn timeout(what: &'static str, after: Duration) -> Self {
        Self::new(ErrorKind::Timeout, Cause::TimedOut { what, after })
    }

    pub(crate) fn credential(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Credential,
            Cause::Credential {
                message: message.into(),
            },
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::InvalidRequest,
            Cause::Invalid {
                message: message.into(),
            },
        )
    }

    /// A response body over `limit` bytes; `what` says which (`response body` as sent,
    /// or `decoded response body`).
    pub(crate) fn too_large(what: &'static str, limit: u64) -> Self {
        Self::new(ErrorKind::ResponseTooLarge, Cause::TooLarge { what, limit })
    }

    /// A call refused by an open circuit breaker.
    pub(crate) fn circuit_open(family: crate::circuit::EndpointFamily, retry_in: Duration) -> Self {
        Self::new(
            ErrorKind::CircuitOpen,
            Cause::CircuitOpen { family, retry_in },
        )
    }

    pub(crate) fn decode_json(source: serde_json::Error) -> Self {
        Self::new(ErrorKind::Decode, Cause::Json { source })
    }

    /// An error for a non-success response.
    pub(crate) fn from_status(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        let mut e = Self::new(ErrorKind::from_status(status), Cause::Status { status });
        e.inner.status = Some(status);
        e.inner.headers = Some(headers);
        e.inner.body = Some(body);
        e
    }

    /// A "bare 400" turned into a retryable connection error (protocol §6.1).
    pub(crate) fn bare_bad_request(status: StatusCode, headers: HeaderMap) -> Self {
        let mut e = Self::new(ErrorKind::Connection, Cause::BareBadRequest);
        e.inner.status = Some(status);
        e.inner.headers = Some(headers);
        e
    }

    pub(crate) fn with_request(
        mut self,
        method: &http::Method,
        path: &str,
        idempotency_key: Option<&str>,
    ) -> Self {
        self.inner.method = Some(method.clone());
        self.inner.path = Some(path.to_owned());
        if self.inner.idempotency_key.is_none() {
            self.inner.idempotency_key = idempotency_key.map(str::to_owned);
        }
        self
    }

    pub(crate) fn set_kind(&mut self, kind: ErrorKind) {
        self.inner.kind = kind;
    }

    /// Marks an error raised while obtaining the credential (not retried by the HTTP layer).
    pub(crate) fn in_auth_flow(mut self) -> Self {
        self.inner.auth_flow = true;
        self
    }

    /// Whether the HTTP layer retries this failure: any transport failure (connection,
    /// timeout, undecodable body), but not credential or request-building errors.
    pub(crate) fn is_http_retryable(&self) -> bool {
        !self.inner.auth_flow
            && matches!(
                self.inner.kind,
                ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Decode
            )
    }

    pub(crate) fn with_attempts(mut self, retries: u32, elapsed: Duration) -> Self {
        self.inner.retries = retries;
        self.inner.elapsed = Some(elapsed);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status, when a response was received.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// The response headers, when a response was received.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.inner.headers.as_ref()
    }

    /// Whether the operation-level retry loop (protocol §6.2) would retry this error:
    /// connection failures and timeouts, and statuses 408, 409, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self.inner.kind {
            ErrorKind::Connection | ErrorKind::Timeout => true,
            _ => self
                .inner
                .status
                .is_some_and(|s| crate::retry::is_retryable_status(s.as_u16())),
        }
    }

    /// Whether the failure is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// Whether the server answered 401 with `WWW-Authenticate: … error="invalid_token"`.
    pub fn is_invalid_token(&self) -> bool {
        self.inner.status == Some(StatusCode::UNAUTHORIZED)
            && self
                .inner
                .headers
                .as_ref()
                .is_some_and(crate::auth::is_invalid_token_challenge)
    }

    /// The response size limit that was exceeded, for [`ErrorKind::ResponseTooLarge`].
    pub fn size_limit(&self) -> Option<u64> {
        match self.inner.cause {
            Cause::TooLarge { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// How long until an open circuit lets trial calls through, for
    /// [`ErrorKind::CircuitOpen`] (zero while trial calls are in flight).
    pub fn circuit_retry_in(&self) -> Option<Duration> {
        match self.inner.cause {
            Cause::CircuitOpen { retry_in, .. } => Some(retry_in),
            _ => None,
        }
    }

    /// The server's request id (`x-request-id` response header), if it sent one.
    pub fn request_id(&self) -> Option<&str> {
        self.inner
            .headers
            .as_ref()?
            .get("x-request-id")?
            .to_str()
            .ok()
    }

    /// The `X-Idempotency-Key` sent with every attempt of the failed call.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.inner.idempotency_key.as_deref()
    }

    /// How many HTTP-level retries were taken before giving up.
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// Time from the first attempt to the failure.
    pub fn elapsed(&self) -> Option<Duration> {
        self.inner.elapsed
    }

    /// The request method and path (`/api/v1/...`), when known.
    pub fn request(&self) -> Option<(&http::Method, &str)> {
        Some((self.inner.method.as_ref()?, self.inner.path.as_deref()?))
    }

    /// The raw error body (for callers that parse `{"detail": ...}` themselves).
    pub fn body(&self) -> Option<&Bytes> {
        self.inner.body.as_ref()
    }

    /// A short, printable excerpt of the error body with secret-looking values redacted.
    pub fn body_excerpt(&self) -> Option<String> {
        let body = self.inner.body.as_ref()?;
        let cut = &body[..body.len().min(EXCERPT_LIMIT)];
        let mut text = String::from_utf8_lossy(cut).into_owned();
        if body.len() > EXCERPT_LIMIT {
            text.push('…');
        }
        Some(crate::redact::redact_secrets(&text))
    }

    /// The `detail` field of a JSON error body (`{"detail": "..."}`), redacted.
    pub fn detail(&self) -> Option<String> {
        let body = self.inner.body.as_ref()?;
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let detail = value.get("detail")?;
        let text = match detail.as_str() {
            Some(s) => s.to_owned(),
            None => detail.to_string(),
        };
        Some(crate::redact::redact_secrets(&text))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.inner.cause, self.inner.status) {
            (Cause::Status { .. }, Some(status)) => {
                // The SDK's message shape: "Error code: <status> - <body>".
                write!(f, "Error code: {}", status.as_u16())?;
                if let Some(excerpt) = self.body_excerpt().filter(|e| !e.is_empty()) {
                    write!(f, " - {excerpt}")?;
                }
            }
            (cause, _) => write!(f, "{}", crate::redact::redact_secrets(&cause.to_string()))?,
        }
        if let Some((method, path)) = self.request() {
            write!(f, " ({method} {path}")?;
            if self.inner.retries > 0 {
                write!(f, " after {} retries", self.inner.retries)?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so headers (which may echo credentials) never print.
        f.debug_struct("TransportError")
            .field("kind", &self.inner.kind)
            .field("status", &self.inner.status)
            .field("message", &self.to_string())
            .field("request_id", &self.request_id())
            .field("idempotency_key", &self.inner.idempotency_key)
            .field("retries", &self.inner.retries)
            .field("elapsed", &self.inner.elapsed)
            .finish()
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.cause {
            Cause::Connect { source } | Cause::Body { source } => Some(source.as_ref()),
            Cause::ContentDecoding { source, .. } | Cause::Compress { source } => Some(source),
            Cause::Json { source } | Cause::EncodeJson { source } => Some(source),
            _ => None,
        }
    }
}
