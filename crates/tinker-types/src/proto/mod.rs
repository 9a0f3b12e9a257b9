//! The protobuf path of the wire protocol (`proto/tinker_public.proto`, §4 of the protocol
//! reference).
//!
//! Three messages travel as protobuf (`Content-Type: application/x-protobuf`, see
//! [`CONTENT_TYPE`]). The public types convert to and from them:
//!
//! | public type | encode | decode |
//! |---|---|---|
//! | [`ForwardBackwardRequest`](crate::ForwardBackwardRequest) (request body) | `encode_proto`, `encode_proto_zstd` | `decode_proto`, `decode_proto_zstd` |
//! | [`ForwardBackwardOutput`](crate::ForwardBackwardOutput) (future result) | `encode_proto` | `decode_proto` |
//! | [`SampleResponse`](crate::SampleResponse) (future result) | `encode_proto` | `decode_proto` |
//!
//! The client encodes requests and decodes results; a server (`tinker-local`) does the
//! opposite. Every numeric array travels as packed little-endian bytes; token ids as int32.
//!
//! ```
//! use tinker_types::{Datum, ForwardBackwardRequest, LossFn, ModelInput, TensorData};
//!
//! let datum = Datum::new(
//!     ModelInput::from_tokens(&[1, 2, 3]),
//!     [
//!         ("target_tokens".to_owned(), TensorData::vector_i64(vec![2, 3, 4])),
//!         ("weights".to_owned(), TensorData::vector_f32(vec![1.0, 1.0, 1.0])),
//!     ]
//!     .into(),
//! );
//! let request = ForwardBackwardRequest::new("sess:train:0", 1, vec![datum], LossFn::CrossEntropy);
//! let body = request.encode_proto()?;
//! assert_eq!(ForwardBackwardRequest::decode_proto(&body)?, request);
//! # Ok::<(), tinker_types::Error>(())
//! ```

mod compress;
mod fields;
mod output;
mod packed;
mod request;
mod sample;
mod tensor;

pub use compress::{ZstdDecodeError, zstd_compress, zstd_decompress, zstd_decompress_bounded};
pub use request::ForwardBackwardRequestRef;

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
    clippy::pedantic,
    clippy::exhaustive_enums
)]
#[path = "generated.rs"]
pub mod wire;

/// Media type of protobuf bodies (request `Content-Type`, result `Accept`/`Content-Type`).
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// An error naming the protobuf field (path) at fault.
fn invalid(path: &str, reason: String) -> crate::error::Error {
    crate::error::Error::InvalidValue {
        field: path.to_owned(),
        reason,
    }
}
