//! [`ChatError`]: what can go wrong while rendering a conversation.

use snafu::Snafu;

/// An error from rendering a conversation with a chat template.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum ChatError {
    /// The template does not parse (a Jinja syntax error or a construct minijinja lacks).
    #[snafu(display("chat template `{name}` does not parse: {source:#}"))]
    Parse {
        /// The template's name.
        name: String,
        /// The parser's error.
        source: minijinja::Error,
    },

    /// Rendering failed (an undefined function, a type error, …).
    #[snafu(display("chat template `{name}` failed to render: {source:#}"))]
    Render {
        /// The template's name.
        name: String,
        /// The engine's error.
        source: minijinja::Error,
    },

    /// The template refused the conversation through `raise_exception(...)` (for example
    /// Gemma's "Conversation roles must alternate user/assistant/...").
    #[snafu(display("chat template `{name}` rejected the conversation: {message}"))]
    Rejected {
        /// The template's name.
        name: String,
        /// The template's message.
        message: String,
    },

    /// The tokenizer has no `chat_template` and its name matches no built-in template.
    #[snafu(display(
        "tokenizer `{tokenizer}` has no chat template and no built-in one matches its name; \
         pass a ChatTemplate (for example BuiltinTemplate::Qwen3.template())"
    ))]
    NoTemplate {
        /// The tokenizer's name.
        tokenizer: String,
    },

    /// The conversation has no messages.
    #[snafu(display("the conversation is empty"))]
    EmptyConversation,

    /// Training was asked for but the conversation has no assistant message.
    #[snafu(display("the conversation has no assistant message to train on"))]
    NoAssistantMessage,

    /// An extra template variable could not be converted to a template value.
    #[snafu(display("template variable `{name}` cannot be serialized: {source}"))]
    Variable {
        /// The variable's name.
        name: String,
        /// The serialization error.
        source: minijinja::Error,
    },

    /// The span of an assistant message could not be found in the full rendering: the
    /// template renders earlier turns differently once later messages follow, and the
    /// message's closing text was not found after its start either.
    #[snafu(display(
        "cannot locate assistant message {index} in the rendered conversation of template \
         `{name}` ({reason}); train on the last assistant message only"
    ))]
    UnstableTemplate {
        /// The template's name.
        name: String,
        /// The index of the message in the conversation.
        index: usize,
        /// What did not match.
        reason: String,
    },

    /// Encoding a rendered piece failed.
    #[snafu(display("encoding the rendered conversation failed: {source}"))]
    Encode {
        /// The tokenizer's error.
        #[snafu(source(from(crate::Error, Box::new)))]
        source: Box<crate::Error>,
    },
}

/// The message of `raise_exception(...)`, carried as the source of a minijinja error so
/// that it comes back as [`ChatError::Rejected`].
#[derive(Debug)]
pub(crate) struct Raised(pub(crate) String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// Turns a render error into [`ChatError::Rejected`] when it came from `raise_exception`.
pub(crate) fn render_error(name: &str, err: minijinja::Error) -> ChatError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cause {
        if let Some(raised) = e.downcast_ref::<Raised>() {
            return ChatError::Rejected {
                name: name.to_owned(),
                message: raised.0.clone(),
            };
        }
        cause = e.source();
    }
    ChatError::Render {
        name: name.to_owned(),
        source: err,
    }
}
