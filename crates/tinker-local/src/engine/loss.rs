//! Tinker's built-in losses as per-token scalar math.
//!
//! Every loss is a sum over tokens of a function of the learner's logprob `lp` of the target
//! token. We compute each token's loss and its derivative `d loss / d lp` here, in f64, and the
//! model backpropagates `Σ lp · (d loss / d lp)`: one mechanism gives exact gradients for every
//! loss, including the non-smooth clipped ones, and is easy to check by finite differences.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::custom_loss::{CustomGraph, Tensor};
use super::error::{EngineError, Result};

/// A built-in loss, with its `loss_fn_config` values. Formulas follow the public Tinker docs;
/// `p` is the learner's probability of the target token, `q` the sampler's (from `logprobs`),
/// `A` the advantage, `w` the optional per-token weight (1 when absent):
///
/// * `CrossEntropy`: `-Σ w·log p` (needs `weights`-free or weighted targets only).
/// * `ImportanceSampling`: `-Σ w·(p/q)·A`.
/// * `Ppo`: `-Σ w·min((p/q)·A, clip(p/q, clip_low, clip_high)·A)`.
/// * `Cispo`: `-Σ w·sg(clip(p/q, clip_low, clip_high))·log p·A` (`sg` = no gradient).
/// * `Dro`: `-Σ w·(log p·A − ½·beta·(log p − log q)²)`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    /// Supervised weighted cross-entropy (`cross_entropy`).
    CrossEntropy,
    /// REINFORCE with importance weights (`importance_sampling`).
    ImportanceSampling,
    /// PPO clipped objective (`ppo`); thresholds bound the probability ratio (Tinker: 0.8 / 1.2).
    Ppo {
        /// `clip_low_threshold`: lower bound of the ratio.
        clip_low: f32,
        /// `clip_high_threshold`: upper bound of the ratio.
        clip_high: f32,
    },
    /// Clipped importance-weight policy optimisation (`cispo`).
    Cispo {
        /// `clip_low_threshold`: lower bound of the ratio.
        clip_low: f32,
        /// `clip_high_threshold`: upper bound of the ratio.
        clip_high: f32,
    },
    /// Direct reward optimisation with a quadratic penalty (`dro`).
    Dro {
        /// `beta`: weight of the quadratic penalty.
        beta: f32,
    },
    /// A server-side custom loss (`custom`, §6.8) with each datum's declared inputs.
    Custom(CustomBatch),
}

/// A custom loss graph and, per datum, its declared inputs after `logprobs` (in order).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomBatch {
    /// The validated graph.
    pub graph: Arc<CustomGraph>,
    /// `inputs[datum]` = that datum's tensors for `graph.inputs()[1..]`.
    pub inputs: Vec<Vec<Tensor>>,
}

/// Sums of per-datum custom metrics, reduced per the key's suffix when the batch is done:
/// `:sum` summed, `:mean` averaged over the batch's datums (as the SDK does).
#[derive(Debug, Default)]
pub(crate) struct MetricTotals {
    sums: BTreeMap<String, f64>,
}

impl MetricTotals {
    /// Adds the metrics to `into`, reduced over `datums` datums.
    pub(crate) fn finish(self, datums: usize, into: &mut BTreeMap<String, f64>) {
        for (key, sum) in self.sums {
            let value = if key.ends_with(":mean") {
                sum / datums.max(1) as f64
            } else {
                sum
            };
            into.insert(key, value);
        }
    }
}

impl Loss {
    /// The Tinker name of the loss (`loss_fn`).
    pub fn name(&self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross_entropy",
            Loss::ImportanceSampling => "importance_sampling",
            Loss::Ppo { .. } => "ppo",
            Loss::Cispo { .. } => "cispo",
            Loss::Dro { .. } => "dro",
            Loss::Custom(_) => "custom",
        }
    }

    /// Builds a loss from its Tinker name and `loss_fn_config` (unknown keys are rejected;
    /// missing ones take the documented defaults: clip thresholds 0.8 / 1.2, beta 0.05).
    pub fn from_name(
        name: &str,
        config: &BTreeMap<String, f64>,
    ) -> std::result::Result<Self, EngineError> {
        let allowed: &[&str] = match name {
            "cross_entropy" | "importance_sampling" => &[],
            "ppo" | "cispo" => &["clip_low_threshold", "clip_high_threshold"],
            "dro" => &["beta"],
            other => return Err(EngineError::user(format!("unknown loss_fn {other:?}"))),
        };
        if let Some(key) = config.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(EngineError::user(format!(
                "loss_fn {name:?} does not take config key {key:?}"
            )));
        }
        let get = |k: &str, default: f64| config.get(k).copied().unwrap_or(default) as f32;
        let loss = match name {
            "cross_entropy" => Loss::CrossEntropy,
            "importance_sampling" => Loss::ImportanceSampling,
            "ppo" => Loss::Ppo {
                clip_low: get("clip_low_threshold", 0.8),
                clip_high: get("clip_high_threshold", 1.2),
            },
            "cispo" => Loss::Cispo {
                clip_low: get("clip_low_threshold", 0.8),
                clip_high: get("clip_high_threshold", 1.2),
            },
            _ => Loss::Dro {
                beta: get("beta", 0.05),
            },
        };
        loss.validate()?;
        Ok(loss)
    }

    /// Rejects non-finite or inverted configuration values.
    pub(crate) fn validate(&self) -> Result<()> {
        match *self {
            Loss::Ppo {
                clip_low,
                clip_high,
            }
            | Loss::Cispo {
                clip_low,
                clip_high,
            } if !(clip_low.is_finite() && clip_high.is_finite() && clip_low <= clip_high) => {
                return Err(EngineError::user(format!(
                    "{}: clip thresholds must be finite with clip_low_threshold <= clip_high_threshold (got {clip_low}, {clip_high})",
                    self.name()
                )));
            }
            Loss::Dro { beta } if !beta.is_finite() => {
                return Err(EngineError::user(format!(
                    "dro: beta must be finite (got {beta})"
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the loss needs the sampler's `logprobs` and `advantages`.
    fn is_policy_gradient(&self) -> bool {
        !matches!(self, Loss::CrossEntropy | Loss::Custom(_))
    }

    /// Loss of one token and its derivative with respect to the learner logprob `lp`.
    /// `q` is the sampler logprob, `a` the advantage, `w` the token weight.
    pub(crate) fn token(&self, lp: f64, q: f64, a: f64, w: f64) -> (f64, f64) {
        let (loss, grad) = match *self {
            // Custom losses are not per-token; `datum_loss` evaluates their graph.
            Loss::Custom(_) => (0.0, 0.0),
            Loss::CrossEntropy => (-lp, -1.0),
            Loss::ImportanceSampling => {
                let r = (lp - q).exp();
                (-r * a, -r * a)
            }
            Loss::Ppo {
                clip_low,
                clip_high,
            } => {
                let r = (lp - q).exp();
                let (lo, hi) = (f64::from(clip_low), f64::from(clip_high));
                let unclipped = r * a;
                let clipped = r.clamp(lo, hi) * a;
                // min(): the clipped branch carries gradient only inside the clip range.
                let grad = if unclipped <= clipped || (lo..=hi).contains(&r) {
                    -r * a
                } else {
                    0.0
                };
                (-unclipped.min(clipped), grad)
            }
            Loss::Cispo {
                clip_low,
                clip_high,
            } => {
                let c = (lp - q)
                    .exp()
                    .clamp(f64::from(clip_low), f64::from(clip_high));
                (-c * lp * a, -c * a)
            }
            Loss::Dro { beta } => {
                let b = f64::from(beta);
                let d = lp - q;
                (-(lp * a - 0.5 * b * d * d), -(a - b * d))
            }
        };
        (w * loss, w * grad)
    }
}

/// Per-position loss inputs of one datum (Tinker's `loss_fn_inputs`), each as long as the
/// datum's tokens: position `i` holds what the model should predict after `tokens[..=i]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossInputs {
    /// Token to predict at each position.
    pub target_tokens: Vec<i64>,
    /// Per-token weights (default 1; 0 masks a position out).
    pub weights: Option<Vec<f32>>,
    /// Per-token advantages (policy-gradient losses).
    pub advantages: Option<Vec<f32>>,
    /// Per-token sampler logprobs `log q` (policy-gradient losses).
    pub logprobs: Option<Vec<f32>>,
}

/// One training datum: input tokens and the loss inputs aligned with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainExample {
    /// Input tokens.
    pub tokens: Vec<u32>,
    /// Loss inputs, one value per input token.
    pub inputs: LossInputs,
}

/// What `forward_backward` returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForwardOutput {
    /// Per datum, the learner logprob of `target_tokens[i]` at position `i`.
    pub logprobs: Vec<Vec<f32>>,
    /// Metrics keyed `"name:reduction"`; always holds `loss:sum`.
    pub metrics: BTreeMap<String, f64>,
}

/// Checks one datum against the model and the loss; returns its per-token weights.
pub(crate) fn validate_example(
    index: usize,
    ex: &TrainExample,
    loss: &Loss,
    vocab: usize,
    max_context: usize,
) -> Result<()> {
    let n = ex.tokens.len();
    let bad = |msg: String| Err(EngineError::user(format!("datum {index}: {msg}")));
    if n == 0 {
        return bad("model_input is empty".into());
    }
    if n > max_context {
        return bad(format!(
            "{n} tokens exceed the model's context of {max_context}"
        ));
    }
    if let Some(t) = ex.tokens.iter().find(|&&t| t as usize >= vocab) {
        return bad(format!(
            "token id {t} is out of range for vocabulary size {vocab}"
        ));
    }
    let inputs = &ex.inputs;
    if inputs.target_tokens.len() != n {
        return bad(format!(
            "target_tokens has {} entries but model_input has {n} tokens",
            inputs.target_tokens.len()
        ));
    }
    if let Some(t) = inputs
        .target_tokens
        .iter()
        .find(|&&t| t < 0 || t as usize >= vocab)
    {
        return bad(format!(
            "target token id {t} is out of range for vocabulary size {vocab}"
        ));
    }
    let check = |name: &str, v: &Option<Vec<f32>>, required: bool| -> Result<()> {
        match v {
            None if required => Err(EngineError::user(format!(
                "datum {index}: loss_fn {:?} requires loss_fn_inputs[{name:?}]",
                loss.name()
            ))),
            Some(v) if v.len() != n => Err(EngineError::user(format!(
                "datum {index}: {name} has {} entries but model_input has {n} tokens",
                v.len()
            ))),
            Some(v) if v.iter().any(|x| !x.is_finite()) => Err(EngineError::user(format!(
                "datum {index}: {name} holds a non-finite value"
            ))),
            _ => Ok(()),
        }
    };
    let pg = loss.is_policy_gradient();
    check("weights", &inputs.weights, false)?;
    check("advantages", &inputs.advantages, pg)?;
    check("logprobs", &inputs.logprobs, pg)?;
    Ok(())
}

/// Loss value of datum `index` and `d loss / d lp` per position, given the learner
/// logprobs; a custom loss also adds its metrics to `metrics`.
pub(crate) fn datum_loss(
    loss: &Loss,
    index: usize,
    inputs: &LossInputs,
    lp: &[f32],
    metrics: &mut MetricTotals,
) -> Result<(f64, Vec<f32>)> {
    if let Loss::Custom(batch) = loss {
        let declared = batch.inputs.get(index).ok_or_else(|| {
            EngineError::internal(format!("custom loss has no inputs for datum {index}"))
        })?;
        let mut all = Vec::with_capacity(declared.len() + 1);
        all.push(Tensor::vector(lp.iter().map(|&x| f64::from(x)).collect()));
        all.extend(declared.iter().cloned());
        let e = batch
            .graph
            .evaluate(&all)
            .map_err(|e| EngineError::user(format!("datum {index}: {e}")))?;
        for (key, value) in e.metrics {
            *metrics.sums.entry(key).or_default() += value;
        }
        return Ok((e.loss, e.grad.iter().map(|&g| g as f32).collect()));
    }
    Ok(builtin_datum_loss(loss, inputs, lp))
}

fn builtin_datum_loss(loss: &Loss, inputs: &LossInputs, lp: &[f32]) -> (f64, Vec<f32>) {
    let at = |v: &Option<Vec<f32>>, i: usize, default: f64| {
        v.as_ref()
            .and_then(|v| v.get(i))
            .map_or(default, |&x| f64::from(x))
    };
    let mut total = 0.0;
    let grads = lp
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let w = at(&inputs.weights, i, 1.0);
            if w == 0.0 {
                return 0.0;
            }
            let (value, grad) = loss.token(
                f64::from(l),
                at(&inputs.logprobs, i, 0.0),
                at(&inputs.advantages, i, 0.0),
                w,
            );
            total += value;
            grad as f32
        })
        .collect();
    (total, grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn losses() -> Vec<Loss> {
        vec![
            Loss::CrossEntropy,
            Loss::ImportanceSampling,
            Loss::Ppo {
                clip_low: 0.8,
                clip_high: 1.2,
            },
            Loss::Cispo {
                clip_low: 0.8,
                clip_high: 1.2,
            },
            Loss::Dro { beta: 0.3 },
        ]
    }

    #[test]
    fn token_derivatives_match_finite_differences() {
        // Points away from the clip boundaries (r = e^(lp - q)); both advantage signs.
        let h = 1e-6;
        for loss in losses() {
            for (lp, q) in [(-1.0, -1.0), (-2.0, -1.0), (-0.5, -1.5), (-3.0, -3.1)] {
                for a in [1.5, -0.7] {
                    let (_, grad) = loss.token(lp, q, a, 2.0);
                    let fd = (loss.token(lp + h, q, a, 2.0).0 - loss.token(lp - h, q, a, 2.0).0)
                        / (2.0 * h);
                    // CISPO's ratio is stop-gradient: its derivative treats the clipped ratio as constant.
                    let fd = if let Loss::Cispo {
                        clip_low,
                        clip_high,
                    } = loss
                    {
                        -2.0 * (lp - q)
                            .exp()
                            .clamp(f64::from(clip_low), f64::from(clip_high))
                            * a
                    } else {
                        fd
                    };
                    assert!(
                        (grad - fd).abs() < 1e-5,
                        "{loss:?} lp={lp} q={q} a={a}: {grad} vs {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn values_follow_the_documented_formulas() {
        let (lp, q, a) = (-1.0f64, -1.5f64, 2.0f64);
        let r = (lp - q).exp(); // ≈ 1.6487, above clip_high
        assert_eq!(Loss::CrossEntropy.token(lp, q, a, 0.5).0, 0.5);
        assert!((Loss::ImportanceSampling.token(lp, q, a, 1.0).0 + r * a).abs() < 1e-12);
        let ppo = Loss::Ppo {
            clip_low: 0.8,
            clip_high: 1.2,
        };
        // A > 0, r > 1.2: the clipped term is smaller, so it wins and the gradient is zero.
        let (v, g) = ppo.token(lp, q, a, 1.0);
        assert!((v + 1.2 * a).abs() < 1e-6 && g == 0.0, "{v} {g}");
        // A < 0: the unclipped term is smaller and keeps its gradient.
        let (v, g) = ppo.token(lp, q, -a, 1.0);
        assert!((v - r * a).abs() < 1e-12 && (g - r * a).abs() < 1e-12);
        let cispo = Loss::Cispo {
            clip_low: 0.8,
            clip_high: 1.2,
        };
        assert!((cispo.token(lp, q, a, 1.0).0 - (-1.2 * lp * a)).abs() < 1e-6);
        let dro = Loss::Dro { beta: 0.1 };
        assert!((dro.token(lp, q, a, 1.0).0 - (-(lp * a - 0.05 * 0.25))).abs() < 1e-6);
    }

    #[test]
    fn names_and_configs() {
        let cfg = BTreeMap::from([
            ("clip_low_threshold".to_string(), 0.5),
            ("clip_high_threshold".to_string(), 2.0),
        ]);
        assert_eq!(
            Loss::from_name("ppo", &cfg).unwrap(),
            Loss::Ppo {
                clip_low: 0.5,
                clip_high: 2.0
            }
        );
        assert_eq!(
            Loss::from_name("cispo", &BTreeMap::new()).unwrap(),
            Loss::Cispo {
                clip_low: 0.8,
                clip_high: 1.2
            }
        );
        assert_eq!(
            Loss::from_name("dro", &BTreeMap::from([("beta".to_string(), 0.2)]))
                .unwrap()
                .name(),
            "dro"
        );
        assert!(Loss::from_name("dro", &cfg).unwrap_err().is_user_error());
        assert!(
            Loss::from_name("nope", &BTreeMap::new())
                .unwrap_err()
                .is_user_error()
        );
        let inverted = BTreeMap::from([
            ("clip_low_threshold".to_string(), 2.0),
            ("clip_high_threshold".to_string(), 1.0),
        ]);
        assert!(Loss::from_name("ppo", &inverted).is_err());
    }
}
