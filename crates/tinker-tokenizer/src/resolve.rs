//! Which tokenizer a model uses: the resolution rules of the official SDK's `get_tokenizer`.
//!
//! `TrainingClient::get_tokenizer` passes the model name and `get_info`'s `tokenizer_id`;
//! `SamplingClient::get_tokenizer` passes only its base model name. [`resolve`] turns them
//! into a [`TokenizerRef`]: a Hugging Face repository (with a pinned revision for the Kimi
//! models) or a local path (`tinker-local` reports its tokenizer directory as an absolute
//! path).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{InvalidIdSnafu, Result, UnsupportedSnafu};

/// The tokenizer repository used for every `meta-llama/Llama-3*` model (avoids the gated
/// Meta repositories).
pub const LLAMA3_TOKENIZER: &str = "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer";

/// Pinned revisions of the Kimi tokenizers: `(requested id, repository, revision)`.
const PINNED: &[(&str, &str, &str)] = &[
    (
        "moonshotai/Kimi-K2-Thinking",
        "moonshotai/Kimi-K2-Thinking",
        "612681931a8c906ddb349f8ad0f582cb552189cd",
    ),
    (
        "moonshotai/Kimi-K2.5-Text-Only",
        "moonshotai/Kimi-K2.5",
        "4d01dfe0332d63057c186e0b262165819efb6611",
    ),
    (
        "moonshotai/Kimi-K2.5",
        "moonshotai/Kimi-K2.5",
        "4d01dfe0332d63057c186e0b262165819efb6611",
    ),
    (
        "moonshotai/Kimi-K2.6",
        "moonshotai/Kimi-K2.6",
        "b5aabbfb20227ed42becbf5541dbffd213942c58",
    ),
    (
        "moonshotai/Kimi-K3",
        "moonshotai/Kimi-K3",
        "f831ab66814297da540d832a5235f8e904f29d06",
    ),
];

/// Where a tokenizer comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenizerRef {
    /// A Hugging Face model repository such as `Qwen/Qwen3-8B`.
    Hub {
        /// `org/name` (or a legacy single-segment name).
        repo_id: String,
        /// A pinned revision (commit hash); `None` means the `main` branch.
        revision: Option<String>,
    },
    /// A local `tokenizer.json`/`tiktoken.model` file, or a directory holding one.
    Path(PathBuf),
}

impl TokenizerRef {
    /// A Hugging Face repository on its `main` branch.
    pub fn hub(repo_id: impl Into<String>) -> Self {
        Self::Hub {
            repo_id: repo_id.into(),
            revision: None,
        }
    }

    /// A local file or directory.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        Self::Path(path.into())
    }

    /// The revision to use for a hub repository: the pinned one, else `main`.
    pub fn revision(&self) -> Option<&str> {
        match self {
            Self::Hub { revision, .. } => Some(revision.as_deref().unwrap_or("main")),
            Self::Path(_) => None,
        }
    }
}

impl fmt::Display for TokenizerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hub {
                repo_id,
                revision: None,
            } => f.write_str(repo_id),
            Self::Hub {
                repo_id,
                revision: Some(rev),
            } => write!(f, "{repo_id}@{rev}"),
            Self::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Resolves the tokenizer of a model exactly as the official SDK does.
///
/// * `model_name` is cut at the first `:` (a tag such as `Qwen/Qwen3-8B:peft`).
/// * With a `tokenizer_id` (from `get_info`; empty counts as none), that id is used (also cut
///   at `:` unless it is an absolute path, which loads directly).
/// * Without one: `meta-llama/Llama-3*` → [`LLAMA3_TOKENIZER`]; `org/model/variant` →
///   `org/model`; otherwise the model name.
/// * An id (or, without a `tokenizer_id`, a model name) naming an existing local
///   directory loads that directory's tokenizer files, as the SDK's `from_pretrained` does:
///   servers that serve a local model folder report its path as the model name.
/// * `TML/…` and `thinkingmachines/…` ids are refused with [`Error::Unsupported`](crate::Error::Unsupported).
/// * The Kimi models get their pinned revisions (`moonshotai/Kimi-K2.5-Text-Only` uses the
///   `moonshotai/Kimi-K2.5` repository).
///
/// ```
/// use tinker_tokenizer::{resolve, TokenizerRef};
/// assert_eq!(
///     resolve("meta-llama/Llama-3.1-8B:base", None).unwrap(),
///     TokenizerRef::hub("thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"),
/// );
/// assert_eq!(resolve("Qwen/Qwen3-8B/fast", None).unwrap(), TokenizerRef::hub("Qwen/Qwen3-8B"));
/// ```
pub fn resolve(model_name: &str, tokenizer_id: Option<&str>) -> Result<TokenizerRef> {
    let tokenizer_id = tokenizer_id.map(str::trim).filter(|id| !id.is_empty());
    if let Some(id) = tokenizer_id
        && Path::new(id).is_absolute()
    {
        return Ok(TokenizerRef::Path(PathBuf::from(id)));
    }
    let model_name = cut_tag(model_name);
    let id = match tokenizer_id {
        Some(id) => cut_tag(id).to_owned(),
        None => default_id(model_name),
    };
    // The SDK's order: the id it settled on, then (no tokenizer id) the whole model name,
    // which the `org/model/variant` rule would otherwise cut.
    if let Some(dir) = local_dir(&id).or_else(|| {
        tokenizer_id
            .is_none()
            .then(|| local_dir(model_name))
            .flatten()
    }) {
        return Ok(TokenizerRef::Path(dir));
    }
    if id.is_empty() {
        return InvalidIdSnafu {
            id,
            reason: "the model name is empty",
        }
        .fail();
    }
    if id.starts_with("TML/") || id.starts_with("thinkingmachines/") {
        return UnsupportedSnafu { id }.fail();
    }
    validate_repo_id(&id)?;
    if let Some((_, repo, rev)) = PINNED.iter().find(|(name, _, _)| *name == id) {
        return Ok(TokenizerRef::Hub {
            repo_id: (*repo).to_owned(),
            revision: Some((*rev).to_owned()),
        });
    }
    Ok(TokenizerRef::hub(id))
}

/// `name` as a path, if it names an existing directory.
fn local_dir(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    (!name.is_empty() && path.is_dir()).then(|| path.to_path_buf())
}

/// Everything before the first `:`.
fn cut_tag(name: &str) -> &str {
    name.split(':').next().unwrap_or(name).trim()
}

/// The SDK's heuristics when the server gave no tokenizer id.
fn default_id(model_name: &str) -> String {
    if model_name.starts_with("meta-llama/Llama-3") {
        return LLAMA3_TOKENIZER.to_owned();
    }
    let parts: Vec<&str> = model_name.split('/').collect();
    if let [org, model, _variant] = parts.as_slice() {
        return format!("{org}/{model}");
    }
    model_name.to_owned()
}

/// A repository id must be one or two non-empty path-safe segments (it becomes a directory
/// name under the search path and the Hugging Face cache).
fn validate_repo_id(id: &str) -> Result<()> {
    let segments: Vec<&str> = id.split('/').collect();
    let reason = if segments.len() > 2 {
        Some("a Hugging Face repository id has at most one `/`")
    } else if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        Some("empty, `.` or `..` path segment")
    } else if id.contains('\\') || id.chars().any(char::is_whitespace) {
        Some("backslash or whitespace in the id")
    } else {
        None
    };
    match reason {
        Some(reason) => InvalidIdSnafu { id, reason }.fail(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn hub(id: &str) -> TokenizerRef {
        TokenizerRef::hub(id)
    }

    #[test]
    fn model_name_is_cut_at_colon() {
        assert_eq!(
            resolve("Qwen/Qwen3-8B:peft:1", None).unwrap(),
            hub("Qwen/Qwen3-8B")
        );
    }

    #[test]
    fn llama3_override_only_without_tokenizer_id() {
        assert_eq!(
            resolve("meta-llama/Llama-3.2-1B", None).unwrap(),
            hub(LLAMA3_TOKENIZER)
        );
        assert_eq!(
            resolve("meta-llama/Llama-3.2-1B", Some("meta-llama/Llama-3.2-1B")).unwrap(),
            hub("meta-llama/Llama-3.2-1B")
        );
        // Llama 2 keeps its own name.
        assert_eq!(
            resolve("meta-llama/Llama-2-7b", None).unwrap(),
            hub("meta-llama/Llama-2-7b")
        );
    }

    #[test]
    fn variant_is_dropped() {
        assert_eq!(
            resolve("deepseek-ai/DeepSeek-V3.1/base", None).unwrap(),
            hub("deepseek-ai/DeepSeek-V3.1")
        );
    }

    #[test]
    fn tokenizer_id_wins_and_is_cut() {
        assert_eq!(
            resolve("whatever/model", Some("Qwen/Qwen3-4B:x")).unwrap(),
            hub("Qwen/Qwen3-4B")
        );
        assert_eq!(
            resolve("Qwen/Qwen3-4B", Some("")).unwrap(),
            hub("Qwen/Qwen3-4B")
        );
    }

    #[test]
    fn absolute_path_loads_directly() {
        let dir = std::env::temp_dir().join("some:dir");
        let id = dir.to_str().unwrap();
        assert_eq!(
            resolve("tiny", Some(id)).unwrap(),
            TokenizerRef::Path(dir.clone())
        );
    }

    #[test]
    fn local_model_folders_load_directly() {
        // A server serving a local folder names it as the model, with no tokenizer id.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("models").join("qwen3-tiny");
        std::fs::create_dir_all(&dir).unwrap();
        let name = dir.to_str().unwrap();
        assert_eq!(
            resolve(name, None).unwrap(),
            TokenizerRef::Path(dir.clone())
        );
        assert_eq!(
            resolve("served", Some(name)).unwrap(),
            TokenizerRef::Path(dir.clone())
        );
        // A path that does not exist is still refused as a repository id.
        let missing = root.path().join("a").join("b").join("c");
        assert!(resolve(missing.to_str().unwrap(), None).is_err());
    }

    #[test]
    fn tml_ids_are_unsupported() {
        for id in ["TML/model", "thinkingmachines/foo"] {
            let err = resolve(id, None).unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }), "{err}");
            assert!(err.to_string().contains("tml-renderers"));
        }
        let err = resolve("x/y", Some("TML/z")).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }));
    }

    #[test]
    fn kimi_revisions_are_pinned() {
        let r = resolve("moonshotai/Kimi-K2.5-Text-Only", None).unwrap();
        assert_eq!(
            r,
            TokenizerRef::Hub {
                repo_id: "moonshotai/Kimi-K2.5".into(),
                revision: Some("4d01dfe0332d63057c186e0b262165819efb6611".into())
            }
        );
        assert_eq!(
            r.revision(),
            Some("4d01dfe0332d63057c186e0b262165819efb6611")
        );
        let r = resolve("moonshotai/Kimi-K2-Thinking:tag", None).unwrap();
        assert_eq!(
            r.revision(),
            Some("612681931a8c906ddb349f8ad0f582cb552189cd")
        );
        for (name, rev) in [
            (
                "moonshotai/Kimi-K2.6",
                "b5aabbfb20227ed42becbf5541dbffd213942c58",
            ),
            (
                "moonshotai/Kimi-K3",
                "f831ab66814297da540d832a5235f8e904f29d06",
            ),
            (
                "moonshotai/Kimi-K2.5",
                "4d01dfe0332d63057c186e0b262165819efb6611",
            ),
        ] {
            assert_eq!(resolve("x/y", Some(name)).unwrap().revision(), Some(rev));
        }
        assert_eq!(hub("Qwen/Qwen3-8B").revision(), Some("main"));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for (name, id) in [
            ("", None),
            (":tag", None),
            ("a/../b", None),
            ("x", Some("a/b/c")),
            ("x", Some("a b/c")),
        ] {
            let err = resolve(name, id).unwrap_err();
            assert!(
                matches!(err, Error::InvalidId { .. }),
                "{name} {id:?}: {err}"
            );
        }
    }
}
