//! The engine's single error type: opaque, with a clear message and a user/internal split.

use std::fmt;

/// What went wrong, coarsely: the server maps this to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The caller sent something invalid (bad shapes, token ids, missing loss inputs, …).
    User,
    /// A file or checkpoint the caller named does not exist.
    NotFound,
    /// A bug or an I/O failure on our side.
    Internal,
}

/// An engine failure. `Display` gives a message fit to show a client.
#[derive(Debug, Clone)]
pub struct EngineError {
    kind: Kind,
    message: String,
}

impl EngineError {
    /// Bad input from the caller (maps to HTTP 400, category "user").
    pub(crate) fn user(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::User,
            message: message.into(),
        }
    }

    /// A named file or checkpoint is missing.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::NotFound,
            message: message.into(),
        }
    }

    /// A failure on our side.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Internal,
            message: message.into(),
        }
    }

    /// True when the request itself was invalid (bad shapes, ids out of range, missing inputs,
    /// incompatible checkpoint): the server should answer 400 rather than 500.
    pub fn is_user_error(&self) -> bool {
        matches!(self.kind, Kind::User | Kind::NotFound)
    }

    /// True when a file or checkpoint the request named does not exist (a user error too).
    pub fn is_not_found(&self) -> bool {
        self.kind == Kind::NotFound
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineError {}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        Self::internal(format!("tensor computation failed: {e}"))
    }
}

/// Shorthand for engine results.
pub(crate) type Result<T> = std::result::Result<T, EngineError>;
