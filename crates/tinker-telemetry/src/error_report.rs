//! [`ErrorReport`]: what telemetry records about a failed call.
//!
//! The official SDK inspects Python exceptions; here the caller (the SDK client) describes
//! its error once, and the reporter turns it into either a `user_error` generic event or an
//! `UNHANDLED_EXCEPTION` event.

use std::error::Error as StdError;

use serde_json::Value;

/// Whether an HTTP status marks a user error (any 4xx except 408): the rule is stated once,
/// in the transport's retry module, beside the retryable statuses.
pub use tinker_transport::retry::is_user_error_status;

/// A description of an error for telemetry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ErrorReport {
    /// The error's type name (Python: the exception class), e.g. `BadRequestError`.
    pub error_type: String,
    /// The error's message.
    pub message: String,
    /// The HTTP status, when the error came from a response.
    pub status_code: Option<u16>,
    /// The response body (JSON), when there was one.
    pub body: Option<Value>,
    /// The chain of causes, one per line (Python: the traceback).
    pub traceback: Option<String>,
    /// Whether this is the user's fault (bad request, auth, …) rather than the SDK's or the
    /// server's. User errors are reported as a `user_error` generic event.
    pub user_error: bool,
}

impl ErrorReport {
    /// A report with a type name and message; not a user error.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            status_code: None,
            body: None,
            traceback: None,
            user_error: false,
        }
    }

    /// A report from a Rust error: its short type name, its message, and its `source()`
    /// chain as the traceback. Not a user error until [`status`](Self::status) or
    /// [`user_error`](Self::user_error) says so.
    pub fn from_error<E: StdError + 'static>(err: &E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full
            .split('<')
            .next()
            .and_then(|path| path.rsplit("::").next())
            .unwrap_or(full);
        let mut causes = Vec::new();
        let mut source = err.source();
        while let Some(cause) = source {
            causes.push(format!("Caused by: {cause}"));
            source = cause.source();
        }
        let mut report = Self::new(short, err.to_string());
        if !causes.is_empty() {
            report.traceback = Some(causes.join("\n"));
        }
        report
    }

    /// Sets the HTTP status; a 4xx other than 408 makes it a user error.
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status_code = Some(status);
        self.user_error |= is_user_error_status(status);
        self
    }

    /// Sets the response body.
    #[must_use]
    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Marks it as a user error (Python: `RequestFailedError` with category `user`).
    #[must_use]
    pub fn user_error(mut self, user_error: bool) -> Self {
        self.user_error = user_error;
        self
    }

    /// Sets the traceback text.
    #[must_use]
    pub fn traceback(mut self, traceback: impl Into<String>) -> Self {
        self.traceback = Some(traceback.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request failed")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    /// The report follows the transport's table (tested there over 100..600).
    #[test]
    fn with_status_marks_user_errors() {
        for s in 100..600 {
            let report = ErrorReport::new("E", "m").status(s);
            assert_eq!(report.user_error, is_user_error_status(s), "{s}");
        }
        assert!(ErrorReport::new("E", "m").status(404).user_error);
        assert!(!ErrorReport::new("E", "m").status(408).user_error);
        assert!(!ErrorReport::new("E", "m").status(500).user_error);
    }

    #[test]
    fn from_error_names_type_and_chain() {
        let err = Outer(std::io::Error::other("socket closed"));
        let report = ErrorReport::from_error(&err);
        assert_eq!(report.error_type, "Outer");
        assert_eq!(report.message, "request failed");
        assert_eq!(
            report.traceback.as_deref(),
            Some("Caused by: socket closed")
        );
        assert!(!report.user_error);
        let report = report.status(422);
        assert!(report.user_error);
        assert!(!ErrorReport::new("T", "m").status(408).user_error);
    }
}
