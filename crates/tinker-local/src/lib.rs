//! A Tinker-compatible server that trains and samples a tiny transformer on the CPU.
//!
//! This crate is being built; see the README for what works today.
