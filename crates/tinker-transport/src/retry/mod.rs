//! Retry policy, stated once (protocol §6.1, §6.2).
//!
//! * [`classify_response`] is the HTTP-layer decision table: `x-should-retry` wins, then
//!   status 408, 409, 429 and ≥ 500 are retried; nothing else is.
//! * [`backoff`] holds the two schedules (HTTP layer: jittered `min(0.5·2^r, 10)` s or the
//!   server's `Retry-After`; operation loop: `min(2^a, 30)` s within 300 s) and the
//!   `Retry-After` parser.
//! * [`OperationRetry`] is the holder-level loop (§6.2) the client wraps around whole
//!   operations, including the 402 billing-pause window.
//! * The HTTP-layer retry itself runs as a `tower::retry::Policy` inside the transport
//!   stack (module `http_policy`).

pub mod backoff;
pub(crate) mod http_policy;
mod operation;

use http::HeaderMap;

pub use operation::{BillingPause, OperationRetry, OperationRetryConfig, RetryClass, Retryable};

/// Statuses retried by both retry layers: 408, 409, 429 and every 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// The HTTP layer's verdict on one response (protocol §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseVerdict {
    /// A success: return it.
    Success,
    /// A failure worth another attempt.
    Retry,
    /// A failure to return as is.
    Fail,
}

/// Classifies a response: `x-should-retry: true|false` overrides everything (even on a
/// success status, as in the SDK only non-2xx responses are considered); otherwise 408,
/// 409, 429 and ≥ 500 are retried.
pub fn classify_response(status: http::StatusCode, headers: &HeaderMap) -> ResponseVerdict {
    if status.is_success() {
        return ResponseVerdict::Success;
    }
    match headers
        .get("x-should-retry")
        .map(http::HeaderValue::as_bytes)
    {
        Some(b"true") => return ResponseVerdict::Retry,
        Some(b"false") => return ResponseVerdict::Fail,
        _ => {}
    }
    if is_retryable_status(status.as_u16()) {
        ResponseVerdict::Retry
    } else {
        ResponseVerdict::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, StatusCode};

    #[test]
    fn status_table() {
        let empty = HeaderMap::new();
        let retried: Vec<u16> = (200..600)
            .filter(|s| {
                StatusCode::from_u16(*s)
                    .is_ok_and(|st| classify_response(st, &empty) == ResponseVerdict::Retry)
            })
            .filter(|s| *s < 500)
            .collect();
        assert_eq!(retried, vec![408, 409, 429]);
        for s in [500u16, 502, 503, 504, 599] {
            let st = StatusCode::from_u16(s).unwrap();
            assert_eq!(classify_response(st, &empty), ResponseVerdict::Retry);
        }
        let mut no = HeaderMap::new();
        no.insert("x-should-retry", HeaderValue::from_static("false"));
        assert_eq!(
            classify_response(StatusCode::BAD_GATEWAY, &no),
            ResponseVerdict::Fail
        );
        let mut yes = HeaderMap::new();
        yes.insert("x-should-retry", HeaderValue::from_static("true"));
        assert_eq!(
            classify_response(StatusCode::BAD_REQUEST, &yes),
            ResponseVerdict::Retry
        );
        assert_eq!(
            classify_response(StatusCode::OK, &no),
            ResponseVerdict::Success
        );
    }
}
