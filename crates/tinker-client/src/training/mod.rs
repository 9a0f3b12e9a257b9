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
//!
//! This module holds the client, its model-level calls and the single-request path;
//! `forward_backward` the chunked passes, `custom` the custom-loss path, `checkpoints`
//! saves and loads, `options` their options.

mod checkpoints;
mod custom;
mod forward_backward;
mod options;

pub use self::custom::CustomLossOutput;
pub use self::options::{LoadStateOptions, SaveOptions};

use std::sync::Arc;

use tinker_transport::RequestSpec;
use tinker_types::{
    GetInfoRequest, GetInfoResponse, OptimParams, OptimStepRequest, OptimStepResponse,
};

use crate::error::{Error, Result};
use crate::future::{ApiFuture, PollTarget, QueueStateObserver, retrieve_decoded, submit};
use crate::payload::{FromPayload, RequestType};
use crate::sampling::SamplingClient;
use crate::session::Session;
use crate::turn::{Turn, TurnOrder};
use tinker_types::{
    LoadWeightsResponse, SaveWeightsExternalResponse, SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
};

crate::payload::json_payload!(
    SaveWeightsResponse,
    SaveWeightsForSamplerResponse,
    tinker_types::SaveWeightsForSamplerResponseInternal,
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

/// A fine-tuned model you can train and sample from. Cheap to clone.
///
/// Every training call takes the model's next `seq_id` when it is made (after its input
/// was validated and encoded), and the server runs them strictly in that order. A request
/// that fails for good while holding a `seq_id` (e.g. a 5xx on every attempt) may never
/// have reached the server, which would then wait for it forever: the client's order is
/// then broken, and every later training call, including those already made but not yet
/// sent, fails at once with [`ErrorKind::SequenceBroken`](crate::ErrorKind::SequenceBroken),
/// naming the lost request. Requests sent before keep their results. Continue with a new
/// training client from the last checkpoint.
#[derive(Clone)]
pub struct TrainingClient {
    inner: Arc<Inner>,
}

struct Inner {
    holder: Arc<Session>,
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
    /// A client of the model `model_id` that `sdk_method` created; its `get_info` goes
    /// under that method's name, as the SDK's does.
    pub(crate) async fn attach(
        holder: Arc<Session>,
        model_id: String,
        observer: Option<QueueStateObserver>,
        sdk_method: &'static str,
    ) -> Result<Self> {
        let info = fetch_info(&holder, &model_id, sdk_method).await?;
        let observer = crate::queue_log::observer_for(
            &holder,
            observer,
            crate::queue_log::Queued::Training,
            &model_id,
        );
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

    pub(crate) fn holder(&self) -> &Arc<Session> {
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

    /// The model information fetched when the client was created (`get_info`): like the
    /// SDK's, it answers from that cached copy and sends nothing.
    pub fn get_info(&self) -> ApiFuture<GetInfoResponse> {
        ApiFuture::ready(self.inner.info.clone())
    }

    /// The tokenizer of the base model (from `get_info`'s `tokenizer_id`).
    ///
    /// # Errors
    /// [`ErrorKind::Tokenizer`](crate::ErrorKind::Tokenizer) if it cannot be found or loaded.
    pub async fn get_tokenizer(&self) -> Result<tinker_tokenizer::Tokenizer> {
        let info = &self.inner.info;
        let name = info
            .model_data
            .model_name
            .clone()
            .or_else(|| info.model_name.clone())
            .unwrap_or_default();
        let api_base = self.inner.holder.transport.base_url();
        crate::tokenizer::load(api_base, &name, info.tokenizer_id()).await
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
}

impl Inner {
    /// Posts a JSON training request in its turn, passes the turn on, polls the result.
    async fn run_json<T: FromPayload>(&self, turn: Turn, op: Op, body: Vec<u8>) -> Result<T> {
        crate::observe::spans::record_model_id(&self.model_id);
        crate::observe::spans::record_seq_id(turn.first() + 1);
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
        self.poll(fut.request_id, op.request_type, op.method, roundtrip)
            .await
    }

    async fn poll<T: FromPayload>(
        &self,
        request_id: String,
        request_type: RequestType,
        sdk_method: &'static str,
        roundtrip: std::time::Duration,
    ) -> Result<T> {
        retrieve_decoded(
            &self.holder,
            PollTarget {
                request_id,
                request_type,
                sdk_method,
                roundtrip,
                reserved: None,
            },
            self.observer.as_ref(),
        )
        .await
    }
}

async fn fetch_info(holder: &Session, model_id: &str, method: &str) -> Result<GetInfoResponse> {
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
