//! Seeded, reproducible fault injection (see [`crate::FaultConfig`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use tinker_types::QueueState;
use tokio::time::Instant;

use crate::config::{FaultConfig, PauseLength, PausedQueue, PayloadFault};
use crate::promise::FutureKind;
use crate::state::lock;

/// A `retrieve_future` poll held back by a paused queue (`pause=`): answer `try_again`
/// with this state and reason, after holding the poll for `hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PausedAnswer {
    pub(crate) state: QueueState,
    pub(crate) reason: Option<String>,
    pub(crate) hold: Duration,
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultAction {
    /// Serve normally.
    Pass,
    /// Answer with this status instead of running the handler.
    Status(u16),
    /// Close the connection without a complete answer.
    Drop,
    /// Serve normally but pause mid-body.
    Stall(Duration),
}

#[derive(Debug)]
struct Inner {
    rng: StdRng,
    poll_rng: StdRng,
    counts: HashMap<String, u64>,
    /// Scripted payload faults waiting for the next `retrieve_future` result answer.
    armed: VecDeque<PayloadFault>,
    /// Paused polls answered so far, per request id (pauses counted in polls): one entry
    /// per future of a paused queue, kept for the server's life (a fault mode for tests).
    paused_polls: HashMap<String, u32>,
    /// When each time-limited pause began (the queue's first poll).
    pause_started: HashMap<PausedQueue, Instant>,
}

/// Decides faults; one per server.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    config: FaultConfig,
    inner: Mutex<Inner>,
    /// Whether the run-corrupting fault (`corrupt_after`) has fired; it fires once.
    corrupted_a_run: AtomicBool,
}

impl FaultInjector {
    pub(crate) fn new(config: FaultConfig) -> Self {
        let inner = Inner {
            rng: StdRng::seed_from_u64(config.seed),
            poll_rng: StdRng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15),
            counts: HashMap::new(),
            armed: VecDeque::new(),
            paused_polls: HashMap::new(),
            pause_started: HashMap::new(),
        };
        Self {
            config,
            inner: Mutex::new(inner),
            corrupted_a_run: AtomicBool::new(false),
        }
    }

    fn applies_to(&self, path: &str) -> bool {
        path.starts_with("/api/v1/")
            && (self.config.routes.is_empty()
                || self
                    .config
                    .routes
                    .iter()
                    .any(|r| path.ends_with(r.as_str())))
    }

    /// Decides the fate of one request: an added latency and an action. Every request that
    /// the plan covers draws the same number of random values, so the sequence of decisions
    /// depends only on the seed and the order of requests.
    pub(crate) fn decide(&self, path: &str) -> (Duration, FaultAction) {
        if !self.config.is_active() || !self.applies_to(path) {
            return (Duration::ZERO, FaultAction::Pass);
        }
        let cfg = &self.config;
        let mut inner = lock(&self.inner);
        let mut scripted = None;
        for fault in &cfg.script {
            if path.ends_with(fault.route.as_str()) {
                let count = inner.counts.entry(fault.route.clone()).or_default();
                // Count each route once per request even if several items name it.
                scripted.get_or_insert((fault.route.clone(), *count + 1));
            }
        }
        if let Some((route, n)) = &scripted {
            inner.counts.insert(route.clone(), *n);
            // A payload fault lets the request through and damages the result it serves.
            if let Some(payload) = cfg
                .script
                .iter()
                .find(|f| &f.route == route && f.nth == *n)
                .and_then(|f| f.payload)
            {
                inner.armed.push_back(payload);
                return (Duration::ZERO, FaultAction::Pass);
            }
        }
        let draws: [f64; 5] = std::array::from_fn(|_| inner.rng.random::<f64>());
        let (lo, hi) = (
            cfg.latency_ms.0.min(cfg.latency_ms.1),
            cfg.latency_ms.0.max(cfg.latency_ms.1),
        );
        let latency = if hi > 0 {
            Duration::from_millis(inner.rng.random_range(lo..=hi))
        } else {
            Duration::ZERO
        };
        let status_pick = inner.rng.random_range(0..3usize);
        drop(inner);
        if let Some((route, n)) = scripted
            && let Some(fault) = cfg.script.iter().find(|f| f.route == route && f.nth == n)
        {
            let action = if fault.status == 0 {
                FaultAction::Drop
            } else {
                FaultAction::Status(fault.status)
            };
            return (latency, action);
        }
        let action = if draws[0] < cfg.p_5xx {
            FaultAction::Status([500, 502, 503][status_pick])
        } else if draws[1] < cfg.p_429 {
            FaultAction::Status(429)
        } else if draws[2] < cfg.p_drop {
            FaultAction::Drop
        } else if draws[3] < cfg.p_stall {
            FaultAction::Stall(Duration::from_millis(cfg.stall_ms))
        } else {
            FaultAction::Pass
        };
        (latency, action)
    }

    /// For a `retrieve_future` answer that delivers a result: the armed payload fault, if any
    /// (each fires once, oldest first).
    pub(crate) fn take_payload_fault(&self) -> Option<PayloadFault> {
        if self.config.script.iter().all(|f| f.payload.is_none()) {
            return None;
        }
        lock(&self.inner).armed.pop_front()
    }

    /// After a training model's `optim_steps`-th successful optimizer step: whether its run
    /// is corrupted now (`corrupt_after`; true for one model per server at most).
    pub(crate) fn corrupts_run(&self, optim_steps: u64) -> bool {
        self.config.corrupt_after == Some(optim_steps)
            && !self.corrupted_a_run.swap(true, Ordering::SeqCst)
    }

    /// For a `retrieve_future` poll of `request_id` (a future of `kind`): the paused answer
    /// to give instead of the result, while its queue is paused (`pause=`).
    pub(crate) fn queue_pause(&self, kind: FutureKind, request_id: &str) -> Option<PausedAnswer> {
        let queue = match kind {
            FutureKind::Sample => PausedQueue::Sampling,
            FutureKind::Training => PausedQueue::Training,
        };
        let pause = self.config.pauses.iter().find(|p| p.queue == queue)?;
        let mut inner = lock(&self.inner);
        let hold = match pause.length {
            PauseLength::Polls(n) => {
                let seen = inner.paused_polls.entry(request_id.to_owned()).or_default();
                if *seen >= n {
                    return None;
                }
                *seen += 1;
                Duration::ZERO
            }
            PauseLength::For(length) => {
                let now = Instant::now();
                let started = *inner.pause_started.entry(queue).or_insert(now);
                let ends = started + length;
                if now >= ends {
                    return None;
                }
                ends - now
            }
        };
        Some(PausedAnswer {
            state: pause.state.clone(),
            reason: pause.reason.clone(),
            hold,
        })
    }

    /// For a `retrieve_future` poll: `Some(408)` or `Some(410)` (sampling futures only).
    pub(crate) fn poll_fault(&self, is_sample: bool) -> Option<u16> {
        let cfg = &self.config;
        if cfg.p_408 <= 0.0 && cfg.p_410 <= 0.0 {
            return None;
        }
        if !self.applies_to("/api/v1/retrieve_future") {
            return None;
        }
        let mut inner = lock(&self.inner);
        let (a, b) = (
            inner.poll_rng.random::<f64>(),
            inner.poll_rng.random::<f64>(),
        );
        if is_sample && b < cfg.p_410 {
            Some(410)
        } else if a < cfg.p_408 {
            Some(408)
        } else {
            None
        }
    }
}

/// A protobuf body that does not decode: the first half of `bytes`, then a tag with field
/// number 0 and wire type 7, which no protobuf decoder accepts.
pub(crate) fn corrupt_proto(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes[..bytes.len() / 2].to_vec();
    out.extend_from_slice(&[0x07, 0xff]);
    out
}

/// JSON text that does not parse: the first half of `text`, then an unterminated string.
pub(crate) fn corrupt_json(text: &str) -> String {
    let cut = (0..=text.len() / 2)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}{{\"", &text[..cut])
}

/// A JSON success payload of the wrong shape: each top-level field of `value` gets a value of
/// another JSON type; a result with no fields (or none known) becomes an array.
pub(crate) fn wrong_shape(value: Option<&serde_json::Value>) -> serde_json::Value {
    use serde_json::{Value, json};
    let Some(Value::Object(map)) = value.filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
    else {
        return match value {
            // A protobuf result: the JSON fields of its types, wrongly typed.
            None => json!({ "loss_fn_outputs": "not a list", "metrics": 7,
                            "sequences": "not a list", "type": 7 }),
            Some(_) => json!(["not an object"]),
        };
    };
    let swapped = map
        .iter()
        .map(|(k, v)| {
            let bad = match v {
                Value::String(_) => json!(7),
                Value::Number(_) | Value::Bool(_) | Value::Null => json!("not a number"),
                Value::Array(_) | Value::Object(_) => json!(false),
            };
            (k.clone(), bad)
        })
        .collect();
    Value::Object(swapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(spec: &str, n: usize) -> Vec<(Duration, FaultAction)> {
        let f = FaultInjector::new(FaultConfig::parse(spec).unwrap());
        (0..n).map(|_| f.decide("/api/v1/asample")).collect()
    }

    #[test]
    fn same_seed_same_faults() {
        let a = decisions("seed=3,p5xx=0.3,p429=0.2,pdrop=0.1,latency_ms=0-9", 200);
        let b = decisions("seed=3,p5xx=0.3,p429=0.2,pdrop=0.1,latency_ms=0-9", 200);
        let c = decisions("seed=4,p5xx=0.3,p429=0.2,pdrop=0.1,latency_ms=0-9", 200);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let errors = a.iter().filter(|(_, x)| *x != FaultAction::Pass).count();
        assert!((60..=160).contains(&errors), "{errors} faults of 200");
    }

    #[test]
    fn scripts_hit_the_nth_request() {
        let f = FaultInjector::new(FaultConfig::parse("script=asample#2:429;asample#3:0").unwrap());
        let got: Vec<_> = (0..4).map(|_| f.decide("/api/v1/asample").1).collect();
        assert_eq!(
            got,
            vec![
                FaultAction::Pass,
                FaultAction::Status(429),
                FaultAction::Drop,
                FaultAction::Pass
            ]
        );
        assert_eq!(f.decide("/api/v1/create_session").1, FaultAction::Pass);
    }

    #[test]
    fn corrupt_after_fires_once_at_the_nth_step() {
        let f = FaultInjector::new(FaultConfig::parse("corrupt_after=2").unwrap());
        assert!(!f.corrupts_run(1));
        assert!(f.corrupts_run(2));
        // Another model reaching its second step later is left alone.
        assert!(!f.corrupts_run(2));
        assert!(!FaultInjector::new(FaultConfig::default()).corrupts_run(1));
        assert!(FaultConfig::parse("corrupt_after=0").is_err());
    }

    #[test]
    fn pauses_count_polls_per_future_or_last_a_while() {
        let f = FaultInjector::new(
            FaultConfig::parse(
                "pause=sampling:paused_rate_limit:2:busy;training:paused_capacity:300ms",
            )
            .unwrap(),
        );
        let paused = |kind, id: &str| f.queue_pause(kind, id);
        let first = paused(FutureKind::Sample, "s1").unwrap();
        assert_eq!(first.state, QueueState::PausedRateLimit);
        assert_eq!(first.reason.as_deref(), Some("busy"));
        assert_eq!(first.hold, Duration::ZERO);
        assert!(paused(FutureKind::Sample, "s2").is_some());
        assert!(paused(FutureKind::Sample, "s1").is_some());
        assert_eq!(paused(FutureKind::Sample, "s1"), None);
        assert!(paused(FutureKind::Sample, "s2").is_some());
        assert_eq!(paused(FutureKind::Sample, "s2"), None);

        // A timed pause holds each poll until it ends, counted from the queue's first poll.
        let t = paused(FutureKind::Training, "m:1:a").unwrap();
        assert_eq!((t.state, t.reason), (QueueState::PausedCapacity, None));
        assert!(t.hold > Duration::from_millis(250) && t.hold <= Duration::from_millis(300));
        std::thread::sleep(Duration::from_millis(100));
        assert!(paused(FutureKind::Training, "m:2:a").unwrap().hold < t.hold);
        std::thread::sleep(Duration::from_millis(210));
        assert_eq!(paused(FutureKind::Training, "m:3:a"), None);
        // No pause configured for a queue: nothing.
        let none =
            FaultInjector::new(FaultConfig::parse("pause=training:paused_capacity:1").unwrap());
        assert_eq!(none.queue_pause(FutureKind::Sample, "s"), None);
    }

    #[test]
    fn payload_faults_arm_until_a_result_takes_them() {
        let f = FaultInjector::new(
            FaultConfig::parse("script=retrieve_future#2:badjson;retrieve_future#3:corrupt")
                .unwrap(),
        );
        assert_eq!(f.decide("/api/v1/retrieve_future").1, FaultAction::Pass);
        assert_eq!(f.take_payload_fault(), None);
        assert_eq!(f.decide("/api/v1/retrieve_future").1, FaultAction::Pass);
        assert_eq!(f.decide("/api/v1/retrieve_future").1, FaultAction::Pass);
        assert_eq!(f.take_payload_fault(), Some(PayloadFault::BadJson));
        assert_eq!(f.take_payload_fault(), Some(PayloadFault::Corrupt));
        assert_eq!(f.take_payload_fault(), None);
    }
}
