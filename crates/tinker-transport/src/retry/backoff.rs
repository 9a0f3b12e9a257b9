//! Backoff schedules and `Retry-After` parsing.

use std::time::Duration;

use http::HeaderMap;

/// First HTTP-layer retry delay before jitter (seconds).
const INITIAL_RETRY_DELAY: f64 = 0.5;
/// Cap of the HTTP-layer retry delay before jitter (seconds).
const MAX_RETRY_DELAY: f64 = 10.0;
/// Server hints are honoured only within (0, 60] seconds.
const MAX_RETRY_AFTER: f64 = 60.0;

/// The HTTP-layer delay before retry number `retries_taken + 1` (protocol §6.1):
/// `min(0.5·2^r, 10) · (1 − 0.25·u)` seconds with `u` uniform in `[0, 1)`.
pub fn http_backoff(retries_taken: u32, unit_jitter: f64) -> Duration {
    let exp = f64::from(retries_taken.min(1000));
    let base = (INITIAL_RETRY_DELAY * 2f64.powf(exp)).min(MAX_RETRY_DELAY);
    let jitter = 1.0 - 0.25 * unit_jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64((base * jitter).max(0.0))
}

/// The delay the HTTP layer sleeps before a retry: the server's hint when it is within
/// (0, 60] s, else [`http_backoff`].
pub fn http_retry_delay(
    retries_taken: u32,
    headers: Option<&HeaderMap>,
    unix_now: f64,
    unit_jitter: f64,
) -> Duration {
    if let Some(after) = headers.and_then(|h| retry_after_secs(h, unix_now))
        && after > 0.0
        && after <= MAX_RETRY_AFTER
    {
        return Duration::from_secs_f64(after);
    }
    http_backoff(retries_taken, unit_jitter)
}

/// The server's retry hint in seconds: `retry-after-ms` (float milliseconds), else
/// `retry-after` as float seconds, else as an HTTP date (relative to `unix_now`).
/// The caller applies the (0, 60] window.
pub fn retry_after_secs(headers: &HeaderMap, unix_now: f64) -> Option<f64> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_float)
    {
        return Some(ms / 1000.0);
    }
    let value = headers.get("retry-after")?.to_str().ok()?;
    parse_retry_after(value, unix_now)
}

/// Parses a `Retry-After` value: seconds (floats accepted) or an HTTP date.
pub fn parse_retry_after(value: &str, unix_now: f64) -> Option<f64> {
    if let Some(secs) = parse_float(value) {
        return Some(secs);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let at = date.timestamp() as f64 + f64::from(date.timestamp_subsec_millis()) / 1000.0;
    Some(at - unix_now)
}

/// Python-`float()`-like parsing: surrounding whitespace allowed, finite values only.
fn parse_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Cap of the operation-loop and polling delay (seconds).
const MAX_OPERATION_DELAY: u64 = 30;

/// The doubling schedule of the operation loop (protocol §6.2) and of `retrieve_future`
/// polling (§3.2): `min(2^a, 30)` seconds before retry `a + 1`.
pub fn exponential_backoff(attempt: u32) -> Duration {
    Duration::from_secs(
        2u64.saturating_pow(attempt.min(62))
            .min(MAX_OPERATION_DELAY),
    )
}

/// The operation-loop delay before attempt `attempt + 1` (protocol §6.2):
/// [`exponential_backoff`], truncated so the loop never sleeps past `remaining`.
pub fn operation_backoff(attempt: u32, remaining: Duration) -> Duration {
    exponential_backoff(attempt).min(remaining)
}

/// First delay of the sampling retry handler (seconds), doubled for each further one.
pub(super) const SAMPLING_FIRST_DELAY: f64 = 0.5;
/// Cap of the sampling retry handler's delay (seconds), jitter included.
pub(super) const SAMPLING_MAX_DELAY: f64 = 10.0;
/// Uniform jitter of a sampling delay, as a fraction of it (±).
pub(super) const SAMPLING_JITTER: f64 = 0.25;

/// The sampling retry handler's delay after failed attempt `attempt_count` (1-based,
/// protocol §6.5): `min(0.5·2^(n−1), 10)` seconds ± 25 % (`unit_jitter` uniform in
/// `[0, 1)`), clamped to `[0, 10]`.
pub fn sampling_backoff(attempt_count: u32, unit_jitter: f64) -> Duration {
    let exponent = i32::try_from(attempt_count.saturating_sub(1)).unwrap_or(i32::MAX);
    let base = (SAMPLING_FIRST_DELAY * 2f64.powi(exponent)).min(SAMPLING_MAX_DELAY);
    let jitter = base * SAMPLING_JITTER * (2.0 * unit_jitter - 1.0);
    Duration::from_secs_f64((base + jitter).clamp(0.0, SAMPLING_MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn http_schedule_matches_the_sdk() {
        let no_jitter: Vec<f64> = (0..7).map(|r| http_backoff(r, 0.0).as_secs_f64()).collect();
        assert_eq!(no_jitter, vec![0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        assert!((http_backoff(0, 0.999_999).as_secs_f64() - 0.375).abs() < 1e-3);
        assert_eq!(http_backoff(u32::MAX, 0.0), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2.5"));
        assert_eq!(retry_after_secs(&h, 0.0), Some(2.5));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after_secs(&h, 0.0), Some(1.5));
        let now = 1_445_412_480.0; // 2015-10-21T07:28:00Z
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30.0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // Outside (0, 60]: fall back to the schedule.
        let mut big = HeaderMap::new();
        big.insert("retry-after", HeaderValue::from_static("120"));
        assert_eq!(
            http_retry_delay(0, Some(&big), 0.0, 0.0),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn sampling_schedule() {
        let mid: Vec<f64> = (1..8)
            .map(|n| sampling_backoff(n, 0.5).as_secs_f64())
            .collect();
        assert_eq!(mid, vec![0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        assert!((sampling_backoff(1, 0.0).as_secs_f64() - 0.375).abs() < 1e-9);
        assert!((sampling_backoff(2, 0.999_999).as_secs_f64() - 1.25).abs() < 1e-5);
        // Jitter never pushes past the cap.
        assert_eq!(sampling_backoff(10, 0.999_999), Duration::from_secs(10));
        assert_eq!(sampling_backoff(u32::MAX, 0.5), Duration::from_secs(10));
    }

    #[test]
    fn operation_schedule() {
        let polls: Vec<u64> = (0..8).map(|a| exponential_backoff(a).as_secs()).collect();
        assert_eq!(polls, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(exponential_backoff(u32::MAX), Duration::from_secs(30));
        let long = Duration::from_secs(1000);
        let got: Vec<u64> = (0..7)
            .map(|a| operation_backoff(a, long).as_secs())
            .collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(
            operation_backoff(10, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }
}
