//! A LoRA-adapted model being trained: forward_backward, optim_step, checkpoints.

use std::path::Path;

use super::adam::{AdamStep, StepReport};
use super::error::{EngineError, Result};
use super::loss::{ForwardOutput, Loss, TrainExample};
use super::sampler::SamplerModel;
use super::spec::{LoraSpec, ModelSpec};

/// A model with trainable LoRA adapters, accumulated gradients and Adam state.
#[derive(Debug)]
pub struct TrainableModel {
    spec: ModelSpec,
    lora: LoraSpec,
}

fn todo<T>() -> Result<T> {
    Err(EngineError::internal("not implemented yet"))
}

impl TrainableModel {
    /// A fresh model: shared deterministic base weights, new LoRA adapters (B = 0).
    pub fn new(spec: &ModelSpec, lora: &LoraSpec) -> Result<Self> {
        Ok(Self {
            spec: spec.clone(),
            lora: lora.clone(),
        })
    }

    /// The base model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The LoRA configuration.
    pub fn lora(&self) -> &LoraSpec {
        &self.lora
    }

    /// Computes the loss and per-datum logprobs; unless `forward_only`, adds the gradients to
    /// those accumulated since the last `optim_step`.
    pub fn forward_backward(
        &mut self,
        batch: &[TrainExample],
        loss: &Loss,
        forward_only: bool,
    ) -> Result<ForwardOutput> {
        let _ = (batch, loss, forward_only);
        todo()
    }

    /// Applies the accumulated gradients with Adam and clears them.
    pub fn optim_step(&mut self, step: &AdamStep) -> Result<StepReport> {
        let _ = step;
        todo()
    }

    /// Writes `adapter_model.safetensors` + `adapter_config.json` (PEFT layout) into `dir`.
    pub fn save_adapter(&self, dir: &Path) -> Result<u64> {
        let _ = dir;
        todo()
    }

    /// Replaces the LoRA weights with those saved in `dir`.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        let _ = dir;
        todo()
    }

    /// Writes the Adam moments and step count into `dir`.
    pub fn save_optimizer(&self, dir: &Path) -> Result<u64> {
        let _ = dir;
        todo()
    }

    /// Restores Adam state saved by `save_optimizer`.
    pub fn load_optimizer(&mut self, dir: &Path) -> Result<()> {
        let _ = dir;
        todo()
    }

    /// A frozen snapshot of the base model plus the current adapters, for sampling.
    pub fn sampler(&self) -> SamplerModel {
        SamplerModel::base(&self.spec).unwrap_or_else(|_| unreachable!())
    }
}
