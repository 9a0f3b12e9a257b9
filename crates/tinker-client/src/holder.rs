//! The shared state behind every client of one session (the SDK's "client holder"):
//! transport, server flags, session id and counters, byte budgets and background loops.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tinker_transport::limit::SampleDispatchLimiter;
use tinker_transport::retry::{RetryClass, Retryable};
use tinker_transport::{ByteBudget, RequestSpec, Response, Transport};
use tinker_types::{
    CancelFutureRequest, ClientConfig, ClientConfigRequest, CreateSessionRequest,
    CreateSessionResponse, DynamicConfig, SessionHeartbeatRequest,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};

/// The protocol version this SDK speaks (sent as `sdk_version`).
pub const SDK_VERSION: &str = "0.38.0";

/// Heartbeat period (§2.1).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Warn about failing heartbeats after this long without a success.
const HEARTBEAT_WARN_AFTER: Duration = Duration::from_secs(120);

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
pub(crate) struct Holder {
    pub transport: Transport,
    pub config: ClientConfig,
    pub dynamic: RwLock<DynamicConfig>,
    pub session_id: Option<String>,
    pub project_id: Option<String>,
    model_seq: AtomicU64,
    sampling_seq: AtomicU64,
    /// `custom_loss_seq_id` of the session's next `create_custom_loss` (§6.8).
    custom_loss_seq: AtomicU64,
    /// State the higher modules keep per holder (the custom losses created, sampling's
    /// outer retry handlers), so that the holder does not depend on them.
    pub extensions: Extensions,
    pub fwdbwd_budget: ByteBudget,
    pub inflight_budget: ByteBudget,
    pub sample_limiter: SampleDispatchLimiter,
    closed: AtomicBool,
    /// Flips to `true` on [`Holder::shutdown`]; session pollers watch it.
    closed_signal: watch::Sender<bool>,
    /// Request ids of abandoned sampling futures, drained by the cancel loop (§3.2).
    cancel_tx: mpsc::UnboundedSender<String>,
    /// Headers the user set on top of the defaults (carried by sampler handles).
    pub header_overrides: BTreeMap<String, String>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The telemetry reporter (§6.12), when enabled; set once, right after start-up.
    telemetry: std::sync::OnceLock<tinker_telemetry::Telemetry>,
}

/// Per-holder state of the modules above the holder, one value per type, created on first
/// use. The sampling and custom-loss modules register their own types here: the holder
/// stores them without naming them, which keeps the module graph acyclic.
#[derive(Default)]
pub(crate) struct Extensions(Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Extensions {
    /// The holder's value of type `T`, created with `T::default()` on first use.
    pub(crate) fn get_or_default<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = map
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
        {
            return value;
        }
        let value = Arc::new(T::default());
        map.insert(TypeId::of::<T>(), value.clone());
        value
    }
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("transport", &self.transport)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl Retryable for Error {
    fn retry_class(&self) -> RetryClass {
        match (self.kind(), self.status()) {
            (ErrorKind::Api, Some(402)) => RetryClass::Billing,
            (ErrorKind::Connection, _) => RetryClass::Retry,
            (ErrorKind::Timeout, _) if self.is_retryable() => RetryClass::Retry,
            (ErrorKind::Api, Some(s)) if tinker_transport::retry::is_retryable_status(s) => {
                RetryClass::Retry
            }
            _ => RetryClass::Fatal,
        }
    }

    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Holder {
    /// Runs the start-up sequence (§1.4): client config, JWT when flagged, dynamic config,
    /// then `create_session` unless `session` is `None` (REST-only holders).
    pub(crate) async fn start(
        transport: Transport,
        session: Option<SessionOptions>,
    ) -> Result<Arc<Self>> {
        let telemetry = crate::telemetry::enabled_by_env(transport.env());
        Self::start_with_telemetry(transport, session, telemetry).await
    }

    /// [`Holder::start`], with telemetry on or off regardless of `TINKER_TELEMETRY`.
    pub(crate) async fn start_with_telemetry(
        transport: Transport,
        session: Option<SessionOptions>,
        telemetry: bool,
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
        let project_id = session.as_ref().and_then(|s| s.project_id.clone());
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
            project_id,
            header_overrides,
        );
        if telemetry {
            holder.start_telemetry();
        }
        Ok(holder)
    }

    /// A *shadow* holder (§6.5 Clones) for a session another process created: it reuses
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
            None,
            header_overrides,
        );
        // Shadows report under the session they share, as the SDK's do.
        if telemetry {
            holder.start_telemetry();
        }
        Ok(holder)
    }

    /// Builds the holder and, for holders with a session, starts the background loops.
    fn assemble(
        transport: Transport,
        config: ClientConfig,
        dynamic: DynamicConfig,
        session_id: Option<String>,
        project_id: Option<String>,
        header_overrides: BTreeMap<String, String>,
    ) -> Arc<Self> {
        let runtime = transport.runtime().clone();
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
            project_id,
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

    /// The session id, or an error for REST-only holders.
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

    /// Starts this holder's telemetry reporter (once; under its session id, if any).
    fn start_telemetry(&self) {
        if let Some(t) = crate::telemetry::start(&self.transport, self.session_id.as_deref()) {
            let _ = self.telemetry.set(t);
        }
    }

    /// The telemetry reporter, when enabled.
    pub(crate) fn telemetry(&self) -> Option<&tinker_telemetry::Telemetry> {
        self.telemetry.get()
    }

    /// A receiver that sees `true` once the holder is shut down.
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

    /// Sends `make()` through the holder retry loop (§6.2); each attempt rebuilds the spec.
    /// A final failure is reported to telemetry as fatal.
    pub(crate) async fn send_retrying(
        &self,
        name: &str,
        make: impl Fn() -> Result<RequestSpec>,
    ) -> Result<Response> {
        let result = self.send_retrying_quiet(name, make).await;
        if let Err(e) = &result {
            crate::telemetry::log_fatal(self, e).await;
        }
        result
    }

    /// [`Holder::send_retrying`] reporting only the retry-loop events, never a fatal
    /// error: for background work (the cancel drain) and for steps of operations that
    /// report their own final error (sampling).
    pub(crate) async fn send_retrying_quiet(
        &self,
        name: &str,
        make: impl Fn() -> Result<RequestSpec>,
    ) -> Result<Response> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::Cancelled, "the client was closed"));
        }
        let trace = crate::telemetry::RetryTrace::new(self, name);
        self.transport
            .operation_retry()
            .run(name, || {
                let spec = make();
                let trace = &trace;
                async move {
                    let sent: Result<Response> =
                        async { Ok(self.transport.send(spec?).await?) }.await;
                    if let Err(e) = &sent {
                        trace.attempt_failed(self, e);
                    }
                    sent
                }
            })
            .await
    }

    /// POSTs JSON through the holder retry loop and parses the JSON answer.
    pub(crate) async fn post_json<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        sdk_method: &str,
    ) -> Result<Resp> {
        let bytes = tinker_types::json::to_vec(body)?;
        let resp = self
            .send_retrying(path, || {
                Ok(RequestSpec::post(path)
                    .with_body(bytes.clone(), tinker_transport::APPLICATION_JSON)
                    .with_sdk_method(sdk_method))
            })
            .await?;
        parse_json(&resp)
    }

    /// GETs through the holder retry loop and parses the JSON answer.
    pub(crate) async fn get_json<Resp: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        sdk_method: &str,
    ) -> Result<Resp> {
        let resp = self
            .send_retrying(path, || {
                let mut spec = RequestSpec::get(path).with_sdk_method(sdk_method);
                for (k, v) in query {
                    spec = spec.with_query(*k, v.clone());
                }
                Ok(spec)
            })
            .await?;
        parse_json(&resp)
    }

    /// Stops the background loops; later calls fail with [`ErrorKind::Cancelled`].
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_signal.send_replace(true);
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
        self.transport.close();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
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

pub(crate) fn parse_json<T: DeserializeOwned>(resp: &Response) -> Result<T> {
    tinker_types::json::from_slice(resp.body())
        .map_err(|e| Error::protocol(format!("unexpected response: {e}")))
}

/// What the client config asks of the transport: JWT auth when flagged, and the billing
/// pause window. Shared by new and shadow holders.
fn apply_client_config(transport: &Transport, config: &ClientConfig) -> Result<()> {
    if config.pjwt_auth_enabled {
        let command =
            config.credential_default_source == tinker_types::CredentialSource::CredentialCmd;
        transport.enable_jwt_auth(command)?;
    }
    transport.billing_pause().set_max_pause(Duration::from_secs(
        config.billing_exception_max_pause_duration_sec,
    ));
    Ok(())
}

async fn fetch_dynamic_config(transport: &Transport, retrying: bool) -> Result<DynamicConfig> {
    let req = ClientConfigRequest {
        sdk_version: SDK_VERSION.to_owned(),
    };
    let once = || async {
        let spec = RequestSpec::post("/api/v1/client/dynamic_config")
            .with_json(&req)?
            .with_max_retries(0)
            .with_timeout(Duration::from_secs(10));
        match transport.send(spec).await {
            Ok(resp) => parse_json::<DynamicConfig>(&resp),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(DynamicConfig::default()),
            Err(e) => Err(Error::from(e)),
        }
    };
    if retrying {
        transport
            .operation_retry()
            .run("client/dynamic_config", once)
            .await
    } else {
        once().await
    }
}

/// HTTP timeout of one `cancel_future` call.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(30);

/// Drains the holder's cancel queue: waits for one id, takes up to
/// `sample_cancel_max_batch_size` more that are already queued, sends the batch
/// concurrently. Ends when the holder is gone.
async fn cancel_drain_loop(holder: Weak<Holder>, mut queue: mpsc::UnboundedReceiver<String>) {
    while let Some(first) = queue.recv().await {
        let Some(h) = holder.upgrade() else { return };
        let max = usize::try_from(h.dynamic_config().sample_cancel_max_batch_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut batch = vec![first];
        while batch.len() < max {
            match queue.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        join_all(batch.into_iter().map(|id| cancel_one(&h, id))).await;
    }
}

async fn cancel_one(holder: &Holder, request_id: String) {
    if let Err(e) = send_cancel(holder, &request_id).await {
        // The server also stops orphaned work when heartbeats lapse; never re-queue.
        tracing::error!(request_id = %request_id, error = %e, "failed to cancel sampling request");
    }
}

async fn send_cancel(holder: &Holder, request_id: &str) -> Result<()> {
    let body = CancelFutureRequest {
        request_id: request_id.to_owned(),
    };
    let bytes = tinker_types::json::to_vec(&body)?;
    holder
        .send_retrying_quiet("cancel_future", || {
            Ok(RequestSpec::post("/api/v1/cancel_future")
                .with_body(bytes.clone(), tinker_transport::APPLICATION_JSON)
                .with_max_retries(0)
                .with_timeout(CANCEL_TIMEOUT))
        })
        .await?;
    Ok(())
}

async fn heartbeat_loop(holder: Weak<Holder>) {
    let Some(h) = holder.upgrade() else { return };
    let clock = h.transport.runtime().clock.clone();
    let Some(session_id) = h.session_id.clone() else {
        return;
    };
    drop(h);
    let mut last_ok = clock.now();
    loop {
        clock.sleep(HEARTBEAT_EVERY).await;
        let Some(h) = holder.upgrade() else { return };
        if h.is_closed() {
            return;
        }
        let req = SessionHeartbeatRequest {
            session_id: session_id.clone(),
        };
        let result = match RequestSpec::post("/api/v1/session_heartbeat").with_json(&req) {
            Ok(spec) => {
                h.transport
                    .send(
                        spec.with_max_retries(0)
                            .with_timeout(Duration::from_secs(10)),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => last_ok = clock.now(),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(410) => {
                tracing::info!(session_id = %session_id, "session finished; heartbeat stopped");
                return;
            }
            Err(e) => {
                let since = clock.now() - last_ok;
                if since >= HEARTBEAT_WARN_AFTER {
                    tracing::warn!(
                        session_id = %session_id,
                        seconds_without_heartbeat = since.as_secs(),
                        error = %e,
                        "session heartbeat failing"
                    );
                } else {
                    tracing::debug!(error = %e, "session heartbeat failed");
                }
            }
        }
    }
}

async fn dynamic_refresh_loop(holder: Weak<Holder>) {
    loop {
        let (clock, every) = {
            let Some(h) = holder.upgrade() else { return };
            let every = h.dynamic_config().effective_refresh_interval_sec();
            (h.transport.runtime().clock.clone(), every)
        };
        clock.sleep(Duration::from_secs(every)).await;
        let Some(h) = holder.upgrade() else { return };
        if h.is_closed() {
            return;
        }
        match fetch_dynamic_config(&h.transport, false).await {
            Ok(cfg) => *h.dynamic.write().unwrap_or_else(PoisonError::into_inner) = cfg,
            Err(e) => {
                tracing::debug!(error = %e, "dynamic config refresh failed; keeping old values")
            }
        }
    }
}
