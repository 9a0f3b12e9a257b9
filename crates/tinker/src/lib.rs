//! The Tinker SDK for Rust: fine-tune open-weight LLMs with LoRA on the Tinker service.
//!
//! This crate is being built; see the README for what works today.
