//! zstd framing of protobuf bodies (`Content-Encoding: zstd`).

use std::io::Read;

use super::invalid;
use crate::error::Result;

/// zstd's default level, which the SDK's `zstandard.ZstdCompressor()` uses.
const LEVEL: i32 = zstd::DEFAULT_COMPRESSION_LEVEL;

/// Compresses `bytes` as one zstd frame at the default level, as the SDK does for
/// `forward_backward` bodies when the `proto_compress_fwdbwd` flag is on.
///
/// # Errors
/// [`crate::Error::InvalidValue`] if the compressor fails (it does not on valid input).
pub fn zstd_compress(bytes: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(bytes, LEVEL)
        .map_err(|e| invalid("zstd", format!("compression failed: {e}")))
}

/// Decompresses a zstd body, refusing to inflate it beyond `max_decoded_len` bytes (a small
/// body must not be able to allocate unbounded memory).
///
/// # Errors
/// [`crate::Error::InvalidValue`] for a corrupt frame or one that inflates past the limit.
pub fn zstd_decompress(bytes: &[u8], max_decoded_len: usize) -> Result<Vec<u8>> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(bytes)
        .map_err(|e| invalid("zstd", format!("cannot start decompression: {e}")))?;
    // The frame header usually states the content size: allocate once when it is sane.
    let declared = zstd::zstd_safe::get_frame_content_size(bytes)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(declared.min(max_decoded_len));
    let limit = u64::try_from(max_decoded_len)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    (&mut decoder)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| invalid("zstd", format!("corrupt frame: {e}")))?;
    if out.len() > max_decoded_len {
        return Err(invalid(
            "zstd",
            format!("the body inflates beyond the limit of {max_decoded_len} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_enforces_the_limit() {
        let body = vec![7u8; 10_000];
        let frame = zstd_compress(&body).unwrap();
        assert!(frame.len() < body.len());
        assert_eq!(zstd_decompress(&frame, 10_000).unwrap(), body);
        let err = zstd_decompress(&frame, 9_999).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(zstd_decompress(b"not zstd", 100).is_err());
    }
}
