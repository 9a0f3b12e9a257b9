//! Tinker clients: [`ServiceClient`], [`TrainingClient`], [`SamplingClient`],
//! [`RestClient`] and [`AdminClient`], in async Rust, with the behaviours of the official
//! Python SDK 0.38 (request ordering, chunking, the futures protocol, retries, budgets).
//!
//! Most users depend on the `tinker` facade crate, which re-exports this one.
//!
//! # Module layering
//!
//! A module may use only modules on its own line or below (never one above):
//! 1. leaves, using only `error`: `chunk`, `console`, `metrics`, `payload` (result
//!    decoding), `proto`, `tinker_path`, `tokenizer`, `turn`; then `observe` (client
//!    metrics and spans; it names the session only to add `ServiceClient::metrics`);
//! 2. `telemetry` (reports; it reaches the session only through its `TelemetryScope`
//!    trait), then `session` (the SDK's "client holder": transport, config, budgets,
//!    background loops, the operation retry loop), then `future` (`retrieve_future`
//!    polling and the [`ApiFuture`] handle);
//! 3. the clients, `admin`, `rest`, `sampling`, `training`, then `custom_loss` and `service`;
//! 4. `recovery`, which uses only the public API of the clients.
//!
//! Higher modules keep per-session state in `session::Extensions` (sampling's
//! retry handlers, created custom losses) so that the session never names them.
//!
//! Section numbers such as §6.4 refer to `docs/protocol.md`, the wire protocol as tinker-rs
//! implements it.

pub mod admin;
mod chunk;
pub mod console;
pub mod custom_loss;
pub mod data;
pub mod error;
pub mod future;
mod metrics;
pub mod observe;
mod payload;
mod proto;
mod queue_log;
pub mod recovery;
pub mod regularizers;
pub mod rest;
pub mod sampling;
pub mod service;
mod session;
mod telemetry;
mod tinker_path;
mod tokenizer;
pub mod training;
mod turn;

pub use admin::AdminClient;
pub use error::{Error, ErrorKind, FailureCategory, Result};
pub use future::{ApiFuture, QueueStateObserver};
pub use observe::{MetricsSnapshot, Operation};
pub use rest::{DownloadProgress, ListOptions, Paged, RestClient, WhoamiResponse};
pub use sampling::{
    FuturesPollerStats, SampleDispatch, SampleOptions, SamplerHandleOptions, SamplingClient,
    SamplingSource,
};
pub use service::{CloseStatus, ServiceClient, ServiceClientBuilder, TrainingClientOptions};
pub use session::SDK_VERSION;
pub use tinker_telemetry::{Telemetry, TelemetryStats};
pub use tinker_transport::circuit::{CircuitBreakerConfig, CircuitState, EndpointFamily};
pub use tinker_transport::retry::RetryConfig;
pub use tokenizer::{TransportHubFetcher, tokenizer_loader};
pub use training::{CustomLossOutput, LoadStateOptions, SaveOptions, TrainingClient};

/// Request inputs and results of the client methods, from `tinker-types` (one set of wire
/// types for the whole SDK).
pub use tinker_types::{
    AccessScope, AuditEventType, AuditLogEntry, AuditLogQuery, AuditLogResponse, BillingEventInfo,
    BillingUsageEvent, BillingUsageQuery, BillingUsageResponse, Checkpoint, CheckpointType,
    CheckpointsListResponse, CurrentCheckpointStorageUsageItem, CurrentCheckpointStorageUsageQuery,
    CurrentCheckpointStorageUsageResponse, ExternalWeightsUrlsResponse, GetSessionResponse,
    ListSessionsResponse, LoadWeightsResponse, SaveWeightsExternalResponse,
    SaveWeightsForSamplerResponse, SaveWeightsResponse, SearchOwner, SessionSearchCursor,
    SessionSearchRequest, SessionSearchResponse, SessionStatus, SessionStatusQuery, SessionSummary,
    TinkerPath, TrainingRun, TrainingRunsResponse, WeightsInfoResponse,
};
