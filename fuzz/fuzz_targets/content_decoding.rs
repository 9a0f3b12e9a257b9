//! The transport's response content decoding (`gzip`, `deflate`, `zstd`, and stacks of
//! them) under a 64 KiB limit: the first byte picks the `Content-Encoding`. Each input is
//! also encoded for real (so the decoders get past their headers), damaged in one byte and
//! decoded.
#![no_main]

use std::io::Write;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tinker_transport::ErrorKind;
use tinker_transport::http::decode_content;

const LIMIT: u64 = 64 * 1024;
const ENCODINGS: [&str; 6] = [
    "gzip",
    "deflate",
    "zstd",
    "x-gzip",
    "gzip, zstd",
    "identity",
];

fn decode(encoding: &'static str, body: &[u8]) -> Option<Bytes> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    match decode_content(&mut headers, Bytes::copy_from_slice(body), LIMIT) {
        Ok(out) => {
            assert!(encoding == "identity" || out.len() as u64 <= LIMIT);
            Some(out)
        }
        Err(e) => {
            assert!(matches!(
                e.kind(),
                ErrorKind::Decode | ErrorKind::ResponseTooLarge
            ));
            None
        }
    }
}

fn encode(encoding: &str, data: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" | "x-gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("in memory");
            e.finish().expect("in memory")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("in memory");
            e.finish().expect("in memory")
        }
        "zstd" => zstd::bulk::compress(data, 1).expect("in memory"),
        _ => data.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let encoding = ENCODINGS[usize::from(pick) % ENCODINGS.len()];
    decode(encoding, body);
    if matches!(encoding, "gzip" | "deflate" | "zstd") {
        let mut encoded = encode(encoding, body);
        let out = decode(encoding, &encoded);
        if body.len() as u64 <= LIMIT {
            assert_eq!(out.as_deref(), Some(body), "{encoding} round trip");
        } else {
            assert!(out.is_none(), "{encoding}: over the limit must fail");
        }
        let at = usize::from(pick) * 13 % encoded.len();
        encoded[at] ^= pick | 1;
        decode(encoding, &encoded);
    }
});
