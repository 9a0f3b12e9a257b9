//! Response content decoding (`Content-Encoding: gzip | deflate | zstd`).

use std::io::Read;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_ENCODING;

use crate::error::{Cause, ErrorKind, TransportError};

/// Decodes `body` per its `Content-Encoding` (applied in reverse order) and removes that
/// header. `Content-Length` keeps the length that travelled on the wire.
pub(crate) fn decode_body(headers: &mut HeaderMap, body: Bytes) -> Result<Bytes, TransportError> {
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
        data = decode_one(encoding, &data).map_err(|source| {
            TransportError::new(
                ErrorKind::Decode,
                Cause::ContentDecoding {
                    encoding: encoding.clone(),
                    source,
                },
            )
        })?;
    }
    headers.remove(CONTENT_ENCODING);
    Ok(data)
}

fn decode_one(encoding: &str, data: &[u8]) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4));
    match encoding {
        "gzip" | "x-gzip" => {
            flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)?;
        }
        "deflate" => {
            // HTTP "deflate" is zlib-wrapped; some servers send raw deflate.
            if flate2::read::ZlibDecoder::new(data)
                .read_to_end(&mut out)
                .is_err()
            {
                out.clear();
                flate2::read::DeflateDecoder::new(data).read_to_end(&mut out)?;
            }
        }
        "zstd" => {
            zstd::stream::read::Decoder::new(data)?.read_to_end(&mut out)?;
        }
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("unsupported content encoding {other:?}"),
            ));
        }
    }
    Ok(Bytes::from(out))
}

/// zstd-compresses a request body (level 3, the zstd default the SDK also uses).
pub(crate) fn zstd_compress(body: &[u8]) -> Result<Bytes, TransportError> {
    zstd::bulk::compress(body, 3)
        .map(Bytes::from)
        .map_err(|source| {
            TransportError::new(ErrorKind::InvalidRequest, Cause::Compress { source })
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
            let out = decode_body(&mut h, Bytes::from(data)).unwrap();
            assert_eq!(&out[..], &plain[..], "{enc}");
            assert!(h.get(CONTENT_ENCODING).is_none());
        }
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let err = decode_body(&mut h, Bytes::from_static(b"not gzip")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }
}
