//! `ForwardBackwardRequest::decode_proto` (what a server decodes); a decoded request
//! re-encodes, and the encoding decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinker_types::ForwardBackwardRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ForwardBackwardRequest::decode_proto(data)
        && let Ok(bytes) = request.encode_proto()
    {
        let again = ForwardBackwardRequest::decode_proto(&bytes).expect("own encoding decodes");
        assert_eq!(again, request);
    }
});
