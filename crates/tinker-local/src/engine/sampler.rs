//! Sampling: KV-cached decoding with temperature, top-k, top-p, seeds, stops and logprobs.

use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::device::device;
use super::error::{EngineError, Result};
use super::lora;
use super::model::{self, Adapters, KvCache, Mode};
use super::spec::ModelSpec;
use super::tokenizer;
use super::weights::{self, BaseWeights};

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

impl Default for SampleSpec {
    /// Tinker's `SamplingParams` defaults: one sample of up to 16 tokens at temperature 1, no
    /// top-k / top-p truncation, a fresh seed, EOS stops; no extra logprobs. `prompt` is empty.
    fn default() -> Self {
        Self {
            prompt: Vec::new(),
            num_samples: 1,
            max_tokens: 16,
            temperature: 1.0,
            top_k: -1,
            top_p: 1.0,
            seed: None,
            stop_tokens: Vec::new(),
            stop_strings: Vec::new(),
            stop_at_eos: true,
            prompt_logprobs: false,
            topk_prompt_logprobs: 0,
            topk_sample_logprobs: 0,
        }
    }
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

/// Checks a sampling request against the model it samples (typed user errors).
pub(crate) fn validate_sample(model: &ModelSpec, s: &SampleSpec) -> Result<()> {
    let bad = |m: String| Err(EngineError::user(m));
    if s.prompt.is_empty() {
        return bad("the prompt is empty".into());
    }
    if s.prompt.len() > model.max_context {
        return bad(format!(
            "prompt of {} tokens exceeds the context of {}",
            s.prompt.len(),
            model.max_context
        ));
    }
    if let Some(t) = s.prompt.iter().find(|&&t| t as usize >= model.vocab_size) {
        return bad(format!(
            "prompt token id {t} is out of range for vocabulary size {}",
            model.vocab_size
        ));
    }
    if !(s.temperature.is_finite() && s.temperature >= 0.0) {
        return bad(format!(
            "temperature must be finite and ≥ 0 (got {})",
            s.temperature
        ));
    }
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        return bad(format!("top_p must be in (0, 1] (got {})", s.top_p));
    }
    if s.top_k < -1 {
        return bad(format!("top_k must be -1 (off) or ≥ 0 (got {})", s.top_k));
    }
    Ok(())
}

/// A frozen model (base + LoRA snapshot) that samples. Cheap to clone; shareable across threads.
#[derive(Debug, Clone)]
pub struct SamplerModel {
    spec: ModelSpec,
    base: Arc<BaseWeights>,
    adapters: Arc<Adapters>,
}

/// Log-softmax of one row, in f64 for accuracy, returned as f32.
fn log_softmax(row: &[f32], temperature: f32) -> Vec<f32> {
    let t = f64::from(temperature);
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x) / t));
    let lse = row
        .iter()
        .map(|&x| (f64::from(x) / t - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row.iter()
        .map(|&x| (f64::from(x) / t - lse) as f32)
        .collect()
}

/// The `k` most likely `(token, logprob)` pairs, most likely first (ties: lower id first).
fn top_k(lp: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..lp.len() as u32).collect();
    let k = k.min(idx.len());
    let by = |a: &u32, b: &u32| lp[*b as usize].total_cmp(&lp[*a as usize]).then(a.cmp(b));
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, by);
        idx.truncate(k);
    }
    idx.sort_by(by);
    idx.truncate(k);
    idx.into_iter().map(|i| (i, lp[i as usize])).collect()
}

/// Picks the next token from `lp` (the temperature-scaled log-softmax) under top-k / top-p.
fn draw(lp: &[f32], top_k_limit: i64, top_p: f32, rng: &mut StdRng) -> u32 {
    let k = if top_k_limit > 0 {
        top_k_limit as usize
    } else {
        lp.len()
    };
    let mut cands = top_k(lp, k);
    if top_p < 1.0 {
        let mass: f64 = cands.iter().map(|&(_, l)| f64::from(l).exp()).sum();
        let mut acc = 0.0;
        let mut keep = cands.len();
        for (i, &(_, l)) in cands.iter().enumerate() {
            acc += f64::from(l).exp() / mass;
            if acc >= f64::from(top_p) {
                keep = i + 1;
                break;
            }
        }
        cands.truncate(keep.max(1));
    }
    let weights: Vec<f64> = cands.iter().map(|&(_, l)| f64::from(l).exp()).collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (&(tok, _), w) in cands.iter().zip(&weights) {
        if u < *w {
            return tok;
        }
        u -= w;
    }
    cands.last().map_or(0, |c| c.0)
}

impl SamplerModel {
    pub(crate) fn from_parts(spec: ModelSpec, base: Arc<BaseWeights>, adapters: Adapters) -> Self {
        Self {
            spec,
            base,
            adapters: Arc::new(adapters),
        }
    }

    /// The base model without any adapter.
    pub fn base(spec: &ModelSpec) -> Result<Self> {
        let base = weights::base_weights(spec)?;
        Ok(Self::from_parts(
            spec.clone(),
            base,
            Adapters::none(spec.layers),
        ))
    }

    /// The base model plus the PEFT adapter saved in `dir` (any rank and targets that fit the
    /// model; `lora_alpha` from `adapter_config.json`, 32 when absent).
    pub fn from_adapter_dir(spec: &ModelSpec, dir: &Path) -> Result<Self> {
        let saved = lora::read_adapter(spec, dir)?;
        let tensors = saved
            .tensors
            .into_iter()
            .map(|(shape, data)| Tensor::from_vec(data, shape, device()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let adapters = lora::adapters_from(
            spec.layers,
            &saved.sites,
            &tensors,
            saved.alpha / saved.rank as f64,
        )?;
        let base = weights::base_weights(spec)?;
        Ok(Self::from_parts(spec.clone(), base, adapters))
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Logits of the last position after `ids`, advancing `cache`.
    fn step(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let ids = Tensor::from_slice(ids, (1, ids.len()), device())?;
        model::forward(&self.base, &self.adapters, &ids, Some(cache), Mode::Infer)
    }

    /// Draws `num_samples` continuations of the prompt with a KV cache; deterministic given
    /// `seed`. Reported logprobs are under the temperature-scaled, untruncated distribution
    /// (temperature 0 = greedy, logprobs at temperature 1); prompt logprobs at temperature 1.
    pub fn sample(&self, spec: &SampleSpec) -> Result<SampleOutput> {
        validate_sample(&self.spec, spec)?;
        let mut cache = KvCache::default();
        let logits = self.step(&spec.prompt, &mut cache)?;
        let rows = logits.to_vec2::<f32>()?;
        let want_prompt = spec.prompt_logprobs || spec.topk_prompt_logprobs > 0;
        let (mut prompt_lp, mut prompt_topk) = (None, None);
        if want_prompt {
            let mut lps = vec![f32::NAN];
            let mut tops = vec![Vec::new()];
            for (i, row) in rows.iter().take(spec.prompt.len() - 1).enumerate() {
                let lsm = log_softmax(row, 1.0);
                lps.push(lsm[spec.prompt[i + 1] as usize]);
                if spec.topk_prompt_logprobs > 0 {
                    tops.push(top_k(&lsm, spec.topk_prompt_logprobs));
                }
            }
            prompt_lp = spec.prompt_logprobs.then_some(lps);
            prompt_topk = (spec.topk_prompt_logprobs > 0).then_some(tops);
        }
        let last = rows.last().cloned().unwrap_or_default();
        let tok = if spec.stop_strings.is_empty() {
            None
        } else {
            Some(tokenizer::load(&self.spec.tokenizer_dir)?)
        };
        let mut master = StdRng::seed_from_u64(spec.seed.unwrap_or_else(rand::random));
        let mut sequences = Vec::with_capacity(spec.num_samples);
        for _ in 0..spec.num_samples {
            let mut rng = StdRng::seed_from_u64(master.random());
            let mut cache = cache.clone();
            let mut row = last.clone();
            let mut seq = SampledSeq {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                stop: StopKind::Length,
                topk: (spec.topk_sample_logprobs > 0).then(Vec::new),
            };
            while seq.tokens.len() < spec.max_tokens {
                let greedy = spec.temperature <= 0.0;
                let lsm = log_softmax(&row, if greedy { 1.0 } else { spec.temperature });
                let next = if greedy {
                    top_k(&lsm, 1).first().map_or(0, |c| c.0)
                } else {
                    draw(&lsm, spec.top_k, spec.top_p, &mut rng)
                };
                seq.tokens.push(next);
                seq.logprobs.push(lsm[next as usize]);
                if let Some(t) = &mut seq.topk {
                    t.push(top_k(&lsm, spec.topk_sample_logprobs));
                }
                let mut stop = spec.stop_tokens.contains(&next)
                    || (spec.stop_at_eos && next == self.spec.eos_token_id);
                if let (false, Some(tok)) = (stop, &tok) {
                    let text = tokenizer::decode(tok, &seq.tokens)?;
                    stop = spec
                        .stop_strings
                        .iter()
                        .any(|s| !s.is_empty() && text.contains(s.as_str()));
                }
                if stop {
                    seq.stop = StopKind::Stop;
                    break;
                }
                if seq.tokens.len() >= spec.max_tokens || cache.len() >= self.spec.max_context {
                    break;
                }
                row = self
                    .step(&[next], &mut cache)?
                    .squeeze(0)?
                    .to_vec1::<f32>()?;
            }
            sequences.push(seq);
        }
        Ok(SampleOutput {
            sequences,
            prompt_logprobs: prompt_lp,
            topk_prompt_logprobs: prompt_topk,
        })
    }
}
