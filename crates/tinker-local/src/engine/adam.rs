//! Adam with Tinker's `AdamParams` semantics, on flat f32 buffers.
//!
//! Matches PyTorch's `clip_grad_norm_` (global L2 norm, `coef = max / (norm + 1e-6)`, capped
//! at 1) followed by `AdamW` (decoupled weight decay `p ← p·(1 − lr·wd)`, bias-corrected
//! moments). `grad_clip_norm = 0` and `weight_decay = 0` switch those parts off.

use std::collections::BTreeMap;

use super::error::{EngineError, Result};

/// One optimizer step's hyper-parameters (Tinker's `AdamParams`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub learning_rate: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (0 = off).
    pub weight_decay: f64,
    /// Global gradient-norm clipping threshold (0 = off).
    pub grad_clip_norm: f64,
}

impl Default for AdamStep {
    /// Tinker SDK 0.38 defaults.
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-12,
            weight_decay: 0.0,
            grad_clip_norm: 0.0,
        }
    }
}

impl AdamStep {
    /// Rejects values Adam cannot use.
    pub(crate) fn validate(&self) -> Result<()> {
        let ok = self.learning_rate.is_finite()
            && self.learning_rate >= 0.0
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps.is_finite()
            && self.eps >= 0.0
            && self.weight_decay.is_finite()
            && self.weight_decay >= 0.0
            && self.grad_clip_norm.is_finite()
            && self.grad_clip_norm >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(EngineError::user(format!(
                "invalid adam_params: need finite lr ≥ 0, 0 ≤ beta1, beta2 < 1, eps ≥ 0, weight_decay ≥ 0, grad_clip_norm ≥ 0 (got {self:?})"
            )))
        }
    }
}

/// What an optimizer step reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepReport {
    /// Metrics keyed `"name:reduction"`: `grad_norm:mean` (before clipping),
    /// `param_norm:mean` and `update_norm:mean` (after the step).
    pub metrics: BTreeMap<String, f64>,
}

/// Adam moments for every trainable tensor, plus the step count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AdamState {
    /// Steps taken so far.
    pub step: u64,
    /// First moments, one buffer per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments, one buffer per parameter.
    pub v: Vec<Vec<f32>>,
}

impl AdamState {
    /// Zeroed moments for parameters of the given sizes.
    pub(crate) fn new(sizes: &[usize]) -> Self {
        Self {
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// Applies one step to `params` in place given their `grads`.
    pub(crate) fn apply(
        &mut self,
        hp: &AdamStep,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
    ) -> StepReport {
        let grad_norm = grads
            .iter()
            .flatten()
            .map(|&g| f64::from(g).powi(2))
            .sum::<f64>()
            .sqrt();
        let clip = if hp.grad_clip_norm > 0.0 {
            (hp.grad_clip_norm / (grad_norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - hp.beta1.powi(t), 1.0 - hp.beta2.powi(t));
        let decay = 1.0 - hp.learning_rate * hp.weight_decay;
        let (mut update_sq, mut param_sq) = (0.0f64, 0.0f64);
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = f64::from(g) * clip;
                let mm = hp.beta1 * f64::from(*m) + (1.0 - hp.beta1) * g;
                let vv = hp.beta2 * f64::from(*v) + (1.0 - hp.beta2) * g * g;
                let old = f64::from(*p);
                let new = old * decay - hp.learning_rate * (mm / c1) / ((vv / c2).sqrt() + hp.eps);
                *m = mm as f32;
                *v = vv as f32;
                *p = new as f32;
                update_sq += (new - old).powi(2);
                param_sq += new * new;
            }
        }
        let mut metrics = BTreeMap::new();
        metrics.insert("grad_norm:mean".to_string(), grad_norm);
        metrics.insert("update_norm:mean".to_string(), update_sq.sqrt());
        metrics.insert("param_norm:mean".to_string(), param_sq.sqrt());
        StepReport { metrics }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_matches_hand_computation() {
        // One parameter p=1, grad g=2; lr 0.1, betas (0.9, 0.99), eps 1e-8, wd 0.5, clip 1.
        // clip coef = 1 / (2 + 1e-6) → g' ≈ 0.9999995; m̂ = g', v̂ = g'², update = lr·g'/(|g'|+eps) ≈ 0.1.
        // decay: p·(1 − 0.1·0.5) = 0.95 → 0.95 − 0.1 = 0.85.
        let hp = AdamStep {
            learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.5,
            grad_clip_norm: 1.0,
        };
        let mut state = AdamState::new(&[1]);
        let mut params = vec![vec![1.0f32]];
        let report = state.apply(&hp, &mut params, &[vec![2.0]]);
        assert!((params[0][0] - 0.85).abs() < 1e-6, "{}", params[0][0]);
        assert!((report.metrics["grad_norm:mean"] - 2.0).abs() < 1e-9);
        let g = 2.0 / (2.0 + 1e-6);
        assert!((f64::from(state.m[0][0]) - 0.1 * g).abs() < 1e-7);
        assert!((f64::from(state.v[0][0]) - 0.01 * g * g).abs() < 1e-7);
    }

    #[test]
    fn second_step_uses_bias_correction() {
        // No clip, no decay: two steps with grads 1 then 3 on p=0, lr 1, betas (0.5, 0.5), eps 0.
        let hp = AdamStep {
            learning_rate: 1.0,
            beta1: 0.5,
            beta2: 0.5,
            eps: 0.0,
            weight_decay: 0.0,
            grad_clip_norm: 0.0,
        };
        let mut state = AdamState::new(&[1]);
        let mut params = vec![vec![0.0f32]];
        state.apply(&hp, &mut params, &[vec![1.0]]);
        assert!((params[0][0] + 1.0).abs() < 1e-6);
        state.apply(&hp, &mut params, &[vec![3.0]]);
        // m = 0.5·0.5 + 0.5·3 = 1.75 → m̂ = 1.75/0.75; v = 0.25 + 4.5 = 4.75 → v̂ = 4.75/0.75.
        let step2 = (1.75f64 / 0.75) / (4.75f64 / 0.75).sqrt();
        assert!(
            (f64::from(params[0][0]) - (-1.0 - step2)).abs() < 1e-5,
            "{}",
            params[0][0]
        );
        assert_eq!(state.step, 2);
    }

    #[test]
    fn clipping_is_global_and_off_at_zero() {
        let hp = AdamStep {
            learning_rate: 0.0,
            grad_clip_norm: 5.0,
            ..AdamStep::default()
        };
        let mut state = AdamState::new(&[1, 1]);
        let mut params = vec![vec![0.0f32], vec![0.0]];
        // Global norm of (30, 40) is 50 → scaled by 5/50: m = 0.1·(3, 4).
        state.apply(&hp, &mut params, &[vec![30.0], vec![40.0]]);
        assert!((state.m[0][0] - 0.3).abs() < 1e-5 && (state.m[1][0] - 0.4).abs() < 1e-5);
        let hp = AdamStep {
            grad_clip_norm: 0.0,
            ..hp
        };
        let mut state = AdamState::new(&[1]);
        state.apply(&hp, &mut params[..1], &[vec![30.0]]);
        assert!((state.m[0][0] - 3.0).abs() < 1e-5);
    }
}
