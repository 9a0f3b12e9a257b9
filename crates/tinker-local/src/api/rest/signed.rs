//! Signed URLs: self-referencing download links whose signature is the credential.

use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::api::{ApiError, ApiResult};
use crate::state::AppState;

/// `http://<host>` of the request, for self-referencing URLs.
pub(super) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.addr.to_string());
    format!("http://{host}")
}

/// The query (`expires`, `sig`) that signs `resource`, and when it expires.
pub(super) fn signed_query(state: &AppState, resource: &str) -> (String, DateTime<Utc>) {
    let lifetime = chrono::Duration::from_std(state.config.signed_url_lifetime)
        .unwrap_or(chrono::Duration::hours(1));
    let expires = Utc::now() + lifetime;
    let exp = expires.timestamp();
    let sig = state.sign(&format!("url:{resource}:{exp}"));
    (format!("expires={exp}&sig={sig}"), expires)
}

/// The signature query of a signed URL.
#[derive(Deserialize)]
pub(super) struct Signature {
    expires: i64,
    sig: String,
}

/// 403 unless `s` is a valid, unexpired signature of `resource`.
pub(super) fn check_signature(state: &AppState, resource: &str, s: &Signature) -> ApiResult<()> {
    if state.sign(&format!("url:{resource}:{}", s.expires)) != s.sig {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid signature"));
    }
    if s.expires < Utc::now().timestamp() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the signed URL has expired",
        ));
    }
    Ok(())
}
