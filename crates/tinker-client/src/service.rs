//! [`ServiceClient`]: the entry point. Opens a session on first use and creates the other
//! clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tinker_transport::{Env, RequestSpec, SecretString, Transport, TransportBuilder};
use tinker_types::{
    ClientConfig, CreateModelRequest, CreateModelResponse, FinishSessionRequest, LoraConfig,
    OptimizerConfig, SessionFinishReason,
};

use crate::error::{Error, ErrorKind, Result};
use crate::future::{PollTarget, QueueStateObserver, retrieve_decoded, submit};
use crate::payload::RequestType;
use crate::rest::RestClient;
use crate::sampling::{SamplingClient, SamplingSource};
use crate::session::{Session, SessionOptions};
use crate::tinker_path::check_tinker_path;
use crate::training::{LoadStateOptions, TrainingClient};
use tinker_types::{LoadWeightsRequest, LoadWeightsResponse};

/// Builds a [`ServiceClient`]. Unset values come from the environment (`TINKER_*`).
#[derive(Clone)]
pub struct ServiceClientBuilder {
    transport: TransportBuilder,
    env: Env,
    api_key: Option<SecretString>,
    session: SessionOptions,
    observer: Option<QueueStateObserver>,
    /// `None`: as `TINKER_TELEMETRY` says.
    telemetry: Option<bool>,
    /// The default queue-state warning (on unless turned off).
    queue_state_warnings: bool,
    /// How the sessions report and react to queue states.
    queue: QueueReactions,
}

/// What a session does with the queue states its futures report, beyond the warning and
/// the plain observer.
#[derive(Clone, Default)]
struct QueueReactions {
    /// Hears each change of a waiting future's queue state.
    change_observer: Option<crate::observe::QueueStateChangeObserver>,
    /// Throttle sampling dispatch when a sample's queue says `paused_rate_limit`.
    sampling_backoff_on_rate_limit: bool,
}

impl QueueReactions {
    fn install(&self, session: &Session) {
        if let Some(listener) = &self.change_observer {
            crate::observe::install_queue_change_observer(session, listener.clone());
        }
        if self.sampling_backoff_on_rate_limit {
            crate::sampling::dispatch::back_off_on_rate_limit(session);
        }
    }
}

impl std::fmt::Debug for ServiceClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClientBuilder")
            .field("transport", &self.transport)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Default for ServiceClientBuilder {
    fn default() -> Self {
        Self::with_env(Env::process())
    }
}

impl ServiceClientBuilder {
    /// A builder reading `TINKER_*` settings from `env` instead of the process environment.
    pub fn with_env(env: Env) -> Self {
        let mut session = SessionOptions::default();
        if let Some(tags) = env.get("TINKER_TAGS") {
            let mut set: Vec<String> = tags
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            set.sort();
            set.dedup();
            session.tags = set;
        }
        session.project_id = env.get("TINKER_PROJECT_ID").filter(|p| !p.is_empty());
        Self {
            transport: Transport::builder().env(env.clone()),
            env,
            api_key: None,
            session,
            observer: None,
            telemetry: None,
            queue_state_warnings: true,
            queue: QueueReactions::default(),
        }
    }

    /// The server (default `TINKER_BASE_URL`, else the production service).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.transport = self.transport.base_url(url);
        self
    }

    /// The API key (`tml-…`) or a JWT (default `TINKER_API_KEY`, `TINKER_CREDENTIAL_CMD`,
    /// then `~/.tinker/credentials.json`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = SecretString::from(key.into());
        self.transport = self.transport.api_key(key.clone());
        self.api_key = Some(key);
        self
    }

    /// Session tags (default `TINKER_TAGS`, comma separated).
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.session.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Session metadata.
    pub fn user_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.session.user_metadata = metadata;
        self
    }

    /// The project (default `TINKER_PROJECT_ID`).
    pub fn project_id(mut self, project: impl Into<String>) -> Self {
        self.session.project_id = Some(project.into());
        self
    }

    /// A display name for the session.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.session.display_name = Some(name.into());
        self
    }

    /// An extra header on every request (overrides the Cloudflare headers).
    pub fn default_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        // Remembered for sampler handles (the SDK's `default_headers_overrides`).
        if let Ok(text) = value.to_str() {
            let overrides = &mut self.session.header_overrides;
            overrides.insert(name.as_str().to_owned(), text.to_owned());
        }
        self.transport = self.transport.default_header(name, value);
        self
    }

    /// HTTP-level retries per request (default 10).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.transport = self.transport.max_retries(n);
        self
    }

    /// Read timeout per request (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.transport = self.transport.read_timeout(timeout);
        self
    }

    /// Whether to warn (through `tracing`, target `tinker::queue`) when the server
    /// reports a paused queue, as the SDK does (default on): sampling at once, training and
    /// model creation after 15 minutes in one paused state; at most once a minute per
    /// model or sampler, with the server's reason.
    pub fn queue_state_warnings(mut self, enabled: bool) -> Self {
        self.queue_state_warnings = enabled;
        self
    }

    /// Called with every queue state the server reports while a request waits (in
    /// addition to the default warning).
    pub fn queue_state_observer(
        mut self,
        observer: impl Fn(&tinker_types::QueueState, Option<&str>) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Called once per change of a waiting request's queue state (`active`,
    /// `paused_capacity`, …, with the server's reason), with the request id and the
    /// operation: tinkex's `[:tinkex, :queue, :state_change]` event. Runs on the polling
    /// task: keep it quick.
    pub fn queue_state_change_observer(
        mut self,
        observer: impl Fn(&crate::observe::QueueStateChange) + Send + Sync + 'static,
    ) -> Self {
        self.queue.change_observer = Some(Arc::new(observer));
        self
    }

    /// When a sample's queue is reported `paused_rate_limit`, throttle this session's
    /// sampling dispatch as a 429 on `asample` does (protocol §6.5): new samples wait out
    /// a 1 s backoff, then for 10 s take one of 10 throttled slots and 20× their bytes of
    /// the dispatch budget (see [`SampleDispatch`](crate::SampleDispatch)). Off by default, as
    /// in the Python SDK, which reacts to 429s only.
    pub fn sampling_backoff_on_rate_limit(mut self, enabled: bool) -> Self {
        self.queue.sampling_backoff_on_rate_limit = enabled;
        self
    }

    /// Turns telemetry (§6.12: session start/end, errors and diagnostics sent to
    /// `/api/v1/telemetry`) on or off; by default it is on unless `TINKER_TELEMETRY` is set
    /// to something else than `1`, `true`, `yes` or `on`.
    pub fn telemetry(mut self, enabled: bool) -> Self {
        self.telemetry = Some(enabled);
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c) on `http://` URLs: every request multiplexes
    /// over one connection instead of holding one per request in flight. Only for servers
    /// that serve h2c, such as tinker-local (recommended there for large sampling
    /// fan-outs); `https://` negotiates HTTP/2 through ALPN without this.
    ///
    /// Not the default on `http://`: a server or proxy that speaks only HTTP/1.1 would fail
    /// every request, and the client cannot tell tinker-local from such a server before
    /// sending. On `http://` the default is HTTP/1.1 with at most
    /// [`DEFAULT_HTTP1_MAX_CONNECTIONS`](tinker_transport::DEFAULT_HTTP1_MAX_CONNECTIONS)
    /// connections.
    // Measured (issue 14, `sdk_bench burst n=2000`, load 4-6, 2 cores): against tinker-local
    // with fixed h2 windows, h2c 0.56-0.71 s and 1-2 connections, HTTP/1.1 0.39-0.70 s and
    // ~260-500 connections (system-wide count), peak RSS about equal (45 MiB). The earlier
    // stall (2,000 samples in 15 s) was tinker-local's adaptive h2 flow control, which
    // started every connection at a 64 KiB window (crates/tinker-local/src/serve.rs).
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.transport = self
            .transport
            .http_version(tinker_transport::http::HttpVersion::Http2PriorKnowledge);
        self
    }

    /// The configured transport builder (for settings not mirrored here).
    pub fn transport(mut self, f: impl FnOnce(TransportBuilder) -> TransportBuilder) -> Self {
        self.transport = f(self.transport);
        self
    }

    /// Builds the client; sends nothing. As in SDK 0.38, the session (client config, JWT
    /// exchange when flagged, dynamic config, `create_session`, then a heartbeat every 10 s
    /// until [`ServiceClient::close`]) is created by the first call that needs one, and
    /// the calls that need none (capabilities, REST) use a session-less connection.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] without a usable credential or URL.
    pub async fn build(self) -> Result<ServiceClient> {
        let _ = &self.env;
        let transport = self.transport.build()?;
        let telemetry = self
            .telemetry
            .unwrap_or_else(|| crate::telemetry::enabled_by_env(transport.env()));
        let metrics = crate::observe::Registry::new(transport.runtime().clock.clone());
        let transport = transport.with_request_observer(metrics.request_observer());
        Ok(ServiceClient {
            lazy: Arc::new(LazySessions {
                transport,
                options: self.session,
                telemetry,
                session: tokio::sync::OnceCell::new(),
                sessionless: tokio::sync::OnceCell::new(),
                closed: AtomicBool::new(false),
                queue_state_warnings: self.queue_state_warnings,
                queue: self.queue,
                metrics,
            }),
            observer: self.observer,
        })
    }
}

/// How a session ended (for [`ServiceClient::close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseStatus {
    /// Normal end.
    Success,
    /// The program failed.
    Errored,
    /// The program was interrupted.
    Interrupted,
}

/// Options of [`ServiceClient::create_lora_training_client_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TrainingClientOptions {
    /// LoRA settings (default rank 32, all parts trained).
    pub lora: LoraConfig,
    /// The optimizer family (default AdamW).
    pub optimizer: OptimizerConfig,
    /// Metadata of the training run.
    pub user_metadata: Option<Map<String, Value>>,
}

impl TrainingClientOptions {
    /// Options with a LoRA rank.
    pub fn rank(rank: u32) -> Self {
        Self {
            lora: LoraConfig::with_rank(rank),
            ..Self::default()
        }
    }

    /// Sets the optimizer family.
    pub fn optimizer(mut self, optimizer: OptimizerConfig) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// Seeds the adapter's initialisation (the SDK's `seed`), so two runs start alike.
    pub fn seed(mut self, seed: u64) -> Self {
        self.lora.seed = Some(seed);
        self
    }

    /// Whether the MLP blocks get adapters (default true).
    pub fn train_mlp(mut self, train: bool) -> Self {
        self.lora.train_mlp = train;
        self
    }

    /// Whether the attention blocks get adapters (default true).
    pub fn train_attn(mut self, train: bool) -> Self {
        self.lora.train_attn = train;
        self
    }

    /// Whether the unembedding gets an adapter (default true).
    pub fn train_unembed(mut self, train: bool) -> Self {
        self.lora.train_unembed = train;
        self
    }

    /// Metadata of the training run (shown by `list_training_runs`).
    pub fn user_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.user_metadata = Some(metadata);
        self
    }
}

/// The entry point of the SDK: one session on a Tinker server, created on first use.
/// Cheap to clone (clones share the session).
#[derive(Clone)]
pub struct ServiceClient {
    lazy: Arc<LazySessions>,
    observer: Option<QueueStateObserver>,
}

/// The two sessions a service client may create, each on first use (the SDK's session
/// holder and session-less REST holder).
struct LazySessions {
    transport: Transport,
    options: SessionOptions,
    telemetry: bool,
    /// With a session id: training, sampling, custom losses.
    session: tokio::sync::OnceCell<Arc<Session>>,
    /// Without one: capabilities and REST clients.
    sessionless: tokio::sync::OnceCell<Arc<Session>>,
    closed: AtomicBool,
    /// Whether queue-state warnings are logged (off: the sessions are silenced).
    queue_state_warnings: bool,
    /// Installed into each session it starts.
    queue: QueueReactions,
    /// Client metrics of both sessions (the transport reports every request to it).
    metrics: Arc<crate::observe::Registry>,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("transport", &self.lazy.transport)
            .field("session", &self.lazy.session.get())
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A builder.
    pub fn builder() -> ServiceClientBuilder {
        ServiceClientBuilder::default()
    }

    /// Connects with every setting from the environment (`TINKER_API_KEY`,
    /// `TINKER_BASE_URL`, `TINKER_PROJECT_ID`, `TINKER_TAGS`, `TINKER_CREDENTIAL_CMD`,
    /// `CLOUDFLARE_ACCESS_CLIENT_ID`/`_SECRET`).
    ///
    /// # Errors
    /// As [`ServiceClientBuilder::build`].
    pub async fn from_env() -> Result<Self> {
        Self::builder().build().await
    }

    /// The session id; empty until the session exists (the first training, sampling or
    /// custom-loss call creates it).
    pub fn session_id(&self) -> &str {
        self.lazy
            .session
            .get()
            .and_then(|s| s.session_id.as_deref())
            .unwrap_or_default()
    }

    /// The base URL of the server.
    pub fn base_url(&self) -> &str {
        self.lazy.transport.base_url()
    }

    /// The feature flags the server sent (`client/config`), from the session if it exists,
    /// else from a session-less connection (which creates no session).
    ///
    /// # Errors
    /// API or connection errors of the first `client/config`.
    pub async fn client_config(&self) -> Result<&ClientConfig> {
        if let Some(session) = self.lazy.session.get() {
            return Ok(&session.config);
        }
        Ok(&self.sessionless().await?.config)
    }

    /// Creates the session now if it does not exist yet (otherwise the first training,
    /// sampling or custom-loss call does); returns its id.
    ///
    /// # Errors
    /// API or connection errors of the start-up sequence; a closed client.
    pub async fn open_session(&self) -> Result<&str> {
        self.holder().await?.session_id()
    }

    /// The session, created by the first caller (start-up sequence, heartbeat).
    pub(crate) async fn holder(&self) -> Result<&Arc<Session>> {
        self.check_open()?;
        let lazy = &self.lazy;
        lazy.session
            .get_or_try_init(|| async {
                let session = Session::start_with_metrics(
                    lazy.transport.clone(),
                    Some(lazy.options.clone()),
                    lazy.telemetry,
                    Some(lazy.metrics.clone()),
                )
                .await?;
                if !lazy.queue_state_warnings {
                    crate::queue_log::silence(&session);
                }
                lazy.queue.install(&session);
                Ok(session)
            })
            .await
    }

    /// The session-less connection of capabilities and REST calls.
    async fn sessionless(&self) -> Result<&Arc<Session>> {
        self.check_open()?;
        let lazy = &self.lazy;
        lazy.sessionless
            .get_or_try_init(|| {
                let metrics = Some(lazy.metrics.clone());
                Session::start_with_metrics(lazy.transport.clone(), None, lazy.telemetry, metrics)
            })
            .await
    }

    fn check_open(&self) -> Result<()> {
        if self.lazy.closed.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the service client was closed",
            ));
        }
        Ok(())
    }

    /// The metrics registry of this client's sessions.
    pub(crate) fn metrics_registry(&self) -> &Arc<crate::observe::Registry> {
        &self.lazy.metrics
    }

    pub(crate) fn observer(&self) -> Option<&QueueStateObserver> {
        self.observer.as_ref()
    }

    /// The telemetry reporter of this session (`None` when telemetry is off or the
    /// session does not exist yet). Its [`stats`](crate::Telemetry::stats) count what was
    /// sent and dropped.
    pub fn get_telemetry(&self) -> Option<&crate::Telemetry> {
        self.lazy.session.get().and_then(|s| s.telemetry())
    }

    /// The models the server offers (`get_server_capabilities`).
    ///
    /// # Errors
    /// API or connection errors.
    pub async fn get_server_capabilities(&self) -> Result<ServerCapabilities> {
        self.sessionless()
            .await?
            .get_json(
                "/api/v1/get_server_capabilities",
                &[],
                "ServiceClient.get_server_capabilities",
            )
            .await
    }

    /// Creates a LoRA training client on `base_model` with rank `rank`.
    ///
    /// # Errors
    /// Invalid LoRA settings; API errors.
    pub async fn create_lora_training_client(
        &self,
        base_model: &str,
        rank: u32,
    ) -> Result<TrainingClient> {
        self.create_lora_training_client_with(base_model, TrainingClientOptions::rank(rank))
            .await
    }

    /// Creates a LoRA training client with every option.
    ///
    /// # Errors
    /// Invalid LoRA settings; API errors.
    pub async fn create_lora_training_client_with(
        &self,
        base_model: &str,
        options: TrainingClientOptions,
    ) -> Result<TrainingClient> {
        // The session starts (if it must) before the operation does.
        let session_id = self.holder().await?.session_id.as_deref();
        let op = crate::observe::Operation::CreateModel;
        let create = self.create_model(base_model, options);
        self.lazy.metrics.instrument(op, session_id, create).await
    }

    async fn create_model(
        &self,
        base_model: &str,
        options: TrainingClientOptions,
    ) -> Result<TrainingClient> {
        options.lora.validate()?;
        if base_model.is_empty() {
            return Err(Error::invalid("base_model is empty"));
        }
        let holder = self.holder().await?;
        let session_id = holder.session_id()?.to_owned();
        let model_seq_id = holder.next_model_seq();
        let mut req = CreateModelRequest::new(session_id, model_seq_id, base_model);
        req.lora_config = Some(options.lora);
        req.optimizer_config = options.optimizer;
        req.user_metadata = options.user_metadata;
        let body = tinker_types::json::to_vec(&req)?;
        // create_model goes without the holder retry loop (HTTP retries only).
        let started = holder.transport.runtime().clock.now();
        let spec = RequestSpec::post("/api/v1/create_model")
            .with_body(body, tinker_transport::APPLICATION_JSON)
            .with_sdk_method("ServiceClient.create_lora_training_client");
        let fut: tinker_types::UntypedFuture = crate::session::parse_json(
            &crate::telemetry::capture(&**holder, async { Ok(holder.transport.send(spec).await?) })
                .await?,
        )?;
        let roundtrip = holder.transport.runtime().clock.now() - started;
        let created: CreateModelResponse = retrieve_decoded(
            holder,
            PollTarget {
                request_id: fut.request_id.clone(),
                request_type: RequestType::CreateModel,
                sdk_method: "ServiceClient.create_lora_training_client",
                roundtrip,
                reserved: None,
            },
            crate::queue_log::observer_for(
                holder,
                self.observer.clone(),
                crate::queue_log::Queued::ModelCreation,
                base_model,
            )
            .as_ref(),
        )
        .await?;
        TrainingClient::attach(
            holder.clone(),
            created.model_id,
            self.observer.clone(),
            "ServiceClient.create_lora_training_client",
        )
        .await
    }

    /// A new training client with the weights (not the optimizer state) of a `tinker://`
    /// checkpoint (create-via-load).
    ///
    /// # Errors
    /// A path that is not `tinker://`; API errors.
    pub async fn create_training_client_from_state(&self, path: &str) -> Result<TrainingClient> {
        self.create_training_client_from_state_with(path, LoadStateOptions::weights_only())
            .await
    }

    /// A new training client with the weights and optimizer state of a checkpoint.
    ///
    /// # Errors
    /// A path that is not `tinker://`; API errors.
    pub async fn create_training_client_from_state_with_optimizer(
        &self,
        path: &str,
    ) -> Result<TrainingClient> {
        self.create_training_client_from_state_with(path, LoadStateOptions::with_optimizer_state())
            .await
    }

    /// A new training client loaded from a checkpoint with SDK 0.38's overrides: base
    /// model, training-run metadata, an access token for another account's checkpoint, and
    /// (weights-only loads) the optimizer. One `load_weights` request creates the model.
    ///
    /// # Errors
    /// A path that is not `tinker://`, an optimizer with `with_optimizer_state`, an empty
    /// base model (all before sending); API errors.
    pub async fn create_training_client_from_state_with(
        &self,
        path: &str,
        options: LoadStateOptions,
    ) -> Result<TrainingClient> {
        check_tinker_path(path)?;
        options.check_for_new_client()?;
        let optimizer = options.with_optimizer_state;
        let holder = self.holder().await?;
        let session_id = holder.session_id()?.to_owned();
        let model_seq_id = holder.next_model_seq();
        let model_id = format!("{session_id}:train:{model_seq_id}");
        let req = LoadWeightsRequest {
            model_id: None,
            seq_id: None,
            session_id: Some(session_id),
            model_seq_id: Some(model_seq_id),
            base_model: options.base_model,
            user_metadata: options
                .user_metadata
                .map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
            path: path.to_owned(),
            optimizer,
            optimizer_config: options.optimizer,
            weights_access_token: options.weights_access_token,
        };
        let body = bytes::Bytes::from(tinker_types::json::to_vec(&req)?);
        let method = if optimizer {
            "ServiceClient.create_training_client_from_state_with_optimizer"
        } else {
            "ServiceClient.create_training_client_from_state"
        };
        let (fut, roundtrip) = submit(holder, "load_weights", || {
            Ok(RequestSpec::post("/api/v1/load_weights")
                .with_body(body.clone(), tinker_transport::APPLICATION_JSON)
                .with_sdk_method(method))
        })
        .await?;
        let _loaded: LoadWeightsResponse = retrieve_decoded(
            holder,
            PollTarget {
                request_id: fut.request_id.clone(),
                request_type: RequestType::LoadWeights,
                sdk_method: method,
                roundtrip,
                reserved: None,
            },
            self.observer.as_ref(),
        )
        .await?;
        TrainingClient::attach(holder.clone(), model_id, self.observer.clone(), method).await
    }

    /// The console page of this session (SDK `ServiceClient.get_console_url`; the sessions
    /// list for a client without a session).
    pub fn get_console_url(&self) -> String {
        match self
            .lazy
            .session
            .get()
            .and_then(|s| s.session_id.as_deref())
        {
            Some(id) => crate::console::session_console_url(id),
            None => crate::console::sessions_console_url(),
        }
    }

    /// A sampling client for a base model or saved weights.
    ///
    /// # Errors
    /// A model path that is not `tinker://`; API errors.
    pub async fn create_sampling_client(&self, source: SamplingSource) -> Result<SamplingClient> {
        SamplingClient::create(self.holder().await?.clone(), source, self.observer.clone()).await
    }

    /// A sampling client joining an existing sampling session (e.g. one created by another
    /// process of the same session); the server allocates it a clone id.
    ///
    /// # Errors
    /// API errors.
    pub async fn join_sampling_client(&self, sampling_session_id: &str) -> Result<SamplingClient> {
        SamplingClient::join(
            self.holder().await?.clone(),
            sampling_session_id.to_owned(),
            self.observer.clone(),
        )
        .await
    }

    /// A REST client on this client's session-less connection (created on first use, as
    /// the SDK's: it creates no session).
    ///
    /// # Errors
    /// API or connection errors of the connection's start-up (`client/config`).
    pub async fn create_rest_client(&self) -> Result<RestClient> {
        Ok(RestClient::from_holder(self.sessionless().await?.clone()))
    }

    /// A REST client on the session, if it exists (recovery works inside a session whose
    /// training clients exist, so it never creates one).
    pub(crate) fn session_rest_client(&self) -> Option<RestClient> {
        self.lazy
            .session
            .get()
            .map(|s| RestClient::from_holder(s.clone()))
    }

    /// An admin client (billing, audit) on the session-less connection.
    ///
    /// # Errors
    /// As [`ServiceClient::create_rest_client`].
    pub async fn create_admin_client(&self) -> Result<crate::AdminClient> {
        Ok(crate::AdminClient::from_holder(
            self.sessionless().await?.clone(),
        ))
    }

    /// Copies weights into this client's project (`copy_weights`); returns the new path.
    /// `weights_access_token` reads weights shared from another account.
    ///
    /// # Errors
    /// A path that is not `tinker://`; an access token that is not a valid header value;
    /// API errors.
    pub async fn copy_weights(
        &self,
        path: &str,
        ttl_seconds: Option<u64>,
        weights_access_token: Option<&str>,
    ) -> Result<String> {
        self.create_rest_client()
            .await?
            .copy_weights(
                path,
                self.lazy.options.project_id.clone(),
                ttl_seconds,
                weights_access_token,
            )
            .await
    }

    /// Ends the session (`sessions/{id}/finish`), stops the background loops and waits (up
    /// to 30 s) for queued telemetry to be sent. Further
    /// calls on any client of this session fail.
    ///
    /// # Errors
    /// API errors of the finish request (the loops stop anyway).
    pub async fn close(&self, status: CloseStatus, detail: Option<&str>) -> Result<()> {
        let reason = match status {
            CloseStatus::Success => SessionFinishReason::Success,
            CloseStatus::Errored => SessionFinishReason::Errored,
            CloseStatus::Interrupted => SessionFinishReason::Interrupted,
        };
        self.lazy.closed.store(true, Ordering::SeqCst);
        // No session was created: nothing to finish (the SDK sends nothing either).
        let result: Result<Value> = match self.lazy.session.get() {
            None => Ok(Value::Null),
            Some(holder) => {
                let req = FinishSessionRequest::new(reason, detail.map(str::to_owned));
                let path = format!("/api/v1/sessions/{}/finish", holder.session_id()?);
                holder
                    .post_json(&path, &req, "ServiceClient.close")
                    .await
                    .or_else(|e: Error| {
                        // The body is ignored; an empty one is fine.
                        if e.kind() == ErrorKind::Protocol {
                            Ok(Value::Null)
                        } else {
                            Err(e)
                        }
                    })
            }
        };
        for holder in [self.lazy.session.get(), self.lazy.sessionless.get()]
            .into_iter()
            .flatten()
        {
            holder.shutdown();
            // Waits up to 30 s for queued telemetry to be sent (the transport still works).
            if let Some(telemetry) = holder.telemetry() {
                telemetry.close().await;
            }
        }
        result.map(|_| ())
    }
}

/// `GET /api/v1/get_server_capabilities` (the `tinker-types` response).
pub use tinker_types::GetServerCapabilitiesResponse as ServerCapabilities;
/// One model of [`ServerCapabilities`].
pub use tinker_types::SupportedModel;
