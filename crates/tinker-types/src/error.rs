//! The one error type of this crate.

use snafu::Snafu;

/// Everything that can go wrong while building, encoding or decoding a wire value.
///
/// Messages name the offending JSON path or field; they never contain credentials (this
/// crate does not handle any).
#[derive(Debug, Snafu, Clone, PartialEq)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// A JSON document did not match the expected shape (missing required field, wrong type,
    /// invalid value). `path` is the JSON path of the problem, e.g. `sequences[0].tokens`.
    #[snafu(display("invalid JSON at `{path}`: {message}"))]
    Decode {
        /// JSON path of the offending value (`.` for the document root).
        path: String,
        /// What was wrong.
        message: String,
    },
    /// A value could not be encoded as JSON (other than a non-finite float).
    #[snafu(display("cannot encode JSON at `{path}`: {message}"))]
    Encode {
        /// JSON path of the offending value.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// NaN or ±infinity cannot be sent: JSON has no representation for it (the SDK refuses
    /// it too, and serde_json would silently write `null`).
    #[snafu(display("cannot encode non-finite number at `{path}`: JSON has no NaN or infinity"))]
    NonFinite {
        /// JSON path of the offending number.
        path: String,
    },
    /// A tensor's values, shape and sparse indices do not fit together.
    #[snafu(display("invalid tensor: {reason}"))]
    InvalidTensor {
        /// Which invariant is broken.
        reason: String,
    },
    /// A `tinker://` path could not be parsed.
    #[snafu(display("invalid tinker path `{path}`: {problem}"))]
    InvalidTinkerPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        problem: TinkerPathProblem,
    },
    /// A loss function input is missing.
    #[snafu(display("loss `{loss_fn}` needs input `{input}`"))]
    MissingLossInput {
        /// The loss function name.
        loss_fn: String,
        /// The missing input name.
        input: String,
    },
    /// A loss function input has the wrong dtype or shape.
    #[snafu(display("loss `{loss_fn}` input `{input}`: {reason}"))]
    InvalidLossInput {
        /// The loss function name.
        loss_fn: String,
        /// The offending input name.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A field holds a value the protocol does not allow.
    #[snafu(display("invalid `{field}`: {reason}"))]
    InvalidValue {
        /// The field (or parameter) name.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a `tinker://` path was refused (see [`crate::TinkerPath::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TinkerPathProblem {
    /// The path does not start with `tinker://`.
    MissingScheme,
    /// The path does not have exactly three `/`-separated parts after the scheme.
    WrongPartCount {
        /// How many parts were found.
        found: usize,
    },
    /// The training run id is empty.
    EmptyTrainingRunId,
    /// The middle segment is not `weights`, `sampler_weights` or `external_weights`.
    UnknownCheckpointKind,
    /// The checkpoint name is empty.
    EmptyName,
}

impl std::fmt::Display for TinkerPathProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingScheme => f.write_str("it must start with `tinker://`"),
            Self::WrongPartCount { found } => write!(
                f,
                "expected `tinker://<training_run_id>/<kind>/<name>` (3 parts), found {found} part(s)"
            ),
            Self::EmptyTrainingRunId => f.write_str("the training run id is empty"),
            Self::UnknownCheckpointKind => {
                f.write_str("the kind must be `weights`, `sampler_weights` or `external_weights`")
            }
            Self::EmptyName => f.write_str("the checkpoint name is empty"),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
