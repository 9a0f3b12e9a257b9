//! [`RetryConfig`]: the knobs of the sampling client's outer retry handler (protocol
//! §6.5), the SDK's `RetryConfig`.

use std::time::Duration;

use super::backoff::{SAMPLING_FIRST_DELAY, SAMPLING_JITTER, SAMPLING_MAX_DELAY};

/// How a sampling client retries failed samples (the SDK's `RetryConfig`).
///
/// The defaults are the SDK's: unlimited retries of transient failures (timeouts,
/// connection errors, 408/409/410/429/5xx) with a delay of `min(0.5·2^(n−1), 10)` s
/// ± 25 %, and stuck detection after 7200 s without progress. The concurrency limit is
/// not here: as in the SDK, the server's client config always decides it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retry at all (default true). With false, a failed attempt is the call's error.
    pub enable_retry_logic: bool,
    /// Fail calls with `Stuck` when nothing completes for [`progress_timeout`](Self::progress_timeout)
    /// (default true; the server can turn it off).
    pub enable_stuck_detection: bool,
    /// The no-progress window of stuck detection (default 7200 s).
    pub progress_timeout: Duration,
    /// The first retry delay before jitter (default 0.5 s), doubled per retry.
    pub retry_delay_base: Duration,
    /// The cap of a retry delay, jitter included (default 10 s).
    pub retry_delay_max: Duration,
    /// Uniform jitter as a fraction of the delay, ± (default 0.25, clamped to `[0, 1]`).
    pub jitter_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enable_retry_logic: true,
            enable_stuck_detection: true,
            progress_timeout: Duration::from_secs(7200),
            retry_delay_base: Duration::from_secs_f64(SAMPLING_FIRST_DELAY),
            retry_delay_max: Duration::from_secs_f64(SAMPLING_MAX_DELAY),
            jitter_factor: SAMPLING_JITTER,
        }
    }
}

impl RetryConfig {
    /// No retries: each sample gets one attempt (its HTTP layer still retries).
    pub fn no_retries() -> Self {
        Self {
            enable_retry_logic: false,
            ..Self::default()
        }
    }

    /// Sets whether to retry.
    pub fn enable_retry_logic(mut self, enabled: bool) -> Self {
        self.enable_retry_logic = enabled;
        self
    }

    /// Sets whether stuck detection runs.
    pub fn enable_stuck_detection(mut self, enabled: bool) -> Self {
        self.enable_stuck_detection = enabled;
        self
    }

    /// Sets the no-progress window.
    pub fn progress_timeout(mut self, timeout: Duration) -> Self {
        self.progress_timeout = timeout;
        self
    }

    /// Sets the first delay and the cap.
    pub fn retry_delays(mut self, base: Duration, max: Duration) -> Self {
        self.retry_delay_base = base;
        self.retry_delay_max = max;
        self
    }

    /// Sets the jitter fraction.
    pub fn jitter_factor(mut self, factor: f64) -> Self {
        self.jitter_factor = factor;
        self
    }

    /// The delay after failed attempt `attempt_count` (1-based):
    /// `min(base·2^(n−1), max)` ± `jitter_factor` (`unit_jitter` uniform in `[0, 1)`),
    /// clamped to `[0, max]`.
    pub fn backoff(&self, attempt_count: u32, unit_jitter: f64) -> Duration {
        let exponent = i32::try_from(attempt_count.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = self.retry_delay_max.as_secs_f64();
        let base = (self.retry_delay_base.as_secs_f64() * 2f64.powi(exponent)).min(max);
        let factor = if self.jitter_factor.is_finite() {
            self.jitter_factor.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jitter = base * factor * (2.0 * unit_jitter.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base + jitter).clamp(0.0, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::backoff::sampling_backoff;

    #[test]
    fn default_schedule_is_the_sdks() {
        let c = RetryConfig::default();
        for n in 0..40 {
            for u in [0.0, 0.3, 0.5, 0.999_999] {
                assert_eq!(
                    c.backoff(n, u),
                    sampling_backoff(n, u),
                    "attempt {n}, jitter {u}"
                );
            }
        }
    }

    #[test]
    fn custom_schedule_without_jitter() {
        let c = RetryConfig::default()
            .retry_delays(Duration::from_millis(200), Duration::from_secs(1))
            .jitter_factor(0.0);
        let delays: Vec<u128> = (1..6).map(|n| c.backoff(n, 0.9).as_millis()).collect();
        assert_eq!(delays, vec![200, 400, 800, 1000, 1000]);
        // Nonsense jitter factors are tamed.
        let wild = c.jitter_factor(f64::NAN);
        assert_eq!(wild.backoff(1, 0.0), Duration::from_millis(200));
    }
}
