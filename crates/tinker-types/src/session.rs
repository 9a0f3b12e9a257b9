//! Sessions: create, heartbeat, finish.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::macros::{open_enum, type_last_struct};

type_last_struct! {
    /// `POST /api/v1/create_session`. `tags` and `user_metadata` are always sent.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CreateSessionRequest = "create_session" {
        /// Session tags (`TINKER_TAGS`).
        #[serde(default)]
        pub tags: Vec<String>,
        /// Free-form metadata (`{}` when none; `null`, as tinkex sends it, reads as `{}`).
        #[serde(default, deserialize_with = "crate::json::null_as_default")]
        pub user_metadata: Map<String, Value>,
        /// SDK version string.
        #[serde(default)]
        pub sdk_version: String,
        /// Project to create the session in.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub project_id: Option<String>,
        /// Display name.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub display_name: Option<String>,
    }
}

impl CreateSessionRequest {
    /// A session without tags, metadata, project or name.
    pub fn new(sdk_version: impl Into<String>) -> Self {
        Self {
            tags: Vec::new(),
            user_metadata: Map::new(),
            sdk_version: sdk_version.into(),
            project_id: None,
            display_name: None,
        }
    }
}

/// Response of `create_session`; the three messages are meant for the user's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSessionResponse {
    /// The new session id.
    pub session_id: String,
    /// Informational message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_message: Option<String>,
    /// Warning message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning_message: Option<String>,
    /// Error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

type_last_struct! {
    /// `POST /api/v1/session_heartbeat` (every 10 s; HTTP 410 = session finished).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SessionHeartbeatRequest = "session_heartbeat" {
        /// The session kept alive.
        pub session_id: String,
    }
}

/// Response of `session_heartbeat` (`{"type":"session_heartbeat"}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename = "session_heartbeat")]
pub struct SessionHeartbeatResponse {}

open_enum! {
    /// How a client ended its session.
    pub enum SessionFinishReason {
        /// Normal end.
        Success = "success",
        /// Ended by an error.
        Errored = "errored",
        /// Interrupted (e.g. Ctrl-C).
        Interrupted = "interrupted",
    }
}

/// `{"type": reason}` wrapper used by finish requests and session statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishReasonObject {
    /// The reason.
    #[serde(rename = "type")]
    pub kind: SessionFinishReason,
}

/// `POST /api/v1/sessions/{session_id}/finish`; `detail` is sent even when null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishSessionRequest {
    /// Why the session ends.
    pub reason: FinishReasonObject,
    /// Optional detail (sent as `null` when absent).
    #[serde(default)]
    pub detail: Option<String>,
}

impl FinishSessionRequest {
    /// A finish request.
    pub fn new(reason: SessionFinishReason, detail: Option<String>) -> Self {
        Self {
            reason: FinishReasonObject { kind: reason },
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tinkex sends `"user_metadata": null`; it reads as no metadata, not as an error.
    #[test]
    fn null_user_metadata_reads_as_empty() {
        let req: CreateSessionRequest = crate::json::from_str(
            r#"{"tags":[],"user_metadata":null,"sdk_version":"0.15.0","type":"create_session"}"#,
        )
        .expect("null metadata is accepted");
        assert!(req.user_metadata.is_empty());
        let req: CreateSessionRequest =
            crate::json::from_str(r#"{"tags":[],"sdk_version":"x","type":"create_session"}"#)
                .expect("missing metadata is accepted");
        assert!(req.user_metadata.is_empty());
        assert!(
            crate::json::from_str::<CreateSessionRequest>(
                r#"{"tags":[],"user_metadata":[1],"sdk_version":"x","type":"create_session"}"#
            )
            .is_err()
        );
    }
}
