//! Wire types of the Tinker training API (JSON via serde, protobuf via prost); no I/O.
//!
//! This crate is being built; see the README for what works today.

pub mod proto;
