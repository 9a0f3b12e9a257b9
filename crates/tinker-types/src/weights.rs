//! Checkpoint endpoints: save, save for sampler, export, load, copy, weights info, TTL,
//! external download URLs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::macros::type_last_struct;
use crate::optim::OptimizerConfig;
use crate::sensitive::Sensitive;
use crate::time::Timestamp;

type_last_struct! {
    /// `POST /api/v1/save_weights` (future → [`SaveWeightsResponse`]): full training state.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SaveWeightsRequest = "save_weights" {
        /// The model to save.
        pub model_id: String,
        /// Checkpoint name.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub path: Option<String>,
        /// Per-model request sequence number.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub seq_id: Option<u64>,
        /// Time to live, 3600 s .. 10 years.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub ttl_seconds: Option<u64>,
        /// Replace an existing checkpoint of that name (always sent).
        #[serde(default)]
        pub overwrite: bool,
        /// Metadata stored with the checkpoint.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub user_metadata: Option<BTreeMap<String, String>>,
    }
}

/// Final result of `save_weights`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveWeightsResponse {
    /// `tinker://<run>/weights/<name>`.
    pub path: String,
}

impl SaveWeightsResponse {
    /// The console page of this checkpoint (SDK `SaveWeightsResponse.get_console_url`).
    ///
    /// # Errors
    /// [`crate::Error::InvalidTinkerPath`] if the server sent a malformed path.
    pub fn get_console_url(&self) -> crate::Result<String> {
        crate::console::checkpoint_console_url_for_path(&self.path)
    }
}

/// How sampler weights are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SamplerWeightsKind {
    /// Fixed weights (default).
    #[default]
    Snapshot,
    /// A mutable per-model target later inflight saves update.
    Inflight,
}

type_last_struct! {
    /// `POST /api/v1/save_weights_for_sampler`: named (`path`) or ephemeral
    /// (`sampling_session_seq_id`, answering with a new sampling session).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SaveWeightsForSamplerRequest = "save_weights_for_sampler" {
        /// The model to save.
        pub model_id: String,
        /// Checkpoint name (named form).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub path: Option<String>,
        /// Sampling session counter (ephemeral form).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub sampling_session_seq_id: Option<u64>,
        /// Snapshot or inflight (always sent).
        #[serde(default)]
        pub kind: SamplerWeightsKind,
        /// Per-model request sequence number.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub seq_id: Option<u64>,
        /// Time to live in seconds.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub ttl_seconds: Option<u64>,
        /// Metadata stored with the checkpoint.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub user_metadata: Option<BTreeMap<String, String>>,
    }
}

/// Final result of a named `save_weights_for_sampler` (the SDK's public
/// `SaveWeightsForSamplerResponse`): the checkpoint's path. The SDK requires `path` here;
/// a result without one is a protocol error when it is decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveWeightsForSamplerResponse {
    /// `tinker://<run>/sampler_weights/<name>`.
    pub path: String,
}

/// The wire form of the `save_weights_for_sampler` result (the SDK's
/// `SaveWeightsForSamplerResponseInternal`): a path (named form) or a sampling session
/// (ephemeral form, behind `save_weights_and_get_sampling_client`). Servers answer with it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SaveWeightsForSamplerResponseInternal {
    /// `tinker://<run>/sampler_weights/<name>` (named form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The sampling session created for the weights (ephemeral form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_session_id: Option<String>,
}

impl SaveWeightsForSamplerResponse {
    /// The console page of this sampler checkpoint (SDK
    /// `SaveWeightsForSamplerResponse.get_console_url`).
    ///
    /// # Errors
    /// A `path` that is not a `tinker://` checkpoint path.
    pub fn get_console_url(&self) -> crate::Result<String> {
        crate::console::checkpoint_console_url_for_path(&self.path)
    }

    /// The playground, set up to sample from this checkpoint (SDK `get_playground_url`).
    pub fn get_playground_url(&self) -> String {
        crate::console::checkpoint_playground_url(&self.path)
    }
}

type_last_struct! {
    /// `POST /api/v1/save_weights_external`: export downloadable weights.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SaveWeightsExternalRequest = "save_weights_external" {
        /// The model to export.
        pub model_id: String,
        /// Export name.
        pub path: String,
        /// Per-model request sequence number.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub seq_id: Option<u64>,
        /// Time to live in seconds.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub ttl_seconds: Option<u64>,
        /// Up to 10 age / SSH recipients to encrypt the files for.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub age_encryption_recipients: Option<Vec<String>>,
    }
}

/// Final result of `save_weights_external`. The SDK's wire model leaves `path` optional but
/// the result it hands out requires it (a missing path fails there too), so it is required
/// here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveWeightsExternalResponse {
    /// `tinker://<run>/external_weights/<name>`.
    pub path: String,
    /// Total size of the export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

type_last_struct! {
    /// `POST /api/v1/load_weights`: legacy addressing (`model_id` + `seq_id`) or
    /// create-via-load (`session_id` + `model_seq_id`).
    #[derive(Debug, Clone, PartialEq)]
    pub struct LoadWeightsRequest = "load_weights" {
        /// Existing model (legacy addressing).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub model_id: Option<String>,
        /// Per-model request sequence number (legacy addressing).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub seq_id: Option<u64>,
        /// Session of the new model (create-via-load).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub session_id: Option<String>,
        /// Training counter of the new model (create-via-load).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub model_seq_id: Option<u64>,
        /// Base model.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub base_model: Option<String>,
        /// Free-form metadata.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub user_metadata: Option<Map<String, Value>>,
        /// `tinker://` checkpoint to load.
        pub path: String,
        /// Restore optimizer state too.
        #[serde(default)]
        pub optimizer: bool,
        /// Optimizer of a weights-only load.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub optimizer_config: Option<OptimizerConfig>,
        /// Access token for a checkpoint of another account.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub weights_access_token: Option<Sensitive>,
    }
}

impl LoadWeightsRequest {
    /// Create-via-load: a new model `<session_id>:train:<model_seq_id>` from `path`.
    pub fn create_from(
        session_id: impl Into<String>,
        model_seq_id: u64,
        path: impl Into<String>,
        optimizer: bool,
    ) -> Self {
        Self {
            model_id: None,
            seq_id: None,
            session_id: Some(session_id.into()),
            model_seq_id: Some(model_seq_id),
            base_model: None,
            user_metadata: None,
            path: path.into(),
            optimizer,
            optimizer_config: None,
            weights_access_token: None,
        }
    }
}

/// Final result of `load_weights`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoadWeightsResponse {
    /// The loaded path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The model that holds the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}

/// `POST /api/v1/copy_weights` (direct; the access token travels in a header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyWeightsRequest {
    /// Session (schema only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Model counter (schema only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seq_id: Option<u64>,
    /// Project receiving the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_project_id: Option<String>,
    /// The `tinker://` checkpoint to copy.
    pub source_path: String,
    /// TTL of the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Access token (the SDK sends it as a header instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_access_token: Option<Sensitive>,
}

/// Response of `copy_weights`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyWeightsResponse {
    /// Path of the copy.
    pub tinker_path: String,
}

/// `POST /api/v1/weights_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsInfoRequest {
    /// The checkpoint to describe.
    pub tinker_path: String,
}

/// Response of `weights_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfoResponse {
    /// Base model.
    pub base_model: String,
    /// Optimizer family (default AdamW).
    #[serde(default)]
    pub optimizer_config: OptimizerConfig,
    /// Whether the weights are a LoRA adapter.
    pub is_lora: bool,
    /// LoRA rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_rank: Option<u32>,
    /// Unembedding trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_unembed: Option<bool>,
    /// MLP trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_mlp: Option<bool>,
    /// Attention trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_attn: Option<bool>,
}

/// `PUT .../checkpoints/{type}/{name}/ttl`: `ttl_seconds` is always sent (`null` removes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetCheckpointTtlRequest {
    /// New TTL in seconds, or `None` to keep the checkpoint forever.
    pub ttl_seconds: Option<u64>,
}

/// Response of `GET .../external_weights/{name}/external_weights_urls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalWeightsUrlsResponse {
    /// Relative file path → signed download URL.
    pub urls: BTreeMap<String, String>,
    /// When the URLs expire.
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub expires: Timestamp,
}
