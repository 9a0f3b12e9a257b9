//! Tokenizer loading for `get_tokenizer` (protocol §6.9), through `tinker-tokenizer`.

use std::sync::OnceLock;

use tinker_tokenizer::{Tokenizer, TokenizerLoader};

use crate::error::{Error, ErrorKind, Result};

fn loader() -> &'static TokenizerLoader {
    static LOADER: OnceLock<TokenizerLoader> = OnceLock::new();
    LOADER.get_or_init(TokenizerLoader::from_env)
}

/// Resolves and loads the tokenizer of `model_name` (cached per id for the process).
pub(crate) async fn load(model_name: &str, tokenizer_id: Option<&str>) -> Result<Tokenizer> {
    loader()
        .load_for_model(model_name, tokenizer_id)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Tokenizer,
                format!("loading the tokenizer of {model_name:?}"),
            )
            .with_source(e)
        })
}
