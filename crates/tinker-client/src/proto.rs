//! The protobuf codec calls the client makes, in one place: `forward_backward` request
//! bodies and the `ForwardBackwardOutput` / `SampleResponse` results (codec in
//! `tinker-types`).

use bytes::Bytes;
use tinker_types::{ForwardBackwardOutput, ForwardBackwardRequestRef, SampleResponse};

use crate::error::{Error, Result};

/// Encodes a `forward_backward` body. A request the wire cannot carry (e.g. a token id
/// beyond int32) is the caller's input error.
pub(crate) fn encode_forward_backward(req: &ForwardBackwardRequestRef<'_>) -> Result<Vec<u8>> {
    req.encode_proto().map_err(|e| {
        Error::invalid(format!("forward_backward request cannot be encoded: {e}")).with_source(e)
    })
}

pub(crate) fn decode_forward_backward_output(bytes: Bytes) -> Result<ForwardBackwardOutput> {
    ForwardBackwardOutput::decode_proto_bytes(bytes)
        .map_err(|e| Error::protocol(format!("invalid ForwardBackwardOutput: {e}")).with_source(e))
}

pub(crate) fn decode_sample_response(bytes: &[u8]) -> Result<SampleResponse> {
    SampleResponse::decode_proto(bytes)
        .map_err(|e| Error::protocol(format!("invalid SampleResponse: {e}")).with_source(e))
}
