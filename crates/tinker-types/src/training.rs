//! Training endpoints: create a model, forward/backward, optimizer step, model info.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::datum::Datum;
use crate::error::{Error, Result};
use crate::loss::{LossFn, LossFnConfig};
use crate::macros::type_last_struct;
use crate::optim::{LoraConfig, OptimParams, OptimizerConfig};
use crate::tensor::TensorData;

type_last_struct! {
    /// `POST /api/v1/create_model` (future → [`CreateModelResponse`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct CreateModelRequest = "create_model" {
        /// The session the model belongs to.
        pub session_id: String,
        /// Per-session training-client counter (0, 1, ...).
        pub model_seq_id: u64,
        /// Base model name, e.g. `Qwen/Qwen3-8B`.
        pub base_model: String,
        /// Free-form metadata stored with the training run.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub user_metadata: Option<Map<String, Value>>,
        /// LoRA settings (the SDK always sends one).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub lora_config: Option<LoraConfig>,
        /// Optimizer family, fixed for the model's lifetime (default AdamW; always sent).
        #[serde(default)]
        pub optimizer_config: OptimizerConfig,
    }
}

impl CreateModelRequest {
    /// A LoRA model with default settings (rank 32, AdamW).
    pub fn new(
        session_id: impl Into<String>,
        model_seq_id: u64,
        base_model: impl Into<String>,
    ) -> Self {
        Self {
            session_id: session_id.into(),
            model_seq_id,
            base_model: base_model.into(),
            user_metadata: None,
            lora_config: Some(LoraConfig::default()),
            optimizer_config: OptimizerConfig::AdamW,
        }
    }
}

/// Final result of `create_model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateModelResponse {
    /// The new model's id (`<session_id>:train:<model_seq_id>`).
    pub model_id: String,
}

type_last_struct! {
    /// `POST /api/v1/get_info`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct GetInfoRequest = "get_info" {
        /// The model to describe.
        pub model_id: String,
    }
}

/// Model facts inside [`GetInfoResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelData {
    /// Architecture name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Tokenizer id (the SDK cuts it at the first `:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_id: Option<String>,
}

/// Response of `get_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetInfoResponse {
    /// Model facts.
    pub model_data: ModelData,
    /// The model id.
    pub model_id: String,
    /// Optimizer family (default AdamW).
    #[serde(default)]
    pub optimizer_config: OptimizerConfig,
    /// Whether the model is a LoRA adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_lora: Option<bool>,
    /// LoRA rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_rank: Option<u32>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
}

impl GetInfoResponse {
    /// The tokenizer id cut at its first `:` (as the SDK does), if any.
    pub fn tokenizer_id(&self) -> Option<&str> {
        self.model_data
            .tokenizer_id
            .as_deref()
            .map(|id| id.split(':').next().unwrap_or(id))
    }
}

type_last_struct! {
    /// `POST /api/v1/unload_model` (legacy, not called by SDK 0.38).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct UnloadModelRequest = "unload_model" {
        /// The model to unload.
        pub model_id: String,
    }
}

/// Final result of the legacy `unload_model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloadModelResponse {
    /// The unloaded model.
    pub model_id: String,
}

/// `POST /api/v1/forward_backward` (future → [`ForwardBackwardOutput`]).
///
/// On the 0.38 wire this travels as protobuf (see [`crate::proto`]); the JSON form here
/// (`model_id, seq_id, data, loss_fn, loss_fn_config, forward_only`) exists for logs, tests
/// and local tooling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardBackwardRequest {
    /// The model to run.
    pub model_id: String,
    /// Per-model request sequence number (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_id: Option<u64>,
    /// The batch.
    pub data: Vec<Datum>,
    /// Loss function.
    pub loss_fn: LossFn,
    /// Loss configuration (numbers and texts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_fn_config: Option<LossFnConfig>,
    /// True for a forward pass only (`TrainingClient.forward`).
    #[serde(default)]
    pub forward_only: bool,
}

impl ForwardBackwardRequest {
    /// A forward+backward request without loss configuration.
    pub fn new(
        model_id: impl Into<String>,
        seq_id: u64,
        data: Vec<Datum>,
        loss_fn: LossFn,
    ) -> Self {
        Self {
            model_id: model_id.into(),
            seq_id: Some(seq_id),
            data,
            loss_fn,
            loss_fn_config: None,
            forward_only: false,
        }
    }

    /// Checks what the SDK checks before sending: a non-empty batch whose every datum carries
    /// the loss inputs (see [`Datum::check_for`]).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for an empty batch, loss-input errors otherwise.
    pub fn validate(&self) -> Result<()> {
        if self.data.is_empty() {
            return Err(Error::InvalidValue {
                field: "data".to_owned(),
                reason: "a forward/backward batch needs at least one datum".to_owned(),
            });
        }
        self.data
            .iter()
            .try_for_each(|d| d.check_for(&self.loss_fn))
    }
}

/// Per-datum outputs: field name → tensor (typically `logprobs`).
pub type LossFnOutput = BTreeMap<String, TensorData>;

/// Final result of `forward_backward` (protobuf on the 0.38 wire; this is its JSON form).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ForwardBackwardOutput {
    /// Class name of the output records (e.g. `ArrayRecord`).
    pub loss_fn_output_type: String,
    /// One map per datum.
    pub loss_fn_outputs: Vec<LossFnOutput>,
    /// Metrics keyed `<name>:<reduction>` (e.g. `loss:sum`).
    #[serde(default, serialize_with = "crate::json::finite")]
    pub metrics: BTreeMap<String, f64>,
}

/// `POST /api/v1/optim_step` (future → [`OptimStepResponse`]).
///
/// JSON: `model_id, seq_id, "type":"optim_step"`, then the parameters under `adam_params`
/// (Adam) or `optimizer_params` (other families), in that order as the SDK emits it.
/// Decoding also accepts `optim_params`.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimStepRequest {
    /// The model to step.
    pub model_id: String,
    /// Per-model request sequence number.
    pub seq_id: Option<u64>,
    /// Step parameters; the family must match the model's optimizer config.
    pub params: OptimParams,
}

impl OptimStepRequest {
    /// The request's `"type"` discriminator.
    pub const TYPE: &'static str = "optim_step";

    /// An optimizer step.
    pub fn new(model_id: impl Into<String>, seq_id: u64, params: impl Into<OptimParams>) -> Self {
        Self {
            model_id: model_id.into(),
            seq_id: Some(seq_id),
            params: params.into(),
        }
    }
}

impl Serialize for OptimStepRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model_id", &self.model_id)?;
        if let Some(seq_id) = self.seq_id {
            map.serialize_entry("seq_id", &seq_id)?;
        }
        map.serialize_entry("type", Self::TYPE)?;
        let key = match self.params {
            OptimParams::Adam(_) => "adam_params",
            _ => "optimizer_params",
        };
        map.serialize_entry(key, &self.params)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for OptimStepRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            model_id: String,
            #[serde(default)]
            seq_id: Option<u64>,
            #[serde(alias = "adam_params", alias = "optimizer_params")]
            optim_params: OptimParams,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(Self {
            model_id: wire.model_id,
            seq_id: wire.seq_id,
            params: wire.optim_params,
        })
    }
}

/// Final result of `optim_step`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OptimStepResponse {
    /// Step metrics, if the server reports any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub metrics: Option<BTreeMap<String, f64>>,
}
