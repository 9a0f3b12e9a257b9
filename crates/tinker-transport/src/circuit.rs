//! A circuit breaker per endpoint family (off by default; tinkex's `CircuitBreaker`).
//!
//! Each [`EndpointFamily`] has its own state: **closed** (calls pass; consecutive failures
//! are counted), **open** after [`CircuitBreakerConfig::failure_threshold`] consecutive
//! failures (calls fail at once with [`ErrorKind::CircuitOpen`],
//! nothing is sent), and **half-open** once [`CircuitBreakerConfig::open_for`] has passed
//! (up to [`CircuitBreakerConfig::half_open_calls`] trial calls go through; a success
//! closes the circuit, a failure opens it again).
//!
//! The breaker sits outside the HTTP retry layer: one call, retries included, is one
//! outcome. A failure is what says the endpoint is unwell (5xx, 408, connection errors,
//! timeouts); the caller's errors (other 4xx), 429 backpressure and credential problems
//! are neither failures nor successes for the count.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::clock::Runtime;
use crate::error::{BoxFuture, ErrorKind, TransportError};
use crate::response::Response;
use crate::stack::{Call, CallService};

/// The groups of endpoints that fail together, each with its own circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EndpointFamily {
    /// Model calls: `forward_backward`, `forward`, `optim_step`, `create_model`, weights,
    /// `get_info`, custom losses.
    Training,
    /// `asample` and sampling sessions.
    Sampling,
    /// `retrieve_future(s)` and `cancel_future`.
    Futures,
    /// Sessions, heartbeats, capabilities, client config and auth.
    Session,
    /// Telemetry events.
    Telemetry,
    /// Everything else: the REST routes (runs, checkpoints, billing, audit, …).
    Rest,
}

impl EndpointFamily {
    /// The family of a request path (`/api/v1/forward_backward`, `api/v1/training_runs/…`).
    pub fn of_path(path: &str) -> Self {
        let route = path.trim_start_matches('/');
        let route = route.strip_prefix("api/v1/").unwrap_or(route);
        let first = route.split(['/', '?']).next().unwrap_or_default();
        match first {
            "forward_backward"
            | "forward"
            | "optim_step"
            | "create_model"
            | "load_weights"
            | "save_weights"
            | "save_weights_for_sampler"
            | "save_weights_external"
            | "get_info"
            | "create_custom_loss"
            | "copy_weights"
            | "unload_model"
            | "weights_info" => Self::Training,
            "asample" | "create_sampling_session" | "join_sampling_session" | "samplers" => {
                Self::Sampling
            }
            "retrieve_future" | "retrieve_futures" | "cancel_future" => Self::Futures,
            "create_session"
            | "session_heartbeat"
            | "get_server_capabilities"
            | "client"
            | "auth" => Self::Session,
            "telemetry" => Self::Telemetry,
            _ => Self::Rest,
        }
    }
}

impl fmt::Display for EndpointFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Training => "training",
            Self::Sampling => "sampling",
            Self::Futures => "futures",
            Self::Session => "session",
            Self::Telemetry => "telemetry",
            Self::Rest => "rest",
        })
    }
}

/// The state of one family's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass.
    Closed,
    /// Calls fail at once until the open period ends.
    Open,
    /// A limited number of trial calls pass.
    HalfOpen,
}

/// When circuits open and for how long ([`TransportBuilder::circuit_breaker`](crate::TransportBuilder::circuit_breaker)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open a closed circuit (at least 1).
    pub failure_threshold: u32,
    /// How long a circuit stays open before it lets trial calls through.
    pub open_for: Duration,
    /// Trial calls allowed at once while half-open (at least 1).
    pub half_open_calls: u32,
}

impl Default for CircuitBreakerConfig {
    /// tinkex's defaults: 5 failures, 30 s open, 1 trial call.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_calls: 1,
        }
    }
}

impl CircuitBreakerConfig {
    /// The defaults with another failure threshold.
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// The defaults with another open period.
    pub fn open_for(mut self, open_for: Duration) -> Self {
        self.open_for = open_for;
        self
    }

    /// The defaults with another number of half-open trial calls.
    pub fn half_open_calls(mut self, calls: u32) -> Self {
        self.half_open_calls = calls;
        self
    }
}

/// What happened to one family's circuit, for observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitTransition {
    /// The family.
    pub family: EndpointFamily,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
}

/// Called on every state change (logging, metrics).
pub type CircuitObserver = Arc<dyn Fn(CircuitTransition) + Send + Sync>;

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trials: u32 },
}

impl Phase {
    fn state(self) -> CircuitState {
        match self {
            Self::Closed { .. } => CircuitState::Closed,
            Self::Open { .. } => CircuitState::Open,
            Self::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// Every family's circuit of one transport (shared by its clones).
#[derive(Clone)]
pub(crate) struct CircuitBreaker {
    inner: Arc<BreakerInner>,
}

struct BreakerInner {
    config: CircuitBreakerConfig,
    runtime: Runtime,
    phases: Mutex<HashMap<EndpointFamily, Phase>>,
    observer: Option<CircuitObserver>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.inner.config)
            .field("states", &self.states())
            .finish()
    }
}

/// How a call ended, for the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// Says nothing about the endpoint's health (the caller's error, backpressure).
    Neutral,
}

fn outcome(result: &Result<Response, TransportError>) -> Outcome {
    // The retry layer hands back the last response even when it is a failure status;
    // turning statuses into errors happens above the stack.
    let status = match result {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(e) => match e.kind() {
            ErrorKind::Connection | ErrorKind::Timeout => return Outcome::Failure,
            _ => e.status().map(|s| s.as_u16()),
        },
    };
    match status {
        Some(s) if s >= 500 || s == 408 => Outcome::Failure,
        Some(s) if s < 400 => Outcome::Success,
        _ => Outcome::Neutral,
    }
}

/// A permission to call, released (without an outcome) if the call is dropped.
struct Admitted {
    breaker: CircuitBreaker,
    family: EndpointFamily,
    trial: bool,
    done: bool,
}

impl Admitted {
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker.record(self.family, self.trial, outcome);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.done && self.trial {
            // A cancelled trial frees its slot without deciding anything.
            self.breaker.record(self.family, true, Outcome::Neutral);
        }
    }
}

impl CircuitBreaker {
    pub(crate) fn new(
        config: CircuitBreakerConfig,
        runtime: Runtime,
        observer: Option<CircuitObserver>,
    ) -> Self {
        let config = CircuitBreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            half_open_calls: config.half_open_calls.max(1),
            open_for: config.open_for,
        };
        Self {
            inner: Arc::new(BreakerInner {
                config,
                runtime,
                phases: Mutex::new(HashMap::new()),
                observer,
            }),
        }
    }

    /// The state of every family that has seen a call (families never called are closed).
    pub(crate) fn states(&self) -> Vec<(EndpointFamily, CircuitState)> {
        let now = self.inner.runtime.clock.now();
        let phases = self.lock();
        let mut out: Vec<_> = phases
            .iter()
            .map(|(f, p)| {
                let state = match p {
                    Phase::Open { until } if now >= *until => CircuitState::HalfOpen,
                    p => p.state(),
                };
                (*f, state)
            })
            .collect();
        out.sort_by_key(|(f, _)| *f);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointFamily, Phase>> {
        self.inner
            .phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, family: EndpointFamily, from: Phase, to: Phase) {
        if from.state() == to.state() {
            return;
        }
        tracing::info!(%family, from = ?from.state(), to = ?to.state(), "circuit breaker state change");
        if let Some(observer) = &self.inner.observer {
            observer(CircuitTransition {
                family,
                from: from.state(),
                to: to.state(),
            });
        }
    }

    /// Admits a call or refuses it with the time left until trial calls are allowed.
    fn admit(&self, family: EndpointFamily) -> Result<Admitted, Duration> {
        let now = self.inner.runtime.clock.now();
        let mut phases = self.lock();
        let phase = phases
            .entry(family)
            .or_insert(Phase::Closed { failures: 0 });
        let before = *phase;
        let trial = match *phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < until => return Err(until - now),
            Phase::Open { .. } => {
                *phase = Phase::HalfOpen { trials: 1 };
                true
            }
            Phase::HalfOpen { trials } if trials < self.inner.config.half_open_calls => {
                *phase = Phase::HalfOpen { trials: trials + 1 };
                true
            }
            // Trials are in flight: the others wait for their verdict, failing fast.
            Phase::HalfOpen { .. } => return Err(Duration::ZERO),
        };
        let after = *phase;
        drop(phases);
        self.notify(family, before, after);
        Ok(Admitted {
            breaker: self.clone(),
            family,
            trial,
            done: false,
        })
    }

    fn record(&self, family: EndpointFamily, trial: bool, outcome: Outcome) {
        let now = self.inner.runtime.clock.now();
        let config = self.inner.config;
        let mut phases = self.lock();
        let phase = phases
            .entry(family)
            .or_insert(Phase::Closed { failures: 0 });
        let before = *phase;
        let open = Phase::Open {
            until: now + config.open_for,
        };
        *phase = match (before, outcome) {
            (Phase::Closed { .. }, Outcome::Success) => Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, Outcome::Failure) => {
                if failures + 1 >= config.failure_threshold {
                    open
                } else {
                    Phase::Closed {
                        failures: failures + 1,
                    }
                }
            }
            (Phase::HalfOpen { .. }, Outcome::Success) if trial => Phase::Closed { failures: 0 },
            (Phase::HalfOpen { .. }, Outcome::Failure) if trial => open,
            (Phase::HalfOpen { trials }, Outcome::Neutral) if trial => Phase::HalfOpen {
                trials: trials.saturating_sub(1),
            },
            // A call admitted before the circuit opened that ends late changes nothing.
            (p, _) => p,
        };
        let after = *phase;
        drop(phases);
        self.notify(family, before, after);
    }
}

/// The stack layer: asks the breaker before each call and tells it the outcome.
#[derive(Clone, Debug)]
pub(crate) struct CircuitService {
    pub(crate) inner: CallService,
    pub(crate) breaker: CircuitBreaker,
}

impl Service<Call> for CircuitService {
    type Response = Response;
    type Error = TransportError;
    type Future = BoxFuture<Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let inner = self.inner.clone();
        let breaker = self.breaker.clone();
        Box::pin(async move {
            let family = EndpointFamily::of_path(&call.spec.path);
            let admitted = breaker
                .admit(family)
                .map_err(|retry_in| TransportError::circuit_open(family, retry_in))?;
            let result = inner.oneshot(call).await;
            admitted.finish(outcome(&result));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FixedJitter, TokioClock};

    fn breaker(threshold: u32, trials: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            CircuitBreakerConfig::default()
                .failure_threshold(threshold)
                .open_for(Duration::from_secs(30))
                .half_open_calls(trials),
            Runtime {
                clock: Arc::new(TokioClock::starting_at(0.0)),
                jitter: Arc::new(FixedJitter(0.0)),
            },
            None,
        )
    }

    fn state(b: &CircuitBreaker, f: EndpointFamily) -> CircuitState {
        b.states()
            .into_iter()
            .find(|(g, _)| *g == f)
            .map_or(CircuitState::Closed, |(_, s)| s)
    }

    #[test]
    fn families_of_paths() {
        use EndpointFamily::*;
        for (path, family) in [
            ("/api/v1/forward_backward", Training),
            ("api/v1/optim_step", Training),
            ("/api/v1/asample", Sampling),
            ("/api/v1/samplers/s-1", Sampling),
            ("/api/v1/retrieve_future", Futures),
            ("/api/v1/session_heartbeat", Session),
            ("/api/v1/telemetry", Telemetry),
            ("/api/v1/training_runs/r-1/checkpoints", Rest),
            ("/api/v1/get_info", Training),
            ("/something/else", Rest),
        ] {
            assert_eq!(EndpointFamily::of_path(path), family, "{path}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_half_opens_and_closes() {
        let b = breaker(3, 1);
        let f = EndpointFamily::Training;
        for _ in 0..2 {
            b.admit(f).expect("closed").finish(Outcome::Failure);
        }
        assert_eq!(state(&b, f), CircuitState::Closed);
        // A neutral outcome (a 4xx) neither resets nor adds to the count.
        b.admit(f).expect("closed").finish(Outcome::Neutral);
        b.admit(f).expect("closed").finish(Outcome::Failure);
        assert_eq!(state(&b, f), CircuitState::Open);
        let wait = b.admit(f).err().expect("open refuses");
        assert_eq!(wait, Duration::from_secs(30));
        // Other families are independent.
        b.admit(EndpointFamily::Sampling)
            .expect("sampling closed")
            .finish(Outcome::Success);

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(state(&b, f), CircuitState::HalfOpen);
        let trial = b.admit(f).expect("one trial");
        assert!(b.admit(f).is_err(), "only one trial at a time");
        trial.finish(Outcome::Success);
        assert_eq!(state(&b, f), CircuitState::Closed);
        b.admit(f).expect("closed again").finish(Outcome::Success);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens_and_dropped_trial_frees_its_slot() {
        let b = breaker(1, 1);
        let f = EndpointFamily::Futures;
        b.admit(f).expect("closed").finish(Outcome::Failure);
        assert_eq!(state(&b, f), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(31)).await;
        drop(b.admit(f).expect("trial"));
        let trial = b.admit(f).expect("the dropped trial freed its slot");
        trial.finish(Outcome::Failure);
        assert_eq!(state(&b, f), CircuitState::Open);
        assert!(b.admit(f).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let b = breaker(2, 1);
        let f = EndpointFamily::Rest;
        b.admit(f).expect("closed").finish(Outcome::Failure);
        b.admit(f).expect("closed").finish(Outcome::Success);
        b.admit(f).expect("closed").finish(Outcome::Failure);
        assert_eq!(state(&b, f), CircuitState::Closed);
    }
}
