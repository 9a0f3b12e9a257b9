//! The asynchronous future protocol: untyped futures, `retrieve_future` outcomes
//! (`try_again`, metadata-only, error, success) and the session-wide `retrieve_futures` poll.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::macros::open_enum;

/// What a "future" endpoint answers at once: the id to poll for the real result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UntypedFuture {
    /// Opaque id to pass to `retrieve_future`.
    pub request_id: String,
    /// Model id, for model-creating calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Sampling only: one id per requested sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_sequence_ids: Option<Vec<String>>,
}

/// `POST /api/v1/retrieve_future`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FutureRetrieveRequest {
    /// The future to poll.
    pub request_id: String,
    /// Accept a `complete_metadata` answer for large results (always sent).
    #[serde(default)]
    pub allow_metadata_only: bool,
}

/// `POST /api/v1/cancel_future` (response ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelFutureRequest {
    /// The sampling future to cancel.
    pub request_id: String,
}

open_enum! {
    /// Queue state reported while a request waits.
    pub enum QueueState {
        /// Being worked on.
        Active = "active",
        /// Paused: no capacity.
        PausedCapacity = "paused_capacity",
        /// Paused: rate limited.
        PausedRateLimit = "paused_rate_limit",
    }
}

/// `{"type":"try_again", ...}`: the result is not ready; poll again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "try_again")]
pub struct TryAgainResponse {
    /// The polled future.
    pub request_id: String,
    /// Queue state (absent or unknown strings are kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_state: Option<QueueState>,
    /// Human-readable reason for the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_state_reason: Option<String>,
}

/// `{"status":"complete_metadata","response_payload_size":n}`: the result is ready but
/// large; reserve `response_payload_size` bytes and poll with `allow_metadata_only: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename = "complete_metadata")]
pub struct CompleteMetadataResponse {
    /// Size of the pending payload in bytes (0 if the server did not say).
    #[serde(default)]
    pub response_payload_size: u64,
}

open_enum! {
    /// Who is to blame for a failed request.
    #[derive(Default)]
    pub enum RequestErrorCategory {
        /// The server did not classify the failure (wire value `"unknown"`).
        #[default]
        Unspecified = "unknown",
        /// A server-side failure.
        Server = "server",
        /// The request itself was bad (a user error).
        User = "user",
    }
}

/// `{"error": ..., "category": ...}`: the request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFailedResponse {
    /// Error message from the server.
    pub error: String,
    /// Failure category (missing → unspecified).
    #[serde(default)]
    pub category: RequestErrorCategory,
}

/// A `retrieve_future` JSON answer, classified in the SDK's order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FutureOutcome<T> {
    /// Not ready yet: poll again at once.
    TryAgain(TryAgainResponse),
    /// Ready but large: reserve and poll for the payload.
    CompleteMetadata(CompleteMetadataResponse),
    /// The request failed.
    Failed(RequestFailedResponse),
    /// The result.
    Complete(T),
}

impl<T: DeserializeOwned> FutureOutcome<T> {
    /// Classifies a JSON answer: `"type":"try_again"`, then `"status":"complete_metadata"`,
    /// then a top-level `"error"` key, else the success payload decoded as `T`.
    ///
    /// # Errors
    /// [`Error::Decode`] naming the JSON path when the chosen shape does not decode.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let value: Value = crate::json::from_slice(bytes)?;
        Self::from_value(value)
    }

    /// As [`Self::from_json`], from a parsed value.
    ///
    /// # Errors
    /// As [`Self::from_json`].
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(map) = &value else {
            return Err(Error::Decode {
                path: ".".to_owned(),
                message: "a future result must be a JSON object".to_owned(),
            });
        };
        if map.get("type").and_then(Value::as_str) == Some("try_again") {
            return crate::json::from_value(value).map(Self::TryAgain);
        }
        if map.get("status").and_then(Value::as_str) == Some("complete_metadata") {
            return crate::json::from_value(value).map(Self::CompleteMetadata);
        }
        if map.contains_key("error") {
            let error = match map.get("error") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            // The SDK maps an unparseable category to "unknown" instead of failing.
            let category = map
                .get("category")
                .and_then(Value::as_str)
                .map(RequestErrorCategory::from_wire)
                .unwrap_or_default();
            return Ok(Self::Failed(RequestFailedResponse { error, category }));
        }
        crate::json::from_value(value).map(Self::Complete)
    }
}

/// The body of an HTTP 408 from `retrieve_future` (a try-again in HTTP form).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PendingStatusBody {
    /// Queue state, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_state: Option<QueueState>,
    /// Reason for the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_state_reason: Option<String>,
}

/// Which futures a `retrieve_futures` poll watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "sampling_session")]
pub struct SamplingSessionFuturesTarget {
    /// The sampling session.
    pub sampling_session_id: String,
    /// The caller's clone id (0 for the original client).
    #[serde(default)]
    pub cloned_sampler_id: u64,
}

/// `POST /api/v1/retrieve_futures`: a session-wide long poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuturesRetrieveRequest {
    /// What to watch.
    pub target: SamplingSessionFuturesTarget,
    /// Cursor of the previous successful answer (0 initially).
    #[serde(default)]
    pub prev_cursor: u64,
    /// Seconds to wait; omitted = server default long poll, `0.0` = answer at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub timeout: Option<f64>,
    /// Requests whose results were fully fetched since the last poll (sorted).
    #[serde(default)]
    pub retrieved_request_ids: Vec<String>,
}

open_enum! {
    /// State of a completed future in a `retrieve_futures` answer.
    pub enum CompletionState {
        /// The result is ready.
        Finished = "finished",
        /// The request failed.
        Failed = "failed",
    }
}

/// One completion event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FutureCompletion {
    /// Finished or failed.
    pub state: CompletionState,
    /// The completed future.
    pub request_id: String,
    /// Finished only: uncompressed size of the result payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_payload_uncompressed_size: Option<u64>,
}

/// Answer of `retrieve_futures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuturesRetrieveResponse {
    /// Completions after `prev_cursor`.
    pub completions: Vec<FutureCompletion>,
    /// The new cursor.
    pub cursor: u64,
}
