//! One worker thread per training model: requests run strictly in `seq_id` order, one at a
//! time, off the async executor.
//!
//! # `seq_id` rules
//!
//! A model's creation is `seq_id` 0; its requests carry 1, 2, … and may arrive in any
//! order. Each accepted id is recorded with the request id it got and a digest of its
//! canonical body (see `api::digest`).
//!
//! * **Resubmission.** An id that arrives again with the same payload gets the first
//!   request's id back and does not run again (this is how client retries stay
//!   exactly-once); with a different payload it is refused with 409 Conflict.
//! * **Gap window.** An id more than [`LocalServerConfig::seq_gap_window`] ahead of the id
//!   the model expects next is refused at once (400, naming both ids): it could only wait.
//! * **Gap wait.** A request that arrives early waits for the missing ids before it. Once
//!   the oldest waiting request has waited [`LocalServerConfig::seq_gap_wait`], the model
//!   gives up: every waiting request fails (an error result of its future naming the first
//!   missing id; none of them runs, since the client meant them to follow the lost one),
//!   every missing id up to the highest waiting one is given up, and the model expects the
//!   id after that. A given-up id that arrives late is answered 409. The check runs on
//!   every submission and once a second from the state's sweeper.
//! * **Refusals.** A request the server refuses after it has read a valid `seq_id` for the
//!   caller's own model still takes that id, as a failed request (`TrainOp::Reject`), so
//!   nothing behind it waits.
//!
//! [`LocalServerConfig::seq_gap_window`]: crate::LocalServerConfig::seq_gap_window
//! [`LocalServerConfig::seq_gap_wait`]: crate::LocalServerConfig::seq_gap_wait

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tinker_types::{
    CreateModelResponse, LoadWeightsResponse, OptimStepResponse, SaveWeightsExternalResponse,
    SaveWeightsForSamplerResponseInternal, SaveWeightsResponse,
};

use chrono::Utc;
use serde_json::json;

use crate::compute::{Compute, TrainEngine};
use crate::engine::{AdamStep, EngineError, LoraSpec, Loss, ModelSpec, TrainExample};
use crate::engine_wire;
use crate::persist::{CheckpointRecord, dir_size};
use crate::promise::{Completer, FutureKind, Outcome};
use crate::state::{AppState, SamplerEntry, lock};

/// A training request, ready to run.
#[derive(Debug)]
pub(crate) enum TrainOp {
    ForwardBackward {
        batch: Vec<TrainExample>,
        loss: Loss,
        forward_only: bool,
        tokens: usize,
    },
    OptimStep(AdamStep),
    SaveWeights {
        name: String,
        ttl_seconds: Option<i64>,
        overwrite: bool,
        user_metadata: Option<BTreeMap<String, String>>,
    },
    SaveForSampler {
        /// `Some` = named checkpoint; `None` = ephemeral sampling session.
        name: Option<String>,
        ttl_seconds: Option<i64>,
        user_metadata: Option<BTreeMap<String, String>>,
        sampling_session_id: Option<String>,
    },
    SaveExternal {
        name: String,
        ttl_seconds: Option<i64>,
    },
    LoadWeights {
        dir: PathBuf,
        path: String,
        optimizer: bool,
    },
    /// The request was well-formed enough to take its `seq_id`, but cannot run.
    Reject(String),
}

impl TrainOp {
    /// The SDK's name of the request type (`X-Tinker-Request-Type`), for session failures.
    fn request_type(&self) -> &'static str {
        match self {
            Self::ForwardBackward {
                forward_only: true, ..
            } => "Forward",
            Self::ForwardBackward { .. } => "ForwardBackward",
            Self::OptimStep(_) => "OptimStep",
            Self::SaveWeights { .. } => "SaveWeights",
            Self::SaveForSampler { .. } => "SaveWeightsForSampler",
            Self::SaveExternal { .. } => "SaveWeightsExternal",
            Self::LoadWeights { .. } => "LoadWeights",
            Self::Reject(_) => "Rejected",
        }
    }

    /// The future kind clients poll with (`Accept: application/x-protobuf` for fwd/bwd).
    fn name(&self) -> &'static str {
        match self {
            Self::ForwardBackward { .. } => "forward_backward",
            Self::OptimStep(_) => "optim_step",
            Self::SaveWeights { .. } => "save_weights",
            Self::SaveForSampler { .. } => "save_weights_for_sampler",
            Self::SaveExternal { .. } => "save_weights_external",
            Self::LoadWeights { .. } => "load_weights",
            Self::Reject(_) => "rejected",
        }
    }
}

struct Job {
    seq_id: i64,
    op: TrainOp,
    done: Completer,
}

/// How a model starts.
#[derive(Debug)]
pub(crate) enum Init {
    Fresh,
    /// From a checkpoint directory (adapter, and optimizer state if asked).
    FromCheckpoint {
        dir: PathBuf,
        path: String,
        optimizer: bool,
    },
}

/// A digest of a training request's canonical body: a resubmitted `seq_id` is the same
/// request only if its digest matches (built by `api::digest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadDigest(pub(crate) u128);

/// Why a `seq_id` was not accepted.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// Further ahead than the gap window allows (answered 400).
    TooFarAhead(String),
    /// Used before by another payload, given up, or already passed (answered 409).
    Conflict(String),
}

/// What became of a `seq_id` the model has seen.
#[derive(Debug)]
enum SeqEntry {
    /// Accepted as the request `request_id` with this payload.
    Accepted {
        request_id: String,
        digest: PayloadDigest,
    },
    /// Missing when the gap wait ran out: never accepted any more.
    GivenUp,
}

/// A request that arrived before the ids in front of it.
#[derive(Debug)]
struct Waiting {
    op: TrainOp,
    done: Completer,
    since: Instant,
}

#[derive(Debug, Default)]
struct SeqState {
    /// The next `seq_id` to dispatch.
    next: i64,
    /// Arrived early, waiting for a gap to fill.
    waiting: BTreeMap<i64, Waiting>,
    /// Every `seq_id` accepted or given up.
    seen: HashMap<i64, SeqEntry>,
}

/// A live training model.
#[derive(Debug)]
pub(crate) struct ModelWorker {
    pub(crate) model_id: String,
    pub(crate) session_id: String,
    /// The account the model belongs to.
    pub(crate) owner: String,
    pub(crate) spec: ModelSpec,
    pub(crate) lora: LoraSpec,
    seq: Mutex<SeqState>,
    tx: Mutex<mpsc::Sender<Job>>,
}

impl ModelWorker {
    /// Starts the worker thread, which creates the model (the request with `seq_id` 0)
    /// and then runs requests as they are dispatched.
    pub(crate) fn spawn(
        state: &Arc<AppState>,
        model_id: String,
        (session_id, owner): (String, String),
        spec: ModelSpec,
        lora: LoraSpec,
        init: Init,
        created: Completer,
    ) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let worker = Arc::new(Self {
            model_id: model_id.clone(),
            session_id,
            owner,
            spec: spec.clone(),
            lora: lora.clone(),
            seq: Mutex::new(SeqState {
                next: 1,
                ..SeqState::default()
            }),
            tx: Mutex::new(tx),
        });
        let weak = Arc::downgrade(state);
        std::thread::Builder::new()
            .name(format!("model-{model_id}"))
            .spawn(move || run(weak, model_id, spec, lora, init, created, rx))?;
        Ok(worker)
    }

    /// Accepts request `seq_id` whose canonical body has `digest`, following the rules in
    /// the module docs; returns its request id.
    pub(crate) fn submit(
        &self,
        state: &Arc<AppState>,
        seq_id: i64,
        digest: PayloadDigest,
        op: TrainOp,
    ) -> Result<String, SubmitError> {
        let mut seq = lock(&self.seq);
        self.give_up_stale_gap(&mut seq, state.config.seq_gap_wait);
        match seq.seen.get(&seq_id) {
            Some(SeqEntry::Accepted {
                request_id,
                digest: first,
            }) if *first == digest => {
                tracing::debug!(model = %self.model_id, seq_id, "duplicate submission");
                return Ok(request_id.clone());
            }
            Some(SeqEntry::Accepted { .. }) => {
                return Err(SubmitError::Conflict(format!(
                    "seq_id {seq_id} of model {} was already used by a different request \
                     (a resubmission must repeat the same request; new requests take new ids)",
                    self.model_id
                )));
            }
            Some(SeqEntry::GivenUp) => {
                return Err(SubmitError::Conflict(format!(
                    "seq_id {seq_id} of model {} was given up: requests queued behind it \
                     waited longer than {:?} and failed; send new requests with new ids",
                    self.model_id, state.config.seq_gap_wait
                )));
            }
            None => {}
        }
        if seq_id < seq.next {
            return Err(SubmitError::Conflict(format!(
                "seq_id {seq_id} of model {} was already used",
                self.model_id
            )));
        }
        let window = i64::try_from(state.config.seq_gap_window).unwrap_or(i64::MAX);
        if seq_id - seq.next > window {
            return Err(SubmitError::TooFarAhead(format!(
                "seq_id {seq_id} is too far ahead: model {} expects seq_id {} next and \
                 accepts at most {window} ids beyond it",
                self.model_id, seq.next
            )));
        }
        let request_id = format!("{}:{}:{}", self.model_id, seq_id, short_id());
        let done = state
            .promises
            .create(request_id.clone(), FutureKind::Training, &self.owner);
        tracing::debug!(model = %self.model_id, seq_id, op = op.name(), %request_id, "accepted");
        seq.seen.insert(
            seq_id,
            SeqEntry::Accepted {
                request_id: request_id.clone(),
                digest,
            },
        );
        seq.waiting.insert(
            seq_id,
            Waiting {
                op,
                done,
                since: Instant::now(),
            },
        );
        let tx = lock(&self.tx);
        loop {
            let next = seq.next;
            let Some(Waiting { op, done, .. }) = seq.waiting.remove(&next) else {
                break;
            };
            seq.next += 1;
            if let Err(mpsc::SendError(job)) = tx.send(Job {
                seq_id: next,
                op,
                done,
            }) {
                job.done
                    .complete(Outcome::server("the model's worker has stopped"));
            }
        }
        Ok(request_id)
    }

    /// The request id `seq_id` got if it was accepted with this same payload (so a
    /// resubmission is answered with its future whatever changed since).
    pub(crate) fn resubmitted(&self, seq_id: i64, digest: PayloadDigest) -> Option<String> {
        match lock(&self.seq).seen.get(&seq_id) {
            Some(SeqEntry::Accepted {
                request_id,
                digest: first,
            }) if *first == digest => Some(request_id.clone()),
            _ => None,
        }
    }

    /// Applies the gap-wait rule now (the state's sweeper calls it once a second).
    pub(crate) fn expire_gap(&self, wait: Duration) {
        self.give_up_stale_gap(&mut lock(&self.seq), wait);
    }

    /// If the oldest waiting request has waited `wait` for a missing id, fails every
    /// waiting request and gives up the missing ids below the highest of them.
    fn give_up_stale_gap(&self, seq: &mut SeqState, wait: Duration) {
        let Some(oldest) = seq.waiting.values().map(|w| w.since).min() else {
            return;
        };
        if oldest.elapsed() < wait {
            return;
        }
        // Ready requests are dispatched at once, so every waiting one is behind `next`.
        let first_missing = seq.next;
        let Some(&last) = seq.waiting.keys().next_back() else {
            return;
        };
        let message = format!(
            "seq_id {first_missing} of model {} never arrived: this request waited for it \
             longer than {wait:?}, so it did not run; the missing seq_ids up to {last} are \
             given up and the model continues at seq_id {}",
            self.model_id,
            last + 1
        );
        tracing::warn!(model = %self.model_id, first_missing, last, "gap wait expired");
        for missing in first_missing..last {
            if !seq.waiting.contains_key(&missing) {
                seq.seen.insert(missing, SeqEntry::GivenUp);
            }
        }
        for (_, waiting) in std::mem::take(&mut seq.waiting) {
            waiting.done.complete(Outcome::user(message.clone()));
        }
        seq.next = last + 1;
    }

    /// The `seq_id` the model expects next (for diagnostics).
    pub(crate) fn queue_state(&self) -> (i64, usize) {
        let seq = lock(&self.seq);
        (seq.next, seq.waiting.len())
    }
}

/// A short random id component.
pub(crate) fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn engine_outcome(e: &EngineError) -> Outcome {
    if e.is_user_error() {
        Outcome::user(e.to_string())
    } else {
        Outcome::server(e.to_string())
    }
}

fn run(
    state: Weak<AppState>,
    model_id: String,
    spec: ModelSpec,
    lora: LoraSpec,
    init: Init,
    created: Completer,
    rx: mpsc::Receiver<Job>,
) {
    let built = catch_unwind(AssertUnwindSafe(
        || -> Result<Box<dyn TrainEngine>, EngineError> {
            let compute = state
                .upgrade()
                .map_or(Compute::Candle, |s| Compute::of(&s.config));
            let mut model = compute.trainer(&spec, &lora)?;
            if let Init::FromCheckpoint { dir, optimizer, .. } = &init {
                model.load_adapter(dir)?;
                if *optimizer {
                    model.load_optimizer(&optimizer_dir(dir))?;
                }
            }
            Ok(model)
        },
    ));
    let mut model = match built {
        Ok(Ok(model)) => {
            let result = match &init {
                Init::FromCheckpoint { path, .. } => Outcome::typed(&LoadWeightsResponse {
                    path: Some(path.clone()),
                    model_id: Some(model_id.clone()),
                }),
                _ => Outcome::typed(&CreateModelResponse {
                    model_id: model_id.clone(),
                }),
            };
            created.complete(result);
            model
        }
        Ok(Err(e)) => {
            created.complete(engine_outcome(&e));
            if let Some(state) = state.upgrade() {
                lock(&state.models).remove(&model_id);
            }
            return;
        }
        Err(_) => {
            created.complete(Outcome::server("model creation panicked"));
            if let Some(state) = state.upgrade() {
                lock(&state.models).remove(&model_id);
            }
            return;
        }
    };
    // Successful optimizer steps of this model, for the `corrupt_after` fault.
    let mut optim_steps = 0u64;
    let mut corrupted = false;
    while let Ok(job) = rx.recv() {
        let Some(state) = state.upgrade() else { break };
        state.record_execution(&model_id, job.seq_id);
        if corrupted {
            // A corrupted run refuses all work (saving it would keep bad state) but leaves
            // the session alone: the client restores a new model from a checkpoint.
            job.done.complete(Outcome::server(format!(
                "training run {model_id} is corrupted; create a new training client from its \
                 last checkpoint"
            )));
            continue;
        }
        let started = std::time::Instant::now();
        let op_name = job.op.name();
        let request_type = job.op.request_type();
        let is_optim_step = matches!(job.op, TrainOp::OptimStep(_));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            execute(&state, &model_id, model.as_mut(), job.op)
        }))
        .unwrap_or_else(|_| Outcome::server(format!("{op_name} panicked in the engine")));
        if is_optim_step && !matches!(outcome, Outcome::Failed { .. }) {
            optim_steps += 1;
            if state.faults.corrupts_run(optim_steps) {
                corrupted = true;
                tracing::warn!(model = %model_id, optim_steps, "fault: training run corrupted");
                let _ = state.store.update_run(&model_id, |run| {
                    run.corrupted = true;
                    Ok(())
                });
            }
        }
        tracing::debug!(model = %model_id, seq_id = job.seq_id, op = op_name,
            elapsed_ms = started.elapsed().as_millis() as u64, "executed");
        state.store.touch_run(&model_id, Utc::now());
        if let Outcome::Failed {
            error,
            category: "server",
        } = &outcome
            && let Some(run) = state.store.run(&model_id)
        {
            state.fail_session_by_request(
                &run.session_id,
                job.done.request_id(),
                request_type,
                error,
            );
        }
        job.done.complete(outcome);
    }
}

fn expires_at(ttl_seconds: Option<i64>) -> Option<chrono::DateTime<Utc>> {
    ttl_seconds.map(|s| Utc::now() + chrono::Duration::seconds(s))
}

/// What to save.
struct SaveSpec<'a> {
    segment: &'a str,
    name: &'a str,
    with_optimizer: bool,
    ttl_seconds: Option<i64>,
    user_metadata: Option<BTreeMap<String, String>>,
}

/// Saves into a staging dir and commits it as checkpoint `segment/name`.
fn save_checkpoint(
    state: &AppState,
    model_id: &str,
    model: &dyn TrainEngine,
    save: SaveSpec<'_>,
) -> Result<(String, u64), Outcome> {
    let SaveSpec {
        segment,
        name,
        with_optimizer,
        ttl_seconds,
        user_metadata,
    } = save;
    let staged = state
        .store
        .staging_dir()
        .map_err(|e| Outcome::server(format!("staging checkpoint: {e}")))?;
    let result = (|| -> Result<(), EngineError> {
        model.save_adapter(&staged)?;
        if with_optimizer {
            let dir = optimizer_dir(&staged);
            std::fs::create_dir_all(&dir)
                .map_err(|e| EngineError::internal(format!("creating optimizer dir: {e}")))?;
            model.save_optimizer(&dir)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(engine_outcome(&e));
    }
    let size = dir_size(&staged);
    let checkpoint_id = format!("{segment}/{name}");
    let record = CheckpointRecord {
        checkpoint_id: checkpoint_id.clone(),
        time: Utc::now(),
        size_bytes: size,
        public: false,
        user_metadata,
        expires_at: expires_at(ttl_seconds),
        has_optimizer: with_optimizer,
    };
    if let Err(e) = state.store.commit_checkpoint(model_id, &staged, record) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(Outcome::server(e));
    }
    let path = format!("tinker://{model_id}/{checkpoint_id}");
    state.audit(
        &state.run_owner(model_id),
        "checkpoint_create",
        Some(model_id),
        Some(&path),
        json!({ "size_bytes": size }),
    );
    Ok((path, size))
}

fn session_of(state: &AppState, model_id: &str) -> (String, String) {
    lock(&state.models)
        .get(model_id)
        .map(|w| (w.session_id.clone(), w.spec.name.clone()))
        .unwrap_or_default()
}

fn execute(
    state: &Arc<AppState>,
    model_id: &str,
    model: &mut dyn TrainEngine,
    op: TrainOp,
) -> Outcome {
    match op {
        TrainOp::Reject(message) => Outcome::user(message),
        TrainOp::ForwardBackward {
            batch,
            loss,
            forward_only,
            tokens,
        } => match model.forward_backward(&batch, &loss, forward_only) {
            Ok(out) => {
                let (session, base) = session_of(state, model_id);
                state.account(&session, &base, "training", tokens as u64);
                engine_wire::encode_forward_output(&out)
                    .map_or_else(Outcome::server, Outcome::Proto)
            }
            Err(e) => engine_outcome(&e),
        },
        TrainOp::OptimStep(step) => match model.optim_step(&step) {
            Ok(report) => Outcome::typed(&OptimStepResponse {
                metrics: Some(report.metrics.into_iter().collect()),
            }),
            Err(e) => engine_outcome(&e),
        },
        TrainOp::SaveWeights {
            name,
            ttl_seconds,
            overwrite,
            user_metadata,
        } => {
            let exists = state.store.run(model_id).is_some_and(|r| {
                r.checkpoints
                    .iter()
                    .any(|c| c.checkpoint_id == format!("weights/{name}"))
            });
            if exists && !overwrite {
                return Outcome::user(format!(
                    "checkpoint weights/{name} already exists (pass overwrite=True to replace it)"
                ));
            }
            let save = SaveSpec {
                segment: "weights",
                name: &name,
                with_optimizer: true,
                ttl_seconds,
                user_metadata,
            };
            match save_checkpoint(state, model_id, model, save) {
                Ok((path, _)) => {
                    let (session, base) = session_of(state, model_id);
                    state.account(&session, &base, "checkpoint", 1);
                    Outcome::typed(&SaveWeightsResponse { path })
                }
                Err(o) => o,
            }
        }
        TrainOp::SaveExternal { name, ttl_seconds } => {
            let save = SaveSpec {
                segment: "external_weights",
                name: &name,
                with_optimizer: false,
                ttl_seconds,
                user_metadata: None,
            };
            match save_checkpoint(state, model_id, model, save) {
                Ok((path, size)) => {
                    let (session, base) = session_of(state, model_id);
                    state.account(&session, &base, "checkpoint", 1);
                    Outcome::typed(&SaveWeightsExternalResponse {
                        path,
                        size_bytes: Some(size),
                    })
                }
                Err(o) => o,
            }
        }
        TrainOp::SaveForSampler {
            name,
            ttl_seconds,
            user_metadata,
            sampling_session_id,
        } => {
            let (session, base) = session_of(state, model_id);
            if let Some(name) = name {
                let save = SaveSpec {
                    segment: "sampler_weights",
                    name: &name,
                    with_optimizer: false,
                    ttl_seconds,
                    user_metadata,
                };
                return match save_checkpoint(state, model_id, model, save) {
                    Ok((path, _)) => {
                        state.account(&session, &base, "checkpoint", 1);
                        Outcome::typed(&SaveWeightsForSamplerResponseInternal {
                            path: Some(path),
                            sampling_session_id: None,
                        })
                    }
                    Err(o) => o,
                };
            }
            let Some(id) = sampling_session_id else {
                return Outcome::user(
                    "save_weights_for_sampler needs a path or a sampling session",
                );
            };
            let owner = lock(&state.models)
                .get(model_id)
                .map(|w| w.owner.clone())
                .unwrap_or_default();
            lock(&state.samplers).insert(
                id.clone(),
                SamplerEntry {
                    id: id.clone(),
                    session_id: session.clone(),
                    owner,
                    base_model: base,
                    model_path: None,
                    model: model.sampler(),
                    clients: 0,
                },
            );
            if let Some(s) = lock(&state.sessions).get_mut(&session) {
                s.sampler_ids.push(id.clone());
            }
            Outcome::typed(&SaveWeightsForSamplerResponseInternal {
                path: None,
                sampling_session_id: Some(id),
            })
        }
        TrainOp::LoadWeights {
            dir,
            path,
            optimizer,
        } => {
            let loaded = (|| -> Result<(), EngineError> {
                model.load_adapter(&dir)?;
                if optimizer {
                    model.load_optimizer(&optimizer_dir(&dir))?;
                }
                Ok(())
            })();
            match loaded {
                Ok(()) => Outcome::typed(&LoadWeightsResponse {
                    path: Some(path),
                    model_id: Some(model_id.to_owned()),
                }),
                Err(e) => engine_outcome(&e),
            }
        }
    }
}

/// Where a training checkpoint keeps its optimizer state.
pub(crate) fn optimizer_dir(checkpoint_dir: &Path) -> PathBuf {
    checkpoint_dir.join("optimizer")
}
