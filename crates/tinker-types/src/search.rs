//! Session search (`POST /api/v1/sessions/search`, experimental) and session statuses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::macros::{open_enum, open_union};
use crate::session::{FinishReasonObject, SessionFinishReason};
use crate::time::Timestamp;

/// Whose sessions to search.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SearchOwner {
    /// The caller's own (default).
    #[default]
    Own,
    /// Everything the caller can access.
    Accessible,
    /// Sessions of the given users.
    User {
        /// 1 to 10 user URNs.
        owner_urns: Vec<String>,
    },
}

/// A status filter of a session search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionStatusQuery {
    /// Running sessions.
    Active,
    /// Cancelled sessions.
    Cancelled,
    /// Failed sessions.
    Failed,
    /// Sessions the client finished, optionally only for some reasons.
    ClientFinished {
        /// Reasons to match (all if absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasons: Option<Vec<SessionFinishReason>>,
    },
}

/// Keyset cursor of a session search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSearchCursor {
    /// Creation time of the last session seen.
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub last_created_at: Timestamp,
    /// Id of the last session seen.
    pub last_session_id: String,
}

/// `POST /api/v1/sessions/search`. `user_metadata`, `owner` and `limit` are always sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSearchRequest {
    /// Match this session id (OR with `display_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Restrict to these projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_ids: Option<Vec<String>>,
    /// Exact metadata matches.
    #[serde(default)]
    pub user_metadata: BTreeMap<String, String>,
    /// Every word must occur in the display name (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Whose sessions (default own).
    #[serde(default)]
    pub owner: SearchOwner,
    /// Status filters (at least one when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<SessionStatusQuery>>,
    /// Page size, 1..=200 (default 50).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Continue after this cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<SessionSearchCursor>,
}

fn default_limit() -> u32 {
    50
}

impl Default for SessionSearchRequest {
    fn default() -> Self {
        Self {
            session_id: None,
            project_ids: None,
            user_metadata: BTreeMap::new(),
            display_name: None,
            owner: SearchOwner::Own,
            statuses: None,
            limit: default_limit(),
            cursor: None,
        }
    }
}

/// `{"type":"active"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename = "active")]
pub struct SessionActive {}

/// `{"type":"cancelled","detail"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename = "cancelled")]
pub struct SessionCancelled {
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `{"type":"client_finished","reason":{"type":...},"detail"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "client_finished")]
pub struct SessionClientFinished {
    /// How the client ended it.
    pub reason: FinishReasonObject,
    /// Detail given by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

open_enum! {
    /// Who caused a session failure.
    pub enum SessionFailureCategory {
        /// The user.
        User = "user",
        /// The service.
        Internal = "internal",
    }
}

/// A request caused the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "request")]
pub struct FailedRequestReason {
    /// The request.
    pub request_id: String,
    /// Its type (e.g. `ForwardBackward`).
    pub request_type: String,
}

/// A training run caused the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "training_run")]
pub struct FailedTrainingRunReason {
    /// The run.
    pub training_run_id: String,
}

/// A sampling session caused the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "sampling_session")]
pub struct FailedSamplingSessionReason {
    /// The sampling session.
    pub sampling_session_id: String,
}

open_union! {
    /// What made a session fail.
    pub enum SessionFailedReason tag "type" {
        /// A request.
        Request(FailedRequestReason) = "request",
        /// A training run.
        TrainingRun(FailedTrainingRunReason) = "training_run",
        /// A sampling session.
        SamplingSession(FailedSamplingSessionReason) = "sampling_session",
    }
}

/// `{"type":"failed","category","reason","message"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "failed")]
pub struct SessionFailed {
    /// Who caused it.
    pub category: SessionFailureCategory,
    /// What caused it.
    pub reason: SessionFailedReason,
    /// Message.
    pub message: String,
}

open_union! {
    /// Status of a session.
    pub enum SessionStatus tag "type" {
        /// Running.
        Active(SessionActive) = "active",
        /// Cancelled.
        Cancelled(SessionCancelled) = "cancelled",
        /// Finished by the client.
        ClientFinished(SessionClientFinished) = "client_finished",
        /// Failed.
        Failed(SessionFailed) = "failed",
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session id.
    pub session_id: String,
    /// Creation time.
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub created_at: Timestamp,
    /// Owner URN.
    pub owner: String,
    /// Project.
    pub project_id: String,
    /// Status, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
    /// Number of checkpoints.
    pub checkpoints_count: u64,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// Checkpoint storage in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_storage_bytes: Option<u64>,
}

/// Response of a session search (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSearchResponse {
    /// Hits.
    pub sessions: Vec<SessionSummary>,
    /// Cursor of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<SessionSearchCursor>,
}
