//! The server's shared state: sessions, live models and samplers, accounting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hasher;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::compute::SampleEngine;
use crate::config::LocalServerConfig;
use crate::engine::{CustomGraph, ModelSpec, WeightsDtype, builtin_models};
use crate::faults::FaultInjector;
use crate::persist::Store;
use crate::promise::Promises;
use crate::worker::ModelWorker;
use crate::{DataDirSnafu, Error};
use snafu::ResultExt;

/// Locks a mutex, ignoring poisoning (state stays usable after a panicking request).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) user_metadata: BTreeMap<String, String>,
    pub(crate) project_id: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) owner: String,
    /// How the session ended (`client_finished`, `cancelled` or `failed`); `None` while it
    /// is active. The first end wins.
    pub(crate) ended: Option<tinker_types::SessionStatus>,
    pub(crate) last_heartbeat: DateTime<Utc>,
    pub(crate) training_run_ids: Vec<String>,
    pub(crate) sampler_ids: Vec<String>,
}

/// A sampling session.
#[derive(Debug, Clone)]
pub(crate) struct SamplerEntry {
    pub(crate) id: String,
    pub(crate) session_id: String,
    /// The account the sampler belongs to.
    pub(crate) owner: String,
    pub(crate) base_model: String,
    pub(crate) model_path: Option<String>,
    pub(crate) model: Arc<dyn SampleEngine>,
    pub(crate) clients: u64,
}

/// A custom loss created by `create_custom_loss`; only its session's models may use it.
#[derive(Debug, Clone)]
pub(crate) struct StoredCustomLoss {
    pub(crate) session_id: String,
    pub(crate) graph: Arc<CustomGraph>,
}

/// One unit of accounted work.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct UsageRecord {
    /// When the work finished.
    pub time: DateTime<Utc>,
    /// The session it belongs to.
    pub session_id: String,
    /// The base model used.
    pub base_model: String,
    /// `training`, `sampling_prefill`, `sampling_sample` or `checkpoint`.
    pub kind: String,
    /// Tokens processed (or checkpoints written, for `checkpoint`).
    pub count: u64,
}

/// One audit-log entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The account the event belongs to (the owner label of its session, model or
    /// checkpoint); the audit route shows a caller only its own account's events.
    pub owner: String,
    /// `<resource>_<action>`, e.g. `checkpoint_create`.
    pub event: String,
    /// The model involved, if any.
    pub model_id: Option<String>,
    /// The checkpoint involved, if any.
    pub tinker_path: Option<String>,
    /// Extra details.
    pub event_details: serde_json::Value,
}

/// One `retrieve_futures` poll as the server answered it (a read-only test hook).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FuturesPoll {
    /// The polled sampling session.
    pub sampling_session_id: String,
    /// The polled clone id.
    pub cloned_sampler_id: i64,
    /// The client's `prev_cursor`.
    pub prev_cursor: u64,
    /// The client's `timeout` (`None` = long poll).
    pub timeout: Option<f64>,
    /// The ids the client acknowledged as retrieved.
    pub retrieved_request_ids: Vec<String>,
    /// The cursor the server answered with.
    pub cursor: u64,
    /// The request ids the server reported as completed.
    pub completed: Vec<String>,
}

/// `(sampling session, seq_id)` → `(request id, sequence ids)`.
pub(crate) type SampleSubmissions = HashMap<(String, i64), (String, Vec<String>)>;

/// Telemetry events kept in memory: clients send them for as long as the server runs, so
/// the store is a window, not a log.
pub(crate) const MAX_TELEMETRY_EVENTS: usize = 10_000;

/// Everything the request handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: LocalServerConfig,
    pub(crate) store: Store,
    pub(crate) promises: Arc<Promises>,
    pub(crate) specs: Vec<ModelSpec>,
    pub(crate) sessions: Mutex<BTreeMap<String, Session>>,
    pub(crate) models: Mutex<HashMap<String, Arc<ModelWorker>>>,
    pub(crate) samplers: Mutex<HashMap<String, SamplerEntry>>,
    /// `(sampling session, seq_id)` → `(request id, sequence ids)` for idempotent resubmission.
    pub(crate) sample_submissions: Mutex<SampleSubmissions>,
    /// Idempotent creation requests keyed by `(session, kind, seq)`.
    pub(crate) creations: Mutex<HashMap<(String, &'static str, i64), serde_json::Value>>,
    /// The latest [`MAX_TELEMETRY_EVENTS`] telemetry events clients sent (oldest dropped).
    pub(crate) telemetry: Mutex<std::collections::VecDeque<serde_json::Value>>,
    /// Server-side custom losses by `loss_id`.
    pub(crate) custom_losses: Mutex<HashMap<String, StoredCustomLoss>>,
    pub(crate) usage: Mutex<Vec<UsageRecord>>,
    pub(crate) audit: Mutex<Vec<AuditRecord>>,
    pub(crate) executions: Mutex<BTreeMap<(String, i64), u32>>,
    /// Digests of API keys revoked with `DELETE /auth/apikey/me` (never the keys
    /// themselves); kept in memory only, so a restart forgets them.
    pub(crate) revoked_keys: Mutex<HashSet<String>>,
    /// Every answered `retrieve_futures` poll (test hook).
    pub(crate) futures_polls: Mutex<Vec<FuturesPoll>>,
    /// Every `cancel_future` request id received (test hook).
    pub(crate) cancel_requests: Mutex<Vec<String>>,
    pub(crate) sampling_slots: Arc<Semaphore>,
    pub(crate) faults: FaultInjector,
    /// Per-data-directory secret for signatures and owner labels (survives restarts).
    secret: [u8; 32],
    pub(crate) shutdown_rx: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

impl AppState {
    /// Opens the data directory and builds the state.
    pub(crate) fn open(config: LocalServerConfig) -> Result<Arc<Self>, Error> {
        let store = Store::open(&config.data_dir).context(DataDirSnafu {
            path: config.data_dir.clone(),
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let faults = FaultInjector::new(config.faults.clone());
        let secret = load_secret(&config.data_dir).context(DataDirSnafu {
            path: config.data_dir.clone(),
        })?;
        let specs = served_models(&config.models, config.weights_dtype)?;
        Ok(Arc::new(Self {
            store,
            promises: Arc::new(Promises::default()),
            specs,
            sessions: Mutex::default(),
            models: Mutex::default(),
            samplers: Mutex::default(),
            sample_submissions: Mutex::default(),
            creations: Mutex::default(),
            telemetry: Mutex::default(),
            custom_losses: Mutex::default(),
            usage: Mutex::default(),
            audit: Mutex::default(),
            executions: Mutex::default(),
            revoked_keys: Mutex::default(),
            futures_polls: Mutex::default(),
            cancel_requests: Mutex::default(),
            sampling_slots: Arc::new(Semaphore::new(1)),
            faults,
            secret,
            shutdown_rx,
            shutdown_tx,
            config,
        }))
    }

    /// The spec of a base model by name.
    pub(crate) fn spec(&self, name: &str) -> Option<&ModelSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// A 128-bit keyed hash of `data` (SipHash over the server secret and `data`), hex
    /// encoded: signs URLs and tokens, and derives owner labels.
    pub(crate) fn sign(&self, data: &str) -> String {
        let mut out = String::with_capacity(32);
        for salt in [0x5u8, 0xa] {
            let mut h = std::hash::DefaultHasher::new();
            h.write_u8(salt);
            h.write(&self.secret);
            h.write(data.as_bytes());
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out
    }

    /// Ends `session_id` with `status` unless it already ended (the first end wins);
    /// returns whether this call ended it.
    pub(crate) fn end_session(
        &self,
        session_id: &str,
        status: tinker_types::SessionStatus,
    ) -> bool {
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(session_id) {
            Some(s) if s.ended.is_none() => {
                s.ended = Some(status);
                true
            }
            _ => false,
        }
    }

    /// The account of session `session_id` (empty if it is unknown).
    pub(crate) fn session_owner(&self, session_id: &str) -> String {
        lock(&self.sessions)
            .get(session_id)
            .map(|s| s.owner.clone())
            .unwrap_or_default()
    }

    /// The account of training run `run_id` (empty if it is unknown).
    pub(crate) fn run_owner(&self, run_id: &str) -> String {
        self.store
            .run(run_id)
            .map(|r| r.model_owner)
            .unwrap_or_default()
    }

    /// Marks the session of a request that failed on the server's side as `failed` (reason
    /// `request`, category `internal`); failures the request caused do not fail the session.
    pub(crate) fn fail_session_by_request(
        &self,
        session_id: &str,
        request_id: &str,
        request_type: &str,
        message: &str,
    ) {
        let status = tinker_types::SessionStatus::Failed(tinker_types::SessionFailed {
            category: tinker_types::SessionFailureCategory::Internal,
            reason: tinker_types::SessionFailedReason::Request(tinker_types::FailedRequestReason {
                request_id: request_id.to_owned(),
                request_type: request_type.to_owned(),
            }),
            message: message.to_owned(),
        });
        if self.end_session(session_id, status) {
            tracing::warn!(session = %session_id, %request_id, "session failed: {message}");
            self.audit(
                &self.session_owner(session_id),
                "session_fail",
                None,
                None,
                serde_json::json!({ "session_id": session_id, "request_id": request_id }),
            );
        }
    }

    /// Appends an audit entry of account `owner`.
    pub(crate) fn audit(
        &self,
        owner: &str,
        event: &str,
        model_id: Option<&str>,
        tinker_path: Option<&str>,
        event_details: serde_json::Value,
    ) {
        lock(&self.audit).push(AuditRecord {
            timestamp: Utc::now(),
            owner: owner.to_owned(),
            event: event.to_owned(),
            model_id: model_id.map(str::to_owned),
            tinker_path: tinker_path.map(str::to_owned),
            event_details,
        });
    }

    /// Records accounted work.
    pub(crate) fn account(&self, session_id: &str, base_model: &str, kind: &str, count: u64) {
        lock(&self.usage).push(UsageRecord {
            time: Utc::now(),
            session_id: session_id.to_owned(),
            base_model: base_model.to_owned(),
            kind: kind.to_owned(),
            count,
        });
    }

    /// Counts one execution of a training request.
    pub(crate) fn record_execution(&self, model_id: &str, seq_id: i64) {
        *lock(&self.executions)
            .entry((model_id.to_owned(), seq_id))
            .or_default() += 1;
    }

    pub(crate) fn telemetry_events(&self) -> Vec<serde_json::Value> {
        lock(&self.telemetry).iter().cloned().collect()
    }

    /// Keeps `event`, dropping the oldest once [`MAX_TELEMETRY_EVENTS`] are kept.
    pub(crate) fn keep_telemetry_event(&self, event: serde_json::Value) {
        let mut events = lock(&self.telemetry);
        if events.len() == MAX_TELEMETRY_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    pub(crate) fn usage_records(&self) -> Vec<UsageRecord> {
        lock(&self.usage).clone()
    }

    pub(crate) fn audit_records(&self) -> Vec<AuditRecord> {
        lock(&self.audit).clone()
    }

    pub(crate) fn executions(&self) -> Vec<((String, i64), u32)> {
        lock(&self.executions)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The account of `api_key` (a stable, non-secret label). Every key is its own account,
    /// except that `<key>+<label>` is another key of `<key>`'s account (an account may hold
    /// several keys, as on the service).
    /// Revokes `api_key`: it is refused from now on (until the server restarts).
    pub(crate) fn revoke_key(&self, api_key: &str) {
        let digest = self.sign(&format!("revoked:{api_key}"));
        lock(&self.revoked_keys).insert(digest);
    }

    /// True if `api_key` was revoked.
    pub(crate) fn is_revoked(&self, api_key: &str) -> bool {
        let digest = self.sign(&format!("revoked:{api_key}"));
        lock(&self.revoked_keys).contains(&digest)
    }

    pub(crate) fn owner_of(&self, api_key: &str) -> String {
        let account = api_key
            .split_once('+')
            .map_or(api_key, |(account, _)| account);
        format!(
            "tml:user:local-{}",
            &self.sign(&format!("owner:{account}"))[..12]
        )
    }

    /// Releases long polls and pending futures when the server begins shutting down.
    pub(crate) fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// Stops every model worker (their threads exit once their queues drain).
    pub(crate) fn stop_workers(&self) {
        self.begin_shutdown();
        lock(&self.models).clear();
        lock(&self.samplers).clear();
        self.promises.fail_all_pending("the server shut down");
        if let Err(error) = self.store.flush_touched() {
            tracing::warn!(%error, "writing run metadata at shutdown");
        }
    }
}

/// Reads `<data>/secret`, creating it (random, mode 0600) on first use.
/// A served model name: `/`-separated segments of ASCII letters, digits, `.`, `_`, `-`
/// (it appears in URLs and file routes), none of them `.` or `..`.
fn valid_model_name(name: &str) -> bool {
    name.len() <= 128
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// The built-in models plus the configured Hugging Face ones, each checked.
fn served_models(
    models: &[(String, String)],
    weights_dtype: WeightsDtype,
) -> Result<Vec<ModelSpec>, Error> {
    let mut specs = builtin_models();
    for (name, source) in models {
        let fail = |message: String| Err(Error::Config { message });
        if !valid_model_name(name) {
            return fail(format!(
                "model name {name:?}: use letters, digits, '.', '_', '-' and '/' between parts"
            ));
        }
        if specs.iter().any(|s| s.name == *name) {
            return fail(format!("model name {name:?} is served twice"));
        }
        match crate::engine::hf_model(name, source) {
            Ok(spec) => specs.push(ModelSpec {
                weights_dtype,
                ..spec
            }),
            Err(e) => return fail(e.to_string()),
        }
    }
    Ok(specs)
}

fn load_secret(data_dir: &Path) -> std::io::Result<[u8; 32]> {
    let file = data_dir.join("secret");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let bytes: Vec<u8> = (0..text.trim().len() / 2)
            .filter_map(|i| u8::from_str_radix(text.trim().get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        if let Ok(secret) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(secret);
        }
    }
    let secret: [u8; 32] = rand::random();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = data_dir.join("secret.part");
    std::fs::write(&tmp, hex)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &file)?;
    Ok(secret)
}

/// Periodically expires checkpoints whose TTL passed, forgets old futures and gives up
/// `seq_id` gaps that waited too long.
pub(crate) fn spawn_sweeper(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for (run, ckpt) in state.store.expire(Utc::now()) {
                let path = format!("tinker://{run}/{ckpt}");
                tracing::info!(%path, "checkpoint expired");
                state.audit(
                    &state.run_owner(&run),
                    "checkpoint_expire",
                    Some(&run),
                    Some(&path),
                    serde_json::json!({}),
                );
            }
            state.promises.forget_older_than(Duration::from_secs(3600));
            if let Err(error) = state.store.flush_touched() {
                tracing::warn!(%error, "writing run metadata");
            }
            let workers: Vec<_> = lock(&state.models).values().cloned().collect();
            for worker in workers {
                worker.expire_gap(state.config.seq_gap_wait);
            }
        }
    })
}
