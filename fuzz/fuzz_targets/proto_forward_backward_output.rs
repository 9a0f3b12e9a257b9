//! `ForwardBackwardOutput::decode_proto` (a `forward_backward` future's result).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinker_types::ForwardBackwardOutput;

fuzz_target!(|data: &[u8]| {
    if let Ok(output) = ForwardBackwardOutput::decode_proto(data) {
        let _ = output.encode_proto();
    }
});
