//! The files that make up a tokenizer, read from a directory or fetched from the hub.

use std::path::{Path, PathBuf};

use snafu::ResultExt;

use crate::error::{ReadSnafu, Result};

/// `tokenizer.json`: a Hugging Face `tokenizers` tokenizer.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// `tiktoken.model`: a tiktoken rank file (Kimi).
pub const TIKTOKEN_MODEL: &str = "tiktoken.model";
/// `tokenizer_config.json`: special tokens and the chat template.
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// `chat_template.jinja`: the chat template, when stored apart from the config.
pub const CHAT_TEMPLATE: &str = "chat_template.jinja";

/// The main tokenizer file.
#[derive(Debug, Clone)]
pub(crate) enum MainFile {
    /// The bytes of a `tokenizer.json`.
    TokenizerJson(Vec<u8>),
    /// The bytes of a `tiktoken.model`.
    Tiktoken(Vec<u8>),
}

/// Everything needed to build a [`Tokenizer`](crate::Tokenizer).
#[derive(Debug, Clone)]
pub(crate) struct TokenizerFiles {
    /// Where the files came from (a directory, file or URL), for errors.
    pub origin: String,
    /// `tokenizer.json` or `tiktoken.model`.
    pub main: MainFile,
    /// `tokenizer_config.json`, when present.
    pub config: Option<Vec<u8>>,
    /// `chat_template.jinja`, when present.
    pub chat_template: Option<String>,
}

/// Reads a file that may be absent.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(source).context(ReadSnafu { path }),
    }
}

impl TokenizerFiles {
    /// Reads the tokenizer files of a directory; `None` when it holds neither
    /// `tokenizer.json` nor `tiktoken.model` (or does not exist).
    pub(crate) fn read_dir(dir: &Path) -> Result<Option<Self>> {
        let main = if let Some(bytes) = read_optional(&dir.join(TOKENIZER_JSON))? {
            MainFile::TokenizerJson(bytes)
        } else if let Some(bytes) = read_optional(&dir.join(TIKTOKEN_MODEL))? {
            MainFile::Tiktoken(bytes)
        } else {
            return Ok(None);
        };
        Self::with_siblings(dir, main, dir.display().to_string()).map(Some)
    }

    /// Reads a `tokenizer.json` or `tiktoken.model` file (a name ending in `.json` is a
    /// `tokenizer.json`; anything else a rank file) with the config beside it.
    pub(crate) fn read_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).context(ReadSnafu { path })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let main = if is_json {
            MainFile::TokenizerJson(bytes)
        } else {
            MainFile::Tiktoken(bytes)
        };
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        Self::with_siblings(&dir, main, path.display().to_string())
    }

    /// Writes the files into `dir` (replacing it) through a temporary sibling directory
    /// renamed into place, so readers never see a half-written tokenizer.
    pub(crate) fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            dir.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("tokenizer")
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let (name, bytes) = match &self.main {
            MainFile::TokenizerJson(b) => (TOKENIZER_JSON, b),
            MainFile::Tiktoken(b) => (TIKTOKEN_MODEL, b),
        };
        std::fs::write(tmp.join(name), bytes)?;
        if let Some(config) = &self.config {
            std::fs::write(tmp.join(TOKENIZER_CONFIG), config)?;
        }
        if let Some(template) = &self.chat_template {
            std::fs::write(tmp.join(CHAT_TEMPLATE), template)?;
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })
    }

    /// Writes the files into `dir` (created if needed), each through a temporary file
    /// renamed into place; other files in `dir` are kept.
    pub(crate) fn write_into(&self, dir: &Path) -> std::io::Result<()> {
        let (name, bytes) = match &self.main {
            MainFile::TokenizerJson(b) => (TOKENIZER_JSON, b),
            MainFile::Tiktoken(b) => (TIKTOKEN_MODEL, b),
        };
        write_atomically(&dir.join(name), bytes)?;
        if let Some(config) = &self.config {
            write_atomically(&dir.join(TOKENIZER_CONFIG), config)?;
        }
        if let Some(template) = &self.chat_template {
            write_atomically(&dir.join(CHAT_TEMPLATE), template.as_bytes())?;
        }
        Ok(())
    }

    fn with_siblings(dir: &Path, main: MainFile, origin: String) -> Result<Self> {
        let config = read_optional(&dir.join(TOKENIZER_CONFIG))?;
        let chat_template = read_optional(&dir.join(CHAT_TEMPLATE))?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        Ok(Self {
            origin,
            main,
            config,
            chat_template,
        })
    }
}

/// Writes `bytes` to `path` (creating its directory) through a temporary sibling renamed
/// into place, so readers never see a half-written file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
