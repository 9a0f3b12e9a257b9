//! `SampleResponse::decode_proto` (a sampling future's result).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinker_types::SampleResponse;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = SampleResponse::decode_proto(data) {
        let _ = response.encode_proto();
        let _ = tinker_types::json::to_vec(&response);
    }
});
