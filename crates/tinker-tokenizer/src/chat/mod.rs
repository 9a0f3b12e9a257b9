//! Chat rendering: a conversation becomes text, tokens, and per-token training weights.
//!
//! * [`ChatTemplate`] renders a Hugging Face `chat_template` (Jinja) with minijinja, as
//!   transformers' `apply_chat_template` does (checked against transformers on committed
//!   fixtures: `tests/chat_fixtures.rs`).
//! * [`BuiltinTemplate`] ships the Llama 3, Qwen3 and Gemma 3 templates for tokenizers
//!   that carry none.
//! * [`ChatRenderer`] pairs a template with a [`Tokenizer`](crate::Tokenizer): prompts for
//!   sampling ([`ChatRenderer::prompt_tokens`]) and training examples whose weights are 1
//!   on assistant turns and 0 elsewhere ([`ChatRenderer::render_for_training`]).
//!
//! ```no_run
//! # fn demo(tokenizer: &tinker_tokenizer::Tokenizer) -> Result<(), tinker_tokenizer::chat::ChatError> {
//! use tinker_tokenizer::chat::{ChatRenderer, Message, TrainOn};
//! let renderer = ChatRenderer::for_tokenizer(tokenizer)?;
//! let chat = [Message::user("Hi"), Message::assistant("Hello!")];
//! let example = renderer.render_for_training(&chat, TrainOn::AllAssistantMessages)?;
//! assert_eq!(example.tokens.len(), example.weights.len());
//! # Ok(()) }
//! ```

mod builtin;
mod error;
mod json;
mod renderer;
mod template;

use serde::{Deserialize, Serialize};

pub use builtin::BuiltinTemplate;
pub use error::ChatError;
pub use renderer::{ChatRenderer, RenderedChat, TrainOn};
pub use template::ChatTemplate;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The user.
    User,
    /// The model (the turns trained on).
    Assistant,
    /// A tool's output.
    Tool,
}

/// One message of a conversation, serialized as transformers expects
/// (`{"role": "user", "content": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}
