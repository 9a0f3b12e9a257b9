//! The crate's integration tests, one module per concern, linked into one test binary
//! (one binary links the dependency graph once instead of once per file: CI's disk and
//! link time; see ARCHITECTURE.md, "Tests").

// Helpers outside #[test] functions unwrap too: a panic there is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_queries;
mod console_urls;
mod golden_json;
mod papercuts;
mod proptest_json;
mod proto_descriptor;
mod proto_golden;
mod proto_proptest;
