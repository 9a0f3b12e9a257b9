//! `Datum` builders for supervised training: prompt/completion text and chat
//! conversations become model inputs with shifted targets and per-token weights.
//!
//! A sequence of `n` tokens with per-token weights becomes a [`Datum`] whose input is the
//! first `n - 1` tokens and whose `cross_entropy` targets are the last `n - 1` (token `i + 1`
//! is predicted from tokens `..=i`), each target keeping its own weight: the shift the
//! official cookbook applies. Sequences longer than `max_length` are cut at the end
//! before the shift.
//!
//! ```no_run
//! # fn demo(tokenizer: &tinker_tokenizer::Tokenizer) -> Result<(), tinker_client::data::DataError> {
//! use tinker_client::data::{DatumOptions, datum_from_prompt_completion};
//! let options = DatumOptions::new().max_length(512).append_eos(true);
//! let datum = datum_from_prompt_completion(tokenizer, "Q: 2+2?", " 4", &options)?;
//! # let _ = datum; Ok(()) }
//! ```

mod error;

use tinker_tokenizer::Tokenizer;
use tinker_tokenizer::chat::{ChatRenderer, Message, TrainOn};
use tinker_types::{CrossEntropyInputs, Datum, ModelInput};

pub use error::DataError;
use error::{ChatSnafu, TokenizerSnafu, TypesSnafu};
use snafu::ResultExt;

/// Options of the builders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatumOptions {
    /// Keep at most this many tokens (before the shift); `None` keeps all.
    pub max_length: Option<usize>,
    /// Prompt/completion only: append the tokenizer's EOS token to the completion (trained
    /// on, so the model learns to stop). Chat templates print their own end-of-turn tokens.
    pub append_eos: bool,
}

impl DatumOptions {
    /// No truncation, no EOS appended.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`max_length`](Self::max_length).
    #[must_use]
    pub fn max_length(mut self, max_length: usize) -> Self {
        self.max_length = Some(max_length);
        self
    }

    /// Sets [`append_eos`](Self::append_eos).
    #[must_use]
    pub fn append_eos(mut self, append_eos: bool) -> Self {
        self.append_eos = append_eos;
        self
    }
}

/// Tokens with one weight each, before the shift (what the builders produce first).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WeightedTokens {
    /// The token ids.
    pub tokens: Vec<u32>,
    /// One weight per token (0 for context, 1 for trained tokens).
    pub weights: Vec<f32>,
}

impl WeightedTokens {
    /// Pairs tokens and weights.
    ///
    /// # Errors
    /// [`DataError::LengthMismatch`] if the lengths differ; [`DataError::InvalidWeight`] if
    /// a weight is negative or not finite.
    pub fn new(tokens: Vec<u32>, weights: Vec<f32>) -> Result<Self, DataError> {
        if tokens.len() != weights.len() {
            return Err(DataError::LengthMismatch {
                tokens: tokens.len(),
                weights: weights.len(),
            });
        }
        if let Some((index, &weight)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !w.is_finite() || **w < 0.0)
        {
            return Err(DataError::InvalidWeight { index, weight });
        }
        Ok(Self { tokens, weights })
    }

    /// Shifts into a `cross_entropy` datum, after cutting to `max_length`.
    ///
    /// # Errors
    /// [`DataError::MaxLengthTooSmall`] for a `max_length` under 2,
    /// [`DataError::TooShort`] for fewer than 2 tokens, [`DataError::NothingToTrain`] when
    /// no target keeps a positive weight (all context, or the trained part cut off).
    pub fn into_datum(self, max_length: Option<usize>) -> Result<Datum, DataError> {
        let Self {
            mut tokens,
            mut weights,
        } = self;
        if let Some(max) = max_length {
            if max < 2 {
                return Err(DataError::MaxLengthTooSmall { max_length: max });
            }
            tokens.truncate(max);
            weights.truncate(max);
        }
        if tokens.len() < 2 {
            return Err(DataError::TooShort {
                tokens: tokens.len(),
            });
        }
        let target_weights = weights.split_off(1);
        if !target_weights.iter().any(|w| *w > 0.0) {
            return Err(DataError::NothingToTrain { max_length });
        }
        let targets: Vec<i64> = tokens[1..].iter().map(|&t| i64::from(t)).collect();
        let input = ModelInput::from_tokens(&tokens[..tokens.len() - 1]);
        let inputs = CrossEntropyInputs::new(targets, target_weights)
            .and_then(CrossEntropyInputs::into_inputs)
            .context(TypesSnafu)?;
        Ok(Datum::new(input, inputs))
    }
}

/// The weighted tokens of a prompt (weight 0, encoded with the tokenizer's special tokens,
/// e.g. a BOS) followed by a completion (weight 1, and the EOS token when
/// [`DatumOptions::append_eos`]). Write the completion with its leading space, if any.
///
/// # Errors
/// [`DataError::EmptyCompletion`] for a completion that encodes to no tokens;
/// [`DataError::NoEosToken`] when `append_eos` is set and the tokenizer has none.
pub fn prompt_completion_tokens(
    tokenizer: &Tokenizer,
    prompt: &str,
    completion: &str,
    options: &DatumOptions,
) -> Result<WeightedTokens, DataError> {
    let mut tokens = tokenizer.encode(prompt, true).context(TokenizerSnafu)?;
    let prompt_len = tokens.len();
    tokens.extend(
        tokenizer
            .encode(completion, false)
            .context(TokenizerSnafu)?,
    );
    if options.append_eos {
        let eos = tokenizer
            .eos_token_id()
            .ok_or_else(|| DataError::NoEosToken {
                tokenizer: tokenizer.name().to_owned(),
            })?;
        tokens.push(eos);
    }
    if tokens.len() == prompt_len {
        return Err(DataError::EmptyCompletion);
    }
    let weights = (0..tokens.len())
        .map(|i| if i < prompt_len { 0.0 } else { 1.0 })
        .collect();
    WeightedTokens::new(tokens, weights)
}

/// A `cross_entropy` datum from prompt and completion text (see
/// [`prompt_completion_tokens`] and [`WeightedTokens::into_datum`]).
///
/// # Errors
/// As those two functions.
pub fn datum_from_prompt_completion(
    tokenizer: &Tokenizer,
    prompt: &str,
    completion: &str,
    options: &DatumOptions,
) -> Result<Datum, DataError> {
    prompt_completion_tokens(tokenizer, prompt, completion, options)?.into_datum(options.max_length)
}

/// The weighted tokens of a conversation: weight 1 on the assistant turns chosen by
/// `train_on` (see [`ChatRenderer::render_for_training`]).
///
/// # Errors
/// [`DataError::Chat`] when the conversation cannot be rendered (empty, no assistant
/// message, rejected by the template).
pub fn conversation_tokens(
    renderer: &ChatRenderer,
    messages: &[Message],
    train_on: TrainOn,
) -> Result<WeightedTokens, DataError> {
    let rendered = renderer
        .render_for_training(messages, train_on)
        .context(ChatSnafu)?;
    WeightedTokens::new(rendered.tokens, rendered.weights)
}

/// A `cross_entropy` datum from a conversation (`options.append_eos` is ignored: the
/// template prints its end-of-turn tokens).
///
/// # Errors
/// As [`conversation_tokens`] and [`WeightedTokens::into_datum`].
pub fn datum_from_conversation(
    renderer: &ChatRenderer,
    messages: &[Message],
    train_on: TrainOn,
    options: &DatumOptions,
) -> Result<Datum, DataError> {
    conversation_tokens(renderer, messages, train_on)?.into_datum(options.max_length)
}

#[cfg(test)]
mod tests;
