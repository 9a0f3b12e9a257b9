//! `tokenizer_config.json`: special tokens, the chat template and decoding options.

use std::collections::BTreeMap;

use serde_json::Value;
use snafu::ResultExt;

use crate::error::{Result, TokenizerConfigSnafu};

/// The parts of `tokenizer_config.json` this crate uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenizerConfig {
    /// `bos_token` (a string or an `AddedToken` object).
    pub bos_token: Option<String>,
    /// `eos_token`.
    pub eos_token: Option<String>,
    /// `pad_token`.
    pub pad_token: Option<String>,
    /// `chat_template` (a string, or the `default` entry of a list of named templates).
    pub chat_template: Option<String>,
    /// `clean_up_tokenization_spaces` (transformers' decode post-processing).
    pub clean_up_tokenization_spaces: bool,
    /// `added_tokens_decoder`: id → (content, special).
    pub added_tokens: BTreeMap<u32, (String, bool)>,
}

impl TokenizerConfig {
    /// Parses the JSON text; `origin` names the file in errors.
    pub(crate) fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_slice(bytes).context(TokenizerConfigSnafu { origin })?;
        let Value::Object(map) = value else {
            let err = <serde_json::Error as serde::de::Error>::custom("expected a JSON object");
            return Err(err).context(TokenizerConfigSnafu { origin });
        };
        let token = |key: &str| map.get(key).and_then(token_content);
        let added_tokens = map
            .get("added_tokens_decoder")
            .and_then(Value::as_object)
            .map(|decoder| {
                decoder
                    .iter()
                    .filter_map(|(id, tok)| {
                        let id = id.parse::<u32>().ok()?;
                        let content = token_content(tok)?;
                        let special = tok.get("special").and_then(Value::as_bool).unwrap_or(true);
                        Some((id, (content, special)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            pad_token: token("pad_token"),
            chat_template: map.get("chat_template").and_then(chat_template),
            clean_up_tokenization_spaces: map
                .get("clean_up_tokenization_spaces")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            added_tokens,
        })
    }
}

/// A token given as a string or as an `AddedToken` object with `content`.
fn token_content(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A template string, or the `default` (else first) of `[{"name", "template"}]`.
fn chat_template(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |name: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            };
            named("default")
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        _ => None,
    }
}

/// transformers' `clean_up_tokenization`: removes the space before punctuation and
/// English contractions.
pub(crate) fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strings_objects_and_templates() {
        let json = br#"{
            "bos_token": {"__type": "AddedToken", "content": "<s>", "special": true},
            "eos_token": "</s>",
            "pad_token": null,
            "clean_up_tokenization_spaces": true,
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
            "added_tokens_decoder": {"5": {"content": "<|x|>", "special": false}, "7": {"content": "<|y|>"}, "bad": {}}
        }"#;
        let c = TokenizerConfig::parse(json, "test").unwrap();
        assert_eq!(c.bos_token.as_deref(), Some("<s>"));
        assert_eq!(c.eos_token.as_deref(), Some("</s>"));
        assert_eq!(c.pad_token, None);
        assert_eq!(c.chat_template.as_deref(), Some("D"));
        assert!(c.clean_up_tokenization_spaces);
        assert_eq!(c.added_tokens.get(&5), Some(&("<|x|>".to_owned(), false)));
        assert_eq!(c.added_tokens.get(&7), Some(&("<|y|>".to_owned(), true)));
        assert_eq!(c.added_tokens.len(), 2);
    }

    #[test]
    fn rejects_non_objects() {
        let err = TokenizerConfig::parse(b"[1]", "x.json").unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
        assert!(TokenizerConfig::parse(b"{", "x.json").is_err());
    }

    #[test]
    fn cleans_up_spaces() {
        assert_eq!(
            clean_up_tokenization("I do n't know , it 's fine ."),
            "I don't know, it's fine."
        );
    }
}
