//! The crate's integration tests, one module per concern, linked into one test binary
//! (one binary links the dependency graph once instead of once per file: CI's disk and
//! link time; see ARCHITECTURE.md, "Tests").

// Helpers outside #[test] functions unwrap too: a panic there is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod circuit_and_rate;
mod faults;
mod limits;
mod observer;
mod properties;
mod response_limit;
mod tls;
