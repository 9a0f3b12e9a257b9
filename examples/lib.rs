//! Shared helpers for the tinker-rs examples.
