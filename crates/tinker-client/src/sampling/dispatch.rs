//! [`SampleDispatch`]: the sampling dispatch limits of a session (protocol §6.5), open to
//! the caller: what tinkex's `SamplingDispatch` offers (`set_backoff`, `with_rate_limit`),
//! and the optional backoff when a sample's queue is paused by a rate limit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tinker_transport::limit::{SampleDispatchLimiter, SampleDispatchPermit};
use tinker_types::{ModelInput, QueueState};

use crate::future::QueueStateObserver;
use crate::session::Session;

/// The sampling dispatch limits every sampling client of one session shares: 400 slots,
/// the sample byte budget (`sample_dispatch_bytes_semaphore_size`, 10 MiB by default),
/// and the backoff a 429 on `asample` sets (1 s for prompts up to 128 KiB, else 5 s).
/// While a backoff is in force or ended less than 10 s ago, dispatch is *throttled*: each
/// sample also takes one of 10 throttled slots and 20× its estimated bytes of the budget.
///
/// Every sample goes through these limits on its own; this handle lets a caller see the
/// state, set a backoff, or run work of its own under the same limits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SampleDispatch {
    limiter: SampleDispatchLimiter,
}

impl SampleDispatch {
    pub(crate) fn new(limiter: SampleDispatchLimiter) -> Self {
        Self { limiter }
    }

    /// The dispatch cost of a prompt: 10 bytes per token, the data size of images and
    /// asset pointers (the SDK's estimate).
    pub fn estimate_bytes(prompt: &ModelInput) -> u64 {
        super::estimate_prompt_bytes(prompt)
    }

    /// Whether dispatch is throttled now (a backoff is in force or ended within 10 s).
    pub fn is_throttled(&self) -> bool {
        self.limiter.is_throttled()
    }

    /// Sets a backoff of `length` from now, as a 429 on `asample` would: new samples wait
    /// until it ends, and dispatch is throttled until 10 s after.
    pub fn back_off(&self, length: Duration) {
        self.limiter.back_off_for(length);
    }

    /// Waits until no backoff is in force (checking each second, as samples do).
    pub async fn wait_backoff(&self) {
        self.limiter.wait_backoff().await;
    }

    /// Takes a dispatch slot (and, while throttled, a throttled slot) and
    /// `estimated_bytes` of the budget (20× while throttled), waiting as a sample would;
    /// dropping the permit gives them back. A cost larger than the whole budget still
    /// gets through once nothing else holds any of it.
    pub async fn acquire(&self, estimated_bytes: u64) -> SampleDispatchPermit {
        self.limiter.acquire(estimated_bytes).await
    }

    /// Runs `work` holding what [`acquire`](Self::acquire) takes (tinkex's
    /// `with_rate_limit`).
    pub async fn with_rate_limit<F: Future>(&self, estimated_bytes: u64, work: F) -> F::Output {
        let _permit = self.acquire(estimated_bytes).await;
        work.await
    }
}

/// Whether a session backs sampling off on `paused_rate_limit` (a session extension).
#[derive(Debug, Default)]
pub(crate) struct BackOffOnRateLimit(AtomicBool);

/// Turns the backoff on `paused_rate_limit` on for every sampling client of `session`.
pub(crate) fn back_off_on_rate_limit(session: &Session) {
    session
        .extensions
        .get_or_default::<BackOffOnRateLimit>()
        .0
        .store(true, Ordering::Relaxed);
}

/// `user`, plus, if `session` backs off on rate limits, a backoff of the session's
/// dispatch each time a sample's queue is reported `paused_rate_limit` (1 s, as a 429 on
/// a small prompt: the report repeats while the pause lasts).
pub(crate) fn with_rate_limit_backoff(
    session: &Session,
    user: Option<QueueStateObserver>,
) -> Option<QueueStateObserver> {
    let on = session
        .extensions
        .get_or_default::<BackOffOnRateLimit>()
        .0
        .load(Ordering::Relaxed);
    if !on {
        return user;
    }
    let limiter = session.sample_limiter.clone();
    Some(Arc::new(move |state: &QueueState, reason: Option<&str>| {
        if *state == QueueState::PausedRateLimit {
            limiter.request_backoff(0);
        }
        if let Some(user) = &user {
            user(state, reason);
        }
    }))
}
