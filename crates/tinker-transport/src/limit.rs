//! Dispatch limits the clients need (protocol §6.5): the sampling dispatch limiter and a
//! plain in-flight limit, plus the governor rate limit shared by every clone of a
//! transport.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::budget::{ByteBudget, BytePermit};
use crate::clock::Runtime;

/// Normal sampling dispatch slots per holder.
pub const SAMPLE_DISPATCH_SLOTS: usize = 400;
/// Extra (narrower) slots required while a 429 backoff was requested in the last 10 s.
pub const SAMPLE_THROTTLED_SLOTS: usize = 10;
/// Multiplier of the byte cost while throttled.
pub const THROTTLED_BYTE_FACTOR: u64 = 20;
/// The window after a backoff during which dispatch stays throttled.
const THROTTLE_WINDOW: Duration = Duration::from_secs(10);
/// Prompts up to this size back off 1 s after a 429, larger ones 5 s.
const SMALL_PROMPT: u64 = 128 * 1024;
/// Default sample dispatch byte budget (`sample_dispatch_bytes_semaphore_size`).
pub const DEFAULT_SAMPLE_DISPATCH_BYTES: u64 = 10_485_760;
/// Default outer RetryHandler concurrency (`sample_max_concurrent_requests`).
pub const DEFAULT_SAMPLE_MAX_CONCURRENT: usize = 2000;

/// The sampling dispatch limiter of one holder: 400 slots; while a backoff was requested
/// within the last 10 s, also one of 10 throttled slots and 20× the byte cost; and the
/// sample byte budget.
#[derive(Clone)]
pub struct SampleDispatchLimiter {
    inner: Arc<SampleInner>,
}

struct SampleInner {
    slots: Arc<Semaphore>,
    throttled: Arc<Semaphore>,
    bytes: ByteBudget,
    backoff_until: Mutex<Option<Instant>>,
    runtime: Runtime,
}

impl fmt::Debug for SampleDispatchLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleDispatchLimiter")
            .field("free_slots", &self.inner.slots.available_permits())
            .field("bytes", &self.inner.bytes)
            .finish()
    }
}

/// What a sample dispatch holds while in flight.
#[derive(Debug)]
#[must_use = "the slots are released when the permit is dropped"]
pub struct SampleDispatchPermit {
    _slot: OwnedSemaphorePermit,
    _throttled: Option<OwnedSemaphorePermit>,
    _bytes: BytePermit,
}

impl SampleDispatchLimiter {
    /// A limiter with the given byte budget (`sample_dispatch_bytes_semaphore_size`).
    pub fn new(byte_budget: u64, runtime: Runtime) -> Self {
        Self {
            inner: Arc::new(SampleInner {
                slots: Arc::new(Semaphore::new(SAMPLE_DISPATCH_SLOTS)),
                throttled: Arc::new(Semaphore::new(SAMPLE_THROTTLED_SLOTS)),
                bytes: ByteBudget::new(byte_budget),
                backoff_until: Mutex::new(None),
                runtime,
            }),
        }
    }

    fn backoff_until(&self) -> Option<Instant> {
        *self
            .inner
            .backoff_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a backoff was requested recently (`now − backoff_until < 10 s`).
    pub fn is_throttled(&self) -> bool {
        let now = self.inner.runtime.clock.now();
        self.backoff_until()
            .is_some_and(|until| now < until || now - until < THROTTLE_WINDOW)
    }

    /// Waits for dispatch slots and `estimated_bytes` of the budget.
    pub async fn acquire(&self, estimated_bytes: u64) -> SampleDispatchPermit {
        // The limiter never closes its semaphores, so acquiring cannot fail.
        let slot = self.inner.slots.clone().acquire_owned().await;
        let throttled = if self.is_throttled() {
            Some(self.inner.throttled.clone().acquire_owned().await)
        } else {
            None
        };
        let cost = if self.is_throttled() {
            estimated_bytes.saturating_mul(THROTTLED_BYTE_FACTOR)
        } else {
            estimated_bytes
        };
        let bytes = self.inner.bytes.acquire(cost).await;
        match (slot, throttled.transpose()) {
            (Ok(slot), Ok(throttled)) => SampleDispatchPermit {
                _slot: slot,
                _throttled: throttled,
                _bytes: bytes,
            },
            _ => unreachable!("the limiter's semaphores are never closed"),
        }
    }

    /// Records a 429 backpressure answer: every sampler waits 1 s (prompts ≤ 128 KiB) or
    /// 5 s from now.
    pub fn request_backoff(&self, estimated_bytes: u64) {
        let secs = if estimated_bytes <= SMALL_PROMPT {
            1
        } else {
            5
        };
        self.back_off_for(Duration::from_secs(secs));
    }

    /// Sets the backoff to end `length` from now (whatever was set before): until then
    /// [`wait_backoff`](Self::wait_backoff) waits, and until 10 s after it dispatch is
    /// throttled.
    pub fn back_off_for(&self, length: Duration) {
        let until = self.inner.runtime.clock.now() + length;
        *self
            .inner
            .backoff_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(until);
    }

    /// Waits (polling each second, as the SDK does) until no backoff is in force.
    pub async fn wait_backoff(&self) {
        loop {
            let now = self.inner.runtime.clock.now();
            match self.backoff_until() {
                Some(until) if now < until => {
                    self.inner.runtime.clock.sleep(Duration::from_secs(1)).await;
                }
                _ => return,
            }
        }
    }
}

/// A rate limit (requests per second, with a burst) shared by every clone of a
/// transport; each HTTP attempt takes one cell. Backed by `governor`'s GCRA limiter
/// because `tower::limit::RateLimit` is not `Clone`.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<governor::DefaultDirectRateLimiter>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

impl RateLimit {
    /// At most `per_second` requests per second, bursts of up to `burst`.
    pub fn per_second(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = governor::Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: Arc::new(governor::RateLimiter::direct(quota)),
        }
    }

    /// Waits for one cell.
    pub(crate) async fn until_ready(&self) {
        self.limiter.until_ready().await;
    }
}
