//! The session: the shared state behind every client of one session (the SDK's "client
//! holder"): transport, server flags, session id and counters, byte budgets, and its
//! lifecycle (start-up, shadow sessions, shutdown). Its background loops, request plumbing,
//! server-config handling and extension map live in the submodules.

mod background;
mod extensions;
mod requests;
mod server_config;

pub(crate) use extensions::Extensions;
pub(crate) use requests::parse_json;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tinker_transport::limit::SampleDispatchLimiter;
use tinker_transport::{ByteBudget, RequestSpec, Transport};
use tinker_types::{
    ClientConfig, ClientConfigRequest, CreateSessionRequest, CreateSessionResponse, DynamicConfig,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::background::{cancel_drain_loop, dynamic_refresh_loop, heartbeat_loop};
use self::server_config::{apply_client_config, fetch_dynamic_config};
use crate::error::{Error, ErrorKind, Result};

/// The protocol version this SDK speaks (sent as `sdk_version`).
pub const SDK_VERSION: &str = "0.38.0";

/// Options of `create_session`.
#[derive(Clone, Default)]
pub(crate) struct SessionOptions {
    pub tags: Vec<String>,
    pub user_metadata: serde_json::Map<String, serde_json::Value>,
    pub project_id: Option<String>,
    pub display_name: Option<String>,
    /// Headers the user set on top of the defaults (carried by sampler handles).
    pub header_overrides: BTreeMap<String, String>,
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets (e.g. Cloudflare access tokens): names only.
        f.debug_struct("SessionOptions")
            .field("tags", &self.tags)
            .field("user_metadata", &self.user_metadata)
            .field("project_id", &self.project_id)
            .field("display_name", &self.display_name)
            .field("header_overrides", &self.header_overrides.keys())
            .finish()
    }
}

/// Shared per-session state. Cheap to share through `Arc`.
pub(crate) struct Session {
    pub transport: Transport,
    pub config: ClientConfig,
    pub dynamic: RwLock<DynamicConfig>,
    pub session_id: Option<String>,
    model_seq: AtomicU64,
    sampling_seq: AtomicU64,
    /// `custom_loss_seq_id` of the session's next `create_custom_loss` (§6.8).
    custom_loss_seq: AtomicU64,
    /// State the higher modules keep per session (the custom losses created, sampling's
    /// outer retry handlers), so that the session does not depend on them.
    pub extensions: Extensions,
    pub fwdbwd_budget: ByteBudget,
    pub inflight_budget: ByteBudget,
    pub sample_limiter: SampleDispatchLimiter,
    closed: AtomicBool,
    /// Flips to `true` on [`Session::shutdown`]; session pollers watch it.
    closed_signal: watch::Sender<bool>,
    /// Request ids of abandoned sampling futures, drained by the cancel loop (§3.2).
    cancel_tx: mpsc::UnboundedSender<String>,
    /// Headers the user set on top of the defaults (carried by sampler handles).
    pub header_overrides: BTreeMap<String, String>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The telemetry reporter (§6.12), when enabled; set once, right after start-up.
    telemetry: std::sync::OnceLock<tinker_telemetry::Telemetry>,
    /// Client metrics of the session (its transport reports every request to it).
    pub metrics: Arc<crate::observe::Registry>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("transport", &self.transport)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl crate::telemetry::TelemetryScope for Session {
    fn reporter(&self) -> Option<&tinker_telemetry::Telemetry> {
        self.telemetry()
    }

    fn clock(&self) -> &Arc<dyn tinker_transport::clock::Clock> {
        &self.transport.runtime().clock
    }
}

impl Session {
    /// Runs the start-up sequence (§1.4): client config, JWT when flagged, dynamic config,
    /// then `create_session` unless `session` is `None` (REST-only sessions).
    pub(crate) async fn start(
        transport: Transport,
        session: Option<SessionOptions>,
    ) -> Result<Arc<Self>> {
        let telemetry = crate::telemetry::enabled_by_env(transport.env());
        Self::start_with_telemetry(transport, session, telemetry).await
    }

    /// [`Session::start`], with telemetry on or off regardless of `TINKER_TELEMETRY`.
    pub(crate) async fn start_with_telemetry(
        transport: Transport,
        session: Option<SessionOptions>,
        telemetry: bool,
    ) -> Result<Arc<Self>> {
        Self::start_with_metrics(transport, session, telemetry, None).await
    }

    /// [`Session::start_with_telemetry`] recording into `metrics` (shared with other
    /// sessions of the same service client) instead of a registry of its own.
    pub(crate) async fn start_with_metrics(
        transport: Transport,
        session: Option<SessionOptions>,
        telemetry: bool,
        metrics: Option<Arc<crate::observe::Registry>>,
    ) -> Result<Arc<Self>> {
        let retry = transport.operation_retry();
        let req = ClientConfigRequest {
            sdk_version: SDK_VERSION.to_owned(),
        };
        let config: ClientConfig = retry
            .run("client/config", || async {
                let spec = RequestSpec::post("/api/v1/client/config").with_json(&req)?;
                transport
                    .send(spec)
                    .await?
                    .json::<ClientConfig>()
                    .map_err(Error::from)
            })
            .await?;
        apply_client_config(&transport, &config)?;
        let dynamic = fetch_dynamic_config(&transport, true).await?;
        let header_overrides = session
            .as_ref()
            .map(|s| s.header_overrides.clone())
            .unwrap_or_default();
        let session_id = match session {
            None => None,
            Some(opts) => {
                let mut req = CreateSessionRequest::new(SDK_VERSION);
                req.tags = opts.tags;
                req.user_metadata = opts.user_metadata;
                req.project_id = opts.project_id;
                req.display_name = opts.display_name;
                let spec = RequestSpec::post("/api/v1/create_session").with_json(&req)?;
                let resp: CreateSessionResponse = transport.send(spec).await?.json()?;
                if let Some(m) = &resp.info_message {
                    tracing::info!(message = %m, "create_session");
                }
                if let Some(m) = &resp.warning_message {
                    tracing::warn!(message = %m, "create_session");
                }
                if let Some(m) = &resp.error_message {
                    tracing::error!(message = %m, "create_session");
                }
                Some(resp.session_id)
            }
        };
        let holder = Self::assemble(
            transport,
            config,
            dynamic,
            session_id,
            header_overrides,
            metrics,
        );
        if telemetry {
            holder.start_telemetry();
        }
        Ok(holder)
    }

    /// A *shadow* session (§6.5 Clones) for a session another process created: it reuses
    /// the given config (no `client/config`, no `create_session`), does its own JWT
    /// exchange when flagged and heartbeats the same session.
    pub(crate) fn start_shadow(
        transport: Transport,
        session_id: String,
        config: ClientConfig,
        dynamic: DynamicConfig,
        header_overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Self>> {
        apply_client_config(&transport, &config)?;
        let telemetry = crate::telemetry::enabled_by_env(transport.env());
        let holder = Self::assemble(
            transport,
            config,
            dynamic,
            Some(session_id),
            header_overrides,
            None,
        );
        // Shadows report under the session they share, as the SDK's do.
        if telemetry {
            holder.start_telemetry();
        }
        Ok(holder)
    }

    /// Builds the session and, for those with a session id, starts the background loops.
    fn assemble(
        transport: Transport,
        config: ClientConfig,
        dynamic: DynamicConfig,
        session_id: Option<String>,
        header_overrides: BTreeMap<String, String>,
        metrics: Option<Arc<crate::observe::Registry>>,
    ) -> Arc<Self> {
        let runtime = transport.runtime().clone();
        let metrics =
            metrics.unwrap_or_else(|| crate::observe::Registry::new(runtime.clock.clone()));
        let transport = transport.with_request_observer(metrics.request_observer());
        let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();
        let holder = Arc::new(Self {
            fwdbwd_budget: ByteBudget::new(config.fwdbwd_dispatch_bytes_semaphore_size),
            inflight_budget: ByteBudget::new(config.inflight_response_bytes_semaphore_size),
            sample_limiter: SampleDispatchLimiter::new(
                config.sample_dispatch_bytes_semaphore_size,
                runtime,
            ),
            transport,
            config,
            dynamic: RwLock::new(dynamic),
            session_id,
            model_seq: AtomicU64::new(0),
            sampling_seq: AtomicU64::new(0),
            custom_loss_seq: AtomicU64::new(0),
            extensions: Extensions::default(),
            closed: AtomicBool::new(false),
            closed_signal: watch::Sender::new(false),
            cancel_tx,
            header_overrides,
            tasks: Mutex::new(Vec::new()),
            telemetry: std::sync::OnceLock::new(),
            metrics,
        });
        if holder.session_id.is_some() {
            let hb = tokio::spawn(heartbeat_loop(Arc::downgrade(&holder)));
            let refresh = tokio::spawn(dynamic_refresh_loop(Arc::downgrade(&holder)));
            let cancel = tokio::spawn(cancel_drain_loop(Arc::downgrade(&holder), cancel_rx));
            holder
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend([hb, refresh, cancel]);
        }
        holder
    }

    /// The session id, or an error for REST-only sessions.
    pub(crate) fn session_id(&self) -> Result<&str> {
        self.session_id
            .as_deref()
            .ok_or_else(|| Error::new(ErrorKind::Config, "this client has no session"))
    }

    pub(crate) fn next_model_seq(&self) -> u64 {
        self.model_seq.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn next_sampling_seq(&self) -> u64 {
        self.sampling_seq.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn next_custom_loss_seq(&self) -> u64 {
        self.custom_loss_seq.fetch_add(1, Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Starts this session's telemetry reporter (once; under its session id, if any).
    fn start_telemetry(&self) {
        if let Some(t) = crate::telemetry::start(&self.transport, self.session_id.as_deref()) {
            let _ = self.telemetry.set(t);
        }
    }

    /// The telemetry reporter, when enabled.
    pub(crate) fn telemetry(&self) -> Option<&tinker_telemetry::Telemetry> {
        self.telemetry.get()
    }

    /// A receiver that sees `true` once the session is shut down.
    pub(crate) fn closed_signal(&self) -> watch::Receiver<bool> {
        self.closed_signal.subscribe()
    }

    /// Queues an abandoned sampling future for `cancel_future` (§3.2) when the dynamic
    /// flag `sample_cancel_enabled` is on.
    pub(crate) fn enqueue_cancel(&self, request_id: String) {
        if self.dynamic_config().sample_cancel_enabled && !self.is_closed() {
            // Fails only when the drain loop is gone (shutdown): nothing left to do then.
            let _ = self.cancel_tx.send(request_id);
        }
    }

    pub(crate) fn dynamic_config(&self) -> DynamicConfig {
        self.dynamic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the background loops; later calls fail with [`ErrorKind::Cancelled`].
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_signal.send_replace(true);
        self.abort_tasks();
        self.transport.close();
    }

    /// Aborts the background loops.
    fn abort_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.abort_tasks();
        // As the SDK does when its holder is collected: what telemetry still has queued is
        // sent in the background (within the drain timeout), while a runtime is there.
        if let Some(telemetry) = self.telemetry.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                telemetry.close().await;
            });
        }
    }
}
