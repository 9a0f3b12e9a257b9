//! The compute engine behind tinker-local: a Llama/Qwen-style decoder with LoRA, real
//! gradients, a hand-written Adam and a KV-cached sampler, on the CPU with candle. Base
//! weights are seeded (the built-in models) or read from a Hugging Face folder ([`hf_model`]).
//!
//! The server codes against the types re-exported here; each concept lives in its own module.

mod adam;
mod checkpoint;
mod custom_loss;
mod device;
mod error;
mod frozen;
mod hf_config;
mod hf_weights;
mod lora;
mod loss;
mod model;
mod sampler;
mod spec;
mod tiny_hf;
mod tokenizer;
mod trainable;
mod weights;

pub use adam::{AdamStep, StepReport};
pub use custom_loss::{CustomGraph, Evaluation, Tensor};
pub use error::EngineError;
pub use hf_config::{MAX_SERVED_CONTEXT, hf_model, resolve_model_dir};
pub use loss::{CustomBatch, ForwardOutput, Loss, LossInputs, TrainExample};
pub use sampler::{SampleOutput, SampleSpec, SampledSeq, SamplerModel, StopKind};
pub use spec::{LoraSpec, ModelSpec, RopeScaling, WeightSource, WeightsDtype, builtin_models};
pub use tiny_hf::{HfArch, StoredDtype, TinyHfModel};
pub use trainable::TrainableModel;

pub(crate) use lora::validate_lora;
pub(crate) use loss::{MetricTotals, datum_loss, validate_example};
pub(crate) use sampler::validate_sample;
