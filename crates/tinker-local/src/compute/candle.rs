//! The candle engine behind the compute traits.

use std::path::Path;
use std::sync::Arc;

use super::{SampleEngine, TrainEngine};
use crate::engine::{
    AdamStep, EngineError, ForwardOutput, Loss, SampleOutput, SampleSpec, SamplerModel, StepReport,
    TrainExample, TrainableModel,
};

impl TrainEngine for TrainableModel {
    fn forward_backward(
        &mut self,
        batch: &[TrainExample],
        loss: &Loss,
        forward_only: bool,
    ) -> Result<ForwardOutput, EngineError> {
        TrainableModel::forward_backward(self, batch, loss, forward_only)
    }

    fn optim_step(&mut self, step: &AdamStep) -> Result<StepReport, EngineError> {
        TrainableModel::optim_step(self, step)
    }

    fn save_adapter(&self, dir: &Path) -> Result<u64, EngineError> {
        TrainableModel::save_adapter(self, dir)
    }

    fn load_adapter(&mut self, dir: &Path) -> Result<(), EngineError> {
        TrainableModel::load_adapter(self, dir)
    }

    fn save_optimizer(&self, dir: &Path) -> Result<u64, EngineError> {
        TrainableModel::save_optimizer(self, dir)
    }

    fn load_optimizer(&mut self, dir: &Path) -> Result<(), EngineError> {
        TrainableModel::load_optimizer(self, dir)
    }

    fn sampler(&self) -> Arc<dyn SampleEngine> {
        Arc::new(TrainableModel::sampler(self))
    }
}

impl SampleEngine for SamplerModel {
    fn sample(&self, spec: &SampleSpec) -> Result<SampleOutput, EngineError> {
        SamplerModel::sample(self, spec)
    }

    fn is_instant(&self) -> bool {
        false
    }
}
