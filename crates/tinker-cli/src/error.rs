//! The CLI's error: a message, optional details that say what to do next, an exit code.

use std::fmt;

use tinker_client::ErrorKind;

/// What went wrong, shown as `Error: <message>` plus details on stderr.
#[derive(Debug)]
pub(crate) struct CliError {
    /// One line.
    pub message: String,
    /// What to do next, or the server's detail.
    pub details: Option<String>,
}

impl CliError {
    /// An error without details.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: None,
        }
    }

    /// An error with details.
    pub(crate) fn with(message: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: Some(details.into()),
        }
    }

    /// A local I/O failure.
    pub(crate) fn io(what: &str, e: &std::io::Error) -> Self {
        Self::with(format!("Failed {what}"), e.to_string())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", self.message)?;
        if let Some(d) = &self.details {
            write!(f, "\n{d}")?;
        }
        Ok(())
    }
}

const LOGIN_HINT: &str = "Run 'tinker auth login' or set TINKER_API_KEY.";

impl From<tinker_client::Error> for CliError {
    fn from(e: tinker_client::Error) -> Self {
        // The client's messages never contain the key (its errors are redacted).
        let detail = format!("Details: {}", e.message());
        match (e.kind(), e.status()) {
            (ErrorKind::Api, Some(404)) => Self::with("Resource not found", detail),
            (ErrorKind::Api, Some(401)) => {
                Self::with("Authentication failed", format!("{LOGIN_HINT}\n{detail}"))
            }
            (ErrorKind::Api, Some(402)) => Self::with(
                "Billing issue",
                format!("Check your billing settings in the Tinker console.\n{detail}"),
            ),
            (ErrorKind::Api, Some(403)) => Self::with(
                "Permission denied",
                format!("Your credential cannot access this resource.\n{detail}"),
            ),
            (ErrorKind::Api, Some(410)) | (ErrorKind::Expired, _) => Self::with(
                "Expired",
                format!("The resource or its signed URL expired; run the command again.\n{detail}"),
            ),
            (ErrorKind::Unsupported, _) => Self::with(
                "Not supported",
                format!("This server or credential does not offer it.\n{detail}"),
            ),
            (ErrorKind::Api, Some(400 | 422)) | (ErrorKind::InvalidInput, _) => {
                Self::with("Invalid request", detail)
            }
            (ErrorKind::Config, _) => {
                Self::with("Configuration error", format!("{detail}\n{LOGIN_HINT}"))
            }
            (ErrorKind::Connection | ErrorKind::Timeout, _) => Self::with(
                "Could not reach the Tinker API",
                format!("Check your network and TINKER_BASE_URL.\n{detail}"),
            ),
            (ErrorKind::Api, Some(s)) if s >= 500 => Self::with("Server error", detail),
            _ => Self::with("Request failed", detail),
        }
    }
}

impl From<tinker_transport::TransportError> for CliError {
    fn from(e: tinker_transport::TransportError) -> Self {
        use tinker_transport::ErrorKind as K;
        // TransportError's Display is redacted (headers never print).
        let detail = format!("Details: {e}");
        match e.kind() {
            K::Credential => Self::with(
                "No Tinker credentials are available",
                format!("{LOGIN_HINT}\n{detail}"),
            ),
            K::Authentication => {
                Self::with("Authentication failed", format!("{LOGIN_HINT}\n{detail}"))
            }
            K::NotFound => Self::with("Resource not found", detail),
            K::Connection | K::Timeout => Self::with(
                "Could not reach the Tinker API",
                format!("Check your network and TINKER_BASE_URL.\n{detail}"),
            ),
            _ => Self::with("Request failed", detail),
        }
    }
}
