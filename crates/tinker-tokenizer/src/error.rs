//! The error type of this crate.

use std::fmt;
use std::path::PathBuf;

use snafu::Snafu;

/// A boxed error from a dependency or from a caller-supplied [`HubFetcher`](crate::HubFetcher).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One place the loader looked for a tokenizer, and what it found there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lookup {
    /// A directory, a file or a URL.
    pub place: String,
    /// What was found there (or why the place was skipped).
    pub outcome: String,
}

impl Lookup {
    pub(crate) fn new(place: impl Into<String>, outcome: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            outcome: outcome.into(),
        }
    }
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.outcome)
    }
}

/// Formats every lookup on its own line, for [`Error::NotFound`].
fn list(looked: &[Lookup]) -> String {
    looked
        .iter()
        .map(|l| format!("\n  - {l}"))
        .collect::<String>()
}

/// Everything that can go wrong while resolving, loading or using a tokenizer.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// Thinking Machines' own models (`TML/…`, `thinkingmachines/…`) have no public
    /// tokenizer files; the official SDK needs its separate `tml_tokenizers` package.
    #[snafu(display(
        "tokenizer `{id}` is a Thinking Machines model, which does not support get_tokenizer; \
         construct a renderer with tml-renderers instead (https://pypi.org/project/tml-renderers/)"
    ))]
    Unsupported {
        /// The tokenizer id.
        id: String,
    },

    /// The model name or tokenizer id is empty or malformed.
    #[snafu(display("invalid tokenizer id `{id}`: {reason}"))]
    InvalidId {
        /// The offending id.
        id: String,
        /// Why it is invalid.
        reason: String,
    },

    /// No tokenizer files were found anywhere the loader looked.
    #[snafu(display(
        "no tokenizer found for `{id}`; looked in:{}\n\
         (set TINKER_TOKENIZER_PATH to a directory holding `{id}/tokenizer.json`, \
         or populate the Hugging Face cache, or go online)",
        list(looked)
    ))]
    NotFound {
        /// The tokenizer id (Hugging Face repository, or path) that was looked for.
        id: String,
        /// Every place that was tried, in order.
        looked: Vec<Lookup>,
    },

    /// A tokenizer file could not be read.
    #[snafu(display("could not read {}: {source}", path.display()))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A `tokenizer.json` could not be parsed by the `tokenizers` crate.
    #[snafu(display("invalid tokenizer.json from {origin}: {source}"))]
    TokenizerJson {
        /// Where the file came from (path or URL).
        origin: String,
        /// The error of the `tokenizers` crate.
        source: BoxError,
    },

    /// A `tokenizer_config.json` is not valid JSON of the expected shape.
    #[snafu(display("invalid tokenizer_config.json from {origin}: {source}"))]
    TokenizerConfig {
        /// Where the file came from (path or URL).
        origin: String,
        /// The JSON error.
        source: serde_json::Error,
    },

    /// A `tiktoken.model` rank file is malformed.
    #[snafu(display("invalid tiktoken file from {origin}: {reason}"))]
    Tiktoken {
        /// Where the file came from (path or URL).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Downloading an optional tokenizer file (config, chat template) from the hub failed
    /// after the main file was downloaded.
    #[snafu(display("could not download {url}: {source}"))]
    HubFetch {
        /// The URL.
        url: String,
        /// The fetcher's error.
        source: BoxError,
    },

    /// Encoding text failed.
    #[snafu(display("could not encode text with tokenizer `{name}`: {source}"))]
    Encode {
        /// The tokenizer's name.
        name: String,
        /// The backend's error.
        source: BoxError,
    },

    /// Decoding token ids failed (for example an id outside the vocabulary).
    #[snafu(display("could not decode tokens with tokenizer `{name}`: {source}"))]
    Decode {
        /// The tokenizer's name.
        name: String,
        /// The backend's error.
        source: BoxError,
    },

    /// The blocking task that parsed the tokenizer files panicked or was cancelled.
    #[snafu(display("tokenizer loading task for `{id}` failed: {source}"))]
    Task {
        /// The tokenizer id.
        id: String,
        /// The join error.
        source: tokio::task::JoinError,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
