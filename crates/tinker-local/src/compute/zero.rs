//! Zero compute: every model answers at once with results of the right shapes, so a
//! benchmark against the server measures the client and the protocol, not the model.
//!
//! Inputs are validated exactly as the candle engine validates them (the same typed user
//! errors). Every token gets the logprob of a uniform distribution over the vocabulary; the
//! loss is the requested loss at those logprobs (custom losses run their graph); optimizer
//! steps report zero norms. Samples are as long as asked (up to the model's context) and
//! repeat one token that is neither a stop token nor, when EOS stops, the EOS token; stop
//! strings are not checked. Checkpoints are small marker files: an `adapter_config.json`
//! naming the rank, an empty `adapter_model.safetensors` and an optimizer file holding the
//! step count.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::{SampleEngine, TrainEngine};
use crate::engine::{
    AdamStep, EngineError, ForwardOutput, LoraSpec, Loss, MetricTotals, ModelSpec, SampleOutput,
    SampleSpec, SampledSeq, StepReport, StopKind, TrainExample, datum_loss, validate_example,
    validate_lora, validate_sample,
};

/// The adapter config a zero-compute checkpoint holds (PEFT's file name and `r` key).
const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter weights file, written empty so that readers of the layout find it.
const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The optimizer state file.
const OPTIMIZER_STATE: &str = "optimizer.safetensors";

/// A training model that computes nothing.
#[derive(Debug)]
pub(crate) struct ZeroTrainer {
    spec: ModelSpec,
    lora: LoraSpec,
    /// Optimizer steps taken (saved with the optimizer state).
    steps: u64,
}

impl ZeroTrainer {
    /// Checks the LoRA config as the engine does.
    pub(crate) fn new(spec: &ModelSpec, lora: &LoraSpec) -> Result<Self, EngineError> {
        validate_lora(spec, lora)?;
        Ok(Self {
            spec: spec.clone(),
            lora: lora.clone(),
            steps: 0,
        })
    }
}

/// The logprob of every token under a uniform distribution over `vocab` tokens.
fn uniform_logprob(vocab: usize) -> f32 {
    -(vocab.max(1) as f32).ln()
}

impl TrainEngine for ZeroTrainer {
    fn forward_backward(
        &mut self,
        batch: &[TrainExample],
        loss: &Loss,
        _forward_only: bool,
    ) -> Result<ForwardOutput, EngineError> {
        loss.validate()?;
        if batch.is_empty() {
            return Err(EngineError::user(
                "forward_backward needs at least one datum",
            ));
        }
        for (i, ex) in batch.iter().enumerate() {
            validate_example(i, ex, loss, self.spec.vocab_size, self.spec.max_context)?;
        }
        let lp = uniform_logprob(self.spec.vocab_size);
        let mut total = 0.0;
        let mut custom_metrics = MetricTotals::default();
        let mut logprobs = Vec::with_capacity(batch.len());
        for (i, ex) in batch.iter().enumerate() {
            let row = vec![lp; ex.tokens.len()];
            let (value, _grads) = datum_loss(loss, i, &ex.inputs, &row, &mut custom_metrics)?;
            total += value;
            logprobs.push(row);
        }
        let mut metrics = BTreeMap::new();
        metrics.insert("loss:sum".to_owned(), total);
        custom_metrics.finish(batch.len(), &mut metrics);
        Ok(ForwardOutput { logprobs, metrics })
    }

    fn optim_step(&mut self, step: &AdamStep) -> Result<StepReport, EngineError> {
        step.validate()?;
        self.steps += 1;
        let metrics = ["grad_norm:mean", "update_norm:mean", "param_norm:mean"]
            .into_iter()
            .map(|k| (k.to_owned(), 0.0))
            .collect();
        Ok(StepReport { metrics })
    }

    fn save_adapter(&self, dir: &Path) -> Result<u64, EngineError> {
        let config = serde_json::json!({
            "peft_type": "LORA",
            "base_model_name_or_path": self.spec.name,
            "r": self.lora.rank,
            "tinker_local_zero_compute": true,
        });
        let text = serde_json::to_vec_pretty(&config)
            .map_err(|e| EngineError::internal(format!("encoding adapter config: {e}")))?;
        Ok(write_file(dir, ADAPTER_CONFIG, &text)?
            + write_file(dir, ADAPTER_WEIGHTS, &empty_safetensors(&[])?)?)
    }

    fn load_adapter(&mut self, dir: &Path) -> Result<(), EngineError> {
        let rank = saved_rank(&self.spec, dir)?;
        if rank != self.lora.rank {
            return Err(EngineError::user(format!(
                "adapter in {} has rank {rank}, this model's LoRA rank is {}",
                dir.display(),
                self.lora.rank
            )));
        }
        Ok(())
    }

    fn save_optimizer(&self, dir: &Path) -> Result<u64, EngineError> {
        let step = self.steps.to_string();
        write_file(
            dir,
            OPTIMIZER_STATE,
            &empty_safetensors(&[("step", step.as_str())])?,
        )
    }

    fn load_optimizer(&mut self, dir: &Path) -> Result<(), EngineError> {
        let path = dir.join(OPTIMIZER_STATE);
        if !path.is_file() {
            return Err(EngineError::user(format!(
                "optimizer state {} is missing",
                path.display()
            )));
        }
        Ok(())
    }

    fn sampler(&self) -> Arc<dyn SampleEngine> {
        Arc::new(ZeroSampler::new(&self.spec))
    }
}

/// Writes `dir/name` (creating `dir`); returns the bytes written.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<u64, EngineError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(name), bytes))
        .map_err(|e| EngineError::internal(format!("writing {}: {e}", dir.join(name).display())))?;
    Ok(bytes.len() as u64)
}

/// A safetensors file with no tensors and the given metadata.
fn empty_safetensors(metadata: &[(&str, &str)]) -> Result<Vec<u8>, EngineError> {
    let metadata: BTreeMap<&str, &str> = metadata.iter().copied().collect();
    let header = serde_json::to_vec(&serde_json::json!({ "__metadata__": metadata }))
        .map_err(|e| EngineError::internal(format!("encoding safetensors header: {e}")))?;
    let mut out = Vec::with_capacity(8 + header.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    Ok(out)
}

/// The LoRA rank of the adapter saved in `dir` (by either compute).
fn saved_rank(spec: &ModelSpec, dir: &Path) -> Result<usize, EngineError> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read(&path)
        .map_err(|e| EngineError::user(format!("adapter config {}: {e}", path.display())))?;
    let config: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| EngineError::user(format!("adapter config {}: {e}", path.display())))?;
    if let Some(base) = config
        .get("base_model_name_or_path")
        .and_then(serde_json::Value::as_str)
        && base != spec.name
    {
        return Err(EngineError::user(format!(
            "adapter in {} is for {base}, not {}",
            dir.display(),
            spec.name
        )));
    }
    config
        .get("r")
        .and_then(serde_json::Value::as_u64)
        .and_then(|r| usize::try_from(r).ok())
        .ok_or_else(|| EngineError::user(format!("adapter config {} has no rank", path.display())))
}

/// A sampler that computes nothing.
#[derive(Debug)]
pub(crate) struct ZeroSampler {
    spec: ModelSpec,
}

impl ZeroSampler {
    /// A sampler of `spec`.
    pub(crate) fn new(spec: &ModelSpec) -> Self {
        Self { spec: spec.clone() }
    }

    /// A sampler of `spec` with the adapter saved in `dir` (which must be one).
    pub(crate) fn from_adapter_dir(spec: &ModelSpec, dir: &Path) -> Result<Self, EngineError> {
        saved_rank(spec, dir)?;
        Ok(Self::new(spec))
    }

    /// The token every sample repeats: the lowest id that ends no sample.
    fn filler(&self, spec: &SampleSpec) -> u32 {
        let vocab = u32::try_from(self.spec.vocab_size).unwrap_or(u32::MAX);
        (0..vocab)
            .find(|t| {
                !spec.stop_tokens.contains(t) && (!spec.stop_at_eos || *t != self.spec.eos_token_id)
            })
            .unwrap_or(0)
    }
}

impl SampleEngine for ZeroSampler {
    fn sample(&self, spec: &SampleSpec) -> Result<SampleOutput, EngineError> {
        validate_sample(&self.spec, spec)?;
        let lp = uniform_logprob(self.spec.vocab_size);
        let topk = |k: usize| -> Vec<(u32, f32)> {
            (0..k.min(self.spec.vocab_size) as u32)
                .map(|t| (t, lp))
                .collect()
        };
        // The engine stops once its cache fills the context: at most context − prompt + 1.
        let room = self.spec.max_context - spec.prompt.len() + 1;
        let len = spec.max_tokens.min(room);
        let token = self.filler(spec);
        let seq = SampledSeq {
            tokens: vec![token; len],
            logprobs: vec![lp; len],
            stop: StopKind::Length,
            topk: (spec.topk_sample_logprobs > 0)
                .then(|| vec![topk(spec.topk_sample_logprobs); len]),
        };
        let n = spec.prompt.len();
        let prompt_logprobs = spec.prompt_logprobs.then(|| {
            std::iter::once(f32::NAN)
                .chain(std::iter::repeat_n(lp, n - 1))
                .collect()
        });
        let topk_prompt_logprobs = (spec.topk_prompt_logprobs > 0).then(|| {
            std::iter::once(Vec::new())
                .chain(std::iter::repeat_n(topk(spec.topk_prompt_logprobs), n - 1))
                .collect()
        });
        Ok(SampleOutput {
            sequences: vec![seq; spec.num_samples],
            prompt_logprobs,
            topk_prompt_logprobs,
        })
    }

    fn is_instant(&self) -> bool {
        true
    }
}
