//! [`TrainingClient`]: forward/backward passes, optimizer steps and checkpoints of one model.
//!
//! Every method reserves its place in the model's request order *when it is called* and
//! returns an [`ApiFuture`] that is already in flight, so
//!
//! ```ignore
//! let fb = tc.forward_backward(data, LossFn::CrossEntropy);
//! let step = tc.optim_step(AdamParams::default());
//! let (fb, step) = (fb.await?, step.await?);
//! ```
//!
//! pipelines both requests without waiting in between, as the Python SDK does.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::try_join_all;
use tinker_transport::{Compression, RequestSpec};
use tinker_types::{
    Datum, ForwardBackwardOutput, ForwardBackwardRequest, GetInfoRequest, GetInfoResponse, LossFn,
    LossFnConfig, ModelInputChunk, OptimParams, OptimStepRequest, OptimStepResponse, TensorData,
};

use crate::chunk::{ChunkLimits, plan_chunks};
use crate::error::{Error, ErrorKind, Result};
use crate::future::{ApiFuture, PollTarget, QueueStateObserver, retrieve_decoded, submit};
use crate::holder::Holder;
use crate::metrics::{ChunkMetrics, combine_metrics};
use crate::payload::{FromPayload, Payload, RequestType};
use crate::sampling::SamplingClient;
use crate::tinker_path::check_tinker_path;
use crate::turn::{Turn, TurnOrder};
use tinker_types::{
    LoadWeightsRequest, LoadWeightsResponse, OptimizerConfig, SamplerWeightsKind,
    SaveWeightsExternalRequest, SaveWeightsExternalResponse, SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponse, SaveWeightsRequest, SaveWeightsResponse, Sensitive,
};

crate::payload::json_payload!(
    SaveWeightsResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsExternalResponse,
    LoadWeightsResponse,
);

/// One single-request training operation: its route, future type and SDK method name.
#[derive(Debug, Clone, Copy)]
struct Op {
    path: &'static str,
    request_type: RequestType,
    method: &'static str,
    /// The save family disables HTTP-level retries (only the holder loop retries).
    http_retries: bool,
}

impl Op {
    fn new(path: &'static str, request_type: RequestType, method: &'static str) -> Self {
        Self {
            path,
            request_type,
            method,
            http_retries: true,
        }
    }

    fn without_http_retries(mut self) -> Self {
        self.http_retries = false;
        self
    }
}

/// Bytes per text token in the protobuf request (int32).
const BYTES_PER_TOKEN: u64 = 4;
/// Bytes per CSR index (int64).
const SPARSE_INDEX_BYTES: u64 = 8;

/// Options of [`TrainingClient::save_state_with`] and the sampler saves.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SaveOptions {
    /// Time to live in seconds (3600 s … 10 years); `None` keeps it forever.
    pub ttl_seconds: Option<u64>,
    /// Replace an existing checkpoint of the same name (`save_state` only).
    pub overwrite: bool,
    /// Metadata stored with the checkpoint.
    pub user_metadata: Option<BTreeMap<String, String>>,
}

impl SaveOptions {
    /// Sets the time to live.
    pub fn ttl_seconds(mut self, ttl: u64) -> Self {
        self.ttl_seconds = Some(ttl);
        self
    }

    /// Allows overwriting an existing checkpoint.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Sets the metadata stored with the checkpoint.
    pub fn user_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.user_metadata = Some(metadata);
        self
    }
}

/// Options of a load from a `tinker://` checkpoint: SDK 0.38's keyword arguments of
/// `ServiceClient.create_training_client_from_state[_with_optimizer]` (`base_model`,
/// `user_metadata`, `weights_access_token`, `optimizer`) and of
/// `TrainingClient.load_state[_with_optimizer]` (`weights_access_token` only).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadStateOptions {
    /// Restore the checkpoint's optimizer state (and optimizer) too; otherwise only the
    /// weights are loaded and the optimizer starts fresh.
    pub with_optimizer_state: bool,
    /// Override of the checkpoint's base model; must be compatible with it (e.g. a
    /// different context length). New training clients only.
    pub base_model: Option<String>,
    /// Metadata of the new training run. New training clients only.
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// Access token for a checkpoint of another account.
    pub weights_access_token: Option<Sensitive>,
    /// Optimizer of the new training run (default AdamW). Weights-only loads into new
    /// training clients only: restored optimizer state brings its own optimizer.
    pub optimizer: Option<OptimizerConfig>,
}

impl LoadStateOptions {
    /// Weights only (a fresh optimizer).
    pub fn weights_only() -> Self {
        Self::default()
    }

    /// Weights and optimizer state.
    pub fn with_optimizer_state() -> Self {
        Self {
            with_optimizer_state: true,
            ..Self::default()
        }
    }

    /// Overrides the base model.
    pub fn base_model(mut self, base_model: impl Into<String>) -> Self {
        self.base_model = Some(base_model.into());
        self
    }

    /// Sets the metadata of the new training run.
    pub fn user_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.user_metadata = Some(metadata);
        self
    }

    /// Sets the access token for a checkpoint of another account.
    pub fn weights_access_token(mut self, token: impl Into<Sensitive>) -> Self {
        self.weights_access_token = Some(token.into());
        self
    }

    /// Sets the optimizer of a weights-only load.
    pub fn optimizer(mut self, optimizer: OptimizerConfig) -> Self {
        self.optimizer = Some(optimizer);
        self
    }

    /// The SDK's rules: a new optimizer only for a weights-only load (the server refuses
    /// to override restored state), and an empty override is no override.
    pub(crate) fn check_for_new_client(&self) -> Result<()> {
        if self.with_optimizer_state && self.optimizer.is_some() {
            return Err(Error::invalid(
                "an optimizer can only be given for a weights-only load; the optimizer state \
                 restored from the checkpoint brings its own",
            ));
        }
        if self.base_model.as_deref() == Some("") {
            return Err(Error::invalid("base_model is empty"));
        }
        Ok(())
    }

    /// `TrainingClient.load_state*` takes only the access token: the model exists already.
    fn check_for_existing_model(&self) -> Result<()> {
        if self.base_model.is_some() || self.user_metadata.is_some() || self.optimizer.is_some() {
            return Err(Error::invalid(
                "loading into an existing training client takes no base_model, user_metadata \
                 or optimizer (use ServiceClient::create_training_client_from_state_with)",
            ));
        }
        Ok(())
    }
}

/// What a custom loss function returns (see [`TrainingClient::forward_backward_custom`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CustomLossOutput {
    /// The loss value (reported as `loss:sum`).
    pub loss: f64,
    /// `dLoss/dlogprobs` for every datum, same length as that datum's logprobs.
    pub gradients: Vec<Vec<f32>>,
    /// Extra metrics (`<name>:<reduction>` keys).
    pub metrics: BTreeMap<String, f64>,
}

impl CustomLossOutput {
    /// A loss with its per-datum gradients.
    pub fn new(loss: f64, gradients: Vec<Vec<f32>>) -> Self {
        Self {
            loss,
            gradients,
            metrics: BTreeMap::new(),
        }
    }

    /// Adds a metric.
    pub fn with_metric(mut self, key: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(key.into(), value);
        self
    }
}

/// A fine-tuned model you can train and sample from. Cheap to clone.
///
/// Every training call takes the model's next `seq_id` when it is made (after its input
/// was validated and encoded), and the server runs them strictly in that order. A request
/// that fails for good while holding a `seq_id` (e.g. a 5xx on every attempt) may never
/// have reached the server, which would then wait for it forever: the client's order is
/// then broken, and every later training call, including those already made but not yet
/// sent, fails at once with [`ErrorKind::SequenceBroken`], naming the lost request.
/// Requests sent before keep their results. Continue with a new training client from the
/// last checkpoint.
#[derive(Clone)]
pub struct TrainingClient {
    inner: Arc<Inner>,
}

struct Inner {
    holder: Arc<Holder>,
    model_id: String,
    info: GetInfoResponse,
    turns: TurnOrder,
    observer: Option<QueueStateObserver>,
}

impl std::fmt::Debug for TrainingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainingClient")
            .field("model_id", &self.inner.model_id)
            .finish_non_exhaustive()
    }
}

impl TrainingClient {
    pub(crate) async fn attach(
        holder: Arc<Holder>,
        model_id: String,
        observer: Option<QueueStateObserver>,
    ) -> Result<Self> {
        let info = fetch_info(
            &holder,
            &model_id,
            "ServiceClient.create_lora_training_client",
        )
        .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                holder,
                turns: TurnOrder::new(&model_id),
                model_id,
                info,
                observer,
            }),
        })
    }

    pub(crate) fn holder(&self) -> &Arc<Holder> {
        &self.inner.holder
    }

    /// The model id (`<session>:train:<n>`), also the training-run id.
    pub fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    /// The telemetry reporter of this client's session (`None` when telemetry is off).
    pub fn get_telemetry(&self) -> Option<&crate::Telemetry> {
        self.inner.holder.telemetry()
    }

    /// A sampling client for saved `tinker://` sampler weights, on this client's session
    /// (SDK `TrainingClient.create_sampling_client`; the same as
    /// [`ServiceClient::create_sampling_client`](crate::ServiceClient::create_sampling_client)
    /// with [`SamplingSource::ModelPath`](crate::SamplingSource::ModelPath)).
    ///
    /// # Errors
    /// A path that is not `tinker://`; API errors.
    pub async fn create_sampling_client(&self, model_path: &str) -> Result<SamplingClient> {
        SamplingClient::create(
            self.inner.holder.clone(),
            crate::SamplingSource::ModelPath(model_path.to_owned()),
            self.inner.observer.clone(),
        )
        .await
    }

    /// The console page of this training run (SDK `TrainingClient.get_console_url`).
    pub fn get_console_url(&self) -> String {
        crate::console::training_run_console_url(&self.inner.model_id)
    }

    /// The model information fetched when the client was created.
    pub fn info(&self) -> &GetInfoResponse {
        &self.inner.info
    }

    /// Fetches the model information again (`get_info`).
    pub fn get_info(&self) -> ApiFuture<GetInfoResponse> {
        let inner = self.inner.clone();
        ApiFuture::spawn(async move {
            fetch_info(&inner.holder, &inner.model_id, "TrainingClient.get_info").await
        })
    }

    /// The tokenizer of the base model (from `get_info`'s `tokenizer_id`).
    ///
    /// # Errors
    /// [`ErrorKind::Tokenizer`] if it cannot be found or loaded.
    pub async fn get_tokenizer(&self) -> Result<tinker_tokenizer::Tokenizer> {
        let info = &self.inner.info;
        let name = info
            .model_data
            .model_name
            .clone()
            .or_else(|| info.model_name.clone())
            .unwrap_or_default();
        crate::tokenizer::load(&name, info.tokenizer_id()).await
    }

    /// A forward pass only: per-datum outputs (e.g. `logprobs`) without gradients.
    pub fn forward(&self, data: Vec<Datum>, loss_fn: LossFn) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(data, loss_fn, None, true, "TrainingClient.forward")
    }

    /// [`forward`](Self::forward) with a loss configuration.
    pub fn forward_with_config(
        &self,
        data: Vec<Datum>,
        loss_fn: LossFn,
        loss_fn_config: LossFnConfig,
    ) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(
            data,
            loss_fn,
            Some(loss_fn_config),
            true,
            "TrainingClient.forward",
        )
    }

    /// Forward and backward pass: accumulates gradients for the next
    /// [`optim_step`](Self::optim_step). Large batches are split into several requests
    /// (by the server's chunk limits) and the results combined.
    pub fn forward_backward(
        &self,
        data: Vec<Datum>,
        loss_fn: LossFn,
    ) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(
            data,
            loss_fn,
            None,
            false,
            "TrainingClient.forward_backward",
        )
    }

    /// [`forward_backward`](Self::forward_backward) with a loss configuration (e.g. PPO
    /// clip thresholds).
    pub fn forward_backward_with_config(
        &self,
        data: Vec<Datum>,
        loss_fn: LossFn,
        loss_fn_config: LossFnConfig,
    ) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(
            data,
            loss_fn,
            Some(loss_fn_config),
            false,
            "TrainingClient.forward_backward",
        )
    }

    /// Refuses calls on a closed client, and on one whose request order broke (see
    /// [`crate::turn`]).
    fn check_usable(&self) -> Result<()> {
        if self.inner.holder.is_closed() {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the service client was closed",
            ));
        }
        self.inner.turns.check()
    }

    fn fwd(
        &self,
        data: Vec<Datum>,
        loss_fn: LossFn,
        config: Option<LossFnConfig>,
        forward_only: bool,
        method: &'static str,
    ) -> ApiFuture<ForwardBackwardOutput> {
        let reserved = self.prepare_fwd(data, &loss_fn).and_then(|prepared| {
            // Encoded before the ids are taken: a request the wire cannot carry holds none.
            self.inner
                .turns
                .reserve_with(prepared.len() as u64, |first_seq| {
                    encode_chunks(
                        &self.inner.model_id,
                        first_seq,
                        prepared,
                        &loss_fn,
                        config.as_ref(),
                        forward_only,
                    )
                })
        });
        let (turn, bodies) = match reserved {
            Ok(r) => r,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        let request_type = fwd_request_type(forward_only);
        ApiFuture::spawn_traced(&self.inner.holder, request_type, async move {
            run_fwd(&inner, turn, bodies, request_type, method).await
        })
    }

    /// Validates and splits `data` into chunks (nothing is sent, nothing reserved).
    fn prepare_fwd(&self, data: Vec<Datum>, loss_fn: &LossFn) -> Result<Vec<(Vec<Datum>, u64)>> {
        self.check_usable()?;
        if data.is_empty() {
            return Err(Error::invalid(
                "forward/forward_backward needs at least one datum",
            ));
        }
        for (i, d) in data.iter().enumerate() {
            d.check_for(loss_fn)
                .map_err(|e| Error::invalid(format!("datum {i}: {e}")))?;
        }
        let costs: Vec<u64> = data.iter().map(estimate_datum_bytes).collect();
        let cfg = &self.inner.holder.config;
        let limits = ChunkLimits {
            max_len: usize::try_from(cfg.fwdbwd_max_chunk_len).unwrap_or(usize::MAX),
            max_bytes: cfg.fwdbwd_max_chunk_bytes_count,
        };
        let plan = plan_chunks(&costs, limits);
        let mut data = data.into_iter();
        Ok(plan
            .into_iter()
            .map(|c| (data.by_ref().take(c.range.len()).collect(), c.bytes))
            .collect())
    }

    /// One optimizer step with the accumulated gradients.
    pub fn optim_step(&self, params: impl Into<OptimParams>) -> ApiFuture<OptimStepResponse> {
        let params = params.into();
        let check = match &params {
            OptimParams::Dimuon(d) => d.validate().map_err(Error::from),
            _ => Ok(()),
        };
        let op = Op::new(
            "/api/v1/optim_step",
            RequestType::OptimStep,
            "TrainingClient.optim_step",
        );
        self.simple_op(check, op, move |model_id, seq_id| {
            OptimStepRequest::new(model_id, seq_id, params)
        })
    }

    /// Saves weights and optimizer state as `tinker://<run>/weights/<name>`.
    pub fn save_state(&self, name: &str) -> ApiFuture<SaveWeightsResponse> {
        self.save_state_with(name, SaveOptions::default())
    }

    /// [`save_state`](Self::save_state) with a TTL, overwrite flag or metadata.
    pub fn save_state_with(
        &self,
        name: &str,
        options: SaveOptions,
    ) -> ApiFuture<SaveWeightsResponse> {
        let name = name.to_owned();
        let op = Op::new(
            "/api/v1/save_weights",
            RequestType::SaveWeights,
            "TrainingClient.save_state",
        )
        .without_http_retries();
        self.simple_op(check_name(&name), op, move |model_id, seq_id| {
            SaveWeightsRequest {
                model_id,
                path: Some(name),
                seq_id: Some(seq_id),
                ttl_seconds: options.ttl_seconds,
                overwrite: options.overwrite,
                user_metadata: options.user_metadata,
            }
        })
    }

    /// Loads weights (not optimizer state) from a `tinker://` checkpoint into this model.
    /// Deprecated in the SDK in favour of
    /// [`ServiceClient::create_training_client_from_state`](crate::ServiceClient::create_training_client_from_state).
    pub fn load_state(&self, path: &str) -> ApiFuture<LoadWeightsResponse> {
        self.load_state_with(path, LoadStateOptions::weights_only())
    }

    /// Loads weights and optimizer state from a `tinker://` checkpoint into this model.
    pub fn load_state_with_optimizer(&self, path: &str) -> ApiFuture<LoadWeightsResponse> {
        self.load_state_with(path, LoadStateOptions::with_optimizer_state())
    }

    /// [`load_state`](Self::load_state) or, with `options.with_optimizer_state`,
    /// [`load_state_with_optimizer`](Self::load_state_with_optimizer), with an access token
    /// for a checkpoint of another account (the only extra argument SDK 0.38 takes here;
    /// any other option is refused before sending).
    pub fn load_state_with(
        &self,
        path: &str,
        options: LoadStateOptions,
    ) -> ApiFuture<LoadWeightsResponse> {
        let path = path.to_owned();
        let method = if options.with_optimizer_state {
            "TrainingClient.load_state_with_optimizer"
        } else {
            "TrainingClient.load_state"
        };
        let op = Op::new("/api/v1/load_weights", RequestType::LoadWeights, method);
        let check = check_tinker_path(&path).and(options.check_for_existing_model());
        self.simple_op(check, op, move |model_id, seq_id| LoadWeightsRequest {
            model_id: Some(model_id),
            seq_id: Some(seq_id),
            session_id: None,
            model_seq_id: None,
            base_model: None,
            user_metadata: None,
            path,
            optimizer: options.with_optimizer_state,
            optimizer_config: None,
            weights_access_token: options.weights_access_token,
        })
    }

    /// Saves sampler weights as `tinker://<run>/sampler_weights/<name>`. Unlike SDK 0.38,
    /// the request's place in the order is fixed when this is called.
    pub fn save_weights_for_sampler(&self, name: &str) -> ApiFuture<SaveWeightsForSamplerResponse> {
        self.save_weights_for_sampler_with(name, SaveOptions::default())
    }

    /// [`save_weights_for_sampler`](Self::save_weights_for_sampler) with a TTL or metadata.
    pub fn save_weights_for_sampler_with(
        &self,
        name: &str,
        options: SaveOptions,
    ) -> ApiFuture<SaveWeightsForSamplerResponse> {
        let name = name.to_owned();
        let op = Op::new(
            "/api/v1/save_weights_for_sampler",
            RequestType::SaveWeightsForSampler,
            "TrainingClient.save_weights_for_sampler",
        )
        .without_http_retries();
        self.simple_op(check_name(&name), op, move |model_id, seq_id| {
            SaveWeightsForSamplerRequest {
                model_id,
                path: Some(name),
                sampling_session_seq_id: None,
                kind: SamplerWeightsKind::Snapshot,
                seq_id: Some(seq_id),
                ttl_seconds: options.ttl_seconds,
                user_metadata: options.user_metadata,
            }
        })
    }

    /// Snapshots the current weights into a new sampling session and returns a
    /// [`SamplingClient`] for it (no named checkpoint is kept).
    pub fn save_weights_and_get_sampling_client(&self) -> ApiFuture<SamplingClient> {
        let turn = match self
            .check_usable()
            .and_then(|()| self.inner.turns.reserve(1))
        {
            Ok(turn) => turn,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        let holder = &self.inner.holder;
        ApiFuture::spawn_traced(holder, RequestType::SaveWeightsForSampler, async move {
            const METHOD: &str = "TrainingClient.save_weights_and_get_sampling_client";
            turn.wait().await?;
            let seq_id = turn.first() + 1;
            let model_id = inner.model_id.clone();
            let holder = inner.holder.clone();
            // The sampling-session counter is read per attempt, as the SDK does.
            let make = || {
                let req = SaveWeightsForSamplerRequest {
                    model_id: model_id.clone(),
                    path: None,
                    sampling_session_seq_id: Some(holder.next_sampling_seq()),
                    kind: SamplerWeightsKind::Snapshot,
                    seq_id: Some(seq_id),
                    ttl_seconds: None,
                    user_metadata: None,
                };
                let body = tinker_types::json::to_vec(&req)?;
                Ok(RequestSpec::post("/api/v1/save_weights_for_sampler")
                    .with_body(body, tinker_transport::APPLICATION_JSON)
                    .with_max_retries(0)
                    .with_sdk_method(METHOD))
            };
            let (fut, roundtrip) = match submit(&holder, "save_weights_for_sampler", make).await {
                Ok(submitted) => {
                    turn.sent();
                    submitted
                }
                Err(e) => {
                    turn.lost(0, METHOD, &e);
                    return Err(e);
                }
            };
            let resp: SaveWeightsForSamplerResponse = inner
                .poll(
                    fut.request_id,
                    RequestType::SaveWeightsForSampler,
                    roundtrip,
                )
                .await?;
            let session = resp.sampling_session_id.ok_or_else(|| {
                Error::protocol("save_weights_for_sampler returned no sampling_session_id")
            })?;
            let base_model = inner
                .info
                .model_data
                .model_name
                .clone()
                .or_else(|| inner.info.model_name.clone());
            SamplingClient::for_session(holder, session, base_model, None, inner.observer.clone())
                .await
        })
    }

    /// Exports the weights in Hugging Face/PEFT format as
    /// `tinker://<run>/external_weights/<name>`, downloadable through the REST client.
    pub fn save_weights_external(&self, name: &str) -> ApiFuture<SaveWeightsExternalResponse> {
        self.save_weights_external_with(name, None, Vec::new())
    }

    /// [`save_weights_external`](Self::save_weights_external) with a TTL and `age`
    /// encryption recipients (at most 10).
    pub fn save_weights_external_with(
        &self,
        name: &str,
        ttl_seconds: Option<u64>,
        age_recipients: Vec<String>,
    ) -> ApiFuture<SaveWeightsExternalResponse> {
        let check = check_name(name).and_then(|()| {
            if age_recipients.len() > 10 {
                Err(Error::invalid("at most 10 age encryption recipients"))
            } else {
                Ok(())
            }
        });
        let name = name.to_owned();
        let op = Op::new(
            "/api/v1/save_weights_external",
            RequestType::SaveWeightsExternal,
            "TrainingClient.save_weights_external",
        )
        .without_http_retries();
        self.simple_op(check, op, move |model_id, seq_id| {
            SaveWeightsExternalRequest {
                model_id,
                path: name,
                seq_id: Some(seq_id),
                ttl_seconds,
                age_encryption_recipients: (!age_recipients.is_empty()).then_some(age_recipients),
            }
        })
    }

    /// The common shape of single-request training operations: validate, reserve the
    /// next id synchronously, then (in a task) wait for the turn, post the JSON body built
    /// by `build(model_id, seq_id)`, pass the turn on and poll the result.
    fn simple_op<T, R>(
        &self,
        check: Result<()>,
        op: Op,
        build: impl FnOnce(String, u64) -> R + Send + 'static,
    ) -> ApiFuture<T>
    where
        T: FromPayload + Send + 'static,
        R: serde::Serialize,
    {
        let reserved = self.check_usable().and(check).and_then(|()| {
            // Built before the id is taken: a body that cannot be encoded holds none.
            self.inner.turns.reserve_with(1, |seq_id| {
                tinker_types::json::to_vec(&build(self.inner.model_id.clone(), seq_id))
                    .map_err(|e| Error::invalid(format!("{}: {e}", op.method)).with_source(e))
            })
        });
        let (turn, body) = match reserved {
            Ok(r) => r,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        ApiFuture::spawn_traced(&self.inner.holder, op.request_type, async move {
            inner.run_json(turn, op, body).await
        })
    }

    /// Trains on a loss computed by your code (protocol §6.8, client-side form).
    ///
    /// A forward pass gives `loss_fn` every datum's `logprobs` (one value per
    /// `target_tokens` row); it returns the loss, `dLoss/dlogprobs` per datum and metrics.
    /// A `cross_entropy` forward/backward with `weights = −gradient` then applies exactly
    /// that gradient. The result's metrics hold the server's `loss:sum` as
    /// `surrogate_loss:sum`, your metrics, and `loss:sum` = your loss.
    ///
    /// If a step fails before the backward request was sent (the forward pass, or
    /// `loss_fn`), that request's reserved `seq_id` is lost: later training calls fail at
    /// once with [`ErrorKind::SequenceBroken`] instead of waiting forever (see
    /// [`TrainingClient`]).
    pub fn forward_backward_custom<F>(
        &self,
        data: Vec<Datum>,
        loss_fn: F,
    ) -> ApiFuture<ForwardBackwardOutput>
    where
        F: FnOnce(&[Datum], &[Vec<f32>]) -> Result<CustomLossOutput> + Send + 'static,
    {
        // Forward data: target_tokens plus weights (given, else zeros).
        let forward_data: Result<Vec<Datum>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let targets = d.loss_fn_inputs.get("target_tokens").ok_or_else(|| {
                    Error::invalid(format!(
                        "datum {i}: forward_backward_custom needs target_tokens"
                    ))
                })?;
                let weights = match d.loss_fn_inputs.get("weights") {
                    Some(w) => w.clone(),
                    None => TensorData::from_f32(vec![0.0; targets.dense_len()], targets.dims())?,
                };
                let mut inputs = tinker_types::LossFnInputs::new();
                inputs.insert("target_tokens".to_owned(), targets.clone());
                inputs.insert("weights".to_owned(), weights);
                let mut fd = d.clone();
                fd.loss_fn_inputs = inputs;
                Ok(fd)
            })
            .collect();
        let reserved = forward_data
            .and_then(|fd| self.prepare_fwd(fd, &LossFn::CrossEntropy))
            .and_then(|prepared| {
                let sizes: Vec<(usize, u64)> =
                    prepared.iter().map(|(d, b)| (d.len(), *b)).collect();
                let n = prepared.len() as u64;
                let (fwd_turn, bodies) = self.inner.turns.reserve_with(n, |first_seq| {
                    encode_chunks(
                        &self.inner.model_id,
                        first_seq,
                        prepared,
                        &LossFn::CrossEntropy,
                        None,
                        true,
                    )
                })?;
                let bwd_turn = self.inner.turns.reserve(n)?;
                Ok((fwd_turn, bwd_turn, bodies, sizes))
            });
        let (fwd_turn, bwd_turn, bodies, sizes) = match reserved {
            Ok(r) => r,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        let request_type = RequestType::ForwardBackward;
        ApiFuture::spawn_traced(&self.inner.holder, request_type, async move {
            let custom = CustomRun {
                fwd_turn,
                fwd_bodies: bodies,
                sizes,
                original: data,
            };
            run_custom(&inner, custom, bwd_turn, loss_fn).await
        })
    }
}

/// The forward half of a custom-loss call, reserved and encoded when the call was made.
struct CustomRun {
    fwd_turn: Turn,
    fwd_bodies: Vec<(bytes::Bytes, u64)>,
    /// Datums and estimated bytes of each chunk (the backward pass reuses the split).
    sizes: Vec<(usize, u64)>,
    original: Vec<Datum>,
}

const CUSTOM_METHOD: &str = "TrainingClient.forward_backward_custom";

async fn run_custom<F>(
    inner: &Arc<Inner>,
    run: CustomRun,
    bwd_turn: Turn,
    loss_fn: F,
) -> Result<ForwardBackwardOutput>
where
    F: FnOnce(&[Datum], &[Vec<f32>]) -> Result<CustomLossOutput> + Send + 'static,
{
    // Until the backward request is sent, any failure loses its reserved ids.
    let backward = custom_backward_data(inner, run, loss_fn)
        .await
        .and_then(|(chunks, user)| {
            let bodies = encode_chunks(
                &inner.model_id,
                bwd_turn.first() + 1,
                chunks,
                &LossFn::CrossEntropy,
                None,
                false,
            )?;
            Ok((bodies, user))
        });
    let (bodies, user) = match backward {
        Ok(b) => b,
        Err(e) => {
            bwd_turn.lost(0, CUSTOM_METHOD, &e);
            return Err(e);
        }
    };
    let mut out = run_fwd(
        inner,
        bwd_turn,
        bodies,
        RequestType::ForwardBackward,
        CUSTOM_METHOD,
    )
    .await?;
    if let Some(server_loss) = out.metrics.remove("loss:sum") {
        out.metrics
            .insert("surrogate_loss:sum".to_owned(), server_loss);
    }
    out.metrics.extend(user.metrics);
    out.metrics.insert("loss:sum".to_owned(), user.loss);
    Ok(out)
}

/// The forward pass and the user's loss: the backward chunks (weights = −gradient) and
/// the user's output.
async fn custom_backward_data<F>(
    inner: &Arc<Inner>,
    run: CustomRun,
    loss_fn: F,
) -> Result<(Vec<(Vec<Datum>, u64)>, CustomLossOutput)>
where
    F: FnOnce(&[Datum], &[Vec<f32>]) -> Result<CustomLossOutput> + Send + 'static,
{
    let CustomRun {
        fwd_turn,
        fwd_bodies,
        sizes,
        original,
    } = run;
    let fwd = run_fwd(
        inner,
        fwd_turn,
        fwd_bodies,
        RequestType::Forward,
        CUSTOM_METHOD,
    )
    .await?;
    let logprobs: Vec<Vec<f32>> = fwd
        .loss_fn_outputs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            out.get("logprobs")
                .and_then(|t| t.to_dense_f32(0.0))
                .ok_or_else(|| {
                    Error::protocol(format!("forward output {i} has no float32 logprobs"))
                })
        })
        .collect::<Result<_>>()?;
    if logprobs.len() != original.len() {
        return Err(Error::protocol(
            "forward returned a different number of outputs than datums",
        ));
    }
    let data_for_user = original.clone();
    let lp = logprobs.clone();
    let user = tokio::task::spawn_blocking(move || loss_fn(&data_for_user, &lp))
        .await
        .map_err(|e| Error::new(ErrorKind::Cancelled, format!("custom loss panicked: {e}")))??;
    if user.gradients.len() != original.len() {
        return Err(Error::invalid(format!(
            "custom loss returned {} gradients for {} datums",
            user.gradients.len(),
            original.len()
        )));
    }
    for key in user.metrics.keys() {
        crate::metrics::split_metric_key(key)?;
    }
    let mut backward: Vec<Datum> = Vec::with_capacity(original.len());
    for (i, (d, g)) in original.into_iter().zip(&user.gradients).enumerate() {
        if g.len() != logprobs[i].len() {
            return Err(Error::invalid(format!(
                "datum {i}: gradient has {} values, logprobs {}",
                g.len(),
                logprobs[i].len()
            )));
        }
        let targets = d
            .loss_fn_inputs
            .get("target_tokens")
            .cloned()
            .ok_or_else(|| Error::invalid("missing target_tokens"))?;
        let weights = TensorData::from_f32(g.iter().map(|x| -x).collect(), targets.dims())?;
        let mut inputs = tinker_types::LossFnInputs::new();
        inputs.insert("target_tokens".to_owned(), targets);
        inputs.insert("weights".to_owned(), weights);
        let mut bd = d;
        bd.loss_fn_inputs = inputs;
        backward.push(bd);
    }
    // Reuse the forward chunk boundaries.
    let mut it = backward.into_iter();
    let chunks: Vec<(Vec<Datum>, u64)> = sizes
        .iter()
        .map(|(n, b)| (it.by_ref().take(*n).collect(), *b))
        .collect();
    Ok((chunks, user))
}

impl Inner {
    /// Posts a JSON training request in its turn, passes the turn on, polls the result.
    async fn run_json<T: FromPayload>(&self, turn: Turn, op: Op, body: Vec<u8>) -> Result<T> {
        turn.wait().await?;
        let body = bytes::Bytes::from(body);
        let submitted = submit(&self.holder, op.path, || {
            let mut spec = RequestSpec::post(op.path)
                .with_body(body.clone(), tinker_transport::APPLICATION_JSON)
                .with_sdk_method(op.method);
            if !op.http_retries {
                spec = spec.with_max_retries(0);
            }
            Ok(spec)
        })
        .await;
        let (fut, roundtrip) = match submitted {
            Ok(s) => {
                turn.sent();
                s
            }
            Err(e) => {
                turn.lost(0, op.method, &e);
                return Err(e);
            }
        };
        self.poll(fut.request_id, op.request_type, roundtrip).await
    }

    async fn poll<T: FromPayload>(
        &self,
        request_id: String,
        request_type: RequestType,
        roundtrip: std::time::Duration,
    ) -> Result<T> {
        retrieve_decoded(
            &self.holder,
            PollTarget {
                request_id,
                request_type,
                roundtrip,
                reserved: None,
            },
            self.observer.as_ref(),
        )
        .await
    }
}

fn fwd_request_type(forward_only: bool) -> RequestType {
    if forward_only {
        RequestType::Forward
    } else {
        RequestType::ForwardBackward
    }
}

/// Encodes one protobuf body per chunk, with consecutive `seq_id`s from `first_seq`.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when a chunk cannot be encoded (e.g. a token id beyond the
/// wire's int32).
fn encode_chunks(
    model_id: &str,
    first_seq: u64,
    chunks: Vec<(Vec<Datum>, u64)>,
    loss_fn: &LossFn,
    config: Option<&LossFnConfig>,
    forward_only: bool,
) -> Result<Vec<(bytes::Bytes, u64)>> {
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, (data, bytes))| {
            let mut req = ForwardBackwardRequest::new(
                model_id.to_owned(),
                first_seq + i as u64,
                data,
                loss_fn.clone(),
            );
            req.loss_fn_config = config.cloned();
            req.forward_only = forward_only;
            Ok((
                bytes::Bytes::from(crate::proto::encode_forward_backward(&req)?),
                bytes,
            ))
        })
        .collect()
}

/// Sends encoded chunks in their turn and polls their results. A chunk the server did not
/// accept loses its `seq_id` (see [`crate::turn`]).
async fn run_fwd(
    inner: &Arc<Inner>,
    turn: Turn,
    bodies: Vec<(bytes::Bytes, u64)>,
    request_type: RequestType,
    method: &'static str,
) -> Result<ForwardBackwardOutput> {
    turn.wait().await?;
    let compress = inner.holder.config.proto_compress_fwdbwd;
    let submit_one = |body: bytes::Bytes, bytes: u64| {
        let holder = inner.holder.clone();
        async move {
            let _permit = holder.fwdbwd_budget.acquire(bytes).await;
            submit(&holder, "forward_backward", || {
                let mut spec = RequestSpec::post("/api/v1/forward_backward")
                    .with_protobuf(body.clone())
                    .with_sdk_method(method);
                if compress {
                    spec = spec.with_compression(Compression::Zstd);
                }
                Ok(spec)
            })
            .await
        }
    };
    // On failure: the offset of the first chunk the server may lack, and the error.
    let submitted: std::result::Result<Vec<_>, (u64, Error)> =
        if inner.holder.config.parallel_fwdbwd_chunks && bodies.len() > 1 {
            // All chunks but the first concurrently, then the first (the SDK's order).
            let rest: Result<Vec<_>> =
                try_join_all(bodies[1..].iter().map(|(b, n)| submit_one(b.clone(), *n))).await;
            // The first chunk is not sent when another failed: the order breaks at it.
            match rest {
                Ok(rest) => match submit_one(bodies[0].0.clone(), bodies[0].1).await {
                    Ok(first) => {
                        let mut all = vec![first];
                        all.extend(rest);
                        Ok(all)
                    }
                    Err(e) => Err((0, e)),
                },
                Err(e) => Err((0, e)),
            }
        } else {
            let mut all = Vec::new();
            let mut err = None;
            for (i, (b, n)) in bodies.iter().enumerate() {
                match submit_one(b.clone(), *n).await {
                    Ok(f) => all.push(f),
                    Err(e) => {
                        err = Some((i as u64, e));
                        break;
                    }
                }
            }
            err.map_or(Ok(all), Err)
        };
    let submitted = match submitted {
        Ok(s) => {
            turn.sent();
            s
        }
        Err((offset, e)) => {
            turn.lost(offset, method, &e);
            return Err(e);
        }
    };
    let results: Vec<ForwardBackwardOutput> =
        try_join_all(submitted.into_iter().map(|(fut, rt)| {
            inner.poll::<ForwardBackwardOutput>(fut.request_id, request_type, rt)
        }))
        .await?;
    combine_outputs(results)
}

/// Concatenates chunk outputs and combines their metrics (§6.4).
pub(crate) fn combine_outputs(
    results: Vec<ForwardBackwardOutput>,
) -> Result<ForwardBackwardOutput> {
    let metrics = {
        let parts: Vec<ChunkMetrics<'_>> = results
            .iter()
            .map(|r| ChunkMetrics {
                metrics: &r.metrics,
                weight: r.loss_fn_outputs.len(),
            })
            .collect();
        combine_metrics(&parts)?
    };
    let loss_fn_output_type = results
        .first()
        .map(|r| r.loss_fn_output_type.clone())
        .unwrap_or_default();
    let loss_fn_outputs = results
        .into_iter()
        .flat_map(|r| r.loss_fn_outputs)
        .collect();
    Ok(ForwardBackwardOutput {
        loss_fn_output_type,
        loss_fn_outputs,
        metrics,
    })
}

impl FromPayload for ForwardBackwardOutput {
    fn from_payload(payload: Payload) -> Result<Self> {
        match payload {
            Payload::Proto(b) => crate::proto::decode_forward_backward_output(&b),
            Payload::Json(v) => Err(crate::payload::json_instead_of_proto(
                "ForwardBackwardOutput",
                &v,
            )),
        }
    }
}

/// Estimated protobuf bytes of one datum (§6.4).
pub(crate) fn estimate_datum_bytes(d: &Datum) -> u64 {
    let input: u64 = d
        .model_input
        .chunks
        .iter()
        .map(|c| match c {
            ModelInputChunk::EncodedText(t) => t.tokens.len() as u64 * BYTES_PER_TOKEN,
            ModelInputChunk::Image(i) => i.data.len() as u64,
            ModelInputChunk::ImageAssetPointer(p) => p.location.len() as u64,
            ModelInputChunk::Dmel(m) => m.dmel.len() as u64,
            _ => 0,
        })
        .sum();
    let tensors: u64 = d
        .loss_fn_inputs
        .values()
        .map(|t| {
            let values = t.values().len() as u64 * t.dtype().item_size() as u64;
            let csr = t.csr_indices().map_or(0, |c| {
                (c.crow_indices.len() + c.col_indices.len()) as u64 * SPARSE_INDEX_BYTES
            });
            values + csr
        })
        .sum();
    input + tensors
}

async fn fetch_info(holder: &Holder, model_id: &str, method: &str) -> Result<GetInfoResponse> {
    let req = GetInfoRequest {
        model_id: model_id.to_owned(),
    };
    holder.post_json("/api/v1/get_info", &req, method).await
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::invalid(format!(
            "checkpoint name {name:?} must be non-empty and contain no '/'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_options_keep_the_token_out_of_debug() {
        let options = LoadStateOptions::weights_only().weights_access_token("secret-token-123");
        assert!(!format!("{options:?}").contains("secret-token-123"));
    }

    #[test]
    fn load_options_follow_the_sdk_rules() {
        assert!(
            LoadStateOptions::weights_only()
                .check_for_new_client()
                .is_ok()
        );
        let restored = LoadStateOptions::with_optimizer_state();
        assert!(restored.clone().check_for_new_client().is_ok());
        let err = restored
            .optimizer(OptimizerConfig::AdamW)
            .check_for_new_client()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            LoadStateOptions::weights_only()
                .base_model("")
                .check_for_new_client()
                .is_err()
        );
        assert!(
            LoadStateOptions::with_optimizer_state()
                .weights_access_token("t")
                .check_for_existing_model()
                .is_ok()
        );
        for bad in [
            LoadStateOptions::weights_only().base_model("m"),
            LoadStateOptions::weights_only().user_metadata(BTreeMap::new()),
            LoadStateOptions::weights_only().optimizer(OptimizerConfig::AdamW),
        ] {
            assert!(bad.check_for_existing_model().is_err());
        }
    }
}
