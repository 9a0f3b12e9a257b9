//! Loss functions: their names, configuration values and typed builders of their inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::datum::LossFnInputs;
use crate::error::{Error, Result};
use crate::macros::open_enum;
use crate::tensor::{TensorData, TensorDtype};

open_enum! {
    /// A built-in loss function name (`loss_fn` on the wire).
    pub enum LossFn {
        /// Supervised next-token cross entropy: `target_tokens`, `weights`.
        CrossEntropy = "cross_entropy",
        /// Importance-sampled policy gradient: `target_tokens`, `logprobs`, `advantages`.
        ImportanceSampling = "importance_sampling",
        /// Clipped PPO: `target_tokens`, `logprobs`, `advantages`.
        Ppo = "ppo",
        /// CISPO: `target_tokens`, `logprobs`, `advantages`.
        Cispo = "cispo",
        /// DRO: `target_tokens`, `logprobs`, `advantages` (config `beta`).
        Dro = "dro",
        /// GSPO: `target_tokens`, `logprobs`, `advantages`, `sequence_ratio_mask`.
        Gspo = "gspo",
        /// StableReinforce: `target_tokens` plus provenance spans of sampled sequences.
        StableReinforce = "stable_reinforce",
        /// A server-side custom loss (`loss_fn_config = {"loss_id": ...}`).
        Custom = "custom",
    }
}

/// Expected dtype of each well-known loss input (as the SDK coerces plain lists).
pub fn input_dtype(name: &str) -> Option<TensorDtype> {
    match name {
        "target_tokens" => Some(TensorDtype::Int64),
        "weights"
        | "advantages"
        | "logprobs"
        | "clip_low_threshold"
        | "clip_high_threshold"
        | "sequence_ratio_mask" => Some(TensorDtype::Float32),
        _ => None,
    }
}

impl LossFn {
    /// The `loss_fn_inputs` this loss needs (the server may accept more).
    pub fn required_inputs(&self) -> &'static [&'static str] {
        match self {
            Self::CrossEntropy => &["target_tokens", "weights"],
            Self::ImportanceSampling | Self::Ppo | Self::Cispo | Self::Dro => {
                &["target_tokens", "logprobs", "advantages"]
            }
            Self::Gspo => &[
                "target_tokens",
                "logprobs",
                "advantages",
                "sequence_ratio_mask",
            ],
            Self::StableReinforce | Self::Custom => &["target_tokens"],
            Self::Unknown(_) => &[],
        }
    }

    /// Checks presence, dtype and row alignment of the inputs this loss needs: every required
    /// input is present with its dtype, and all well-known inputs have the same leading
    /// dimension as `target_tokens`.
    ///
    /// # Errors
    /// [`Error::MissingLossInput`] or [`Error::InvalidLossInput`].
    pub fn check_inputs(&self, inputs: &LossFnInputs) -> Result<()> {
        for name in self.required_inputs() {
            if !inputs.contains_key(*name) {
                return Err(Error::MissingLossInput {
                    loss_fn: self.to_string(),
                    input: (*name).to_owned(),
                });
            }
        }
        let rows = inputs.get("target_tokens").map(TensorData::leading_dim);
        for (name, tensor) in inputs {
            let Some(dtype) = input_dtype(name) else {
                continue;
            };
            if tensor.dtype() != dtype {
                return Err(self.bad_input(
                    name,
                    format!(
                        "must be {}, got {}",
                        dtype.as_str(),
                        tensor.dtype().as_str()
                    ),
                ));
            }
            if let Some(rows) = rows
                && tensor.leading_dim() != rows
            {
                return Err(self.bad_input(
                    name,
                    format!(
                        "has shape {:?} but target_tokens has {} row(s)",
                        tensor.dims(),
                        rows.unwrap_or(0)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn bad_input(&self, input: &str, reason: String) -> Error {
        Error::InvalidLossInput {
            loss_fn: self.to_string(),
            input: input.to_owned(),
            reason,
        }
    }
}

/// Inputs of `cross_entropy`: per position, the target token and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropyInputs {
    /// Next-token targets (`int64`, shape `(N,)` or `(N, K)`).
    pub target_tokens: TensorData,
    /// Per-target weights (`float32`, same shape as `target_tokens`).
    pub weights: TensorData,
}

impl CrossEntropyInputs {
    /// 1-D targets and weights of equal length.
    ///
    /// # Errors
    /// [`Error::InvalidLossInput`] if the lengths differ.
    ///
    /// `target_tokens` may be any integer ids that widen to `i64`: `u32` token ids as a
    /// tokenizer returns them, or `i64`.
    pub fn new<T: Into<i64>>(
        target_tokens: impl IntoIterator<Item = T>,
        weights: Vec<f32>,
    ) -> Result<Self> {
        Self {
            target_tokens: TensorData::vector_i64(
                target_tokens.into_iter().map(Into::into).collect(),
            ),
            weights: TensorData::vector_f32(weights),
        }
        .checked()
    }

    fn checked(self) -> Result<Self> {
        let inputs = self.clone().into_unchecked();
        LossFn::CrossEntropy.check_inputs(&inputs)?;
        same_shape(&LossFn::CrossEntropy, &inputs, "weights")?;
        Ok(self)
    }

    fn into_unchecked(self) -> LossFnInputs {
        BTreeMap::from([
            ("target_tokens".to_owned(), self.target_tokens),
            ("weights".to_owned(), self.weights),
        ])
    }

    /// Validates and converts into the `loss_fn_inputs` map.
    ///
    /// # Errors
    /// [`Error::InvalidLossInput`] on a dtype or shape mismatch.
    pub fn into_inputs(self) -> Result<LossFnInputs> {
        Ok(self.checked()?.into_unchecked())
    }
}

/// Inputs of the policy-gradient losses (`importance_sampling`, `ppo`, `cispo`, `dro`, and
/// `gspo` with its `sequence_ratio_mask`).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyGradientInputs {
    /// Sampled tokens being scored (`int64`).
    pub target_tokens: TensorData,
    /// Sampler log-probabilities of those tokens (`float32`).
    pub logprobs: TensorData,
    /// Per-token advantages (`float32`).
    pub advantages: TensorData,
    /// GSPO only: which positions enter the sequence-level ratio (`float32`).
    pub sequence_ratio_mask: Option<TensorData>,
}

impl PolicyGradientInputs {
    /// 1-D targets, sampler logprobs and advantages of equal length.
    ///
    /// # Errors
    /// [`Error::InvalidLossInput`] if the lengths differ.
    ///
    /// `target_tokens` may be `u32` token ids or `i64` (any integer that widens to `i64`).
    pub fn new<T: Into<i64>>(
        target_tokens: impl IntoIterator<Item = T>,
        logprobs: Vec<f32>,
        advantages: Vec<f32>,
    ) -> Result<Self> {
        let inputs = Self {
            target_tokens: TensorData::vector_i64(
                target_tokens.into_iter().map(Into::into).collect(),
            ),
            logprobs: TensorData::vector_f32(logprobs),
            advantages: TensorData::vector_f32(advantages),
            sequence_ratio_mask: None,
        };
        inputs.clone().into_inputs_for(&LossFn::Ppo)?;
        Ok(inputs)
    }

    /// Adds the GSPO `sequence_ratio_mask`.
    #[must_use]
    pub fn sequence_ratio_mask(mut self, mask: Vec<f32>) -> Self {
        self.sequence_ratio_mask = Some(TensorData::vector_f32(mask));
        self
    }

    /// Validates against `loss_fn` and converts into the `loss_fn_inputs` map.
    ///
    /// # Errors
    /// [`Error::MissingLossInput`] (e.g. GSPO without a mask) or [`Error::InvalidLossInput`].
    pub fn into_inputs_for(self, loss_fn: &LossFn) -> Result<LossFnInputs> {
        let mut inputs = BTreeMap::from([
            ("target_tokens".to_owned(), self.target_tokens),
            ("logprobs".to_owned(), self.logprobs),
            ("advantages".to_owned(), self.advantages),
        ]);
        if let Some(mask) = self.sequence_ratio_mask {
            inputs.insert("sequence_ratio_mask".to_owned(), mask);
        }
        loss_fn.check_inputs(&inputs)?;
        for name in ["logprobs", "advantages"] {
            same_shape(loss_fn, &inputs, name)?;
        }
        Ok(inputs)
    }
}

fn same_shape(loss_fn: &LossFn, inputs: &LossFnInputs, name: &str) -> Result<()> {
    let (Some(targets), Some(other)) = (inputs.get("target_tokens"), inputs.get(name)) else {
        return Ok(());
    };
    if !targets.same_dims(other) {
        return Err(Error::InvalidLossInput {
            loss_fn: loss_fn.to_string(),
            input: name.to_owned(),
            reason: format!(
                "has shape {:?} but target_tokens has {:?}",
                other.dims(),
                targets.dims()
            ),
        });
    }
    Ok(())
}

/// One `loss_fn_config` value: a number or a text (text values only travel in the protobuf
/// `loss_fn_config_v2` map).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum LossConfigValue {
    /// A number, e.g. a clip threshold.
    Number(f64),
    /// A text, e.g. a custom loss id.
    Text(String),
}

impl Serialize for LossConfigValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => crate::json::finite(n, serializer),
            Self::Text(t) => serializer.serialize_str(t),
        }
    }
}

impl From<f64> for LossConfigValue {
    fn from(value: f64) -> Self {
        Self::Number(value)
    }
}
impl From<&str> for LossConfigValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}
impl From<String> for LossConfigValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

/// Configuration of a loss function, e.g. `{"clip_low_threshold": 0.8}` or
/// `{"loss_id": "..."}` for `custom`.
pub type LossFnConfig = BTreeMap<String, LossConfigValue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_misshapen_inputs_are_typed_errors() {
        assert!(CrossEntropyInputs::new(vec![1, 2], vec![1.0]).is_err());
        let pg = PolicyGradientInputs::new(vec![1, 2], vec![-0.5, -0.25], vec![1.0, 1.0]).unwrap();
        let err = pg.into_inputs_for(&LossFn::Gspo).unwrap_err();
        assert!(
            matches!(err, Error::MissingLossInput { ref input, .. } if input == "sequence_ratio_mask")
        );
        let mut inputs = CrossEntropyInputs::new(vec![1, 2], vec![1.0, 1.0])
            .unwrap()
            .into_inputs()
            .unwrap();
        inputs.insert("weights".to_owned(), TensorData::vector_i64(vec![1, 1]));
        assert!(matches!(
            LossFn::CrossEntropy.check_inputs(&inputs),
            Err(Error::InvalidLossInput { .. })
        ));
    }
}
