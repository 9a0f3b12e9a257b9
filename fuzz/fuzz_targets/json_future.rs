//! `retrieve_future` JSON answers: classification (`try_again`, `complete_metadata`,
//! failure, result) and the typed results decoded from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tinker_types::{
    ForwardBackwardOutput, FutureOutcome, OptimStepResponse, SampleResponse, UntypedFuture,
};

fuzz_target!(|data: &[u8]| {
    let Ok(outcome) = FutureOutcome::<Value>::from_json(data) else {
        return;
    };
    if let FutureOutcome::Complete(value) = outcome {
        let _ = tinker_types::json::from_value::<ForwardBackwardOutput>(value.clone());
        let _ = tinker_types::json::from_value::<SampleResponse>(value.clone());
        let _ = tinker_types::json::from_value::<OptimStepResponse>(value.clone());
        let _ = tinker_types::json::from_value::<UntypedFuture>(value);
    }
});
