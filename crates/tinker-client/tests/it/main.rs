//! The crate's integration tests, one module per concern, linked into one test binary
//! (one binary links the dependency graph once instead of once per file: CI's disk and
//! link time; see ARCHITECTURE.md, "Tests").

// Helpers outside #[test] functions unwrap too: a panic there is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod archive;
mod background_loops;
mod chunked_compression;
mod custom_loss;
mod downloads;
mod error_kinds;
mod faults;
mod future_payloads;
mod metrics;
mod queue_state;
mod recovery;
mod regularizers;
mod rest;
mod retry_config;
mod sampling;
mod sampling_limits;
mod sampling_telemetry;
mod seq_order;
mod spans;
mod telemetry;
mod tokenizer_hub;
mod training;
mod wire_fidelity;
