//! The model tokenizers, loaded once per directory (used to match stop strings).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokenizers::Tokenizer;

use super::error::{EngineError, Result};

static LOADED: Mutex<Vec<(PathBuf, Arc<Tokenizer>)>> = Mutex::new(Vec::new());

/// The tokenizer in `dir/tokenizer.json`, cached for the life of the process.
pub(crate) fn load(dir: &Path) -> Result<Arc<Tokenizer>> {
    let mut loaded = LOADED
        .lock()
        .map_err(|_| EngineError::internal("tokenizer cache poisoned"))?;
    if let Some((_, t)) = loaded.iter().find(|(p, _)| p == dir) {
        return Ok(Arc::clone(t));
    }
    let file = dir.join("tokenizer.json");
    let tok = Tokenizer::from_file(&file)
        .map_err(|e| EngineError::internal(format!("loading tokenizer {}: {e}", file.display())))?;
    let tok = Arc::new(tok);
    loaded.push((dir.to_path_buf(), Arc::clone(&tok)));
    Ok(tok)
}

/// Text of `ids`, special tokens included (stop strings may name them).
pub(crate) fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, false)
        .map_err(|e| EngineError::internal(format!("decoding tokens: {e}")))
}
