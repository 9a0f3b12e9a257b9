//! Tokenizer resolution and loading for Tinker models (Hugging Face tokenizers, tiktoken).
//!
//! The Rust counterpart of the official SDK's `get_tokenizer`:
//!
//! * [`resolve`] maps a model name and `get_info`'s `tokenizer_id` to a [`TokenizerRef`]
//!   with the SDK's rules (tag cut at `:`, the Llama 3 override, `org/model/variant`, the
//!   pinned Kimi revisions, Thinking Machines models refused).
//! * [`TokenizerLoader`] finds the files — explicit path, `TINKER_TOKENIZER_PATH`, the
//!   Hugging Face cache, earlier downloads (`TINKER_TOKENIZER_CACHE`), or the hub through a
//!   caller-supplied [`HubFetcher`] — and caches each tokenizer; offline and missing, its
//!   [`Error::NotFound`] lists every place tried.
//! * [`Tokenizer`] encodes, decodes and maps tokens, for `tokenizer.json` files (the
//!   `tokenizers` crate, pure-Rust regex backend) and tiktoken rank files (`tiktoken-rs`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tinker_tokenizer::Error> {
//! use tinker_tokenizer::TokenizerLoader;
//! let loader = TokenizerLoader::from_env();
//! let tokenizer = loader.load_for_model("Qwen/Qwen3-8B", None).await?;
//! let ids = tokenizer.encode("Hello world", true)?;
//! assert_eq!(tokenizer.decode(&ids, false)?, "Hello world");
//! # Ok(()) }
//! ```
//!
//! Encoding and decoding are synchronous CPU work; async callers with large inputs should
//! run them under `tokio::task::spawn_blocking` (the [`Tokenizer`] is an `Arc` clone).

pub mod chat;
mod error;
mod files;
mod hub;
mod loader;
mod resolve;
mod settings;
mod tiktoken;
mod tokenizer;
mod tokenizer_config;

pub use error::{BoxError, Error, Lookup, Result};
pub use files::{CHAT_TEMPLATE, TIKTOKEN_MODEL, TOKENIZER_CONFIG, TOKENIZER_JSON};
pub use hub::{HubFetcher, HubFuture, HubRequest, HubResponse, file_url};
pub use loader::TokenizerLoader;
pub use resolve::{LLAMA3_TOKENIZER, TokenizerRef, resolve};
pub use settings::{DEFAULT_HF_ENDPOINT, LoaderSettings};
pub use tiktoken::{KIMI_PATTERN, NUM_RESERVED_SPECIAL_TOKENS};
pub use tokenizer::{Tokenizer, TokenizerKind};
