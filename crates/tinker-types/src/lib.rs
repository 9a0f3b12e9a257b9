//! Wire types of the Tinker training API (JSON via serde, protobuf via prost); no I/O.
//!
//! Every request and response body of the protocol spoken by the official Python SDK
//! `tinker` 0.38.0, with its serialization rules: `None` fields omitted, `type`
//! discriminators always present and in the SDK's key order, compact JSON, NaN/infinity
//! refused. Responses ignore unknown fields and keep unknown enum values. Use [`json`] to
//! encode and decode; errors are [`Error`].
//!
//! Modules, one concept each: [`tensor`] (`TensorData`, dense and CSR), [`model_input`]
//! (chunks), [`datum`] and [`loss`] (loss names, configs, typed input builders),
//! [`training`], [`optim`], [`weights`], [`custom_loss`], [`sampling`], [`futures`] (the
//! future protocol), [`session`], [`config`] (client flags), [`auth`], [`rest`], [`search`],
//! [`admin`], [`telemetry`], [`path`] (`tinker://` paths), [`time`], [`proto`] (protobuf).
//! The most used types are re-exported at the crate root.
//!
//! ```
//! use tinker_types::{json, AdamParams, OptimStepRequest};
//!
//! let request = OptimStepRequest::new("sess:train:0", 2, AdamParams::default());
//! let body = json::to_string(&request)?;
//! assert!(body.starts_with(r#"{"model_id":"sess:train:0","seq_id":2,"type":"optim_step","adam_params":"#));
//! # Ok::<(), tinker_types::Error>(())
//! ```
//!
//! Section numbers such as §6.4 refer to `docs/protocol.md`, the wire protocol as tinker-rs
//! implements it.

mod bytes_b64;
mod macros;

/// The `chrono` version whose types ([`Timestamp`], dates) appear in this API.
pub use chrono;

pub mod admin;
pub mod auth;
pub mod config;
pub mod console;
pub mod custom_loss;
pub mod datum;
pub mod error;
pub mod futures;
pub mod json;
pub mod loss;
pub mod model_input;
pub mod optim;
pub mod path;
pub mod proto;
pub mod rest;
pub mod sampling;
pub mod search;
pub mod sensitive;
pub mod session;
pub mod telemetry;
pub mod tensor;
pub mod time;
pub mod training;
pub mod weights;

pub use admin::{
    AuditEventType, AuditLogEntry, AuditLogQuery, AuditLogResponse, BillingEventInfo,
    BillingUsageEvent, BillingUsageQuery, BillingUsageResponse, BillingUsageSession,
    CheckpointBillingEvent, CurrentCheckpointStorageUsageItem, CurrentCheckpointStorageUsageQuery,
    CurrentCheckpointStorageUsageResponse, SamplingPrefillBillingEvent, SamplingSampleBillingEvent,
    StorageBillingEvent, TrainingBillingEvent,
};
pub use auth::{
    ApiKeyDetails, AuthTokenRequest, AuthTokenResponse, ErrorDetail, GetServerCapabilitiesResponse,
    HealthResponse, OrgDetails, SelfApiKeyResponse, SupportedModel, UserDetails, WhoamiResponse,
};
pub use custom_loss::{
    CreateCustomLossRequest, CreateCustomLossResponse, CustomLossGraph, CustomLossInput,
    CustomLossNode, CustomLossOp,
};
pub use path::{CheckpointKind, TINKER_SCHEME, TinkerPath};
pub use proto::ForwardBackwardRequestRef;
pub use rest::{
    AccessScope, Checkpoint, CheckpointType, CheckpointsListResponse, CheckpointsQuery, Cursor,
    GetSessionResponse, ListQuery, ListSessionsResponse, SetSessionProjectRequest,
    TraceExportResponse, TraceExportStatus, TrainingRun, TrainingRunsResponse,
};
pub use search::{
    FailedRequestReason, FailedSamplingSessionReason, FailedTrainingRunReason, SearchOwner,
    SessionActive, SessionCancelled, SessionClientFinished, SessionFailed, SessionFailedReason,
    SessionFailureCategory, SessionSearchCursor, SessionSearchRequest, SessionSearchResponse,
    SessionStatus, SessionStatusQuery, SessionSummary,
};
pub use telemetry::{
    GenericEvent, SessionEndEvent, SessionStartEvent, Severity, TelemetryEvent, TelemetryResponse,
    TelemetrySendRequest, UnhandledExceptionEvent,
};
pub use time::Timestamp;
pub use weights::{
    CopyWeightsRequest, CopyWeightsResponse, ExternalWeightsUrlsResponse, LoadWeightsRequest,
    LoadWeightsResponse, SamplerWeightsKind, SaveWeightsExternalRequest,
    SaveWeightsExternalResponse, SaveWeightsForSamplerRequest, SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal, SaveWeightsRequest, SaveWeightsResponse,
    SetCheckpointTtlRequest, WeightsInfoRequest, WeightsInfoResponse,
};

pub use config::{ClientConfig, ClientConfigRequest, CredentialSource, DynamicConfig};
pub use datum::{Datum, LossFnInputs, ProvenanceSpan, SpanRef};
pub use error::{Error, Result, TinkerPathProblem};
pub use futures::{
    CancelFutureRequest, CompleteMetadataResponse, CompletionState, FutureCompletion,
    FutureOutcome, FutureRetrieveRequest, FuturesRetrieveRequest, FuturesRetrieveResponse,
    PendingStatusBody, QueueState, RequestErrorCategory, RequestFailedResponse,
    SamplingSessionFuturesTarget, TryAgainResponse, UntypedFuture,
};
pub use loss::{CrossEntropyInputs, LossConfigValue, LossFn, LossFnConfig, PolicyGradientInputs};
pub use model_input::{
    DmelChunk, EncodedTextChunk, ImageAssetPointerChunk, ImageChunk, ImageFormat, ModelInput,
    ModelInputChunk,
};
pub use optim::{
    AdamParams, DimuonParams, GenericOptimizerObject, LoraConfig, OptimParams, OptimizerConfig,
};
pub use sampling::{
    CreateSamplingSessionRequest, CreateSamplingSessionResponse, GetSamplerResponse,
    JoinSamplingSessionRequest, JoinSamplingSessionResponse, PromptAltTokens, SampleRequest,
    SampleResponse, SampledSequence, SamplingParams, StopCondition, StopReason, TopkLogprobs,
};
pub use sensitive::Sensitive;
pub use session::{
    CreateSessionRequest, CreateSessionResponse, FinishReasonObject, FinishSessionRequest,
    SessionFinishReason, SessionHeartbeatRequest, SessionHeartbeatResponse,
};
pub use tensor::{CsrIndices, TensorData, TensorDtype, TensorValues};
pub use training::{
    CreateModelRequest, CreateModelResponse, ForwardBackwardOutput, ForwardBackwardRequest,
    GetInfoRequest, GetInfoResponse, LossFnOutput, ModelData, OptimStepRequest, OptimStepResponse,
    UnloadModelRequest, UnloadModelResponse,
};
