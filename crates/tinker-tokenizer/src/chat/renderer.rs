//! [`ChatRenderer`]: a conversation → tokens plus per-token weights.
//!
//! How assistant turns are located (templates carry no span information, and
//! transformers' `{% generation %}` markers are rare): the whole conversation is rendered
//! once (`full`). For each assistant message `i` to train on,
//!
//! 1. `history` = the messages before it, rendered alone; it must be a prefix of `full`.
//!    `prompt` = the same with `add_generation_prompt`. The turn starts where `full` and
//!    `prompt` part (normally at the end of `prompt`, so the generation prompt, e.g.
//!    `<|im_start|>assistant\n`, is not trained on: the sampler feeds it, the model never
//!    produces it), and never before the end of `history`.
//! 2. `own` = the messages up to and including it; what `own` adds past its common prefix
//!    with `prompt` is the turn (content plus end-of-turn tokens). If `full` continues with
//!    exactly that text, the turn ends there.
//! 3. Otherwise the template renders a turn differently once later messages follow (Qwen3
//!    drops the `<think>` block of earlier turns, and adds an empty one to the last). Then
//!    the turn ends after the first occurrence, from its start, of its closing text (what
//!    follows the message content in `own`, e.g. `<|im_end|>\n`). If none is found the
//!    turn cannot be located and [`ChatError::UnstableTemplate`] is returned.
//!
//! The text is then encoded piece by piece (trained and untrained spans separately, without
//! the tokenizer's post-processor: any BOS is the template's), so every token belongs to
//! exactly one span. The fixtures check that the pieces' tokens equal transformers'
//! encoding of the whole text for the shipped templates.

use std::ops::Range;

use super::error::{EncodeSnafu, UnstableTemplateSnafu};
use super::{BuiltinTemplate, ChatError, ChatTemplate, Message, Role};
use crate::Tokenizer;
use snafu::ResultExt;

/// Which assistant messages are trained on (weight 1); all other tokens get weight 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TrainOn {
    /// Every assistant message (multi-turn SFT).
    #[default]
    AllAssistantMessages,
    /// Only the final assistant message (earlier turns are context).
    LastAssistantMessage,
}

/// A rendered conversation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RenderedChat {
    /// The text the template produced.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<u32>,
    /// One weight per token: 1.0 on trained assistant turns, 0.0 elsewhere.
    pub weights: Vec<f32>,
    /// The byte ranges of `text` trained on, in order.
    pub trained_spans: Vec<Range<usize>>,
}

/// A chat template paired with the tokenizer that encodes its output.
#[derive(Debug, Clone)]
pub struct ChatRenderer {
    template: ChatTemplate,
    tokenizer: Tokenizer,
}

impl ChatRenderer {
    /// Renders with `template` and encodes with `tokenizer`.
    pub fn new(template: ChatTemplate, tokenizer: Tokenizer) -> Self {
        Self {
            template,
            tokenizer,
        }
    }

    /// The tokenizer's own `chat_template` (with its BOS/EOS tokens), else the built-in
    /// template of the tokenizer's model family ([`BuiltinTemplate::for_model`] on its
    /// name), else [`ChatError::NoTemplate`].
    pub fn for_tokenizer(tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        let template = match tokenizer.chat_template() {
            Some(source) => ChatTemplate::new(tokenizer.name(), source)?
                .special_tokens(tokenizer.bos_token(), tokenizer.eos_token()),
            None => match BuiltinTemplate::for_model(tokenizer.name()) {
                Some(builtin) => builtin.template()?,
                None => {
                    return Err(ChatError::NoTemplate {
                        tokenizer: tokenizer.name().to_owned(),
                    });
                }
            },
        };
        Ok(Self::new(template, tokenizer.clone()))
    }

    /// The template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The tokens of a prompt for sampling the next assistant turn (the conversation
    /// rendered with `add_generation_prompt`).
    pub fn prompt_tokens(&self, messages: &[Message]) -> Result<Vec<u32>, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::EmptyConversation);
        }
        let text = self.template.render(messages, true)?;
        self.encode(&text)
    }

    /// Renders a whole conversation with weights on the assistant turns chosen by
    /// `train_on` (see the module documentation for how turns are located).
    pub fn render_for_training(
        &self,
        messages: &[Message],
        train_on: TrainOn,
    ) -> Result<RenderedChat, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::EmptyConversation);
        }
        let assistant: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == Role::Assistant)
            .map(|(i, _)| i)
            .collect();
        let chosen: &[usize] = match (train_on, assistant.last()) {
            (_, None) => return Err(ChatError::NoAssistantMessage),
            (TrainOn::AllAssistantMessages, _) => &assistant,
            (TrainOn::LastAssistantMessage, Some(last)) => std::slice::from_ref(last),
        };
        let text = self.template.render(messages, false)?;
        let mut spans = Vec::with_capacity(chosen.len());
        for &index in chosen {
            spans.push(self.locate(messages, index, &text)?);
        }
        self.encode_spans(text, spans)
    }

    /// The byte range of assistant message `index` in `full`.
    fn locate(
        &self,
        messages: &[Message],
        index: usize,
        full: &str,
    ) -> Result<Range<usize>, ChatError> {
        let name = self.template.name();
        let unstable = |reason: &str| {
            UnstableTemplateSnafu {
                name,
                index,
                reason,
            }
            .build()
        };
        let render_before = |generation: bool| {
            if index == 0 {
                // Templates may index messages[0]; an empty render is the honest prefix.
                Ok(self.template.render(&[], generation).unwrap_or_default())
            } else {
                self.template.render(&messages[..index], generation)
            }
        };
        let history = render_before(false)?;
        if !full.starts_with(&history) {
            return Err(unstable(
                "the messages before it are not rendered as a prefix of the whole",
            ));
        }
        // Normally `full` extends the generation prompt; where the prompt holds text the
        // history does not (Qwen3's empty think block with enable_thinking=false), the turn
        // starts where the two part.
        let prompt = render_before(true)?;
        let start = common_prefix(full, &prompt).max(history.len());
        let own = self.template.render(&messages[..=index], false)?;
        let turn = &own[common_prefix(&own, &prompt)..];
        let rest = &full[start..];
        if rest.starts_with(turn) {
            return Ok(start..start + turn.len());
        }
        // The turn renders differently in history: end it after its closing text.
        let content = messages[index].content.trim();
        let closing = match turn.rfind(content) {
            Some(at) if !content.is_empty() => &turn[at + content.len()..],
            _ => "",
        };
        if closing.is_empty() {
            return Err(unstable(
                "its text in the history differs from its own rendering",
            ));
        }
        match rest.find(closing) {
            Some(at) => Ok(start..start + at + closing.len()),
            None => Err(unstable("its closing text is not found after its start")),
        }
    }

    /// Encodes `text` piece by piece, weight 1 inside `spans` (sorted, disjoint).
    fn encode_spans(
        &self,
        text: String,
        spans: Vec<Range<usize>>,
    ) -> Result<RenderedChat, ChatError> {
        let mut tokens = Vec::new();
        let mut weights = Vec::new();
        let mut at = 0;
        let mut push = |piece: &str, weight: f32| -> Result<(), ChatError> {
            let ids = self.encode(piece)?;
            weights.extend(std::iter::repeat_n(weight, ids.len()));
            tokens.extend(ids);
            Ok(())
        };
        for span in &spans {
            push(&text[at..span.start], 0.0)?;
            push(&text[span.clone()], 1.0)?;
            at = span.end;
        }
        push(&text[at..], 0.0)?;
        Ok(RenderedChat {
            text,
            tokens,
            weights,
            trained_spans: spans,
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ChatError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        self.tokenizer.encode(text, false).context(EncodeSnafu)
    }
}

/// The length in bytes of the longest common prefix of `a` and `b` (on a char boundary).
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}
