//! `Datum`: one training example (model input + per-position loss inputs + provenance).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loss::LossFn;
use crate::model_input::ModelInput;
use crate::tensor::TensorData;

/// The named tensors a loss function reads, e.g. `target_tokens` and `weights`.
pub type LossFnInputs = BTreeMap<String, TensorData>;

/// Where a run of datum positions came from: a sampled sequence's prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRef {
    /// `SampledSequence::sequence_id` of the sequence this run refers to.
    pub sequence_id: String,
    /// Position of the run within that sequence's prompt or sampled tokens.
    #[serde(default)]
    pub offset: u64,
    /// Number of consecutive positions in the run.
    pub length: u64,
}

/// One run of positions with its provenance (the protobuf `ProvenanceSpan` oneof; in JSON an
/// object with a single `prompt_tokens` or `sampled_tokens` key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProvenanceSpan {
    /// Positions `[offset, offset + length)` of a request's prompt.
    PromptTokens(SpanRef),
    /// Positions `[offset, offset + length)` of a sampled sequence's tokens.
    SampledTokens(SpanRef),
}

impl ProvenanceSpan {
    /// A prompt run.
    pub fn prompt(sequence_id: impl Into<String>, offset: u64, length: u64) -> Self {
        Self::PromptTokens(SpanRef {
            sequence_id: sequence_id.into(),
            offset,
            length,
        })
    }

    /// A sampled run.
    pub fn sampled(sequence_id: impl Into<String>, offset: u64, length: u64) -> Self {
        Self::SampledTokens(SpanRef {
            sequence_id: sequence_id.into(),
            offset,
            length,
        })
    }

    /// The run's reference, whichever its kind.
    pub fn span(&self) -> &SpanRef {
        match self {
            Self::PromptTokens(s) | Self::SampledTokens(s) => s,
        }
    }
}

/// One training example.
///
/// JSON (legacy training bodies) is `{"loss_fn_inputs": {...}, "model_input": {...}}` in that
/// order; on the 0.38 wire a datum travels inside the protobuf `ForwardBackwardRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Datum {
    /// Per-position loss inputs; row *i* belongs to input position *i*.
    #[serde(default)]
    pub loss_fn_inputs: LossFnInputs,
    /// The tokens (and other chunks) fed to the model.
    pub model_input: ModelInput,
    /// Provenance runs tiling `model_input` (set together with `loss_fn_input_spans`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_input_spans: Option<Vec<ProvenanceSpan>>,
    /// Provenance runs tiling the rows of `loss_fn_inputs["target_tokens"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_fn_input_spans: Option<Vec<ProvenanceSpan>>,
}

impl Datum {
    /// A datum without provenance.
    pub fn new(model_input: ModelInput, loss_fn_inputs: LossFnInputs) -> Self {
        Self {
            loss_fn_inputs,
            model_input,
            model_input_spans: None,
            loss_fn_input_spans: None,
        }
    }

    /// Attaches provenance: `model_input` runs must tile the input's length and
    /// `loss_fn_inputs` runs the rows of a 1-D `target_tokens`.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] if a run list does not cover its field exactly, or a sequence
    /// id is empty.
    pub fn with_provenance(
        mut self,
        model_input: Vec<ProvenanceSpan>,
        loss_fn_inputs: Vec<ProvenanceSpan>,
    ) -> Result<Self> {
        check_tiling(
            "model_input_spans",
            &model_input,
            self.model_input.length()?,
        )?;
        if let Some(targets) = self.loss_fn_inputs.get("target_tokens")
            && let Some(&[rows]) = targets.shape()
        {
            check_tiling("loss_fn_input_spans", &loss_fn_inputs, rows)?;
        }
        self.model_input_spans = Some(model_input);
        self.loss_fn_input_spans = Some(loss_fn_inputs);
        Ok(self)
    }

    /// Checks that this datum carries what `loss_fn` needs (see [`LossFn::check_inputs`]).
    ///
    /// # Errors
    /// [`Error::MissingLossInput`] / [`Error::InvalidLossInput`].
    pub fn check_for(&self, loss_fn: &LossFn) -> Result<()> {
        loss_fn.check_inputs(&self.loss_fn_inputs)?;
        if matches!(loss_fn, LossFn::StableReinforce) && self.loss_fn_input_spans.is_none() {
            return Err(Error::MissingLossInput {
                loss_fn: loss_fn.to_string(),
                input: "loss_fn_input_spans".to_owned(),
            });
        }
        Ok(())
    }
}

fn check_tiling(field: &str, spans: &[ProvenanceSpan], expected: usize) -> Result<()> {
    if spans.iter().any(|s| s.span().sequence_id.is_empty()) {
        return Err(Error::InvalidValue {
            field: field.to_owned(),
            reason: "sequence_id must be non-empty".to_owned(),
        });
    }
    let total: u64 = spans.iter().map(|s| s.span().length).sum();
    if total != expected as u64 {
        return Err(Error::InvalidValue {
            field: field.to_owned(),
            reason: format!("runs cover {total} positions but the field has {expected}"),
        });
    }
    Ok(())
}
