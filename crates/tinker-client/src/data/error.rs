//! [`DataError`]: bad input to the `Datum` builders.

use snafu::Snafu;

/// Why a datum could not be built. Raised before anything is sent.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(super)))]
#[non_exhaustive]
pub enum DataError {
    /// Tokens and weights differ in length.
    #[snafu(display("{tokens} tokens but {weights} weights"))]
    LengthMismatch {
        /// The number of tokens.
        tokens: usize,
        /// The number of weights.
        weights: usize,
    },

    /// A weight is negative, infinite or NaN.
    #[snafu(display("weight {index} is {weight}; weights must be finite and non-negative"))]
    InvalidWeight {
        /// Its position.
        index: usize,
        /// The value.
        weight: f32,
    },

    /// `max_length` leaves no room for an input token and a target.
    #[snafu(display("max_length {max_length} is below 2 (one input token and one target)"))]
    MaxLengthTooSmall {
        /// The value given.
        max_length: usize,
    },

    /// Fewer than two tokens: nothing to predict.
    #[snafu(display("a datum needs at least 2 tokens, got {tokens}"))]
    TooShort {
        /// The number of tokens.
        tokens: usize,
    },

    /// No target has a positive weight (only context, or truncation cut off every trained
    /// token).
    #[snafu(display(
        "no target has a positive weight{}",
        max_length.map(|m| format!(" after truncation to {m} tokens")).unwrap_or_default()
    ))]
    NothingToTrain {
        /// The truncation applied, if any.
        max_length: Option<usize>,
    },

    /// The completion encodes to no tokens.
    #[snafu(display("the completion is empty"))]
    EmptyCompletion,

    /// `append_eos` was asked for but the tokenizer names no EOS token.
    #[snafu(display("tokenizer `{tokenizer}` has no EOS token to append"))]
    NoEosToken {
        /// The tokenizer's name.
        tokenizer: String,
    },

    /// Encoding failed.
    #[snafu(display("tokenizing failed: {source}"))]
    Tokenizer {
        /// The tokenizer's error.
        source: tinker_tokenizer::Error,
    },

    /// Rendering the conversation failed.
    #[snafu(display("rendering the conversation failed: {source}"))]
    Chat {
        /// The renderer's error.
        source: tinker_tokenizer::chat::ChatError,
    },

    /// The loss inputs were refused by their own validation.
    #[snafu(display("invalid loss inputs: {source}"))]
    Types {
        /// The validation error.
        source: tinker_types::Error,
    },
}
