//! The error type of every client call, and how transport and wire-type errors become it.
//!
//! Who is at fault decides the kind: what the caller gave that cannot be validated or
//! encoded is [`ErrorKind::InvalidInput`]; what the server sent that cannot be decoded is
//! [`ErrorKind::Protocol`] (never a user error). Errors that come from an HTTP call keep
//! its request id, retry count and elapsed time.

use std::fmt;
use std::time::Duration;

use tinker_transport::TransportError;
use tinker_transport::retry::{is_retryable_status, is_user_error_status};

/// What went wrong, as data: callers branch on this, not on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input was refused before anything was sent (empty data, misshapen
    /// loss inputs, a bad path…).
    InvalidInput,
    /// A metric key without exactly one `:` in a result.
    BadMetricKey,
    /// Configuration or environment problem (missing key, bad URL…).
    Config,
    /// The server answered with a non-success HTTP status; see [`Error::status`].
    Api,
    /// An asynchronous request failed on the server (`{"error", "category"}`).
    RequestFailed,
    /// The server lost or expired the future (HTTP 410); sampling resubmits on its own.
    Expired,
    /// Connection failure: refused, reset, truncated, TLS, proxy or DNS (timeouts are
    /// [`ErrorKind::Timeout`]).
    Connection,
    /// The server sent something this client cannot interpret.
    Protocol,
    /// The operation was cancelled (its client was closed or failed before it ran).
    Cancelled,
    /// A training client lost a `seq_id` (a request that failed for good may never have
    /// reached the server), so none of its later requests can run; the message names the
    /// lost request. Create a new training client from the last checkpoint.
    SequenceBroken,
    /// No request made progress for the stuck-detection window.
    Stuck,
    /// A timeout: an HTTP connect, read or operation timeout (retryable; the transport
    /// already retried it), or the caller's bound on waiting for a result
    /// ([`ApiFuture::result_timeout`](crate::ApiFuture::result_timeout)).
    Timeout,
    /// The server's reply was larger than the transport's response size limit
    /// (`TransportBuilder::max_response_bytes`); not retried.
    ResponseTooLarge,
    /// A tokenizer could not be loaded or used.
    Tokenizer,
    /// Local file-system failure (downloads).
    Io,
    /// A download was refused for safety before or while writing: a signed URL that is not
    /// https, a link or existing file in the way, or a file over the size limit.
    DownloadRefused,
    /// The feature is not available (not implemented, or not offered by the server).
    Unsupported,
    /// Automatic recovery of a broken training run gave up: every restore attempt failed
    /// (the source is the last attempt's error), or there was no checkpoint to restore
    /// from (see [`crate::recovery`]).
    RecoveryFailed,
    /// The transport's circuit breaker for this endpoint family is open after repeated
    /// server failures; nothing was sent. Not retried.
    CircuitOpen,
}

/// Who the server blames for a failed asynchronous request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureCategory {
    /// The caller's request was at fault.
    User,
    /// A server-side failure.
    Server,
    /// Unknown, or a category this client does not know.
    Unknown,
}

/// The error of every client call.
pub struct Error {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    category: Option<FailureCategory>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    call: CallInfo,
}

/// What is known of the HTTP call behind an error.
#[derive(Debug, Clone, Default)]
struct CallInfo {
    request_id: Option<String>,
    retries: u32,
    elapsed: Option<Duration>,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            category: None,
            source: None,
            call: CallInfo::default(),
        }
    }

    /// A reply from the server that does not decode: the server's fault, not the caller's.
    pub(crate) fn bad_reply(e: tinker_types::Error) -> Self {
        Self::protocol(format!("the server sent an invalid reply: {e}")).with_source(e)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    pub(crate) fn api(status: u16, body: &str) -> Self {
        let kind = if status == 410 {
            ErrorKind::Expired
        } else {
            ErrorKind::Api
        };
        let mut body = body.to_owned();
        if body.len() > 2000 {
            let mut cut = 2000;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        Self {
            status: Some(status),
            ..Self::new(kind, format!("Error code: {status} - {body}"))
        }
    }

    pub(crate) fn request_failed(message: String, category: FailureCategory) -> Self {
        Self {
            category: Some(category),
            ..Self::new(ErrorKind::RequestFailed, message)
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status, for [`ErrorKind::Api`] and [`ErrorKind::Expired`].
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The failure category, for [`ErrorKind::RequestFailed`].
    pub fn category(&self) -> Option<FailureCategory> {
        self.category
    }

    /// The server's request id (its `x-request-id` response header), when the failing
    /// HTTP call got an answer that named one.
    pub fn request_id(&self) -> Option<&str> {
        self.call.request_id.as_deref()
    }

    /// HTTP-level retries the failing call took before giving up (0 when it was not an
    /// HTTP failure or was not retried).
    pub fn retries(&self) -> u32 {
        self.call.retries
    }

    /// Time from the failing call's first HTTP attempt to its failure, when the error
    /// came from an HTTP call.
    pub fn elapsed(&self) -> Option<Duration> {
        self.call.elapsed
    }

    /// The transport error behind this one, if it came from an HTTP call.
    fn transport(&self) -> Option<&TransportError> {
        self.source.as_deref()?.downcast_ref::<TransportError>()
    }

    /// The message, without the source's.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error is the caller's fault (a user failure or a 4xx other than 408).
    pub fn is_user_error(&self) -> bool {
        match self.kind {
            ErrorKind::InvalidInput | ErrorKind::BadMetricKey | ErrorKind::Config => true,
            ErrorKind::RequestFailed => self.category == Some(FailureCategory::User),
            ErrorKind::Api => self.status.is_some_and(is_user_error_status),
            _ => false,
        }
    }

    /// Whether retrying the same call may succeed (connection trouble, HTTP timeouts,
    /// 408/409/429/5xx, 410).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Connection | ErrorKind::Expired => true,
            // HTTP timeouts are; the caller's own `result_timeout` is not.
            ErrorKind::Timeout => self.transport().is_some_and(TransportError::is_timeout),
            ErrorKind::Api => self.status.is_some_and(is_retryable_status),
            _ => false,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = self.status {
            d.field("status", &s);
        }
        if let Some(c) = self.category {
            d.field("category", &c);
        }
        if let Some(id) = &self.call.request_id {
            d.field("request_id", id);
        }
        if self.call.retries > 0 {
            d.field("retries", &self.call.retries);
        }
        if let Some(e) = self.call.elapsed {
            d.field("elapsed", &e);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        use tinker_transport::ErrorKind as K;
        let mut err = if let Some(status) = e.status() {
            let body = e.body_excerpt().unwrap_or_default();
            Error::api(status.as_u16(), &body)
        } else {
            let k = match e.kind() {
                K::Timeout => ErrorKind::Timeout,
                K::Credential => ErrorKind::Config,
                K::InvalidRequest => ErrorKind::InvalidInput,
                K::Decode => ErrorKind::Protocol,
                K::ResponseTooLarge => ErrorKind::ResponseTooLarge,
                K::CircuitOpen => ErrorKind::CircuitOpen,
                _ => ErrorKind::Connection,
            };
            Error::new(k, e.to_string())
        };
        err.call = CallInfo {
            request_id: e.request_id().map(str::to_owned),
            retries: e.retries(),
            elapsed: e.elapsed(),
        };
        err.with_source(e)
    }
}

/// A wire-type error reaching the client through `?`. The client decodes JSON only from
/// server replies (user inputs arrive typed), so a JSON decoding error is the server's:
/// [`ErrorKind::Protocol`]. Everything else (validation, encoding, paths, tensors, loss
/// inputs) is about what the caller gave: [`ErrorKind::InvalidInput`]. Other decoding
/// failures of replies go through `Error::bad_reply` explicitly.
impl From<tinker_types::Error> for Error {
    fn from(e: tinker_types::Error) -> Self {
        match e {
            tinker_types::Error::Decode { .. } => Error::bad_reply(e),
            _ => Error::invalid(e.to_string()).with_source(e),
        }
    }
}
