//! The check every `tinker://` path a caller names goes through before it is sent.

use crate::error::{Error, Result};

/// Rejects a path that is not a `tinker://` path, before any request is made.
pub(crate) fn check_tinker_path(path: &str) -> Result<()> {
    if !path.starts_with("tinker://") {
        return Err(Error::invalid(format!("{path:?} is not a tinker:// path")));
    }
    Ok(())
}
