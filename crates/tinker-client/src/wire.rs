//! Request and result bodies the client needs that `tinker-types` does not (yet) define:
//! the checkpoint family (`save_weights*`, `load_weights`). Adapter types, kept private to
//! this crate except for the results, which are public.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tinker_types::OptimizerConfig;

fn is_none<T>(v: &Option<T>) -> bool {
    v.is_none()
}

/// `POST /api/v1/save_weights`.
#[derive(Debug, Serialize)]
pub(crate) struct SaveWeightsRequest {
    pub model_id: String,
    #[serde(skip_serializing_if = "is_none")]
    pub path: Option<String>,
    pub seq_id: u64,
    #[serde(skip_serializing_if = "is_none")]
    pub ttl_seconds: Option<u64>,
    pub overwrite: bool,
    #[serde(skip_serializing_if = "is_none")]
    pub user_metadata: Option<Map<String, Value>>,
    #[serde(rename = "type")]
    pub kind_tag: &'static str,
}

/// `POST /api/v1/save_weights_for_sampler` (named or ephemeral form).
#[derive(Debug, Serialize)]
pub(crate) struct SaveWeightsForSamplerRequest {
    pub model_id: String,
    #[serde(skip_serializing_if = "is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub sampling_session_seq_id: Option<u64>,
    pub kind: &'static str,
    pub seq_id: u64,
    #[serde(skip_serializing_if = "is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "is_none")]
    pub user_metadata: Option<Map<String, Value>>,
    #[serde(rename = "type")]
    pub kind_tag: &'static str,
}

/// `POST /api/v1/save_weights_external`.
#[derive(Debug, Serialize)]
pub(crate) struct SaveWeightsExternalRequest {
    pub model_id: String,
    pub path: String,
    pub seq_id: u64,
    #[serde(skip_serializing_if = "is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "is_none")]
    pub age_encryption_recipients: Option<Vec<String>>,
    #[serde(rename = "type")]
    pub kind_tag: &'static str,
}

/// `POST /api/v1/load_weights` (legacy or create-via-load addressing).
#[derive(Debug, Serialize)]
pub(crate) struct LoadWeightsRequest {
    #[serde(skip_serializing_if = "is_none")]
    pub model_id: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub seq_id: Option<u64>,
    #[serde(skip_serializing_if = "is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub model_seq_id: Option<u64>,
    #[serde(skip_serializing_if = "is_none")]
    pub base_model: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub user_metadata: Option<Map<String, Value>>,
    pub path: String,
    pub optimizer: bool,
    #[serde(skip_serializing_if = "is_none")]
    pub optimizer_config: Option<OptimizerConfig>,
    #[serde(rename = "type")]
    pub kind_tag: &'static str,
}

/// Result of `save_state` (`save_weights`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SaveWeightsResponse {
    /// `tinker://<run>/weights/<name>`.
    pub path: String,
}

/// Result of `save_weights_for_sampler`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SaveWeightsForSamplerResponse {
    /// `tinker://<run>/sampler_weights/<name>` (named form).
    #[serde(default)]
    pub path: Option<String>,
    /// The new sampling session (ephemeral form).
    #[serde(default)]
    pub sampling_session_id: Option<String>,
}

/// Result of `save_weights_external`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SaveWeightsExternalResponse {
    /// `tinker://<run>/external_weights/<name>`.
    pub path: String,
    /// Total size of the export, if reported.
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// Result of `load_state` / create-via-load.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadWeightsResponse {
    /// The loaded path.
    #[serde(default)]
    pub path: Option<String>,
    /// The model the weights were loaded into.
    #[serde(default)]
    pub model_id: Option<String>,
}

crate::future::json_payload!(
    SaveWeightsResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsExternalResponse,
    LoadWeightsResponse,
);
