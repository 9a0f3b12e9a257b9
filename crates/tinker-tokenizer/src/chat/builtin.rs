//! [`BuiltinTemplate`]: chat templates shipped with the crate, for tokenizers that carry
//! none. Each is the model family's own template, byte for byte (origins in
//! `templates/README.md`), so rendering matches transformers'.

use super::{ChatError, ChatTemplate};

/// A model family whose chat template ships with this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuiltinTemplate {
    /// Llama 3 Instruct (`<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`).
    Llama3,
    /// Qwen3 (ChatML with `<think>` blocks; `enable_thinking` and `tools` variables).
    Qwen3,
    /// Gemma 3 (`<start_of_turn>user|model\n…<end_of_turn>`; the system prompt joins the
    /// first user turn; roles must alternate).
    Gemma3,
}

impl BuiltinTemplate {
    /// Every built-in template.
    pub const ALL: [Self; 3] = [Self::Llama3, Self::Qwen3, Self::Gemma3];

    /// A short name (`llama3`, `qwen3`, `gemma3`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama3 => "llama3",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3",
        }
    }

    /// The Jinja source.
    pub fn source(self) -> &'static str {
        match self {
            Self::Llama3 => include_str!("../../templates/llama3.jinja"),
            Self::Qwen3 => include_str!("../../templates/qwen3.jinja"),
            Self::Gemma3 => include_str!("../../templates/gemma3.jinja"),
        }
    }

    /// The family's `bos_token` (printed by the Llama 3 and Gemma 3 templates).
    pub fn bos_token(self) -> Option<&'static str> {
        match self {
            Self::Llama3 => Some("<|begin_of_text|>"),
            Self::Qwen3 => None,
            Self::Gemma3 => Some("<bos>"),
        }
    }

    /// The family's end-of-turn token (its chat models' `eos_token`).
    pub fn eos_token(self) -> &'static str {
        match self {
            Self::Llama3 => "<|eot_id|>",
            Self::Qwen3 => "<|im_end|>",
            Self::Gemma3 => "<end_of_turn>",
        }
    }

    /// The family a model name belongs to (`meta-llama/Llama-3.1-8B-Instruct`,
    /// `Qwen/Qwen3-8B`, `google/gemma-3-1b-it`), if any.
    pub fn for_model(model: &str) -> Option<Self> {
        let name = model
            .rsplit('/')
            .next()
            .unwrap_or(model)
            .to_ascii_lowercase();
        let name = name.replace(['-', '_', '.'], "");
        if name.starts_with("llama3") || name.starts_with("metallama3") {
            Some(Self::Llama3)
        } else if name.starts_with("qwen3") {
            Some(Self::Qwen3)
        } else if name.starts_with("gemma3") {
            Some(Self::Gemma3)
        } else {
            None
        }
    }

    /// The compiled template with the family's special tokens.
    pub fn template(self) -> Result<ChatTemplate, ChatError> {
        Ok(ChatTemplate::new(self.name(), self.source())?
            .special_tokens(self.bos_token(), Some(self.eos_token())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_families() {
        let cases = [
            (
                "meta-llama/Llama-3.1-8B-Instruct",
                Some(BuiltinTemplate::Llama3),
            ),
            ("meta-llama/Llama-3.2-1B", Some(BuiltinTemplate::Llama3)),
            ("Qwen/Qwen3-8B", Some(BuiltinTemplate::Qwen3)),
            ("Qwen/Qwen3-30B-A3B-Base", Some(BuiltinTemplate::Qwen3)),
            ("google/gemma-3-1b-it", Some(BuiltinTemplate::Gemma3)),
            ("Qwen/Qwen2.5-7B", None),
            ("meta-llama/Llama-2-7b", None),
            ("tinker-local/micro", None),
        ];
        for (model, want) in cases {
            assert_eq!(BuiltinTemplate::for_model(model), want, "{model}");
        }
    }

    #[test]
    fn every_builtin_compiles() {
        for b in BuiltinTemplate::ALL {
            b.template().unwrap();
        }
    }
}
