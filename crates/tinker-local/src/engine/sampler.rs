//! Sampling: KV-cached decoding with temperature, top-k, top-p, seeds, stops and logprobs.

use super::error::{EngineError, Result};
use super::spec::ModelSpec;

/// One sampling request.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSpec {
    /// Prompt tokens (non-empty).
    pub prompt: Vec<u32>,
    /// Independent samples to draw.
    pub num_samples: usize,
    /// Most tokens to generate per sample.
    pub max_tokens: usize,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens; -1 (or 0) = off.
    pub top_k: i64,
    /// Nucleus sampling mass; 1 = off.
    pub top_p: f32,
    /// Seed for reproducible draws; `None` draws a fresh one.
    pub seed: Option<u64>,
    /// Token ids that end a sample (the stop token is kept in the output).
    pub stop_tokens: Vec<u32>,
    /// Strings that end a sample once the decoded output contains one.
    pub stop_strings: Vec<String>,
    /// Whether the model's EOS token ends a sample.
    pub stop_at_eos: bool,
    /// Also return the logprob of every prompt token.
    pub prompt_logprobs: bool,
    /// Also return the top-k alternatives at every prompt position (0 = off).
    pub topk_prompt_logprobs: usize,
    /// Also return the top-k alternatives at every sampled position (0 = off).
    pub topk_sample_logprobs: usize,
}

/// Why a sample ended.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// A stop token, stop string or EOS ended it.
    Stop,
    /// It reached `max_tokens` (or the model's context).
    Length,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledSeq {
    /// Generated tokens (including the stop token, if any).
    pub tokens: Vec<u32>,
    /// Logprob of each generated token.
    pub logprobs: Vec<f32>,
    /// Why it ended.
    pub stop: StopKind,
    /// Per generated token, the top-k `(token, logprob)` pairs, when requested.
    pub topk: Option<Vec<Vec<(u32, f32)>>>,
}

/// The result of one sampling request.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOutput {
    /// One entry per requested sample.
    pub sequences: Vec<SampledSeq>,
    /// Logprob of each prompt token given its prefix (NaN at position 0), when requested.
    pub prompt_logprobs: Option<Vec<f32>>,
    /// Per prompt position, the top-k `(token, logprob)` pairs (empty at position 0).
    pub topk_prompt_logprobs: Option<Vec<Vec<(u32, f32)>>>,
}

/// A frozen model (base + LoRA snapshot) that samples. Cheap to clone; shareable across threads.
#[derive(Debug, Clone)]
pub struct SamplerModel {
    spec: ModelSpec,
}

impl SamplerModel {
    /// The base model without any adapter.
    pub fn base(spec: &ModelSpec) -> Result<Self> {
        Ok(Self { spec: spec.clone() })
    }

    /// The base model plus the PEFT adapter saved in `dir`.
    pub fn from_adapter_dir(spec: &ModelSpec, dir: &std::path::Path) -> Result<Self> {
        let _ = (spec, dir);
        Err(EngineError::internal(
            "sampling from an adapter is not implemented yet",
        ))
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Draws `num_samples` continuations of the prompt; deterministic given `seed`.
    pub fn sample(&self, spec: &SampleSpec) -> Result<SampleOutput> {
        let _ = spec;
        Err(EngineError::internal("sampling is not implemented yet"))
    }
}
