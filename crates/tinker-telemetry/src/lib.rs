//! Tracing spans, metrics and the telemetry event reporter of the Tinker SDK.
//!
//! This crate is being built; see the README for what works today.
