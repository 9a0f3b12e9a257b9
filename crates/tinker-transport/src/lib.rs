//! HTTP transport for the Tinker API: hyper + rustls under a tower stack with auth, retries, limits and budgets.
//!
//! This crate is being built; see the README for what works today.
