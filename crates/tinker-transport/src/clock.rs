//! Injected time and randomness, so retry schedules are testable on a paused tokio clock.
//!
//! Library code never reads the wall clock or a global RNG directly: it asks a [`Clock`]
//! and a [`Jitter`]. The defaults use tokio's clock (which `tokio::time::pause` controls)
//! and the thread RNG.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A boxed sleep future.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Monotonic now (tokio's clock, so tests can pause it).
    fn now(&self) -> Instant;
    /// Seconds since the Unix epoch, for JWT `exp`/`iat` claims.
    fn unix_now(&self) -> f64;
    /// Sleeps for `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The default clock: tokio's monotonic clock and the system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

// The one place that reads the wall clock: clippy.toml bans `SystemTime::now` (and
// `std::time::Instant::now`) everywhere else so that time stays injectable.
#[allow(clippy::disallowed_methods)]
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_now(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock whose wall time advances with tokio's clock from a fixed start, for tests that
/// pause time and need JWT expiry to follow.
#[derive(Debug, Clone)]
pub struct TokioClock {
    unix_at_start: f64,
    start: Instant,
}

impl TokioClock {
    /// A clock that reads `unix_at_start` now and advances with `tokio::time`.
    pub fn starting_at(unix_at_start: f64) -> Self {
        Self {
            unix_at_start,
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_now(&self) -> f64 {
        self.unix_at_start + (Instant::now() - self.start).as_secs_f64()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A source of uniform randomness in `[0, 1)` for backoff jitter.
pub trait Jitter: Send + Sync + fmt::Debug + 'static {
    /// A uniform sample in `[0, 1)`.
    fn unit(&self) -> f64;
}

/// The default jitter: the thread-local RNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn unit(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// A jitter that always returns the same value (tests, deterministic schedules).
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn unit(&self) -> f64 {
        self.0.clamp(0.0, 1.0 - f64::EPSILON)
    }
}

/// Time and randomness bundled, cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The jitter source.
    pub jitter: Arc<dyn Jitter>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            jitter: Arc::new(RandomJitter),
        }
    }
}
