//! The error type of every client call.

use std::fmt;

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
    /// Connection failure or timeout.
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
    /// The caller's bound on waiting for a result passed
    /// ([`ApiFuture::result_timeout`](crate::ApiFuture::result_timeout)).
    Timeout,
    /// A tokenizer could not be loaded or used.
    Tokenizer,
    /// Local file-system failure (downloads).
    Io,
    /// A download was refused for safety before or while writing: a signed URL that is not
    /// https, a link or existing file in the way, or a file over the size limit.
    DownloadRefused,
    /// The feature is not available (not implemented, or not offered by the server).
    Unsupported,
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
        }
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

    /// The message, without the source's.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error is the caller's fault (a user failure or a 4xx other than 408).
    pub fn is_user_error(&self) -> bool {
        match self.kind {
            ErrorKind::InvalidInput | ErrorKind::BadMetricKey | ErrorKind::Config => true,
            ErrorKind::RequestFailed => self.category == Some(FailureCategory::User),
            ErrorKind::Api => matches!(self.status, Some(s) if (400..500).contains(&s) && s != 408),
            _ => false,
        }
    }

    /// Whether retrying the same call may succeed (connection trouble, 408/409/429/5xx, 410).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Connection | ErrorKind::Expired => true,
            ErrorKind::Api => {
                matches!(self.status, Some(408 | 409 | 429))
                    || self.status.is_some_and(|s| s >= 500)
            }
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
