//! Server configuration, including the fault-injection plan.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tinker_types::QueueState;

use crate::engine::WeightsDtype;

/// How a [`crate::LocalServer`] runs. Build it with [`LocalServerConfig::new`] and adjust
/// the public fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalServerConfig {
    /// Where to listen; port 0 picks a free port. Defaults to `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// Where runs, checkpoints and metadata live (created if missing).
    pub data_dir: PathBuf,
    /// If set, every request must carry this key (or a JWT minted from it); otherwise any
    /// key starting with `tml-` is accepted, each key its own account (`<key>+<label>` is
    /// another key of `<key>`'s account).
    pub api_key: Option<String>,
    /// Advertise `pjwt_auth_enabled` and serve `auth/token`: clients then authenticate with
    /// server-minted JWTs.
    pub jwt: bool,
    /// Lifetime of minted JWTs.
    pub jwt_lifetime: Duration,
    /// Faults to inject (off by default).
    pub faults: FaultConfig,
    /// How long `retrieve_future` holds a poll open before answering `try_again`.
    pub long_poll: Duration,
    /// Results larger than this are first announced with `complete_metadata` when the client
    /// allows it.
    pub inline_result_limit: usize,
    /// Value of the `use_pyqwest_transport` client flag.
    pub use_pyqwest_transport: bool,
    /// Value of the `proto_compress_fwdbwd` client flag (zstd request bodies).
    pub proto_compress_fwdbwd: bool,
    /// Value of the `sample_use_retrieve_futures` client flag.
    pub sample_use_retrieve_futures: bool,
    /// Value of the `sample_join_sampling_session` client flag.
    pub sample_join_sampling_session: bool,
    /// Value of the `custom_loss_server_side` client flag: accept `create_custom_loss` and
    /// run loss `custom` (on by default; off makes the endpoint refuse).
    pub custom_loss_server_side: bool,
    /// How long signed external-weights URLs stay valid.
    pub signed_url_lifetime: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How far ahead of the `seq_id` a training model expects next a request may be: one
    /// further ahead is refused at once (400) instead of waiting for a gap it cannot close.
    pub seq_gap_window: u64,
    /// How long a training request may wait behind a missing `seq_id`: after that it fails
    /// (as do all requests queued with it) and the missing ids are given up (see the
    /// `worker` module).
    pub seq_gap_wait: Duration,
    /// Compute nothing: every model answers at once with results of the right shapes
    /// (uniform logprobs, samples of the requested length, zero optimizer norms), through
    /// the same protocol. For benchmarks of clients; off by default.
    pub zero_compute: bool,
    /// Hugging Face models served besides the built-in ones, as `(name, source)`: the
    /// name clients use, and a model folder or a repo id in the local hub cache (see
    /// [`crate::engine::hf_model`]). Add them with [`LocalServerConfig::with_model`].
    pub models: Vec<(String, String)>,
    /// How the served Hugging Face models hold their base matrices: widened to f32 when
    /// they load (the default, fastest) or in their stored dtype (about half the memory for
    /// bf16 files, slower). The built-in models are always f32.
    pub weights_dtype: WeightsDtype,
}

impl LocalServerConfig {
    /// Defaults: loopback on a free port, any `tml-` key, no JWT, no faults.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            api_key: None,
            jwt: false,
            jwt_lifetime: Duration::from_secs(3600),
            faults: FaultConfig::default(),
            long_poll: Duration::from_secs(10),
            inline_result_limit: 1 << 20,
            use_pyqwest_transport: true,
            proto_compress_fwdbwd: true,
            sample_use_retrieve_futures: false,
            sample_join_sampling_session: true,
            custom_loss_server_side: true,
            signed_url_lifetime: Duration::from_secs(3600),
            max_body_bytes: 256 << 20,
            seq_gap_window: 1024,
            seq_gap_wait: Duration::from_secs(60),
            zero_compute: false,
            models: Vec::new(),
            weights_dtype: WeightsDtype::F32,
        }
    }

    /// Also serves the Hugging Face model in `source` (a folder, or a cached repo id) as
    /// `name`; the server checks it when it starts.
    pub fn with_model(mut self, name: impl Into<String>, source: impl Into<String>) -> Self {
        self.models.push((name.into(), source.into()));
        self
    }
}

/// One scripted fault: the `n`-th (from 1) request whose path ends with `route` gets
/// `status` (or, with status 0, a dropped connection), or, for `retrieve_future` only, a
/// damaged result payload (see [`PayloadFault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScriptedFault {
    /// Path suffix, e.g. `retrieve_future` or `asample`.
    pub route: String,
    /// Which matching request (1-based).
    pub nth: u64,
    /// HTTP status to answer with; 0 drops the connection. 200 when `payload` is set.
    pub status: u16,
    /// Serve the request, but damage the result it delivers.
    pub payload: Option<PayloadFault>,
}

/// How a scripted `retrieve_future` fault damages a finished future's result (text forms
/// `corrupt` and `badjson`). The fault is armed by the `n`-th poll and fires on the first
/// result answer from then on (that poll's own answer if it delivers the result; otherwise a
/// later one, since a `try_again` or `complete_metadata` answer carries no result). Pending,
/// metadata-only and failed answers are never damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadFault {
    /// `corrupt`: the body keeps its content type but does not decode: a protobuf result is
    /// cut short and ends in an invalid field tag; a JSON result is cut short mid-text.
    Corrupt,
    /// `badjson`: a well-formed `application/json` 200 whose success payload has the wrong
    /// shape: every top-level field of a JSON result gets a value of another JSON type (an
    /// empty result becomes an array); a protobuf result is replaced by such an object.
    BadJson,
}

/// Which futures a [`QueuePause`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PausedQueue {
    /// `sampling`: futures of `asample` (and `sample`).
    Sampling,
    /// `training`: futures of training-side requests (model creation, forward/backward,
    /// optimizer steps, saves and loads).
    Training,
}

/// How long a [`QueuePause`] lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseLength {
    /// `N` (a bare integer): each future of the queue answers its first `N` polls with the
    /// paused state, at once, whether or not its result is ready.
    Polls(u32),
    /// `500ms` or `2s`: the queue is paused from its first poll for this long (server-wide);
    /// a poll in that window is held until the pause ends (at most the long-poll time) and
    /// then answers the paused state.
    For(Duration),
}

/// A paused queue (text form `QUEUE:STATE:LENGTH[:REASON]`, see [`FaultConfig`]):
/// `retrieve_future` polls of that queue's futures answer `try_again` with `state` and
/// `reason` (the wire's `queue_state` and `queue_state_reason`, protocol §3.2) instead of
/// the result, for `length`; then the futures complete as usual. Nothing is lost or run
/// twice: the request runs meanwhile and its result is only held back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuePause {
    /// Which futures.
    pub queue: PausedQueue,
    /// `paused_capacity` or `paused_rate_limit` (any state the wire allows; `active` is
    /// refused since it pauses nothing).
    pub state: QueueState,
    /// For how many polls, or how long.
    pub length: PauseLength,
    /// The `queue_state_reason`; absent, the answer carries none (clients then use their
    /// stock reason).
    pub reason: Option<String>,
}

impl QueuePause {
    /// Pauses `queue` in `state` for `length`, with no reason.
    pub fn new(queue: PausedQueue, state: QueueState, length: PauseLength) -> Self {
        Self {
            queue,
            state,
            length,
            reason: None,
        }
    }

    /// Sets the `queue_state_reason` the paused answers carry.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Fault injection, off by default. Random faults draw from one RNG seeded with `seed`, in
/// request-arrival order, so a run with the same request sequence sees the same faults.
///
/// The text form (`--faults`) is a comma-separated list of `key=value`:
/// `seed=7,p5xx=0.1,p429=0.05,p408=0.2,p410=0.1,pdrop=0.02,latency_ms=5-20,pstall=0.05,
/// stall_ms=500,routes=asample|retrieve_future,script=asample#1:429;retrieve_future#2:0,
/// pause=sampling:paused_rate_limit:3:server says: too many samplers;training:paused_capacity:2s`.
///
/// A `script` item is `ROUTE#N:ACTION`, where ACTION is an HTTP status, `0` (drop the
/// connection), or, for `retrieve_future` only, `corrupt` or `badjson` (a result payload the
/// client cannot decode; see [`PayloadFault`]), e.g. `script=retrieve_future#2:corrupt`.
///
/// A `pause` item is `QUEUE:STATE:LENGTH[:REASON]` (see [`QueuePause`]): QUEUE `sampling` or
/// `training`, STATE `paused_capacity` or `paused_rate_limit`, LENGTH a number of polls
/// (`3`) or a duration (`500ms`, `2s`), and an optional reason (the rest of the item; it
/// may hold `:` but not `,` or `;`). `routes` does not narrow pauses.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FaultConfig {
    /// RNG seed.
    pub seed: u64,
    /// Probability of a 500/502/503 answer on any API request.
    pub p_5xx: f64,
    /// Probability of a 429 (with `retry-after-ms`) on any API request.
    pub p_429: f64,
    /// Probability of a 408 on `retrieve_future` polls.
    pub p_408: f64,
    /// Probability of a 410 on `retrieve_future` polls of sampling futures.
    pub p_410: f64,
    /// Probability of dropping the connection without an answer.
    pub p_drop: f64,
    /// Added latency range in milliseconds (uniform, inclusive), applied to every request.
    pub latency_ms: (u64, u64),
    /// Probability of a stalled response body (headers, then a pause, then the body).
    pub p_stall: f64,
    /// Length of a stall.
    pub stall_ms: u64,
    /// Only requests whose path ends with one of these are affected (empty = all API routes).
    pub routes: Vec<String>,
    /// Deterministic faults, applied before random ones.
    pub script: Vec<ScriptedFault>,
    /// `corrupt_after=N`: the first training model (once per server) to finish its `N`-th
    /// optimizer step (counted from its creation or load) gets a corrupted run: its REST
    /// record says `corrupted: true`, and every later training request to it fails with a
    /// `server` error (the session stays usable, so a new model can be loaded from a
    /// checkpoint). `N` is at least 1.
    pub corrupt_after: Option<u64>,
    /// Paused queues (`pause=`), at most one per [`PausedQueue`].
    pub pauses: Vec<QueuePause>,
}

impl FaultConfig {
    /// True if any fault can fire.
    pub fn is_active(&self) -> bool {
        self.p_5xx > 0.0
            || self.p_429 > 0.0
            || self.p_408 > 0.0
            || self.p_410 > 0.0
            || self.p_drop > 0.0
            || self.latency_ms.1 > 0
            || self.p_stall > 0.0
            || !self.script.is_empty()
            || self.corrupt_after.is_some()
            || !self.pauses.is_empty()
    }

    /// Parses the `--faults` text form (see the type docs).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut cfg = Self {
            stall_ms: 1000,
            ..Self::default()
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault `{part}` is not key=value"))?;
            let prob = |v: &str| -> Result<f64, String> {
                let p: f64 = v
                    .parse()
                    .map_err(|_| format!("`{key}`: `{v}` is not a number"))?;
                if (0.0..=1.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(format!("`{key}`: probability {p} is not in [0, 1]"))
                }
            };
            let int = |v: &str| -> Result<u64, String> {
                v.parse()
                    .map_err(|_| format!("`{key}`: `{v}` is not an integer"))
            };
            match key {
                "seed" => cfg.seed = int(value)?,
                "p5xx" => cfg.p_5xx = prob(value)?,
                "p429" => cfg.p_429 = prob(value)?,
                "p408" => cfg.p_408 = prob(value)?,
                "p410" => cfg.p_410 = prob(value)?,
                "pdrop" => cfg.p_drop = prob(value)?,
                "pstall" => cfg.p_stall = prob(value)?,
                "stall_ms" => cfg.stall_ms = int(value)?,
                "corrupt_after" => match int(value)? {
                    0 => return Err("corrupt_after: the step count starts at 1".to_owned()),
                    n => cfg.corrupt_after = Some(n),
                },
                "latency_ms" => {
                    let (lo, hi) = value.split_once('-').unwrap_or((value, value));
                    let (lo, hi) = (int(lo)?, int(hi)?);
                    if lo > hi {
                        return Err(format!("latency_ms: {lo} > {hi}"));
                    }
                    cfg.latency_ms = (lo, hi);
                }
                "routes" => {
                    cfg.routes = value
                        .split('|')
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "script" => {
                    for item in value.split(';').filter(|s| !s.is_empty()) {
                        cfg.script.push(parse_script_item(item)?);
                    }
                }
                "pause" => {
                    for item in value.split(';').filter(|s| !s.is_empty()) {
                        let pause = parse_pause_item(item)?;
                        if cfg.pauses.iter().any(|p| p.queue == pause.queue) {
                            return Err(format!(
                                "pause item `{item}`: that queue is already paused"
                            ));
                        }
                        cfg.pauses.push(pause);
                    }
                }
                _ => return Err(format!("unknown fault key `{key}`")),
            }
        }
        Ok(cfg)
    }
}

fn parse_pause_item(item: &str) -> Result<QueuePause, String> {
    let bad = |why: &str| format!("pause item `{item}` is not QUEUE:STATE:LENGTH[:REASON]: {why}");
    let mut parts = item.splitn(4, ':');
    let (queue, state, length) = match (parts.next(), parts.next(), parts.next()) {
        (Some(q), Some(s), Some(l)) => (q, s, l),
        _ => return Err(bad("too few fields")),
    };
    let reason = parts.next().map(str::to_owned);
    let queue = match queue {
        "sampling" => PausedQueue::Sampling,
        "training" => PausedQueue::Training,
        _ => return Err(bad("QUEUE is `sampling` or `training`")),
    };
    let state = match QueueState::from_wire(state) {
        s @ (QueueState::PausedCapacity | QueueState::PausedRateLimit) => s,
        _ => return Err(bad("STATE is `paused_capacity` or `paused_rate_limit`")),
    };
    let number = |digits: &str| digits.parse::<u64>().map_err(|_| bad("bad LENGTH"));
    let length = if let Some(ms) = length.strip_suffix("ms") {
        PauseLength::For(Duration::from_millis(number(ms)?))
    } else if let Some(s) = length.strip_suffix('s') {
        PauseLength::For(Duration::from_secs(number(s)?))
    } else {
        let n = u32::try_from(number(length)?).map_err(|_| bad("LENGTH too large"))?;
        PauseLength::Polls(n)
    };
    if matches!(length, PauseLength::Polls(0)) || length == PauseLength::For(Duration::ZERO) {
        return Err(bad("LENGTH must be more than 0"));
    }
    Ok(QueuePause {
        queue,
        state,
        length,
        reason,
    })
}

fn parse_script_item(item: &str) -> Result<ScriptedFault, String> {
    let bad = || format!("script item `{item}` is not ROUTE#N:STATUS");
    let (target, action) = item.split_once(':').ok_or_else(bad)?;
    let (route, nth) = target.split_once('#').ok_or_else(bad)?;
    let nth: u64 = nth.parse().map_err(|_| bad())?;
    if nth == 0 || route.is_empty() {
        return Err(bad());
    }
    let payload = match action {
        "corrupt" => Some(PayloadFault::Corrupt),
        "badjson" => Some(PayloadFault::BadJson),
        _ => None,
    };
    if let Some(payload) = payload {
        if route != "retrieve_future" {
            return Err(format!(
                "script item `{item}`: `{action}` applies to retrieve_future only"
            ));
        }
        return Ok(ScriptedFault {
            route: route.to_owned(),
            nth,
            status: 200,
            payload: Some(payload),
        });
    }
    let status: u16 = action.parse().map_err(|_| bad())?;
    if status != 0 && !(100..=599).contains(&status) {
        return Err(bad());
    }
    Ok(ScriptedFault {
        route: route.to_owned(),
        nth,
        status,
        payload: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_spec() {
        let cfg = FaultConfig::parse(
            "seed=7,p5xx=0.1,p429=0.05,latency_ms=5-20,routes=asample|retrieve_future,script=asample#2:429;retrieve_future#1:0",
        )
        .unwrap();
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.p_5xx, 0.1);
        assert_eq!(cfg.latency_ms, (5, 20));
        assert_eq!(cfg.routes, vec!["asample", "retrieve_future"]);
        assert_eq!(cfg.script.len(), 2);
        assert_eq!(cfg.script[0].nth, 2);
        assert_eq!(cfg.script[1].status, 0);
        assert!(cfg.is_active());
        let cfg = FaultConfig::parse("script=retrieve_future#2:corrupt;retrieve_future#3:badjson")
            .unwrap();
        assert_eq!(cfg.script[0].payload, Some(PayloadFault::Corrupt));
        assert_eq!(cfg.script[1].payload, Some(PayloadFault::BadJson));
        assert_eq!(cfg.script[1].nth, 3);
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(FaultConfig::parse("p5xx=2").is_err());
        assert!(FaultConfig::parse("nope=1").is_err());
        assert!(FaultConfig::parse("script=asample:429").is_err());
        assert!(FaultConfig::parse("latency_ms=9-3").is_err());
        assert!(FaultConfig::parse("script=asample#1:corrupt").is_err());
        assert!(FaultConfig::parse("script=retrieve_future#1:garbled").is_err());
        assert!(!FaultConfig::parse("").unwrap().is_active());
        for bad in [
            "pause=sampling:paused_capacity",
            "pause=queue:paused_capacity:3",
            "pause=sampling:active:3",
            "pause=sampling:paused_capacity:0",
            "pause=training:paused_capacity:3x",
            "pause=training:paused_capacity:1;training:paused_rate_limit:2",
        ] {
            assert!(FaultConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_queue_pauses() {
        let cfg = FaultConfig::parse(
            "pause=sampling:paused_rate_limit:3:server says: busy;training:paused_capacity:250ms",
        )
        .unwrap();
        assert!(cfg.is_active());
        assert_eq!(
            cfg.pauses,
            vec![
                QueuePause {
                    queue: PausedQueue::Sampling,
                    state: QueueState::PausedRateLimit,
                    length: PauseLength::Polls(3),
                    reason: Some("server says: busy".to_owned()),
                },
                QueuePause {
                    queue: PausedQueue::Training,
                    state: QueueState::PausedCapacity,
                    length: PauseLength::For(Duration::from_millis(250)),
                    reason: None,
                },
            ]
        );
        let cfg = FaultConfig::parse("pause=training:paused_capacity:2s").unwrap();
        assert_eq!(
            cfg.pauses[0].length,
            PauseLength::For(Duration::from_secs(2))
        );
    }
}
