//! Session-less REST payloads: training runs, checkpoints, sessions, trace export.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::macros::open_enum;
use crate::time::Timestamp;

open_enum! {
    /// Kind of a stored checkpoint.
    pub enum CheckpointType {
        /// Full training state (`weights/...`).
        Training = "training",
        /// Sampler weights (`sampler_weights/...`).
        Sampler = "sampler",
        /// Exported weights (`external_weights/...`).
        External = "external",
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `<kind>/<name>`, e.g. `weights/step-100`.
    pub checkpoint_id: String,
    /// Kind.
    pub checkpoint_type: CheckpointType,
    /// Creation time.
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub time: Timestamp,
    /// Its `tinker://` path.
    pub tinker_path: String,
    /// Size in bytes, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Whether it is published.
    #[serde(default)]
    pub public: bool,
    /// Metadata stored with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// Expiry time, if it has a TTL.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::option::serialize",
        deserialize_with = "crate::time::option::deserialize"
    )]
    pub expires_at: Option<Timestamp>,
}

/// A training run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingRun {
    /// `<session_id>:train:<n>`.
    pub training_run_id: String,
    /// Base model.
    pub base_model: String,
    /// Owner.
    pub model_owner: String,
    /// Whether it trains a LoRA adapter.
    pub is_lora: bool,
    /// Whether its state is corrupted.
    #[serde(default)]
    pub corrupted: bool,
    /// LoRA rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_rank: Option<u32>,
    /// Time of its last request.
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub last_request_time: Timestamp,
    /// Latest training checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<Checkpoint>,
    /// Latest sampler checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sampler_checkpoint: Option<Checkpoint>,
    /// Metadata stored with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
}

/// Pagination state of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Offset of this page.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
    /// Total number of items.
    pub total_count: u64,
}

/// Response of `GET /api/v1/training_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingRunsResponse {
    /// This page.
    pub training_runs: Vec<TrainingRun>,
    /// Pagination.
    pub cursor: Cursor,
}

/// Response of the checkpoint listings (`/training_runs/{run}/checkpoints`, `/checkpoints`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointsListResponse {
    /// The checkpoints.
    pub checkpoints: Vec<Checkpoint>,
    /// Pagination (absent for a run's unpaginated list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
}

open_enum! {
    /// Which resources a listing covers.
    #[derive(Default)]
    pub enum AccessScope {
        /// The caller's own (default).
        #[default]
        Owned = "owned",
        /// Everything the caller can access.
        Accessible = "accessible",
    }
}

/// Query of `GET /api/v1/training_runs` (and, without `project_id`, of `GET /sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Page size.
    pub limit: u64,
    /// Offset.
    pub offset: u64,
    /// Scope (default owned).
    #[serde(default)]
    pub access_scope: AccessScope,
    /// Project filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// Query of `GET /api/v1/checkpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointsQuery {
    /// Page size.
    pub limit: u64,
    /// Offset.
    pub offset: u64,
}

/// Response of `GET /api/v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSessionsResponse {
    /// Session ids.
    pub sessions: Vec<String>,
}

/// Response of `GET /api/v1/sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSessionResponse {
    /// Its training runs.
    pub training_run_ids: Vec<String>,
    /// Its samplers.
    pub sampler_ids: Vec<String>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `PUT /api/v1/sessions/{id}/project`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSessionProjectRequest {
    /// The new project.
    pub project_id: String,
}

open_enum! {
    /// State of a trace export.
    pub enum TraceExportStatus {
        /// Still being prepared.
        Pending = "pending",
        /// `url` is ready.
        Ready = "ready",
        /// `error` says why it failed.
        Failed = "failed",
    }
}

/// Response of `GET /api/v1/sessions/{id}/trace_export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceExportResponse {
    /// Status.
    pub status: TraceExportStatus,
    /// Signed download URL of the `.pftrace` when ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
