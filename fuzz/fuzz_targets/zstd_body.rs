//! zstd bodies: `zstd_decompress` and `ForwardBackwardRequest::decode_proto_zstd` under a
//! 1 MiB limit (the output never passes it). Random bytes rarely carry the zstd magic, so
//! each input is also compressed into a valid frame that round-trips, then damaged in one
//! byte (chosen by the input) and decoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinker_types::ForwardBackwardRequest;
use tinker_types::proto::{zstd_compress, zstd_decompress};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = zstd_decompress(data, LIMIT) {
        assert!(out.len() <= LIMIT);
    }
    let _ = ForwardBackwardRequest::decode_proto_zstd(data, LIMIT);

    let frame = zstd_compress(data).expect("compressing never fails");
    assert_eq!(zstd_decompress(&frame, LIMIT).expect("own frame"), data);
    let _ = ForwardBackwardRequest::decode_proto_zstd(&frame, LIMIT);
    if let Some(&pick) = data.first() {
        let mut damaged = frame;
        let at = usize::from(pick) * 7 % damaged.len();
        damaged[at] ^= pick | 1;
        if let Ok(out) = zstd_decompress(&damaged, LIMIT) {
            assert!(out.len() <= LIMIT);
        }
        let _ = ForwardBackwardRequest::decode_proto_zstd(&damaged, LIMIT);
    }
});
