//! [`SamplingClient`]: text generation and prompt scoring from a base model or saved
//! weights, with the SDK's dispatch limits, 429 backpressure and outer retry handler (§6.5),
//! the session futures poller (§3.3), cancellation (§3.2) and sampler handles (§6.5).

mod cancel;
pub(crate) mod dispatch;
mod handle;
mod poller;
mod retry;
mod shadow;

pub use self::dispatch::SampleDispatch;
pub use self::poller::FuturesPollerStats;
pub(crate) use self::retry::RetryHandlers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::{HeaderName, HeaderValue};
use tinker_transport::RequestSpec;
use tinker_transport::retry::{RetryClass, RetryConfig, Retryable};
use tinker_transport::{Env, SecretString};
use tinker_types::CompletionState;
use tinker_types::{
    CreateSamplingSessionRequest, CreateSamplingSessionResponse, GetSamplerResponse,
    JoinSamplingSessionRequest, JoinSamplingSessionResponse, ModelInput, ModelInputChunk,
    SampleRequest, SampleResponse, SamplingParams, TensorData,
};
use tokio::sync::OnceCell;

use self::cancel::CancelOnDrop;
use self::handle::{HandleState, ShadowHolderConfig};
use self::poller::SessionPoller;
use self::retry::RetryHandler;
use crate::error::{Error, ErrorKind, Result};
use crate::future::{ApiFuture, PollTarget, QueueStateObserver, poll_until_decoded};
use crate::payload::{FromPayload, Payload, RequestType};
use crate::session::{Session, parse_json};

/// Bytes charged per prompt token against the sample dispatch budget.
const BYTES_PER_TOKEN: u64 = 10;
/// Clone ids space the `seq_id` counters of rehydrated clients.
const CLONE_STRIDE: u64 = 1_000_000_000;
/// The SDK's names of the functions its retry loops run, for the telemetry events.
const ASAMPLE_FUNC: &str = "SamplingClient._send_asample_request";
const SAMPLE_FUNC: &str = "SamplingClient.sample.<locals>._sample_async";
const LOGPROBS_FUNC: &str = "SamplingClient.compute_logprobs.<locals>._compute_logprobs_async";
/// `x-sdk-method` of `sample`/`sample_with` (and their polls and session join).
const SAMPLE_METHOD: &str = "SamplingClient.sample";
/// `x-sdk-method` of `compute_logprobs`, which the SDK attributes to itself.
const LOGPROBS_METHOD: &str = "SamplingClient.compute_logprobs";

/// Per-request sampling options beyond [`SamplingParams`] (protocol §5.8).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SampleOptions {
    /// Number of independent samples (default 1).
    pub num_samples: u32,
    /// Return the logprob of every prompt token.
    pub prompt_logprobs: bool,
    /// Top-k logprobs per prompt position.
    pub topk_prompt_logprobs: u32,
    /// Top-k logprobs per generated token.
    pub topk_sample_logprobs: u32,
    /// A 2-D int64 tensor `[len(prompt) − 1, K]` of token ids to score (−1 = none).
    pub target_prompt_logprobs: Option<TensorData>,
    /// Alternative tokens per prompt position.
    pub prompt_alt_tokens_k: u32,
    /// Score only the last N prompt positions (needs `prompt_logprobs`).
    pub prompt_logprobs_last_n: Option<u32>,
    /// Record stability information (for `stable_reinforce`).
    pub record_stability_info: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            num_samples: 1,
            prompt_logprobs: false,
            topk_prompt_logprobs: 0,
            topk_sample_logprobs: 0,
            target_prompt_logprobs: None,
            prompt_alt_tokens_k: 0,
            prompt_logprobs_last_n: None,
            record_stability_info: false,
        }
    }
}

impl SampleOptions {
    /// `n` samples, other options default.
    pub fn samples(n: u32) -> Self {
        Self {
            num_samples: n,
            ..Self::default()
        }
    }

    /// Requests (or not) prompt logprobs.
    pub fn prompt_logprobs(mut self, enabled: bool) -> Self {
        self.prompt_logprobs = enabled;
        self
    }

    /// Requests top-k logprobs of the generated tokens.
    pub fn topk_sample_logprobs(mut self, k: u32) -> Self {
        self.topk_sample_logprobs = k;
        self
    }

    /// Requests top-k logprobs of the prompt tokens.
    pub fn topk_prompt_logprobs(mut self, k: u32) -> Self {
        self.topk_prompt_logprobs = k;
        self
    }

    /// Scores the given target tokens at each prompt position.
    pub fn target_prompt_logprobs(mut self, targets: TensorData) -> Self {
        self.target_prompt_logprobs = Some(targets);
        self
    }

    /// Requests `k` alternative tokens per prompt position.
    pub fn prompt_alt_tokens(mut self, k: u32) -> Self {
        self.prompt_alt_tokens_k = k;
        self
    }

    /// Scores only the last `n` prompt positions (sets `prompt_logprobs`).
    pub fn prompt_logprobs_last_n(mut self, n: u32) -> Self {
        self.prompt_logprobs = true;
        self.prompt_logprobs_last_n = Some(n);
        self
    }
}

/// Where a sampling client's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamplingSource {
    /// A base model by name, e.g. `Qwen/Qwen3-8B`.
    BaseModel(String),
    /// Saved sampler (or training) weights, `tinker://…`.
    ModelPath(String),
}

/// Generates text from one sampling session. Cheap to clone; clones share the `seq_id`
/// counter. Every client of one sampling session on one [`ServiceClient`](crate::ServiceClient)
/// (or one shadow holder) shares the outer retry handler: its concurrency limit and its
/// stuck detection (§6.5).
#[derive(Clone)]
pub struct SamplingClient {
    inner: Arc<Inner>,
    /// The outer retry handler, shared per (session, sampling session, retry config).
    retry: Arc<RetryHandler>,
}

struct Inner {
    holder: Arc<Session>,
    sampling_session_id: String,
    base_model: Option<String>,
    model_path: Option<String>,
    next_seq: AtomicU64,
    /// Clone id (0 for the original client); unset for a shadow client that has yet to
    /// `join_sampling_session` before its first sample.
    clone_id: OnceCell<u64>,
    /// The session futures poller, started by the first sample when flagged (§3.3).
    poller: OnceLock<SessionPoller>,
    /// Record stability information on every sample (carried by sampler handles).
    record_stability_info: bool,
    /// The caller's observer plus the default queue-state warning.
    observer: Option<QueueStateObserver>,
    /// The caller's observer alone (what a rebuilt client composes again).
    user_observer: Option<QueueStateObserver>,
}

impl std::fmt::Debug for SamplingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplingClient")
            .field("sampling_session_id", &self.inner.sampling_session_id)
            .field("base_model", &self.inner.base_model)
            .finish_non_exhaustive()
    }
}

impl SamplingClient {
    /// Creates a sampling session for `source` (`create_sampling_session`), as an
    /// operation of its own (span and metrics).
    pub(crate) async fn create(
        holder: Arc<Session>,
        source: SamplingSource,
        observer: Option<QueueStateObserver>,
    ) -> Result<Self> {
        let metrics = holder.metrics.clone();
        let session_id = holder.session_id.clone();
        metrics
            .instrument(
                crate::observe::Operation::CreateSamplingSession,
                session_id.as_deref(),
                Self::create_session(holder, source, observer),
            )
            .await
    }

    async fn create_session(
        holder: Arc<Session>,
        source: SamplingSource,
        observer: Option<QueueStateObserver>,
    ) -> Result<Self> {
        let (base_model, model_path) = match source {
            SamplingSource::BaseModel(m) => (Some(m), None),
            SamplingSource::ModelPath(p) => {
                crate::tinker_path::check_tinker_path(&p)?;
                (None, Some(p))
            }
        };
        let req = CreateSamplingSessionRequest {
            session_id: holder.session_id()?.to_owned(),
            sampling_session_seq_id: holder.next_sampling_seq(),
            base_model: base_model.clone(),
            model_path: model_path.clone(),
        };
        let spec = RequestSpec::post("/api/v1/create_sampling_session")
            .with_json(&req)?
            .with_sdk_method("ServiceClient.create_sampling_client");
        let resp: CreateSamplingSessionResponse = parse_json(&holder.transport.send(spec).await?)?;
        Self::for_session(
            holder,
            resp.sampling_session_id,
            base_model,
            model_path,
            observer,
            "ServiceClient.create_sampling_client",
        )
        .await
    }

    /// A client for an existing sampling session; looks up the base model if unknown, in a
    /// request attributed to `sdk_method` (the public method creating the client).
    pub(crate) async fn for_session(
        holder: Arc<Session>,
        sampling_session_id: String,
        base_model: Option<String>,
        model_path: Option<String>,
        observer: Option<QueueStateObserver>,
        sdk_method: &'static str,
    ) -> Result<Self> {
        let (base_model, model_path) = match base_model {
            Some(b) => (Some(b), model_path),
            None => {
                let path = format!("/api/v1/samplers/{sampling_session_id}");
                let info: GetSamplerResponse = holder.get_json(&path, &[], sdk_method).await?;
                (Some(info.base_model), info.model_path.or(model_path))
            }
        };
        Ok(Self::assemble(
            holder,
            sampling_session_id,
            base_model,
            model_path,
            observer,
            Some(0),
            false,
        ))
    }

    /// Builds the client; `clone_id` `None` defers it to `join_sampling_session`.
    fn assemble(
        holder: Arc<Session>,
        sampling_session_id: String,
        base_model: Option<String>,
        model_path: Option<String>,
        observer: Option<QueueStateObserver>,
        clone_id: Option<u64>,
        record_stability_info: bool,
    ) -> Self {
        let retry = holder.extensions.get_or_default::<RetryHandlers>().get(
            &holder,
            &sampling_session_id,
            RetryConfig::default(),
        );
        let user_observer = observer;
        let observer = crate::queue_log::observer_for(
            &holder,
            dispatch::with_rate_limit_backoff(&holder, user_observer.clone()),
            crate::queue_log::Queued::Sampling,
            &sampling_session_id,
        );
        Self {
            retry,
            inner: Arc::new(Inner {
                next_seq: AtomicU64::new(clone_id.unwrap_or(0).saturating_mul(CLONE_STRIDE)),
                clone_id: OnceCell::new_with(clone_id),
                poller: OnceLock::new(),
                record_stability_info,
                holder,
                sampling_session_id,
                base_model,
                model_path,
                observer,
                user_observer,
            }),
        }
    }

    /// Joins an existing sampling session as a clone (`join_sampling_session`): the server
    /// allocates a clone id, so `seq_id`s never collide with the original client's.
    pub(crate) async fn join(
        holder: Arc<Session>,
        sampling_session_id: String,
        observer: Option<QueueStateObserver>,
    ) -> Result<Self> {
        let req = JoinSamplingSessionRequest {
            sampling_session_id: sampling_session_id.clone(),
        };
        let resp: JoinSamplingSessionResponse = holder
            .post_json("/api/v1/join_sampling_session", &req, "SamplingClient.join")
            .await?;
        let client = Self::for_session(
            holder,
            sampling_session_id,
            None,
            None,
            observer,
            "SamplingClient.get_sampler",
        )
        .await?;
        let Self { inner, .. } = client;
        let inner = Arc::into_inner(inner)
            .ok_or_else(|| Error::protocol("sampling client shared before it was built"))?;
        Ok(Self::assemble(
            inner.holder,
            inner.sampling_session_id,
            inner.base_model,
            inner.model_path,
            inner.user_observer,
            Some(resp.client_counter),
            false,
        ))
    }

    /// A handle to this client's sampler (the SDK's `get_sampler_handle`): another
    /// process passes it to [`SamplingClient::from_sampler_handle`] (or the Python SDK's
    /// `SamplingClient.from_sampler_handle`) to sample from the same sampling session.
    /// The handle carries the server flags but never the API key; like the SDK's, it does
    /// carry the headers set with
    /// [`ServiceClientBuilder::default_header`](crate::ServiceClientBuilder::default_header).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] if the client has no session or unknown base model.
    pub fn sampler_handle(&self) -> Result<String> {
        let holder = &self.inner.holder;
        let base_model = self.inner.base_model.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "the base model of this sampler is unknown",
            )
        })?;
        HandleState {
            session_id: holder.session_id()?.to_owned(),
            sampling_session_id: self.inner.sampling_session_id.clone(),
            holder: ShadowHolderConfig {
                base_url: holder.transport.base_url().to_owned(),
                default_headers_overrides: holder.header_overrides.clone(),
                client_config: holder.config.clone(),
                client_dynamic_config: holder.dynamic_config(),
                api_key: None,
            },
            base_model,
            record_stability_info: self.inner.record_stability_info,
        }
        .encode()
    }

    /// Rehydrates a client from a [sampler handle](SamplingClient::sampler_handle) as a
    /// *shadow*: it reuses the handle's session and server flags (no `client/config`, no
    /// `create_session`), heartbeats that session, exchanges its own JWT when the flags
    /// say so, and authenticates with `options`' key or the environment's credential.
    /// Its clone id comes from `join_sampling_session` before the first sample when the
    /// flag `sample_join_sampling_session` is on, else it is random in `1..=10⁹`; its
    /// `seq_id`s start at clone id × 10⁹.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a malformed handle (the message names the
    /// problem); [`ErrorKind::Config`] without a usable credential.
    pub async fn from_sampler_handle(handle: &str, options: SamplerHandleOptions) -> Result<Self> {
        let state = HandleState::decode(handle)?;
        let join = state.holder.client_config.sample_join_sampling_session;
        let holder = shadow::shadow_holder(
            state.session_id,
            state.holder,
            shadow::Credentials {
                api_key: options.api_key,
                env: options.env,
            },
        )?;
        let clone_id = if join {
            None
        } else {
            // As the SDK: uuid4 mod 1e9 + 1, so clone × 1e9 × 1e9 stays below 2^63.
            let random = uuid::Uuid::new_v4().as_u128() % u128::from(CLONE_STRIDE);
            Some(u64::try_from(random).unwrap_or(0) + 1)
        };
        Ok(Self::assemble(
            holder,
            state.sampling_session_id,
            Some(state.base_model),
            None,
            options.observer,
            clone_id,
            state.record_stability_info,
        ))
    }

    /// This client's clone id: 0 for a client created in this process, the server's
    /// `client_counter` for a joined one, `None` for a shadow client that has not yet
    /// joined (it joins before its first sample).
    pub fn clone_id(&self) -> Option<u64> {
        self.inner.clone_id.get().copied()
    }

    pub(crate) fn holder(&self) -> &Arc<Session> {
        &self.inner.holder
    }

    /// The sampling dispatch limits this client's samples go through (shared by every
    /// sampling client of its session; see [`SampleDispatch`]).
    pub fn dispatch(&self) -> SampleDispatch {
        SampleDispatch::new(self.inner.holder.sample_limiter.clone())
    }

    /// What this client's session futures poller (§3.3) did so far; `None` until the
    /// first sample starts it (only with the server flag `sample_use_retrieve_futures`).
    pub fn futures_poller_stats(&self) -> Option<FuturesPollerStats> {
        self.inner.poller.get().map(SessionPoller::stats)
    }

    /// The sampling session id (`<session>:sample:<n>`). Another process can pass it to
    /// [`ServiceClient::join_sampling_client`](crate::ServiceClient::join_sampling_client).
    pub fn sampling_session_id(&self) -> &str {
        &self.inner.sampling_session_id
    }

    /// The telemetry reporter of this client's session (`None` when telemetry is off).
    pub fn get_telemetry(&self) -> Option<&crate::Telemetry> {
        self.inner.holder.telemetry()
    }

    /// The base model, if known.
    pub fn base_model(&self) -> Option<&str> {
        self.inner.base_model.as_deref()
    }

    /// The `tinker://` weights path, if the client was created from one.
    pub fn model_path(&self) -> Option<&str> {
        self.inner.model_path.as_deref()
    }

    /// The tokenizer of the base model.
    ///
    /// # Errors
    /// [`ErrorKind::Tokenizer`] if it cannot be found or loaded.
    pub async fn get_tokenizer(&self) -> Result<tinker_tokenizer::Tokenizer> {
        let name = self.inner.base_model.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Tokenizer,
                "the base model of this sampler is unknown",
            )
        })?;
        crate::tokenizer::load(self.inner.holder.transport.base_url(), name, None).await
    }

    /// Samples `num_samples` continuations of `prompt`.
    pub fn sample(
        &self,
        prompt: ModelInput,
        num_samples: u32,
        params: SamplingParams,
    ) -> ApiFuture<SampleResponse> {
        self.sample_with(prompt, params, SampleOptions::samples(num_samples))
    }

    /// Samples with every option of the protocol (logprobs, top-k, targets, alt tokens…).
    ///
    /// Dropping the returned future before it completes (or letting a
    /// `tokio::time::timeout` around it expire) abandons the sample: polling stops and,
    /// when the server enables `sample_cancel_enabled`, the request is cancelled with
    /// `cancel_future` (§3.2).
    pub fn sample_with(
        &self,
        prompt: ModelInput,
        params: SamplingParams,
        options: SampleOptions,
    ) -> ApiFuture<SampleResponse> {
        let inner = self.inner.clone();
        let retry = self.retry.clone();
        let no_retries = inner.holder.config.sample_no_retries;
        match build_request(&inner, prompt, params, options) {
            Err(e) => ApiFuture::failed(e),
            Ok(template) => {
                ApiFuture::spawn_abortable(&self.inner.holder, RequestType::Sample, async move {
                    let result = if no_retries {
                        sample_once(&inner, &std::sync::Mutex::new(template), SAMPLE_METHOD).await
                    } else {
                        sample_retrying(&inner, &retry, template, SAMPLE_FUNC, SAMPLE_METHOD).await
                    };
                    report_final(&inner, result).await
                })
            }
        }
    }

    /// This client with another retry configuration (the SDK's `retry_config`): same
    /// sampling session and `seq_id` counter, with the outer retry handler of that
    /// configuration (shared by every client of the session that uses an equal one). As
    /// in the SDK, the concurrency limit and the server's stuck-detection switch still
    /// come from the server's client config.
    pub fn with_retry_config(&self, config: RetryConfig) -> Self {
        let retry = self
            .inner
            .holder
            .extensions
            .get_or_default::<RetryHandlers>()
            .get(&self.inner.holder, &self.inner.sampling_session_id, config);
        Self {
            inner: self.inner.clone(),
            retry,
        }
    }

    /// The retry configuration of this client's outer retry handler.
    pub fn retry_config(&self) -> RetryConfig {
        self.retry.config()
    }

    /// The logprob of every prompt token (the first is `None`).
    pub fn compute_logprobs(&self, prompt: ModelInput) -> ApiFuture<Vec<Option<f32>>> {
        let inner = self.inner.clone();
        let retry = self.retry.clone();
        let options = SampleOptions::samples(1).prompt_logprobs(true);
        match build_request(&inner, prompt, SamplingParams::with_max_tokens(1), options) {
            Err(e) => ApiFuture::failed(e),
            Ok(template) => {
                ApiFuture::spawn_abortable(&self.inner.holder, RequestType::Sample, async move {
                    let result =
                        sample_retrying(&inner, &retry, template, LOGPROBS_FUNC, LOGPROBS_METHOD)
                            .await
                            .and_then(|resp| {
                                resp.prompt_logprobs.ok_or_else(|| {
                                    Error::protocol("the server returned no prompt_logprobs")
                                })
                            });
                    report_final(&inner, result).await
                })
            }
        }
    }
}

fn build_request(
    inner: &Inner,
    prompt: ModelInput,
    params: SamplingParams,
    o: SampleOptions,
) -> Result<SampleRequest> {
    if inner.holder.is_closed() {
        return Err(Error::new(
            ErrorKind::Cancelled,
            "the service client was closed",
        ));
    }
    if o.num_samples == 0 {
        return Err(Error::invalid("num_samples must be at least 1"));
    }
    if prompt.length()? == 0 {
        return Err(Error::invalid("the prompt is empty"));
    }
    let mut req = SampleRequest::new(
        inner.sampling_session_id.clone(),
        0,
        prompt,
        params,
        o.num_samples,
    );
    // The SDK always sends both flags, `false` included.
    req.prompt_logprobs = Some(o.prompt_logprobs);
    req.topk_prompt_logprobs = o.topk_prompt_logprobs;
    req.topk_sample_logprobs = o.topk_sample_logprobs;
    req.target_prompt_logprobs = o.target_prompt_logprobs;
    req.prompt_alt_tokens_k = o.prompt_alt_tokens_k;
    req.prompt_logprobs_last_n = o.prompt_logprobs_last_n;
    req.record_stability_info = Some(o.record_stability_info || inner.record_stability_info);
    req.validate()?;
    Ok(req)
}

fn estimate_prompt_bytes(prompt: &ModelInput) -> u64 {
    prompt
        .chunks
        .iter()
        .map(|c| match c {
            ModelInputChunk::EncodedText(t) => t.tokens.len() as u64 * BYTES_PER_TOKEN,
            ModelInputChunk::Image(i) => i.data.len() as u64,
            ModelInputChunk::ImageAssetPointer(p) => p.location.len() as u64,
            ModelInputChunk::Dmel(d) => d.dmel.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Reports the error ending a sample as fatal (the SDK's `capture_exceptions(fatal=True)`
/// around its sampling coroutines); a closed client is no failure to report.
async fn report_final<T>(inner: &Inner, result: Result<T>) -> Result<T> {
    if let Err(e) = &result
        && e.kind() != ErrorKind::Cancelled
    {
        crate::telemetry::log_fatal(&*inner.holder, e).await;
    }
    result
}

/// The outer retry handler (§6.5): every attempt takes a new `seq_id`; timeouts,
/// connection errors, 410 and 408/409/429/5xx are retried without limit, with jittered
/// backoff; if nothing of the handler completes for 7200 s the call fails as stuck.
async fn sample_retrying(
    inner: &Inner,
    retry: &RetryHandler,
    template: SampleRequest,
    func: &'static str,
    sdk_method: &'static str,
) -> Result<SampleResponse> {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    // Every attempt sets its own `seq_id` in the one request (no copy per attempt).
    let template = std::sync::Mutex::new(template);
    retry
        .execute(&inner.holder, &inner.sampling_session_id, func, || {
            if attempts.fetch_add(1, Ordering::Relaxed) > 0 {
                inner
                    .holder
                    .metrics
                    .retried(crate::observe::Operation::Sample);
            }
            sample_once(inner, &template, sdk_method)
        })
        .await
}

impl FromPayload for SampleResponse {
    fn from_payload(payload: Payload) -> Result<Self> {
        match payload {
            Payload::Proto(b) => crate::proto::decode_sample_response(&b),
            Payload::Json(_) => Err(Error::protocol(
                "server predates proto response serialization",
            )),
        }
    }
}

/// A 429 on `asample` is backpressure, not an error for the operation loop.
struct Submit(Error);

impl Retryable for Submit {
    fn retry_class(&self) -> RetryClass {
        if self.0.status() == Some(429) {
            RetryClass::Fatal
        } else {
            self.0.retry_class()
        }
    }

    fn describe(&self) -> String {
        self.0.to_string()
    }
}

/// One sampling attempt with a fresh `seq_id` (set in `request`): dispatch limits,
/// submission with backpressure, then polling.
async fn sample_once(
    inner: &Inner,
    request: &std::sync::Mutex<SampleRequest>,
    sdk_method: &'static str,
) -> Result<SampleResponse> {
    let clock = inner.holder.transport.runtime().clock.clone();
    let clone_id = ensure_clone_id(inner, sdk_method).await?;
    let seq_id = inner.next_seq.fetch_add(1, Ordering::SeqCst);
    crate::observe::spans::record_model_id(&inner.sampling_session_id);
    crate::observe::spans::record_seq_id(seq_id);
    let (expected_samples, alt_k, last_n, estimate, body) = {
        let mut req = request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        req.seq_id = Some(seq_id);
        (
            req.num_samples as usize,
            req.prompt_alt_tokens_k,
            req.prompt_logprobs_last_n,
            estimate_prompt_bytes(&req.prompt),
            bytes::Bytes::from(tinker_types::json::to_vec(&*req)?),
        )
    };
    let limiter = &inner.holder.sample_limiter;
    let started = clock.now();
    let mut fut = loop {
        limiter.wait_backoff().await;
        let permit = limiter.acquire(estimate).await;
        // One run of the holder retry loop (§6.2), with its per-attempt events; a 429 is
        // backpressure, answered without an exception in the SDK, so it reports nothing.
        let trace = crate::telemetry::RetryTrace::new(&*inner.holder, ASAMPLE_FUNC);
        let attempts = AtomicU64::new(0);
        let res = inner
            .holder
            .transport
            .operation_retry()
            .run("asample", || async {
                // Every attempt after the first is a retry of the sample (as a 429 below).
                if attempts.fetch_add(1, Ordering::Relaxed) > 0 {
                    inner
                        .holder
                        .metrics
                        .retried(crate::observe::Operation::Sample);
                }
                let spec = RequestSpec::post("/api/v1/asample")
                    .with_body(body.clone(), tinker_transport::APPLICATION_JSON)
                    .with_max_retries(0)
                    .with_static_sdk_method(sdk_method)
                    .with_header(
                        HeaderName::from_static("x-tinker-sampling-backpressure"),
                        HeaderValue::from_static("1"),
                    );
                inner.holder.transport.send(spec).await.map_err(|e| {
                    let e = Error::from(e);
                    if e.status() != Some(429) {
                        trace.attempt_failed(&*inner.holder, &e);
                    }
                    Submit(e)
                })
            })
            .await;
        drop(permit);
        match res {
            Ok(resp) => break parse_json::<tinker_types::UntypedFuture>(&resp)?,
            Err(Submit(e)) if e.status() == Some(429) => {
                inner
                    .holder
                    .metrics
                    .retried(crate::observe::Operation::Sample);
                limiter.request_backoff(estimate);
            }
            Err(Submit(e)) => return Err(e),
        }
    };
    let ids = fut
        .sample_sequence_ids
        .take()
        .ok_or_else(|| Error::protocol("asample returned no sample_sequence_ids"))?;
    if ids.len() != expected_samples {
        return Err(Error::protocol(format!(
            "asample returned {} sequence ids for {expected_samples} samples",
            ids.len()
        )));
    }
    let roundtrip = clock.now() - started;
    let request_id = fut.request_id;
    crate::future::note_request(&request_id);
    // Armed until polling ends: an abandoned sample is cancelled server-side (§3.2).
    let abandon = CancelOnDrop::new(inner.holder.clone(), request_id.clone());
    let poller = inner
        .holder
        .config
        .sample_use_retrieve_futures
        .then(|| session_poller(inner, clone_id));
    let got = async {
        let mut reserved = None;
        if let Some(poller) = poller {
            let completion = poller.wait_for(&request_id).await?;
            if completion.state == CompletionState::Finished
                && let Some(size) = completion
                    .response_payload_uncompressed_size
                    .filter(|&s| s > 0)
            {
                // The size is known: reserve it and fetch the payload in one round trip
                // (`allow_metadata_only: false`, §3.3).
                reserved = Some(inner.holder.inflight_budget.acquire(size).await);
                poller.note_reserved_fetch(size);
            }
        }
        poll_until_decoded::<SampleResponse>(
            &inner.holder,
            PollTarget {
                request_id: request_id.clone(),
                request_type: RequestType::Sample,
                sdk_method,
                roundtrip,
                reserved,
            },
            inner.observer.as_ref(),
        )
        .await
    }
    .await;
    abandon.disarm();
    if let Some(poller) = poller
        && (got.is_ok()
            || got
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::RequestFailed))
    {
        // Success or failure, the server may now drop the payload.
        poller.mark_retrieved(&request_id);
    }
    let mut resp = got?;
    resp.attach_sequence_ids(&ids).map_err(Error::bad_reply)?;
    if alt_k > 0 && resp.prompt_alt_tokens.is_none() {
        return Err(Error::protocol(
            "prompt_alt_tokens_k > 0 but the response has no prompt_alt_tokens",
        ));
    }
    if let (Some(n), Some(lps)) = (last_n, &resp.prompt_logprobs) {
        let cut = lps.len().saturating_sub(n as usize);
        if lps[..cut]
            .iter()
            .skip(1)
            .any(|v| v.is_some_and(|x| !x.is_nan()))
        {
            return Err(Error::protocol(
                "the server scored prompt positions before prompt_logprobs_last_n (it ignores the option)",
            ));
        }
    }
    Ok(resp)
}

/// The clone id, joining the sampling session first if this shadow client has not yet.
async fn ensure_clone_id(inner: &Inner, sdk_method: &'static str) -> Result<u64> {
    inner
        .clone_id
        .get_or_try_init(|| async {
            let req = JoinSamplingSessionRequest {
                sampling_session_id: inner.sampling_session_id.clone(),
            };
            let body = tinker_types::json::to_vec(&req)?;
            // Quiet: a failure here ends the sample, which reports it.
            let resp: JoinSamplingSessionResponse = parse_json(
                &inner
                    .holder
                    .send_retrying_quiet("/api/v1/join_sampling_session", || {
                        Ok(RequestSpec::post("/api/v1/join_sampling_session")
                            .with_body(body.clone(), tinker_transport::APPLICATION_JSON)
                            .with_sdk_method(sdk_method))
                    })
                    .await?,
            )?;
            inner.next_seq.store(
                resp.client_counter.saturating_mul(CLONE_STRIDE),
                Ordering::SeqCst,
            );
            Ok::<_, Error>(resp.client_counter)
        })
        .await
        .copied()
}

/// The poller of this client's (sampling session, clone id), started on first use.
fn session_poller(inner: &Inner, clone_id: u64) -> &SessionPoller {
    inner.poller.get_or_init(|| {
        SessionPoller::start(
            inner.holder.clone(),
            inner.sampling_session_id.clone(),
            clone_id,
        )
    })
}

/// Options of [`SamplingClient::from_sampler_handle`]: the credential and environment of
/// this process (a handle carries none).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SamplerHandleOptions {
    /// The key and its in-memory fingerprint (to share shadow holders per credential).
    api_key: Option<(SecretString, u64)>,
    env: Option<Env>,
    observer: Option<QueueStateObserver>,
}

impl std::fmt::Debug for SamplerHandleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerHandleOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env.is_some())
            .finish_non_exhaustive()
    }
}

impl SamplerHandleOptions {
    /// Credentials and settings from the process environment (`TINKER_API_KEY`,
    /// `TINKER_CREDENTIAL_CMD`, `~/.tinker/credentials.json`, Cloudflare headers).
    pub fn new() -> Self {
        Self::default()
    }

    /// An explicit API key (or JWT) instead of the environment's.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        let fingerprint = shadow::key_fingerprint(&key);
        self.api_key = Some((SecretString::from(key), fingerprint));
        self
    }

    /// Reads `TINKER_*` settings from `env` instead of the process environment.
    pub fn env(mut self, env: Env) -> Self {
        self.env = Some(env);
        self
    }

    /// Called with every queue state the server reports while a sample waits.
    pub fn queue_state_observer(
        mut self,
        observer: impl Fn(&tinker_types::QueueState, Option<&str>) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }
}

#[cfg(test)]
mod tests {

    use std::time::Duration;

    use tinker_transport::Transport;
    use tinker_types::{ModelInput, SamplingParams};

    use super::*;
    use crate::session::SessionOptions;

    async fn holder_for(url: String) -> Arc<Session> {
        let transport = Transport::builder()
            .base_url(url)
            .api_key(SecretString::from("tml-test-key".to_owned()))
            .build()
            .unwrap();
        Session::start_with_telemetry(transport, Some(SessionOptions::default()), false)
            .await
            .unwrap()
    }

    /// Waits until only `expected` strong references to `holder` remain.
    async fn wait_refs(holder: &Arc<Session>, expected: usize) {
        for _ in 0..100 {
            if Arc::strong_count(holder) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{} references to the holder remain, expected {expected}",
            Arc::strong_count(holder)
        );
    }

    /// The poller task (which holds the holder) ends when the last clone of its client is
    /// dropped, and when the service is shut down; no task is leaked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poller_task_ends_with_its_client_and_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tinker_local::LocalServerConfig::new(dir.path());
        config.sample_use_retrieve_futures = true;
        config.long_poll = Duration::from_secs(2);
        let server = tinker_local::LocalServer::start(config).await.unwrap();
        let holder = holder_for(server.url()).await;
        let source = SamplingSource::BaseModel("tinker-local/micro".into());
        let prompt = || ModelInput::from_tokens(&[3, 4, 5]);

        let client = SamplingClient::create(holder.clone(), source.clone(), None)
            .await
            .unwrap();
        let copy = client.clone();
        copy.sample(prompt(), 1, SamplingParams::with_max_tokens(2))
            .await
            .unwrap();
        assert!(client.inner.poller.get().is_some());
        drop(client);
        // Ours, the client's and the poller task's.
        assert_eq!(Arc::strong_count(&holder), 3);
        drop(copy);
        wait_refs(&holder, 1).await;

        let client = SamplingClient::create(holder.clone(), source, None)
            .await
            .unwrap();
        client
            .sample(prompt(), 1, SamplingParams::with_max_tokens(2))
            .await
            .unwrap();
        wait_refs(&holder, 3).await;
        holder.shutdown();
        wait_refs(&holder, 2).await;
        let err = client
            .sample(prompt(), 1, SamplingParams::with_max_tokens(2))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled);
    }

    /// A shadow of a JWT-mode session switches JWT auth on and exchanges its own token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shadow_exchanges_its_own_jwt() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tinker_local::LocalServerConfig::new(dir.path());
        config.jwt = true;
        let server = tinker_local::LocalServer::start(config).await.unwrap();
        let holder = holder_for(server.url()).await;
        let source = SamplingSource::BaseModel("tinker-local/micro".into());
        let original = SamplingClient::create(holder, source, None).await.unwrap();
        let shadow = SamplingClient::from_sampler_handle(
            &original.sampler_handle().unwrap(),
            SamplerHandleOptions::new().api_key("tml-test-key"),
        )
        .await
        .unwrap();
        let transport = &shadow.inner.holder.transport;
        assert!(transport.jwt_auth_enabled());
        // The claims come from the server-minted JWT (exchanged on demand).
        assert!(transport.token_claims().await.unwrap().is_some());
        shadow
            .sample(
                ModelInput::from_tokens(&[3, 4]),
                1,
                SamplingParams::with_max_tokens(2),
            )
            .await
            .unwrap();
    }

    /// Handles of one session rehydrated with the same credential share one shadow holder
    /// (one heartbeat, one pool); another key gets its own; clone ids differ.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shadow_clients_share_a_holder_per_credential() {
        let dir = tempfile::tempdir().unwrap();
        let config = tinker_local::LocalServerConfig::new(dir.path());
        let server = tinker_local::LocalServer::start(config).await.unwrap();
        let holder = holder_for(server.url()).await;
        let source = SamplingSource::BaseModel("tinker-local/micro".into());
        let original = SamplingClient::create(holder, source, None).await.unwrap();
        let handle = original.sampler_handle().unwrap();
        let opts = || SamplerHandleOptions::new().api_key("tml-test-key");
        let a = SamplingClient::from_sampler_handle(&handle, opts())
            .await
            .unwrap();
        let b = SamplingClient::from_sampler_handle(&handle, opts())
            .await
            .unwrap();
        let c = SamplingClient::from_sampler_handle(
            &handle,
            SamplerHandleOptions::new().api_key("tml-test-key+other"),
        )
        .await
        .unwrap();
        assert!(Arc::ptr_eq(&a.inner.holder, &b.inner.holder));
        assert!(!Arc::ptr_eq(&a.inner.holder, &c.inner.holder));
        assert!(!Arc::ptr_eq(&a.inner.holder, &original.inner.holder));
        // One outer retry handler per (holder, sampling session), not per client nor per
        // process.
        assert!(Arc::ptr_eq(&a.retry, &b.retry));
        assert!(!Arc::ptr_eq(&a.retry, &c.retry));
        assert!(!Arc::ptr_eq(&a.retry, &original.retry));
        let slots = usize::try_from(a.inner.holder.config.sample_max_concurrent_requests).unwrap();
        assert_eq!(a.retry.available_slots(), Some(slots));
        let another = SamplingClient::create(
            original.inner.holder.clone(),
            SamplingSource::BaseModel("tinker-local/micro".into()),
            None,
        )
        .await
        .unwrap();
        assert!(!Arc::ptr_eq(&another.retry, &original.retry));
        let same_session = SamplingClient::for_session(
            original.inner.holder.clone(),
            original.sampling_session_id().to_owned(),
            original.inner.base_model.clone(),
            None,
            None,
            "SamplingClient.get_sampler",
        )
        .await
        .unwrap();
        assert!(Arc::ptr_eq(&same_session.retry, &original.retry));
        for client in [&a, &b, &c] {
            client
                .sample(
                    ModelInput::from_tokens(&[3, 4]),
                    1,
                    SamplingParams::with_max_tokens(2),
                )
                .await
                .unwrap();
        }
        // No JWT mode on this server: the shadows send the key as is.
        assert!(!a.inner.holder.transport.jwt_auth_enabled());
        let ids: std::collections::BTreeSet<_> =
            [&a, &b, &c].iter().map(|c| c.clone_id().unwrap()).collect();
        assert_eq!(ids, [1, 2, 3].into());
    }
}
