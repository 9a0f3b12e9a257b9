//! Wire types of the Tinker training API (JSON via serde, protobuf via prost); no I/O.
//!
//! Every request and response body of the protocol spoken by the official Python SDK
//! `tinker` 0.38.0, with its serialization rules: `None` fields omitted, `type`
//! discriminators always present and in the SDK's key order, compact JSON, NaN/infinity
//! refused. Responses ignore unknown fields and keep unknown enum values. Use [`json`] to
//! encode and decode; errors are [`Error`].
//!
//! ```
//! use tinker_types::{json, AdamParams, OptimStepRequest};
//!
//! let request = OptimStepRequest::new("sess:train:0", 2, AdamParams::default());
//! let body = json::to_string(&request)?;
//! assert!(body.starts_with(r#"{"model_id":"sess:train:0","seq_id":2,"type":"optim_step","adam_params":"#));
//! # Ok::<(), tinker_types::Error>(())
//! ```

mod bytes_b64;
mod macros;

pub mod config;
pub mod datum;
pub mod error;
pub mod futures;
pub mod json;
pub mod loss;
pub mod model_input;
pub mod optim;
pub mod proto;
pub mod sampling;
pub mod sensitive;
pub mod session;
pub mod tensor;
pub mod training;

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
