//! The operation-level retry loop (protocol §6.2, the SDK's `execute_with_retries`).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::backoff::operation_backoff;
use crate::clock::Runtime;
use crate::error::{ErrorKind, TransportError};

/// How the operation loop treats an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryClass {
    /// Retry with backoff while the 300 s window lasts.
    Retry,
    /// HTTP 402: sleep and retry while the billing-pause window is open, else fatal.
    Billing,
    /// Return the error.
    Fatal,
}

/// Errors the operation loop can classify. Implemented by [`TransportError`]; the client
/// implements it for its own error type (wrapping a transport error).
pub trait Retryable {
    /// How the loop treats this error.
    fn retry_class(&self) -> RetryClass;
    /// A short description for logs (must not contain secrets).
    fn describe(&self) -> String;
}

impl Retryable for TransportError {
    fn retry_class(&self) -> RetryClass {
        if self.kind() == ErrorKind::Billing {
            RetryClass::Billing
        } else if self.is_retryable() {
            RetryClass::Retry
        } else {
            RetryClass::Fatal
        }
    }

    fn describe(&self) -> String {
        self.to_string()
    }
}

/// Settings of the operation loop; the defaults are the SDK's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OperationRetryConfig {
    /// Retries stop once this much time has passed since the first attempt (300 s).
    pub max_wait: Duration,
    /// Cap of one backoff sleep (30 s).
    pub max_backoff: Duration,
    /// Sleep between attempts during a billing pause (5 s).
    pub billing_sleep: Duration,
}

impl Default for OperationRetryConfig {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(300),
            max_backoff: Duration::from_secs(30),
            billing_sleep: Duration::from_secs(5),
        }
    }
}

/// The billing-pause window shared by every operation of one holder (protocol §6.2).
///
/// The window opens at the first 402 of an incident and lasts `max_pause` (server flag
/// `billing_exception_max_pause_duration_sec`, default 3600 s). An incident ends when no
/// 402 was logged for 5 minutes. A warning is logged at most once a minute.
#[derive(Debug)]
pub struct BillingPause {
    state: Mutex<BillingState>,
}

#[derive(Debug)]
struct BillingState {
    max_pause: Duration,
    first: Option<Instant>,
    last_logged: Option<Instant>,
}

/// No 402 for this long starts a new incident.
const BILLING_RESET: Duration = Duration::from_secs(300);
/// At most one billing warning per this interval.
const BILLING_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Default for BillingPause {
    fn default() -> Self {
        Self::new(Duration::from_secs(3600))
    }
}

impl BillingPause {
    /// A pause window of `max_pause`.
    pub fn new(max_pause: Duration) -> Self {
        Self {
            state: Mutex::new(BillingState {
                max_pause,
                first: None,
                last_logged: None,
            }),
        }
    }

    /// Updates the window length (from the client config).
    pub fn set_max_pause(&self, max_pause: Duration) {
        self.lock().max_pause = max_pause;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BillingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a 402 at `now`; true while the caller should sleep and retry, false once
    /// the window has passed (the 402 is then fatal).
    pub fn should_pause(&self, now: Instant, detail: &str) -> bool {
        let mut s = self.lock();
        if s.last_logged.is_some_and(|t| now - t > BILLING_RESET) {
            s.first = None;
            s.last_logged = None;
        }
        if let Some(first) = s.first
            && now - first > s.max_pause
        {
            tracing::error!(
                paused_for = ?(now - first),
                "the job was paused for billing for too long; aborting"
            );
            return false;
        }
        if s.last_logged.is_none_or(|t| now - t > BILLING_LOG_INTERVAL) {
            s.last_logged = Some(now);
            tracing::warn!(detail, "the job is paused due to billing status");
        }
        if s.first.is_none() {
            s.first = Some(now);
        }
        true
    }
}

/// The operation-level retry loop: retries retryable errors with `min(2^a, 30)` s backoff
/// for up to 300 s, and sleeps through 402s while the billing pause lasts. Each attempt
/// calls the closure again, so a new HTTP call (and idempotency key) is made per attempt.
#[derive(Debug, Clone)]
pub struct OperationRetry {
    config: OperationRetryConfig,
    runtime: Runtime,
    billing: Arc<BillingPause>,
}

impl OperationRetry {
    /// A loop with the given settings, clock/jitter and (shared) billing window.
    pub fn new(config: OperationRetryConfig, runtime: Runtime, billing: Arc<BillingPause>) -> Self {
        Self {
            config,
            runtime,
            billing,
        }
    }

    /// The billing window this loop consults.
    pub fn billing(&self) -> &Arc<BillingPause> {
        &self.billing
    }

    /// Runs `op` until it succeeds, fails fatally, or the retry window closes.
    pub async fn run<T, E, F, Fut>(&self, name: &str, mut op: F) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let clock = &self.runtime.clock;
        let start = clock.now();
        let mut attempt: u32 = 0;
        let span = tracing::debug_span!("tinker.operation", operation = name);
        async {
            loop {
                let err = match op().await {
                    Ok(v) => return Ok(v),
                    Err(e) => e,
                };
                let class = err.retry_class();
                if class == RetryClass::Billing
                    && self.billing.should_pause(clock.now(), &err.describe())
                {
                    clock.sleep(self.config.billing_sleep).await;
                    continue;
                }
                let elapsed = clock.now() - start;
                if class != RetryClass::Retry || elapsed >= self.config.max_wait {
                    return Err(err);
                }
                let wait = operation_backoff(attempt, self.config.max_wait - elapsed)
                    .min(self.config.max_backoff);
                tracing::debug!(attempt, ?wait, error = %err.describe(), "retrying operation");
                attempt += 1;
                clock.sleep(wait).await;
            }
        }
        .instrument(span)
        .await
    }
}
