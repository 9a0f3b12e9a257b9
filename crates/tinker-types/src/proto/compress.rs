//! zstd framing of protobuf bodies (`Content-Encoding: zstd`).

use std::cell::RefCell;
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
    // One compression context per thread, reused: creating one costs more than
    // compressing a small training request.
    thread_local! {
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    let fail = |e: std::io::Error| invalid("zstd", format!("compression failed: {e}"));
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(LEVEL).map_err(fail)?),
        };
        compressor.compress(bytes).map_err(fail)
    })
}

/// The largest ratio of declared size to input the first reservation trusts: a zstd frame
/// header may state any content size, so a 20-byte body must not reserve megabytes. Real
/// protobuf bodies compress 3-10x; a bigger one simply grows as it inflates.
const RESERVE_RATIO: usize = 16;

/// Why a bounded zstd decompression failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ZstdDecodeError {
    /// The output would pass the caller's limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The input is not a valid zstd stream.
    Corrupt(std::io::Error),
}

impl std::fmt::Display for ZstdDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { limit } => {
                write!(f, "the body inflates beyond the limit of {limit} bytes")
            }
            Self::Corrupt(e) => write!(f, "corrupt frame: {e}"),
        }
    }
}

impl std::error::Error for ZstdDecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TooLarge { .. } => None,
            Self::Corrupt(e) => Some(e),
        }
    }
}

/// Decompresses a zstd body, refusing to inflate it beyond `max_decoded_len` bytes (a small
/// body must not be able to allocate unbounded memory).
///
/// # Errors
/// [`crate::Error::InvalidValue`] for a corrupt frame or one that inflates past the limit.
pub fn zstd_decompress(bytes: &[u8], max_decoded_len: usize) -> Result<Vec<u8>> {
    zstd_decompress_bounded(bytes, max_decoded_len).map_err(|e| invalid("zstd", e.to_string()))
}

/// The workspace's one zstd decompressor (proto bodies here, HTTP responses in the
/// transport), with a typed error so callers can tell "too large" from "corrupt".
///
/// The output buffer starts at `min(declared size, 16 x input, limit)` and grows by
/// doubling (capped at the limit) as data actually arrives.
///
/// # Errors
/// [`ZstdDecodeError::TooLarge`] before the output passes `max_decoded_len`;
/// [`ZstdDecodeError::Corrupt`] for an invalid stream.
pub fn zstd_decompress_bounded(
    bytes: &[u8],
    max_decoded_len: usize,
) -> std::result::Result<Vec<u8>, ZstdDecodeError> {
    // One decompression context per thread, reused (see `zstd_compress`); the decoder
    // resets its session first, so nothing of an earlier failed frame carries over.
    thread_local! {
        static DCTX: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::zstd_safe::DCtx::try_create().ok_or_else(|| {
                ZstdDecodeError::Corrupt(std::io::Error::other("could not allocate a zstd context"))
            })?),
        };
        decompress_with(
            zstd::stream::read::Decoder::with_context(bytes, dctx),
            bytes,
            max_decoded_len,
        )
    })
}

/// Reads `decoder` (over `bytes`) to the end, bounded as `zstd_decompress_bounded` says.
fn decompress_with(
    mut decoder: impl Read,
    bytes: &[u8],
    max_decoded_len: usize,
) -> std::result::Result<Vec<u8>, ZstdDecodeError> {
    let declared = zstd::zstd_safe::get_frame_content_size(bytes)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let first = declared
        .min(bytes.len().saturating_mul(RESERVE_RATIO))
        .min(max_decoded_len);
    let mut out = Vec::with_capacity(first);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ZstdDecodeError::Corrupt(e)),
        };
        let wanted = out.len().saturating_add(n);
        if wanted > max_decoded_len {
            return Err(ZstdDecodeError::TooLarge {
                limit: max_decoded_len,
            });
        }
        if wanted > out.capacity() {
            let target = out
                .capacity()
                .saturating_mul(2)
                .max(wanted)
                .min(max_decoded_len);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
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

    /// The first reservation is bounded by the input's size (tests/allocation_bounds.rs
    /// checks a lying header with a counting allocator); the output still grows to the
    /// real size, and stops at the limit.
    #[test]
    fn reservation_follows_the_input() {
        let limit = 64 << 20;
        let mut honest = zstd::bulk::Compressor::new(3).unwrap();
        honest.include_contentsize(true).unwrap();
        let small = honest.compress(&[0u8; 100]).unwrap();
        let out = zstd_decompress(&small, limit).unwrap();
        assert_eq!(out.len(), 100);
        assert!(
            out.capacity() <= small.len() * RESERVE_RATIO,
            "{}",
            out.capacity()
        );

        // A small frame of 4 MiB of zeros inflates only as far as the limit lets it.
        let zeros = zstd::bulk::compress(&vec![0u8; 4 << 20], 19).unwrap();
        assert!(zeros.len() < 1024);
        let err = zstd_decompress(&zeros, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        let out = zstd_decompress(&zeros, 8 << 20).unwrap();
        assert_eq!(out.len(), 4 << 20);
    }
}
