//! Response content decoding (`Content-Encoding: gzip | deflate | zstd`).

use std::io::Read;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_ENCODING;
use tinker_types::proto::ZstdDecodeError;

use crate::error::{Cause, ErrorKind, TransportError};

/// Decodes `body` per its `Content-Encoding` (applied in reverse order) and removes that
/// header. `Content-Length` keeps the length that travelled on the wire.
///
/// Every stage stops as soon as its output would pass `limit` bytes (a small compressed
/// body must not be able to inflate into unbounded memory), with
/// [`ErrorKind::ResponseTooLarge`].
pub(crate) fn decode_body(
    headers: &mut HeaderMap,
    body: Bytes,
    limit: u64,
) -> Result<Bytes, TransportError> {
    let encodings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e != "identity")
        .collect();
    if encodings.is_empty() {
        return Ok(body);
    }
    let mut data = body;
    for encoding in encodings.iter().rev() {
        data = decode_one(encoding, &data, limit).map_err(|e| match e {
            Failure::TooLarge => TransportError::too_large("decoded response body", limit),
            Failure::Io(source) => TransportError::new(
                ErrorKind::Decode,
                Cause::ContentDecoding {
                    encoding: encoding.clone(),
                    source,
                },
            ),
        })?;
    }
    headers.remove(CONTENT_ENCODING);
    Ok(data)
}

/// Why one decoding stage stopped.
enum Failure {
    TooLarge,
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Initial output reservation: what a few times the input justifies, never the limit.
const INFLATE_GUESS: usize = 4;

fn decode_one(encoding: &str, data: &[u8], limit: u64) -> Result<Bytes, Failure> {
    let out = match encoding {
        "gzip" | "x-gzip" => read_bounded(flate2::read::MultiGzDecoder::new(data), data, limit)?,
        "deflate" => {
            // HTTP "deflate" is zlib-wrapped; some servers send raw deflate.
            match read_bounded(flate2::read::ZlibDecoder::new(data), data, limit) {
                Ok(out) => out,
                Err(Failure::TooLarge) => return Err(Failure::TooLarge),
                Err(Failure::Io(_)) => {
                    read_bounded(flate2::read::DeflateDecoder::new(data), data, limit)?
                }
            }
        }
        // The workspace's one zstd decompressor, bounded like the others.
        "zstd" => {
            let max = usize::try_from(limit).unwrap_or(usize::MAX);
            tinker_types::proto::zstd_decompress_bounded(data, max).map_err(|e| match e {
                ZstdDecodeError::TooLarge { .. } => Failure::TooLarge,
                ZstdDecodeError::Corrupt(io) => Failure::Io(io),
                other => Failure::Io(std::io::Error::other(other.to_string())),
            })?
        }
        other => {
            return Err(Failure::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("unsupported content encoding {other:?}"),
            )));
        }
    };
    Ok(Bytes::from(out))
}

/// Reads `reader` to the end into memory, failing with [`Failure::TooLarge`] before the
/// output passes `limit` bytes. The buffer starts at a few times the input's size and grows
/// by doubling, capped at the limit, so memory stays within `limit` whatever the input.
fn read_bounded(mut reader: impl Read, input: &[u8], limit: u64) -> Result<Vec<u8>, Failure> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::with_capacity(input.len().saturating_mul(INFLATE_GUESS).min(limit));
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Io(e)),
        };
        let wanted = out.len().saturating_add(n);
        if wanted > limit {
            return Err(Failure::TooLarge);
        }
        if wanted > out.capacity() {
            let target = out.capacity().saturating_mul(2).max(wanted).min(limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// zstd-compresses a request body with the workspace's one compressor (zstd's default
/// level 3, which the SDK also uses).
pub(crate) fn zstd_compress(body: &[u8]) -> Result<Bytes, TransportError> {
    tinker_types::proto::zstd_compress(body)
        .map(Bytes::from)
        .map_err(|e| {
            TransportError::new(
                ErrorKind::InvalidRequest,
                Cause::Compress {
                    source: std::io::Error::other(e.to_string()),
                },
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::io::Write;

    #[test]
    fn decodes_each_encoding() {
        let plain = b"hello hello hello".repeat(10);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(&plain).unwrap();
        let zl = zl.finish().unwrap();
        let zs = zstd::bulk::compress(&plain, 3).unwrap();
        for (enc, data) in [("gzip", gz), ("deflate", zl), ("zstd", zs)] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
            let out = decode_body(&mut h, Bytes::from(data), 1 << 20).unwrap();
            assert_eq!(&out[..], &plain[..], "{enc}");
            assert!(h.get(CONTENT_ENCODING).is_none());
        }
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let err = decode_body(&mut h, Bytes::from_static(b"not gzip"), 1 << 20).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }

    /// Each encoding stops at the limit: one byte over fails, the exact size passes.
    #[test]
    fn decoding_stops_at_the_limit() {
        let plain = vec![0u8; 100_000];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(&plain).unwrap();
        let zl = zl.finish().unwrap();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&plain).unwrap();
        let raw = raw.finish().unwrap();
        let zs = zstd::bulk::compress(&plain, 3).unwrap();
        for (enc, data) in [
            ("gzip", gz),
            ("deflate", zl),
            ("deflate", raw),
            ("zstd", zs),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
            let err = decode_body(&mut h.clone(), Bytes::from(data.clone()), 99_999).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ResponseTooLarge, "{enc}");
            assert_eq!(err.size_limit(), Some(99_999));
            let out = decode_body(&mut h, Bytes::from(data), 100_000).unwrap();
            assert_eq!(out.len(), 100_000, "{enc}");
        }
    }
}
