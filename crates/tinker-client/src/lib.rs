//! Tinker clients: [`ServiceClient`], [`TrainingClient`], [`SamplingClient`],
//! [`RestClient`] and [`AdminClient`], in async Rust, with the behaviours of the official
//! Python SDK 0.38 (request ordering, chunking, the futures protocol, retries, budgets).
//!
//! Most users depend on the `tinker` facade crate, which re-exports this one.

pub mod admin;
pub mod chunk;
pub mod error;
pub mod future;
mod holder;
pub mod metrics;
mod proto;
pub mod rest;
pub mod sampling;
pub mod service;
mod tokenizer;
pub mod training;
mod turn;
pub mod wire;

pub use admin::{AdminClient, AuditEventType};
pub use error::{Error, ErrorKind, FailureCategory, Result};
pub use future::{ApiFuture, QueueStateObserver};
pub use holder::SDK_VERSION;
pub use rest::{AccessScope, DownloadProgress, Paged, RestClient};
pub use sampling::{SampleOptions, SamplingClient, SamplingSource};
pub use service::{CloseStatus, ServiceClient, ServiceClientBuilder, TrainingClientOptions};
pub use training::{CustomLossOutput, SaveOptions, TrainingClient};
pub use wire::{
    LoadWeightsResponse, SaveWeightsExternalResponse, SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
};
