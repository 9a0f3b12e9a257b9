//! The crate's integration tests, one module per concern, linked into one test binary
//! (one binary links the dependency graph once instead of once per file: CI's disk and
//! link time; see ARCHITECTURE.md, "Tests").

// Helpers outside #[test] functions unwrap too: a panic there is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod engine_loss;
mod engine_model;
mod engine_sampling;
mod engine_train;
mod hf_models;
mod server_accounts;
mod server_e2e;
mod server_faults;
mod server_legacy;
mod server_malformed;
mod server_ordering;
mod server_rest;
mod server_restart;
mod server_search_billing_access;
mod server_seq_rules;
mod server_zero_compute;
