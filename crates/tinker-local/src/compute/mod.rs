//! The compute behind the server's models, chosen once per server: the candle [`engine`]
//! (real forward/backward passes and sampling) or the zero-compute stand-in (instant results
//! of the right shapes, for benchmarks that measure clients rather than the model).
//!
//! The worker and the sampling routes code against [`TrainEngine`] and [`SampleEngine`]; the
//! protocol around them (`seq_id` order, futures, accounting, checkpoints' records) is the
//! same whichever compute runs.
//!
//! [`engine`]: crate::engine

mod candle;
mod zero;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use crate::engine::{
    AdamStep, EngineError, ForwardOutput, LoraSpec, Loss, ModelSpec, SampleOutput, SampleSpec,
    StepReport, TrainExample,
};

/// One training model's compute, owned by its worker thread.
pub(crate) trait TrainEngine: Send {
    /// Loss, per-token logprobs and (unless `forward_only`) accumulated gradients.
    fn forward_backward(
        &mut self,
        batch: &[TrainExample],
        loss: &Loss,
        forward_only: bool,
    ) -> Result<ForwardOutput, EngineError>;
    /// Applies the accumulated gradients.
    fn optim_step(&mut self, step: &AdamStep) -> Result<StepReport, EngineError>;
    /// Writes the adapter into `dir`; returns the bytes written.
    fn save_adapter(&self, dir: &Path) -> Result<u64, EngineError>;
    /// Replaces the adapter with the one saved in `dir`.
    fn load_adapter(&mut self, dir: &Path) -> Result<(), EngineError>;
    /// Writes the optimizer state into `dir`; returns the bytes written.
    fn save_optimizer(&self, dir: &Path) -> Result<u64, EngineError>;
    /// Restores the optimizer state saved in `dir`.
    fn load_optimizer(&mut self, dir: &Path) -> Result<(), EngineError>;
    /// A frozen snapshot of the current weights that samples.
    fn sampler(&self) -> Arc<dyn SampleEngine>;
}

/// A frozen model that samples; shared by every request of a sampling session.
pub(crate) trait SampleEngine: Send + Sync + Debug {
    /// Draws the requested samples.
    fn sample(&self, spec: &SampleSpec) -> Result<SampleOutput, EngineError>;
    /// Whether `sample` returns at once, so the caller may run it on the async executor
    /// instead of handing it to the blocking pool.
    fn is_instant(&self) -> bool;
}

/// Which compute a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compute {
    /// The candle engine.
    Candle,
    /// Instant results of the right shapes.
    Zero,
}

impl Compute {
    /// The compute `config` asks for.
    pub(crate) fn of(config: &crate::LocalServerConfig) -> Self {
        if config.zero_compute {
            Self::Zero
        } else {
            Self::Candle
        }
    }

    /// A fresh trainable model.
    pub(crate) fn trainer(
        self,
        spec: &ModelSpec,
        lora: &LoraSpec,
    ) -> Result<Box<dyn TrainEngine>, EngineError> {
        Ok(match self {
            Self::Candle => Box::new(crate::engine::TrainableModel::new(spec, lora)?),
            Self::Zero => Box::new(zero::ZeroTrainer::new(spec, lora)?),
        })
    }

    /// A sampler of the base model alone.
    pub(crate) fn base_sampler(
        self,
        spec: &ModelSpec,
    ) -> Result<Arc<dyn SampleEngine>, EngineError> {
        Ok(match self {
            Self::Candle => Arc::new(crate::engine::SamplerModel::base(spec)?),
            Self::Zero => Arc::new(zero::ZeroSampler::new(spec)),
        })
    }

    /// A sampler of the base model with the adapter saved in `dir`.
    pub(crate) fn adapter_sampler(
        self,
        spec: &ModelSpec,
        dir: &Path,
    ) -> Result<Arc<dyn SampleEngine>, EngineError> {
        Ok(match self {
            Self::Candle => Arc::new(crate::engine::SamplerModel::from_adapter_dir(spec, dir)?),
            Self::Zero => Arc::new(zero::ZeroSampler::from_adapter_dir(spec, dir)?),
        })
    }
}
