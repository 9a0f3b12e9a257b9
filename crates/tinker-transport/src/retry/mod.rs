//! Retry policy, stated once (protocol §6.1, §6.2).
//!
//! * [`is_retryable_status`] and [`is_user_error_status`] are the two status predicates
//!   (protocol §1.7, §6.1) every layer asks: the HTTP retry, the operation loop, the
//!   client's `Error::is_retryable`/`is_user_error` and telemetry's error report.
//! * [`classify_response`] is the HTTP-layer decision table: `x-should-retry` wins, then
//!   the retryable statuses are retried; nothing else is.
//! * [`backoff`] holds every schedule (HTTP layer: jittered `min(0.5·2^r, 10)` s or the
//!   server's `Retry-After`; operation loop and future polling: `min(2^a, 30)` s; the
//!   sampling retry handler: `min(0.5·2^a, 10)` s ± 25 %) and the `Retry-After` parser.
//! * [`RetryConfig`] holds the sampling retry handler's knobs (the SDK's `RetryConfig`).
//! * [`OperationRetry`] is the holder-level loop (§6.2) the client wraps around whole
//!   operations, including the 402 billing-pause window.
//! * The HTTP-layer retry itself runs as a `tower::retry::Policy` inside the transport
//!   stack (module `http_policy`).

pub mod backoff;
mod config;
pub(crate) mod http_policy;
mod operation;

use http::HeaderMap;

pub use config::RetryConfig;
pub use operation::{BillingPause, OperationRetry, OperationRetryConfig, RetryClass, Retryable};

/// Statuses worth another attempt (protocol §6.1), for every retry layer: 408 (request
/// timeout), 409 (conflict), 429 (rate limited) and every status ≥ 500.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// Whether a status is the caller's fault (protocol §1.7): any 4xx except 408, which is the
/// server's (it timed out). Telemetry reports these as `user_error` events.
pub fn is_user_error_status(status: u16) -> bool {
    (400..500).contains(&status) && status != 408
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

    /// The whole status range, class by class: (retryable?, user error?) as the SDK decides.
    #[test]
    fn status_rules_table() {
        // (first, last, retryable, user error); the listed exceptions override their class.
        let table: &[(u16, u16, bool, bool)] = &[
            (100, 399, false, false),
            (400, 407, false, true),
            (408, 408, true, false),
            (409, 409, true, true),
            (410, 428, false, true),
            (429, 429, true, true),
            (430, 499, false, true),
            (500, 599, true, false),
        ];
        let mut covered = 0;
        for &(first, last, retryable, user) in table {
            for s in first..=last {
                assert_eq!(is_retryable_status(s), retryable, "retryable({s})");
                assert_eq!(is_user_error_status(s), user, "user_error({s})");
                covered += 1;
            }
        }
        assert_eq!(covered, 500, "the table covers 100..600 exactly once");
    }

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
