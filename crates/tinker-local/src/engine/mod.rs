//! The compute engine behind tinker-local: a tiny Llama/Qwen-style decoder with LoRA,
//! real gradients, a hand-written Adam and a KV-cached sampler, all on the CPU with candle.
//!
//! The server codes against the types re-exported here; each concept lives in its own module.

mod adam;
mod checkpoint;
mod custom_loss;
mod error;
mod frozen;
mod lora;
mod loss;
mod model;
mod sampler;
mod spec;
mod tokenizer;
mod trainable;
mod weights;

pub use adam::{AdamStep, StepReport};
pub use custom_loss::{CustomGraph, Evaluation, Tensor};
pub use error::EngineError;
pub use loss::{CustomBatch, ForwardOutput, Loss, LossInputs, TrainExample};
pub use sampler::{SampleOutput, SampleSpec, SampledSeq, SamplerModel, StopKind};
pub use spec::{LoraSpec, ModelSpec, builtin_models};
pub use trainable::TrainableModel;

pub(crate) use lora::validate_lora;
pub(crate) use loss::{MetricTotals, datum_loss, validate_example};
pub(crate) use sampler::validate_sample;
