//! Test clocks and jitter for the transport's injected [`Runtime`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinker_transport::clock::{Clock, Jitter, Runtime, Sleep};
use tokio::time::Instant;

/// A clock whose sleeps return at once but are recorded, so retry schedules are checked
/// exactly without waiting. Wall time is fixed at `unix`.
#[derive(Debug, Default)]
pub struct RecordingClock {
    /// The fixed Unix time this clock reports.
    pub unix: f64,
    /// Every sleep asked for, in order.
    pub sleeps: Mutex<Vec<Duration>>,
}

impl RecordingClock {
    /// A recording clock whose wall time stays at `unix`.
    pub fn new(unix: f64) -> Arc<Self> {
        Arc::new(Self {
            unix,
            sleeps: Mutex::new(Vec::new()),
        })
    }

    /// The sleeps asked for so far.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for RecordingClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_now(&self) -> f64 {
        self.unix
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleeps.lock().unwrap().push(duration);
        Box::pin(async {})
    }
}

/// A wall clock running `scale` times faster than real time from `unix_at_start` (for JWT
/// refresh over sockets); its sleeps last `1/scale` of their length.
#[derive(Debug)]
pub struct ScaledClock {
    /// Unix time at `start`.
    pub unix_at_start: f64,
    /// The real instant the scaled time counts from.
    pub start: std::time::Instant,
    /// How many times faster than real time this clock runs.
    pub scale: f64,
}

impl Clock for ScaledClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_now(&self) -> f64 {
        self.unix_at_start + self.start.elapsed().as_secs_f64() * self.scale
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration.div_f64(self.scale)))
    }
}

/// A clock that runs `speedup` times faster than real time: every sleep lasts
/// `1/speedup` of its length and moves this clock's time (monotonic and wall) forward by
/// the rest. Retry windows (the 300 s operation loop) then pass in seconds, with the real
/// schedule of attempts.
#[derive(Debug)]
pub struct FastClock {
    speedup: u32,
    skipped: Mutex<Duration>,
}

impl FastClock {
    /// A clock `speedup` (at least 1) times faster than real time.
    pub fn new(speedup: u32) -> Self {
        Self {
            speedup: speedup.max(1),
            skipped: Mutex::new(Duration::ZERO),
        }
    }

    fn skipped(&self) -> Duration {
        *self.skipped.lock().unwrap()
    }
}

impl Clock for FastClock {
    fn now(&self) -> Instant {
        Instant::now() + self.skipped()
    }

    fn unix_now(&self) -> f64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        (now + self.skipped()).as_secs_f64()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let real = duration / self.speedup;
        *self.skipped.lock().unwrap() += duration - real;
        Box::pin(tokio::time::sleep(real))
    }
}

/// Jitter fixed at zero (the longest HTTP backoff, the shortest JWT refresh).
#[derive(Debug)]
pub struct ZeroJitter;

impl Jitter for ZeroJitter {
    fn unit(&self) -> f64 {
        0.0
    }
}

/// A runtime on `clock` with [`ZeroJitter`].
pub fn runtime(clock: Arc<dyn Clock>) -> Runtime {
    Runtime {
        clock,
        jitter: Arc::new(ZeroJitter),
    }
}
