//! Tokenizer resolution and loading for Tinker models (Hugging Face tokenizers, tiktoken).
//!
//! This crate is being built; see the README for what works today.
