//! Why a custom loss is refused before anything is sent.

use std::fmt;

use crate::error::{Error, ErrorKind};

use super::*;

/// Why a custom loss was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CustomLossError {
    /// More than [`MAX_INPUTS`] inputs, `logprobs` included.
    TooManyInputs {
        /// How many were declared.
        count: usize,
    },
    /// An input name is not `[a-z_][a-z0-9_]{0,63}`.
    InvalidInputName {
        /// The name.
        name: String,
    },
    /// Two inputs share a name (`logprobs` is always the first).
    DuplicateInput {
        /// The name.
        name: String,
    },
    /// `logprobs` must have rank 1 (`[T]`) or 2 (`[T, K]`).
    LogprobsRank,
    /// A metric key is not `custom/[a-z0-9_./-]{1,64}:(sum|mean)`.
    InvalidMetricKey {
        /// The key.
        key: String,
    },
    /// A metric key appears twice.
    DuplicateMetric {
        /// The key.
        key: String,
    },
    /// The loss is not a scalar.
    NonScalarLoss {
        /// Its rank.
        rank: u8,
    },
    /// A metric is not a scalar.
    NonScalarMetric {
        /// The key.
        key: String,
        /// Its rank.
        rank: u8,
    },
    /// An expression uses an input of another builder.
    ForeignExpression,
    /// A traced graph ([`CustomLoss::from_graph`]) the SDK would not send.
    InvalidGraph {
        /// Why.
        reason: String,
    },
    /// A reduction names a dimension the tensor does not have.
    InvalidDim {
        /// The dimension.
        dim: i64,
        /// The tensor's rank.
        rank: u8,
    },
    /// The server does not run custom losses (`custom_loss_server_side` is off).
    ServerSideDisabled,
    /// The loss was created in another session; only that session's clients can use it.
    WrongSession {
        /// The loss's name.
        loss: String,
    },
    /// A datum lacks an input the loss takes.
    MissingInput {
        /// The datum's index.
        datum: usize,
        /// The missing `loss_fn_inputs` key.
        key: String,
    },
    /// A datum's input has another rank than declared (`logprobs` is checked against
    /// `target_tokens`).
    InputRank {
        /// The datum's index.
        datum: usize,
        /// The `loss_fn_inputs` key.
        key: String,
        /// Its rank in the datum.
        rank: usize,
        /// The declared rank.
        declared: u8,
    },
    /// Client-side evaluation ([`CustomLoss::evaluate`]) failed: shapes that do not
    /// broadcast, a non-scalar result, a non-finite loss or gradient, an unsupported call.
    Evaluation {
        /// Why.
        reason: String,
    },
    /// [`CustomLossBuilder::gradient`] cannot differentiate the expression symbolically.
    GradientUnsupported {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for CustomLossError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyInputs { count } => write!(
                f,
                "a custom loss takes at most {MAX_INPUTS} inputs, logprobs included (got {count})"
            ),
            Self::InvalidInputName { name } => write!(
                f,
                "input {name:?} must be a lowercase name of letters, digits and underscores"
            ),
            Self::DuplicateInput { name } => write!(f, "input {name:?} is declared twice"),
            Self::LogprobsRank => f.write_str("logprobs has rank 1 ([T]) or 2 ([T, K])"),
            Self::InvalidMetricKey { key } => write!(
                f,
                "metric {key:?} must be named custom/<name>:sum or custom/<name>:mean in lowercase"
            ),
            Self::DuplicateMetric { key } => write!(f, "metric {key:?} is given twice"),
            Self::NonScalarLoss { rank } => {
                write!(f, "the loss must be a scalar, got a tensor of rank {rank}")
            }
            Self::NonScalarMetric { key, rank } => {
                write!(
                    f,
                    "metric {key:?} must be a scalar, got a tensor of rank {rank}"
                )
            }
            Self::ForeignExpression => {
                f.write_str("an expression uses an input of another custom-loss builder")
            }
            Self::InvalidGraph { reason } => write!(f, "the traced graph is refused: {reason}"),
            Self::InvalidDim { dim, rank } => {
                write!(f, "dim {dim} is out of range for a tensor of rank {rank}")
            }
            Self::ServerSideDisabled => f.write_str(
                "the server does not run custom losses (custom_loss_server_side is off); \
                 use forward_backward_custom with a closure instead",
            ),
            Self::WrongSession { loss } => write!(
                f,
                "custom loss {loss:?} was created in another session; only that session's \
                 clients can use it"
            ),
            Self::MissingInput { datum, key } => {
                write!(
                    f,
                    "datum[{datum}] has no loss_fn_inputs[{key:?}], which the loss takes"
                )
            }
            Self::InputRank {
                datum,
                key,
                rank,
                declared,
            } => write!(
                f,
                "datum[{datum}] loss_fn_inputs[{key:?}] has rank {rank}, but the loss declared rank {declared}"
            ),
            Self::Evaluation { reason } => {
                write!(f, "client-side custom-loss evaluation failed: {reason}")
            }
            Self::GradientUnsupported { reason } => {
                write!(
                    f,
                    "cannot differentiate the expression symbolically: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for CustomLossError {}

impl From<CustomLossError> for Error {
    fn from(e: CustomLossError) -> Self {
        let kind = match e {
            CustomLossError::ServerSideDisabled => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidInput,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}
