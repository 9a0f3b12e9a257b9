//! [`Tokenizer`]: a loaded tokenizer (Hugging Face `tokenizer.json` or tiktoken), cheap to
//! clone.
//!
//! Encoding and decoding are synchronous CPU work. They take microseconds for a prompt, but
//! async callers encoding large inputs (whole documents, big batches) should move the call to
//! `tokio::task::spawn_blocking`: clone the tokenizer (an `Arc` clone) into the closure.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use snafu::{IntoError as _, ResultExt};

use crate::error::{DecodeSnafu, EncodeSnafu, Error, Result};
use crate::files::{MainFile, TokenizerFiles};
use crate::tiktoken::TiktokenBackend;
use crate::tokenizer_config::{TokenizerConfig, clean_up_tokenization};

/// Which file format a tokenizer was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenizerKind {
    /// A Hugging Face `tokenizer.json` (the `tokenizers` crate).
    HuggingFace,
    /// A tiktoken rank file (`tiktoken.model`, the `tiktoken-rs` crate).
    Tiktoken,
}

enum Backend {
    /// The tokenizer, and the ids of its special added tokens.
    HuggingFace(Box<tokenizers::Tokenizer>, HashSet<u32>),
    Tiktoken(Box<TiktokenBackend>),
}

/// A special token named by `tokenizer_config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Special {
    text: String,
    id: Option<u32>,
}

struct Inner {
    name: String,
    backend: Backend,
    bos: Option<Special>,
    eos: Option<Special>,
    pad: Option<Special>,
    chat_template: Option<String>,
    clean_up_spaces: bool,
}

/// A loaded tokenizer. Cloning is cheap (an `Arc`); it is `Send + Sync`.
///
/// Encoding and decoding are synchronous CPU work: async callers encoding large inputs
/// should run them in `tokio::task::spawn_blocking`, with a clone of the tokenizer.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("name", &self.inner.name)
            .field("kind", &self.kind())
            .field("vocab_size", &self.vocab_size())
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads a tokenizer from a directory (holding `tokenizer.json` or `tiktoken.model`,
    /// plus optional `tokenizer_config.json` and `chat_template.jinja`) or from one of those
    /// files directly (its sibling config is read too).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let files = if path.is_dir() {
            TokenizerFiles::read_dir(path)?.ok_or_else(|| Error::NotFound {
                id: path.display().to_string(),
                looked: vec![crate::Lookup::new(
                    path.display().to_string(),
                    "no tokenizer.json or tiktoken.model in this directory",
                )],
            })?
        } else {
            TokenizerFiles::read_file(path)?
        };
        Self::from_files(path.display().to_string(), files)
    }

    /// Builds a tokenizer from the bytes of a `tokenizer.json` and, optionally, of its
    /// `tokenizer_config.json`.
    pub fn from_tokenizer_json(
        name: impl Into<String>,
        tokenizer_json: &[u8],
        tokenizer_config: Option<&[u8]>,
    ) -> Result<Self> {
        Self::from_memory(
            name.into(),
            MainFile::TokenizerJson(tokenizer_json.to_vec()),
            tokenizer_config,
        )
    }

    /// Builds a tokenizer from the bytes of a tiktoken rank file (`tiktoken.model`) and,
    /// optionally, of its `tokenizer_config.json` (which names the special tokens).
    pub fn from_tiktoken(
        name: impl Into<String>,
        tiktoken_model: &[u8],
        tokenizer_config: Option<&[u8]>,
    ) -> Result<Self> {
        Self::from_memory(
            name.into(),
            MainFile::Tiktoken(tiktoken_model.to_vec()),
            tokenizer_config,
        )
    }

    fn from_memory(name: String, main: MainFile, config: Option<&[u8]>) -> Result<Self> {
        let files = TokenizerFiles {
            origin: name.clone(),
            main,
            config: config.map(<[u8]>::to_vec),
            chat_template: None,
        };
        Self::from_files(name, files)
    }

    pub(crate) fn from_files(name: String, files: TokenizerFiles) -> Result<Self> {
        let origin = files.origin.as_str();
        let config = match &files.config {
            Some(bytes) => {
                TokenizerConfig::parse(bytes, &format!("{origin} (tokenizer_config.json)"))?
            }
            None => TokenizerConfig::default(),
        };
        let backend = match &files.main {
            MainFile::TokenizerJson(bytes) => {
                let tok = tokenizers::Tokenizer::from_bytes(bytes).map_err(|source| {
                    crate::error::TokenizerJsonSnafu { origin }.into_error(source)
                })?;
                let special = tok
                    .get_added_tokens_decoder()
                    .into_iter()
                    .filter(|(_, t)| t.special)
                    .map(|(id, _)| id)
                    .collect();
                Backend::HuggingFace(Box::new(tok), special)
            }
            MainFile::Tiktoken(bytes) => {
                Backend::Tiktoken(Box::new(TiktokenBackend::new(bytes, &config, origin)?))
            }
        };
        let is_bpe = match &backend {
            Backend::HuggingFace(tok, _) => {
                matches!(tok.get_model(), tokenizers::ModelWrapper::BPE(_))
            }
            Backend::Tiktoken(_) => true,
        };
        let mut inner = Inner {
            name,
            backend,
            bos: None,
            eos: None,
            pad: None,
            chat_template: files.chat_template.or(config.chat_template.clone()),
            // transformers 5 (the official SDK's) ignores the flag for BPE models, which
            // every Tinker model is (tiktoken included): it would strip real spaces.
            clean_up_spaces: config.clean_up_tokenization_spaces && !is_bpe,
        };
        let special = |inner: &Inner, text: &Option<String>| {
            text.as_ref().map(|text| Special {
                id: token_to_id(&inner.backend, text),
                text: text.clone(),
            })
        };
        inner.bos = special(&inner, &config.bos_token);
        inner.eos = special(&inner, &config.eos_token);
        inner.pad = special(&inner, &config.pad_token);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The name it was loaded under (a repository id, path or the name given).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The file format it was loaded from.
    pub fn kind(&self) -> TokenizerKind {
        match self.inner.backend {
            Backend::HuggingFace(..) => TokenizerKind::HuggingFace,
            Backend::Tiktoken(_) => TokenizerKind::Tiktoken,
        }
    }

    /// Encodes text to token ids. Special tokens written in the text are recognised.
    ///
    /// With `add_special_tokens` the `tokenizer.json` post-processor adds its tokens (for
    /// example Llama 3's `<|begin_of_text|>`), as `tokenizer.encode(text)` does in Python;
    /// tiktoken tokenizers add none (as Kimi's Python tokenizer).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let name = &self.inner.name;
        match &self.inner.backend {
            Backend::HuggingFace(tok, _) => tok
                .encode(text, add_special_tokens)
                .map(|enc| enc.get_ids().to_vec())
                .map_err(|source| EncodeSnafu { name }.into_error(source)),
            Backend::Tiktoken(tok) => tok.encode(text).context(EncodeSnafu { name }),
        }
    }

    /// Decodes token ids to text, optionally dropping special tokens. When
    /// `tokenizer_config.json` sets `clean_up_tokenization_spaces` and the model is not BPE
    /// (WordPiece, Unigram, …), spaces before punctuation and contractions are removed, as
    /// transformers 5 does; for BPE models the flag is ignored, as there.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let name = &self.inner.name;
        let text = match &self.inner.backend {
            Backend::HuggingFace(tok, _) => tok
                .decode(ids, skip_special_tokens)
                .map_err(|source| DecodeSnafu { name }.into_error(source))?,
            Backend::Tiktoken(tok) => tok
                .decode(ids, skip_special_tokens)
                .context(DecodeSnafu { name })?,
        };
        Ok(if self.inner.clean_up_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// The id of a token string (vocabulary or added/special token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        token_to_id(&self.inner.backend, token)
    }

    /// The token string of an id (byte-level tokens in the GPT-2 alphabet, e.g. `Ġhello`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.inner.backend {
            Backend::HuggingFace(tok, _) => tok.id_to_token(id),
            Backend::Tiktoken(tok) => tok.id_to_token(id),
        }
    }

    /// Whether an id is a special token (skipped by `decode(.., true)`).
    pub fn is_special(&self, id: u32) -> bool {
        match &self.inner.backend {
            Backend::HuggingFace(_, special) => special.contains(&id),
            Backend::Tiktoken(tok) => tok.is_special(id),
        }
    }

    /// The number of tokens including added and special tokens (Python's `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        match &self.inner.backend {
            Backend::HuggingFace(tok, _) => tok.get_vocab_size(true),
            Backend::Tiktoken(tok) => tok.vocab_size(),
        }
    }

    /// The beginning-of-sequence token from `tokenizer_config.json`.
    pub fn bos_token(&self) -> Option<&str> {
        self.inner.bos.as_ref().map(|s| s.text.as_str())
    }

    /// The id of [`bos_token`](Self::bos_token).
    pub fn bos_token_id(&self) -> Option<u32> {
        self.inner.bos.as_ref().and_then(|s| s.id)
    }

    /// The end-of-sequence token from `tokenizer_config.json`.
    pub fn eos_token(&self) -> Option<&str> {
        self.inner.eos.as_ref().map(|s| s.text.as_str())
    }

    /// The id of [`eos_token`](Self::eos_token).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.inner.eos.as_ref().and_then(|s| s.id)
    }

    /// The padding token from `tokenizer_config.json`.
    pub fn pad_token(&self) -> Option<&str> {
        self.inner.pad.as_ref().map(|s| s.text.as_str())
    }

    /// The id of [`pad_token`](Self::pad_token).
    pub fn pad_token_id(&self) -> Option<u32> {
        self.inner.pad.as_ref().and_then(|s| s.id)
    }

    /// The Jinja chat template (`chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template`). Rendering it is left to the caller.
    pub fn chat_template(&self) -> Option<&str> {
        self.inner.chat_template.as_deref()
    }
}

fn token_to_id(backend: &Backend, token: &str) -> Option<u32> {
    match backend {
        Backend::HuggingFace(tok, _) => tok.token_to_id(token),
        Backend::Tiktoken(tok) => tok.token_to_id(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Tokenizer>();
    }
}
