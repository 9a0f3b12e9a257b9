//! `Sensitive`: a string that must never show up in logs or `Debug` output.

use serde::{Deserialize, Serialize};

/// A secret string (JWT, access token). `Debug` prints `Sensitive(<redacted>)`; the value is
/// only reachable through [`Sensitive::expose`] and is serialized as a plain string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sensitive(<redacted>)")
    }
}

impl From<String> for Sensitive {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Sensitive {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}
