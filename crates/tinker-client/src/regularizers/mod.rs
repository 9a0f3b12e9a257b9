//! Structured regularizers (tinkex's regularizer pipeline): a base loss plus weighted
//! penalties, `loss = base + Σ weight·penalty`, written once as a custom-loss expression
//! ([`crate::custom_loss`]) so the same pipeline trains either on the client
//! ([`TrainingClient::forward_backward_custom_expr`](crate::TrainingClient::forward_backward_custom_expr):
//! a `forward`, then the graph evaluated here with reverse-mode autodiff) or on the server
//! ([`ServiceClient::create_custom_loss`](crate::ServiceClient::create_custom_loss) and
//! [`TrainingClient::forward_backward_custom_loss`](crate::TrainingClient::forward_backward_custom_loss)).
//!
//! Each regularizer's value, contribution (`weight·value`) and gradient norm come back as
//! metrics of that one graph (`custom/reg/<name>:sum`, `custom/grad_sq/<name>:sum`), so
//! [`RegularizedLoss::report`] builds the same [`PipelineReport`] from either path. Gradient
//! norms are written into the graph by symbolic differentiation
//! ([`CustomLossBuilder::gradient`](crate::custom_loss::CustomLossBuilder::gradient)): a
//! norm is `√(Σ_datums ‖d term / d logprobs‖²)`, the norm over the whole batch.
//!
//! # What each penalty means on per-token logprobs
//!
//! A custom loss sees one datum at a time: `lp`, the `[T]` logprobs of its target tokens.
//! tinkex applies its penalties to exactly such a vector, and so does this module; the
//! formulas are those of `nx_penalties` 0.1.2, where "the last axis" is the sequence:
//!
//! * **L1 / L2 / elastic net** shrink the logprobs toward 0 (i.e. raise the target
//!   tokens' probabilities) or, centred on the mean, even them out across positions.
//! * **Entropy** treats `exp(lp)` over the positions as a distribution (it is not one:
//!   these are probabilities of different tokens). With a temperature the positions are
//!   renormalised by `log_softmax(lp/τ)` first. It measures how evenly confidence is spread
//!   over the sequence.
//! * **KL** compares `lp` with reference logprobs of the same targets (e.g. a frozen
//!   model's) in the same position-as-distribution sense; it is a per-token log-ratio
//!   weighted by `exp(lp)` (forward) or `exp(ref)` (reverse).
//! * **Consistency** is a distance between `lp` and paired logprobs of the same targets
//!   (e.g. under an augmented prompt).
//! * **Orthogonality** penalises the Gram matrix of normalised rows. The logprobs alone
//!   are one row (tinkex's form), whose Gram matrix has no off-diagonal entry and whose
//!   normalised diagonal is 1: every mode is 0 with zero gradient there. It means something
//!   when [`Penalty::Orthogonality`] stacks further rank-1 fields as rows — e.g. the
//!   reference logprobs with `center: true`, which penalises the squared correlation
//!   between the learner's and the reference's per-token profile.
//! * **Gradient penalty** is `(‖∇_lp f‖ − target)²` for `f` the sum of the logprobs
//!   (tinkex's form: the gradient is all ones, so the value is the constant
//!   `(√T − target)²`) or the base loss. Its own gradient needs `∇_lp f` to depend on
//!   `lp`, i.e. a base loss that is not linear in the logprobs. tinkex's interpolated
//!   (WGAN-GP) mode is not provided: per-token logprobs have no "real" sample to
//!   interpolate toward.
//!
//! Unlike tinkex, KL and consistency are differentiated like every other term (tinkex
//! returns 0 for them under autodiff tracing, so it reports a zero gradient norm and trains
//! nothing with them).
//!
//! ```
//! use tinker_client::regularizers::{EntropyMode, Penalty, Pipeline, Regularizer};
//!
//! let loss = Pipeline::new("regularized")
//!     .regularizer(Regularizer::new("l1", 0.01, Penalty::l1()))
//!     .regularizer(Regularizer::new("entropy", 0.001, Penalty::entropy(EntropyMode::Maximize)))
//!     .build()
//!     .unwrap();
//! assert_eq!(loss.regularizer_names(), ["l1", "entropy"]);
//! ```

mod penalty;
mod pipeline;
mod report;
#[cfg(test)]
mod tests;

use std::fmt;

pub use penalty::{
    Center, ConsistencyMetric, EntropyMode, GradientOf, KlDirection, OrthogonalityMode, Penalty,
    Reduction, Target,
};
pub use pipeline::{BaseLoss, BaseLossFn, Pipeline, RegularizedLoss, Regularizer};
pub use report::{PipelineReport, RegularizerReport, TermReport};

use crate::custom_loss::CustomLossError;
use crate::error::{Error, ErrorKind};

/// Why a pipeline was refused or its metrics could not be read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RegularizerError {
    /// Two regularizers share a name.
    DuplicateNames {
        /// The repeated names.
        names: Vec<String>,
    },
    /// A name is not 1–48 characters of `[a-z0-9_]`.
    InvalidName {
        /// The name.
        name: String,
    },
    /// A weight is negative or not finite.
    InvalidWeight {
        /// The regularizer.
        name: String,
        /// Its weight.
        weight: f64,
    },
    /// An option is out of range.
    InvalidOption {
        /// The regularizer.
        name: String,
        /// Why.
        reason: String,
    },
    /// The loss expression was refused.
    Loss(CustomLossError),
    /// A result lacks a metric the pipeline writes (it came from another loss).
    MissingMetric {
        /// The key.
        key: String,
    },
}

impl fmt::Display for RegularizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateNames { names } => write!(f, "duplicate regularizer names: {names:?}"),
            Self::InvalidName { name } => write!(
                f,
                "regularizer name {name:?} must be 1 to 48 characters of a-z, 0-9 and _"
            ),
            Self::InvalidWeight { name, weight } => write!(
                f,
                "regularizer {name:?} has weight {weight}; weights are finite and ≥ 0"
            ),
            Self::InvalidOption { name, reason } => write!(f, "regularizer {name:?}: {reason}"),
            Self::Loss(e) => write!(f, "the regularized loss is refused: {e}"),
            Self::MissingMetric { key } => write!(
                f,
                "the result has no metric {key:?}; was it produced by this pipeline?"
            ),
        }
    }
}

impl std::error::Error for RegularizerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Loss(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CustomLossError> for RegularizerError {
    fn from(e: CustomLossError) -> Self {
        Self::Loss(e)
    }
}

impl From<RegularizerError> for Error {
    fn from(e: RegularizerError) -> Self {
        Error::new(ErrorKind::InvalidInput, e.to_string()).with_source(e)
    }
}
