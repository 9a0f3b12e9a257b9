//! A protobuf `Tensor` into `TensorData` (dense and CSR, every wire dtype).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tinker_types::TensorData;
use tinker_types::proto::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = wire::Tensor::decode(data)
        && let Ok(tensor) = TensorData::try_from(msg)
    {
        let _ = wire::Tensor::from(&tensor).encode_to_vec();
        let _ = tinker_types::json::to_vec(&tensor);
    }
});
