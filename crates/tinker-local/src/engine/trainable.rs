//! A LoRA-adapted model being trained: forward_backward, optim_step, checkpoints.
//!
//! LoRA variables are replaced, never mutated in place, after each step or load, so
//! [`SamplerModel`] snapshots taken earlier stay frozen without copying.

use std::path::Path;
use std::sync::Arc;

use candle_core::{D, Tensor, Var};
use serde_json::json;

use super::adam::{AdamState, AdamStep, StepReport};
use super::checkpoint::{self, ADAPTER_CONFIG, ADAPTER_WEIGHTS, NamedTensor, OPTIMIZER_STATE};
use super::device::device;
use super::error::{EngineError, Result};
use super::lora::{self, LORA_ALPHA, LoraParams};
use super::loss::{self, ForwardOutput, Loss, TrainExample};
use super::model::{self, Adapters, Mode};
use super::sampler::SamplerModel;
use super::spec::{LoraSpec, ModelSpec, WeightSource};
use super::weights::{self, BaseWeights};

/// A model with trainable LoRA adapters, accumulated gradients and Adam state.
/// Base weights are shared (`Arc`) with every other model of the same spec.
#[derive(Debug)]
pub struct TrainableModel {
    spec: ModelSpec,
    lora: LoraSpec,
    base: Arc<BaseWeights>,
    params: LoraParams,
    adapters: Adapters,
    /// Gradients summed since the last optimizer step, one flat buffer per variable.
    grads: Option<Vec<Vec<f32>>>,
    adam: AdamState,
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// What PEFT's `base_model_name_or_path` names: the Hugging Face folder the weights came
/// from, else the model's name.
fn base_model_path(spec: &ModelSpec) -> String {
    match &spec.weights {
        WeightSource::HfDir(dir) => dir.to_string_lossy().into_owned(),
        _ => spec.name.clone(),
    }
}

impl TrainableModel {
    /// A fresh model: shared deterministic base weights, new LoRA adapters (B = 0, so it
    /// starts identical to the base model).
    pub fn new(spec: &ModelSpec, lora: &LoraSpec) -> Result<Self> {
        let base = weights::base_weights(spec)?;
        let params = LoraParams::new(spec, lora)?;
        let adapters = params.adapters(spec.layers, |v| Ok(v.as_tensor().clone()))?;
        let adam = AdamState::new(
            &params
                .vars
                .iter()
                .map(|v| v.elem_count())
                .collect::<Vec<_>>(),
        );
        Ok(Self {
            spec: spec.clone(),
            lora: lora.clone(),
            base,
            params,
            adapters,
            grads: None,
            adam,
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

    /// Number of trainable (LoRA) parameters.
    pub fn parameter_count(&self) -> usize {
        self.params.vars.iter().map(|v| v.elem_count()).sum()
    }

    /// Bytes the frozen base weights occupy in memory (see [`WeightsDtype`](super::WeightsDtype)).
    pub fn base_weight_bytes(&self) -> usize {
        self.base.bytes()
    }

    /// PEFT names of the LoRA tensors, in a fixed order.
    pub fn lora_param_names(&self) -> Vec<String> {
        self.params.names()
    }

    /// Optimizer steps taken so far (restored by `load_optimizer`).
    pub fn optimizer_steps(&self) -> u64 {
        self.adam.step
    }

    /// The gradients accumulated since the last `optim_step`, by PEFT name (`None` before any
    /// `forward_backward`). For tests and diagnostics.
    pub fn accumulated_gradients(&self) -> Option<Vec<(String, Vec<f32>)>> {
        self.grads.as_ref().map(|g| {
            self.params
                .names()
                .into_iter()
                .zip(g.iter().cloned())
                .collect()
        })
    }

    /// Computes the loss and per-datum logprobs; unless `forward_only`, adds the gradients to
    /// those accumulated since the last `optim_step`. Inputs are validated first (typed user
    /// error on empty batch or datum, token ids ≥ vocab, length mismatches, missing loss
    /// inputs); metrics: `loss:sum`.
    pub fn forward_backward(
        &mut self,
        batch: &[TrainExample],
        loss: &Loss,
        forward_only: bool,
    ) -> Result<ForwardOutput> {
        loss.validate()?;
        if batch.is_empty() {
            return Err(EngineError::user(
                "forward_backward needs at least one datum",
            ));
        }
        for (i, ex) in batch.iter().enumerate() {
            loss::validate_example(i, ex, loss, self.spec.vocab_size, self.spec.max_context)?;
        }
        let (b, t) = (
            batch.len(),
            batch.iter().map(|e| e.tokens.len()).max().unwrap_or(1),
        );
        // Right padding: causal attention keeps real positions unaffected by it.
        let mut ids = vec![0u32; b * t];
        let mut targets = vec![0u32; b * t];
        for (i, ex) in batch.iter().enumerate() {
            ids[i * t..i * t + ex.tokens.len()].copy_from_slice(&ex.tokens);
            for (j, &tg) in ex.inputs.target_tokens.iter().enumerate() {
                targets[i * t + j] = tg as u32;
            }
        }
        let dev = device();
        let ids = Tensor::from_vec(ids, (b, t), dev)?;
        let logits = model::forward(&self.base, &self.adapters, &ids, None, Mode::Train)?;
        let logsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let lp = logsm
            .gather(&Tensor::from_vec(targets, (b * t, 1), dev)?, 1)?
            .squeeze(1)?;
        let lp_all = lp.to_vec1::<f32>()?;
        let mut total = 0.0;
        let mut coeffs = vec![0f32; b * t];
        let mut logprobs = Vec::with_capacity(b);
        let mut custom_metrics = loss::MetricTotals::default();
        for (i, ex) in batch.iter().enumerate() {
            let row = &lp_all[i * t..i * t + ex.tokens.len()];
            let (value, grads) = loss::datum_loss(loss, i, &ex.inputs, row, &mut custom_metrics)?;
            total += value;
            coeffs[i * t..i * t + grads.len()].copy_from_slice(&grads);
            logprobs.push(row.to_vec());
        }
        if !forward_only {
            // d(Σ lp·c)/dθ = Σ (dloss/dlp)·dlp/dθ: the exact gradient of the loss.
            let surrogate = (lp * Tensor::from_vec(coeffs, b * t, dev)?)?.sum_all()?;
            let store = surrogate.backward()?;
            let mut fresh = Vec::with_capacity(self.params.vars.len());
            for var in &self.params.vars {
                fresh.push(match store.get(var.as_tensor()) {
                    Some(g) => flat(g)?,
                    None => vec![0.0; var.elem_count()],
                });
            }
            match &mut self.grads {
                None => self.grads = Some(fresh),
                Some(acc) => {
                    for (a, f) in acc.iter_mut().zip(fresh) {
                        a.iter_mut().zip(f).for_each(|(a, f)| *a += f);
                    }
                }
            }
        }
        let mut metrics = std::collections::BTreeMap::new();
        metrics.insert("loss:sum".to_string(), total);
        custom_metrics.finish(b, &mut metrics);
        Ok(ForwardOutput { logprobs, metrics })
    }

    /// Replaces every LoRA variable with `values` (same order and sizes).
    fn replace_params(&mut self, values: Vec<Vec<f32>>) -> Result<()> {
        let mut vars = Vec::with_capacity(values.len());
        for (old, data) in self.params.vars.iter().zip(values) {
            vars.push(Var::from_tensor(&Tensor::from_vec(
                data,
                old.shape(),
                device(),
            )?)?);
        }
        self.params.vars = vars;
        self.adapters = self
            .params
            .adapters(self.spec.layers, |v| Ok(v.as_tensor().clone()))?;
        Ok(())
    }

    /// Applies the accumulated gradients (zeros if none) with Adam — global-norm clipping,
    /// bias correction, decoupled weight decay — and clears them. Metrics: `grad_norm:mean`
    /// (before clipping), `update_norm:mean`, `param_norm:mean`.
    pub fn optim_step(&mut self, step: &AdamStep) -> Result<StepReport> {
        step.validate()?;
        let grads = match self.grads.take() {
            Some(g) => g,
            None => self
                .params
                .vars
                .iter()
                .map(|v| vec![0.0; v.elem_count()])
                .collect(),
        };
        let mut values = self
            .params
            .vars
            .iter()
            .map(|v| flat(v.as_tensor()))
            .collect::<Result<Vec<_>>>()?;
        let report = self.adam.apply(step, &mut values, &grads);
        self.replace_params(values)?;
        Ok(report)
    }

    /// Writes `adapter_model.safetensors` + `adapter_config.json` (PEFT layout, each file
    /// atomically) into `dir`, creating it. Returns the bytes written.
    pub fn save_adapter(&self, dir: &Path) -> Result<u64> {
        let tensors = self
            .params
            .names()
            .into_iter()
            .zip(&self.params.vars)
            .map(|(name, v)| Ok((name, v.dims().to_vec(), flat(v.as_tensor())?)))
            .collect::<Result<Vec<NamedTensor>>>()?;
        let mut bytes = checkpoint::save_safetensors(&dir.join(ADAPTER_WEIGHTS), &tensors, &[])?;
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_path(&self.spec),
            "r": self.lora.rank,
            "lora_alpha": LORA_ALPHA,
            "lora_dropout": 0.0,
            "target_modules": lora::target_modules(&self.lora),
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "use_rslora": false,
            "use_dora": false,
        });
        let text = serde_json::to_vec_pretty(&config)
            .map_err(|e| EngineError::internal(format!("encoding adapter config: {e}")))?;
        bytes += checkpoint::write_atomic(&dir.join(ADAPTER_CONFIG), &text)?;
        Ok(bytes)
    }

    /// Replaces the LoRA weights with those saved in `dir` by `save_adapter`; they must have
    /// exactly this model's rank and targets (user error otherwise). Clears accumulated
    /// gradients; the optimizer state is kept (see `load_optimizer`).
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        let saved = lora::read_adapter(&self.spec, dir)?;
        if saved.rank != self.params.rank || saved.sites != self.params.sites {
            return Err(EngineError::user(format!(
                "adapter in {} (rank {}, {} adapted projections) does not match this model's LoRA config (rank {}, {} projections)",
                dir.display(),
                saved.rank,
                saved.sites.len(),
                self.params.rank,
                self.params.sites.len()
            )));
        }
        self.grads = None;
        self.replace_params(saved.tensors.into_iter().map(|(_, d)| d).collect())
    }

    /// Writes the Adam moments (`<name>.exp_avg`, `<name>.exp_avg_sq`) and step count into
    /// `dir/optimizer.safetensors`, atomically. Returns the bytes written.
    pub fn save_optimizer(&self, dir: &Path) -> Result<u64> {
        let mut tensors = Vec::with_capacity(self.params.vars.len() * 2);
        for (((name, var), m), v) in self
            .params
            .names()
            .into_iter()
            .zip(&self.params.vars)
            .zip(&self.adam.m)
            .zip(&self.adam.v)
        {
            tensors.push((format!("{name}.exp_avg"), var.dims().to_vec(), m.clone()));
            tensors.push((format!("{name}.exp_avg_sq"), var.dims().to_vec(), v.clone()));
        }
        checkpoint::save_safetensors(
            &dir.join(OPTIMIZER_STATE),
            &tensors,
            &[("step", self.adam.step.to_string())],
        )
    }

    /// Restores Adam state saved by `save_optimizer` for a model with the same LoRA config.
    pub fn load_optimizer(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(OPTIMIZER_STATE);
        let mut loaded = checkpoint::load_safetensors(&path)?;
        let bad = |m: String| {
            EngineError::user(format!(
                "optimizer state {} does not fit this model: {m}",
                path.display()
            ))
        };
        let step = loaded
            .metadata
            .get("step")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("missing step count".into()))?;
        let mut state = AdamState::new(&[]);
        for (name, var) in self.params.names().into_iter().zip(&self.params.vars) {
            for (suffix, into) in [("exp_avg", &mut state.m), ("exp_avg_sq", &mut state.v)] {
                let key = format!("{name}.{suffix}");
                match loaded.tensors.remove(&key) {
                    Some((shape, data)) if shape == var.dims() => into.push(data),
                    Some((shape, _)) => {
                        return Err(bad(format!(
                            "{key} has shape {shape:?}, expected {:?}",
                            var.dims()
                        )));
                    }
                    None => return Err(bad(format!("missing {key}"))),
                }
            }
        }
        if let Some(extra) = loaded.tensors.keys().next() {
            return Err(bad(format!("unexpected tensor {extra}")));
        }
        state.step = step;
        self.adam = state;
        Ok(())
    }

    /// A frozen snapshot of the base model plus the current adapters, for sampling.
    pub fn sampler(&self) -> SamplerModel {
        let mut adapters = self.adapters.clone();
        // Detached views share storage with the vars, which are replaced (never mutated) later.
        let detach = |p: &mut Option<model::LoraPair>| {
            if let Some(p) = p {
                p.a = p.a.detach();
                p.b = p.b.detach();
            }
        };
        adapters
            .layers
            .iter_mut()
            .flat_map(|l| l.iter_mut())
            .for_each(detach);
        detach(&mut adapters.lm_head);
        SamplerModel::from_parts(self.spec.clone(), Arc::clone(&self.base), adapters)
    }
}
