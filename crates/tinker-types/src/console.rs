//! Links into the Tinker console (`https://tinker.thinkingmachines.ai`), spelled as the
//! SDK's `lib/console_urls.py` spells them: ids that the SDK percent-encodes are encoded
//! the same way (every byte but `A-Z a-z 0-9 - . _ ~`), the others are used verbatim.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::Result;
use crate::path::TinkerPath;

/// The console's base URL.
pub const CONSOLE_BASE_URL: &str = "https://tinker.thinkingmachines.ai";

/// What Python's `urllib.parse.quote(s, safe="")` leaves alone: the RFC 3986 unreserved set.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `quote(text, safe="")`.
fn quote(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// `quote_plus(text, safe="")`, the encoding of `urlencode` values: as [`quote`], then
/// spaces as `+` (a literal `+` is already `%2B`).
fn quote_plus(text: &str) -> String {
    quote(text).replace("%20", "+")
}

/// The list of sessions.
pub fn sessions_console_url() -> String {
    format!("{CONSOLE_BASE_URL}/sessions")
}

/// One session (the id is not encoded, as in the SDK).
pub fn session_console_url(session_id: &str) -> String {
    format!("{CONSOLE_BASE_URL}/sessions/{session_id}")
}

/// One training run (the id is not encoded, as in the SDK).
pub fn training_run_console_url(training_run_id: &str) -> String {
    format!("{CONSOLE_BASE_URL}/training_runs/{training_run_id}")
}

/// One checkpoint; `checkpoint_id` is `<kind>/<name>` (its `/` is encoded too).
pub fn checkpoint_console_url(training_run_id: &str, checkpoint_id: &str) -> String {
    format!(
        "{CONSOLE_BASE_URL}/checkpoints/{}/{}",
        quote(training_run_id),
        quote(checkpoint_id)
    )
}

/// The checkpoint page of a `tinker://` path.
///
/// # Errors
/// [`crate::Error::InvalidTinkerPath`] when `tinker_path` is not a checkpoint path.
pub fn checkpoint_console_url_for_path(tinker_path: &str) -> Result<String> {
    let parsed = TinkerPath::parse(tinker_path)?;
    Ok(checkpoint_console_url(
        &parsed.training_run_id,
        &parsed.checkpoint_id(),
    ))
}

/// The playground, set up to sample from a checkpoint.
pub fn checkpoint_playground_url(tinker_path: &str) -> String {
    format!(
        "{CONSOLE_BASE_URL}/playground?mode=checkpoint&checkpoint={}",
        quote(tinker_path)
    )
}

/// The API keys page with the New API Key dialog open and `key_name` filled in.
pub fn new_api_key_console_url(key_name: &str) -> String {
    format!(
        "{CONSOLE_BASE_URL}/keys?new_key=true&key_name={}",
        quote_plus(key_name)
    )
}

/// One API key.
pub fn api_key_console_url(key_id: &str) -> String {
    format!("{CONSOLE_BASE_URL}/keys/{}", quote(key_id))
}
