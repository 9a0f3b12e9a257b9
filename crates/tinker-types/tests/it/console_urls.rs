//! Console URLs against the strings the SDK 0.38 writes (`tinker.lib.console_urls` and the
//! `get_console_url` / `get_playground_url` methods, run with the SDK's python on these
//! same ids; ids chosen for spaces, `/`, `+`, `*`, `~`, `%`, `?`, `#` and non-ASCII).

use tinker_types::console::*;
use tinker_types::{SaveWeightsForSamplerResponse, SaveWeightsResponse};

const BASE: &str = "https://tinker.thinkingmachines.ai";

#[test]
fn builders_match_the_sdk() {
    assert_eq!(sessions_console_url(), format!("{BASE}/sessions"));
    // Session and training-run ids are not encoded by the SDK.
    assert_eq!(
        session_console_url("session-a b/ü"),
        format!("{BASE}/sessions/session-a b/ü")
    );
    assert_eq!(
        training_run_console_url("sess 1:train:0"),
        format!("{BASE}/training_runs/sess 1:train:0")
    );
    assert_eq!(
        checkpoint_console_url("sess:train:0", "weights/step 1+ü~*"),
        format!("{BASE}/checkpoints/sess%3Atrain%3A0/weights%2Fstep%201%2B%C3%BC~%2A")
    );
    assert_eq!(
        checkpoint_playground_url("tinker://sess:train:0/sampler_weights/a b&c=d"),
        format!(
            "{BASE}/playground?mode=checkpoint&checkpoint=tinker%3A%2F%2Fsess%3Atrain%3A0%2Fsampler_weights%2Fa%20b%26c%3Dd"
        )
    );
    assert_eq!(
        new_api_key_console_url("my key+1/ü&x=*~"),
        format!("{BASE}/keys?new_key=true&key_name=my+key%2B1%2F%C3%BC%26x%3D%2A~")
    );
    assert_eq!(
        api_key_console_url("key id/ü+*"),
        format!("{BASE}/keys/key%20id%2F%C3%BC%2B%2A")
    );
}

#[test]
fn result_types_match_the_sdk() {
    let saved: SaveWeightsResponse =
        serde_json::from_str(r#"{"path":"tinker://s-1:train:0/weights/step 1%ü"}"#).unwrap();
    assert_eq!(
        saved.get_console_url().unwrap(),
        format!("{BASE}/checkpoints/s-1%3Atrain%3A0/weights%2Fstep%201%25%C3%BC")
    );
    let sampler: SaveWeightsForSamplerResponse =
        serde_json::from_str(r#"{"path":"tinker://s-1:train:2/sampler_weights/final?x=1#y"}"#)
            .unwrap();
    assert_eq!(
        sampler.get_console_url().unwrap(),
        format!("{BASE}/checkpoints/s-1%3Atrain%3A2/sampler_weights%2Ffinal%3Fx%3D1%23y")
    );
    assert_eq!(
        sampler.get_playground_url(),
        format!(
            "{BASE}/playground?mode=checkpoint&checkpoint=tinker%3A%2F%2Fs-1%3Atrain%3A2%2Fsampler_weights%2Ffinal%3Fx%3D1%23y"
        )
    );
}

#[test]
fn paths_that_are_not_checkpoints_are_typed_errors() {
    let bad: SaveWeightsResponse = serde_json::from_str(r#"{"path":"s3://bucket/x"}"#).unwrap();
    assert!(matches!(
        bad.get_console_url(),
        Err(tinker_types::Error::InvalidTinkerPath { .. })
    ));
    // The SDK's public result requires the path: an ephemeral answer is not one.
    assert!(
        serde_json::from_str::<SaveWeightsForSamplerResponse>(
            r#"{"sampling_session_id":"s:sample:0"}"#
        )
        .is_err()
    );
}
