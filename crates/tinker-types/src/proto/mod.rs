//! The protobuf path of the wire protocol (`proto/tinker_public.proto`).

/// The prost messages generated from `proto/tinker_public.proto` (`cargo xtask codegen`).
///
/// These structs mirror the schema one to one. They are **not** the public API and are not
/// covered by semver (a new field in the schema changes them); use the conversions on the
/// public types instead. They are exposed, hidden, for tests, benchmarks and servers that
/// need the raw messages.
#[doc(hidden)]
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
#[path = "generated.rs"]
pub mod wire;
