//! The Tinker SDK for Rust: fine-tune open-weight LLMs with LoRA on the Tinker service.
//!
//! Your program calls [`TrainingClient::forward_backward`], [`TrainingClient::optim_step`],
//! [`SamplingClient::sample`] and [`TrainingClient::save_state`]; the service does the
//! heavy lifting. Every asynchronous operation returns an [`ApiFuture`] whose request is
//! already in flight, in the order the calls were made, so training steps pipeline.
//!
//! # Quickstart
//!
//! This runs against `tinker-local`, the CPU server that ships with the SDK (feature
//! `local`: `tinker::local::LocalServer`). Against the real service, drop the server lines
//! and call [`ServiceClient::from_env`] with `TINKER_API_KEY` set.
//!
//! ```
//! use tinker::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> tinker::Result<()> {
//! # let dir = tempfile::tempdir().expect("temp dir");
//! # let server = tinker_local::LocalServer::start(tinker_local::LocalServerConfig::new(dir.path()))
//! #     .await
//! #     .expect("local server");
//! # let base_url = server.url().to_string();
//! let service = ServiceClient::builder()
//!     .base_url(base_url)
//!     .api_key("tml-local")
//!     .build()
//!     .await?;
//! let training = service.create_lora_training_client("tinker-local/micro", 8).await?;
//!
//! // One datum: predict each next token of a short sequence.
//! let tokens: Vec<u32> = vec![5, 6, 7, 8, 9];
//! let input = ModelInput::from_tokens(&tokens[..4]);
//! let targets: Vec<i64> = tokens[1..].iter().map(|&t| i64::from(t)).collect();
//! let datum = Datum::new(input, CrossEntropyInputs::new(targets, vec![1.0; 4])?.into_inputs()?);
//!
//! // Both requests are sent in order without waiting in between.
//! let fb = training.forward_backward(vec![datum], LossFn::CrossEntropy);
//! let step = training.optim_step(AdamParams::with_learning_rate(1e-3));
//! let fb = fb.await?;
//! step.await?;
//! assert!(fb.metrics.contains_key("loss:sum"));
//!
//! let sampler = training.save_weights_and_get_sampling_client().await?;
//! let out = sampler
//!     .sample(ModelInput::from_tokens(&[5, 6]), 1, SamplingParams::with_max_tokens(4))
//!     .await?;
//! assert_eq!(out.sequences.len(), 1);
//! service.close(CloseStatus::Success, None).await?;
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! * TLS goes through rustls unless `native-tls` is on (there is no `rustls` feature:
//!   rustls is always compiled in).
//! * `native-tls`: TLS through the platform library.
//! * `local`: embeds `tinker-local` as `tinker::local`, a Tinker-compatible server training
//!   a tiny transformer on the CPU, so programs and tests run offline. (No link: the module
//!   exists only with the feature, and the docs must build without it.)
//!
//! # Crates
//!
//! [`types`] (wire types), [`transport`] (HTTP, retries, auth), [`tokenizer`],
//! [`telemetry`], and the clients, re-exported at the root with the request inputs and
//! results of their methods (e.g. [`SaveWeightsResponse`], [`TrainingRun`],
//! [`BillingUsageQuery`]; every one of them is a `tinker-types` type, also under [`types`]).
//! [`console`] builds Tinker console links as the Python SDK does.

// The facade's root: every client, and every type a public signature of the clients
// reaches (checked by `cargo xtask facade-check`; the regularizer pipeline's types stay
// under `regularizers`). Explicit, so that internal modules of `tinker-client` never leak.
pub use tinker_client::custom_loss::{
    ArgValue, CustomLoss, CustomLossBuilder, CustomLossError, CustomLossHandle, DatumEvaluation,
    Expr, IntoArg, Rank,
};
pub use tinker_client::rest::{CheckpointArchiveUrl, DEFAULT_MAX_FILE_BYTES, DownloadOptions};
pub use tinker_client::service::ServerCapabilities;
pub use tinker_client::{
    AdminClient, ApiFuture, CloseStatus, CustomLossOutput, DownloadProgress, Error, ErrorKind,
    FailureCategory, FuturesPollerStats, ListOptions, LoadStateOptions, MetricsSnapshot, Paged,
    QueueStateObserver, RestClient, Result, RetryConfig, SDK_VERSION, SampleDispatch,
    SampleOptions, SamplerHandleOptions, SamplingClient, SamplingSource, SaveOptions,
    ServiceClient, ServiceClientBuilder, Telemetry, TelemetryStats, TrainingClient,
    TrainingClientOptions, TransportHubFetcher, console, custom_loss, data, observe, recovery,
    regularizers, tokenizer_loader,
};

/// Wire types of the API (re-export of `tinker-types`).
pub use tinker_types as types;

/// The HTTP transport (re-export of `tinker-transport`).
pub use tinker_transport as transport;

/// Tokenizers (re-export of `tinker-tokenizer`).
pub use tinker_tokenizer as tokenizer;

/// Chat rendering: conversations to tokens and per-token training weights (re-export of
/// `tinker_tokenizer::chat`; the `Datum` builders are in [`data`]).
pub use tinker_tokenizer::chat;

/// Tracing and telemetry (re-export of `tinker-telemetry`).
pub use tinker_telemetry as telemetry;

/// `tinker-local`: a Tinker-compatible server running a tiny transformer on the CPU.
#[cfg(feature = "local")]
pub use tinker_local as local;

/// Request inputs and results of the client methods, and the types they contain (all from
/// `tinker-types`, also under [`types`]).
pub use tinker_types::{
    AccessScope, AdamParams, AuditEventType, AuditLogEntry, AuditLogQuery, AuditLogResponse,
    BillingEventInfo, BillingUsageEvent, BillingUsageQuery, BillingUsageResponse,
    BillingUsageSession, Checkpoint, CheckpointBillingEvent, CheckpointKind, CheckpointType,
    CheckpointsListResponse, ClientConfig, CredentialSource, CrossEntropyInputs, CsrIndices,
    CurrentCheckpointStorageUsageItem, CurrentCheckpointStorageUsageQuery,
    CurrentCheckpointStorageUsageResponse, Cursor, CustomLossGraph, CustomLossInput,
    CustomLossNode, CustomLossOp, Datum, DimuonParams, DmelChunk, DynamicConfig, EncodedTextChunk,
    ExternalWeightsUrlsResponse, FailedRequestReason, FailedSamplingSessionReason,
    FailedTrainingRunReason, ForwardBackwardOutput, ForwardBackwardRequestRef,
    GenericOptimizerObject, GetInfoResponse, GetSamplerResponse, GetServerCapabilitiesResponse,
    GetSessionResponse, ImageAssetPointerChunk, ImageChunk, ImageFormat, ListSessionsResponse,
    LoadWeightsResponse, LoraConfig, LossConfigValue, LossFn, LossFnConfig, LossFnInputs,
    LossFnOutput, ModelData, ModelInput, ModelInputChunk, OptimParams, OptimStepResponse,
    OptimizerConfig, PolicyGradientInputs, PromptAltTokens, ProvenanceSpan, QueueState,
    SampleResponse, SampledSequence, SamplingParams, SamplingPrefillBillingEvent,
    SamplingSampleBillingEvent, SaveWeightsExternalResponse, SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal, SaveWeightsResponse, SearchOwner, Sensitive,
    SessionActive, SessionCancelled, SessionClientFinished, SessionFailed, SessionFailedReason,
    SessionFailureCategory, SessionSearchCursor, SessionSearchRequest, SessionSearchResponse,
    SessionStatus, SessionStatusQuery, SessionSummary, Severity, SpanRef, StopCondition,
    StopReason, StorageBillingEvent, SupportedModel, TensorData, TensorDtype, TensorValues,
    Timestamp, TinkerPath, TopkLogprobs, TrainingBillingEvent, TrainingRun, TrainingRunsResponse,
    WeightsInfoResponse, WhoamiResponse,
};

/// The stream traits of paginated lists ([`Paged`]): `while let Some(run) =
/// runs.next().await` needs [`StreamExt`] in scope, without a `futures` dependency.
pub use futures_core::Stream;
pub use futures_util::StreamExt;

/// A tokenizer, as [`TrainingClient::get_tokenizer`] returns it.
pub use tinker_tokenizer::Tokenizer;

/// The names most programs need: `use tinker::prelude::*;`.
pub mod prelude {
    pub use futures_util::StreamExt as _;
    pub use tinker_client::{
        AccessScope, AdminClient, ApiFuture, CloseStatus, CustomLossOutput, Error, ErrorKind,
        ListOptions, LoadStateOptions, RestClient, SampleOptions, SamplingClient, SamplingSource,
        SaveOptions, ServiceClient, TrainingClient, TrainingClientOptions,
    };
    pub use tinker_types::{
        AdamParams, CrossEntropyInputs, Datum, ForwardBackwardOutput, LossFn, ModelInput,
        SamplingParams, TensorData,
    };

    pub use tinker_client::data::{
        DatumOptions, datum_from_conversation, datum_from_prompt_completion,
    };
    pub use tinker_tokenizer::chat::{ChatRenderer, TrainOn};
}
