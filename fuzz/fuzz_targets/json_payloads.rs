//! JSON bodies decoded straight from bytes, on both sides of the wire: results (sample,
//! forward/backward), tensors (dense, CSR, base64 image chunks inside model inputs) and
//! requests a server decodes. The first byte picks the type; whatever decodes re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinker_types::json::{from_slice, to_vec};
use tinker_types::{
    ClientConfig, Datum, DynamicConfig, ForwardBackwardOutput, ForwardBackwardRequest, ModelInput,
    SampleRequest, SampleResponse, TensorData, TopkLogprobs,
};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 10 {
        0 => drop(from_slice::<SampleResponse>(body).map(|v| to_vec(&v))),
        1 => drop(from_slice::<ForwardBackwardOutput>(body).map(|v| to_vec(&v))),
        2 => drop(from_slice::<TensorData>(body).map(|v| to_vec(&v))),
        3 => drop(from_slice::<TopkLogprobs>(body).map(|v| to_vec(&v))),
        4 => drop(from_slice::<ModelInput>(body).map(|v| to_vec(&v))),
        5 => drop(from_slice::<Datum>(body).map(|v| to_vec(&v))),
        6 => drop(from_slice::<ForwardBackwardRequest>(body).map(|v| to_vec(&v))),
        7 => drop(from_slice::<SampleRequest>(body).map(|v| to_vec(&v))),
        8 => drop(from_slice::<ClientConfig>(body)),
        _ => drop(from_slice::<DynamicConfig>(body)),
    }
});
