//! Golden tests against bytes written and decoded by the official SDK 0.38.0
//! (`scripts/fixtures/gen_proto_fixtures.py`, fixtures under `tests/fixtures/proto/`).
//!
//! * Requests: for each instance the SDK encoded, our encoding of the same instance decodes
//!   to the same protobuf message (messages are compared, not bytes: map order may
//!   differ); the SDK's bytes, plain and zstd, decode back to the instance.
//! * Responses: every `ForwardBackwardOutput` / `SampleResponse` the SDK decoded, we decode
//!   to the same values; re-encoding what we decoded gives the same values again, and for
//!   canonical fixtures the very same message.

use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::{Value, json};
use tinker_types::proto::{wire, zstd_decompress};
use tinker_types::{
    Datum, ForwardBackwardOutput, ForwardBackwardRequest, LossConfigValue, LossFn, ModelInput,
    ProvenanceSpan, SampleResponse, TensorData, TensorValues, TopkLogprobs,
};

fn fixtures(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proto")
        .join(kind)
}

/// The fixture cases of a directory: each `<case>.json` and its sibling files.
fn cases(kind: &str) -> Vec<(String, PathBuf)> {
    let dir = fixtures(kind);
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().expect("stem").to_string_lossy().into_owned();
            (name, p)
        })
        .collect();
    cases.sort();
    cases
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read fixture")).expect("fixture JSON")
}

fn sibling(json: &Path, extension: &str) -> Vec<u8> {
    std::fs::read(json.with_extension(extension)).expect("read fixture bytes")
}

// ---------------------------------------------------------------------------------------
// Requests

fn span_from_view(view: &Value) -> ProvenanceSpan {
    let id = view["sequence_id"].as_str().expect("sequence_id");
    let offset = view["offset"].as_u64().expect("offset");
    let length = view["length"].as_u64().expect("length");
    match view["kind"].as_str() {
        Some("prompt") => ProvenanceSpan::prompt(id, offset, length),
        Some("sampled") => ProvenanceSpan::sampled(id, offset, length),
        other => panic!("unknown span kind {other:?}"),
    }
}

/// Builds the public request the fixture describes (chunks and tensors are in the SDK's
/// own JSON forms, read with our serde types).
fn request_from_view(view: &Value) -> ForwardBackwardRequest {
    let data = view["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| {
            let model_input: ModelInput =
                serde_json::from_value(d["model_input"].clone()).expect("model_input");
            let loss_fn_inputs =
                serde_json::from_value(d["loss_fn_inputs"].clone()).expect("loss_fn_inputs");
            let mut datum = Datum::new(model_input, loss_fn_inputs);
            let spans = |key: &str| {
                d.get(key).map(|s| {
                    s.as_array()
                        .expect(key)
                        .iter()
                        .map(span_from_view)
                        .collect()
                })
            };
            datum.model_input_spans = spans("model_input_spans");
            datum.loss_fn_input_spans = spans("loss_fn_input_spans");
            datum
        })
        .collect();
    let mut request = ForwardBackwardRequest::new(
        view["model_id"].as_str().expect("model_id"),
        view["seq_id"].as_u64().expect("seq_id"),
        data,
        LossFn::from_wire(view["loss_fn"].as_str().expect("loss_fn")),
    );
    request.forward_only = view["forward_only"].as_bool().expect("forward_only");
    request.loss_fn_config = view.get("loss_fn_config").map(|config| {
        config
            .as_object()
            .expect("config object")
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => LossConfigValue::Text(s.clone()),
                    n => LossConfigValue::Number(n.as_f64().expect("number")),
                };
                (k.clone(), value)
            })
            .collect()
    });
    request
}

#[test]
fn our_request_encoding_decodes_to_the_sdk_message() {
    let cases = cases("requests");
    assert_eq!(cases.len(), 7, "one fixture per representative request");
    for (name, path) in cases {
        let request = request_from_view(&read_json(&path));
        let sdk_bytes = sibling(&path, "pb");
        let ours = request.encode_proto().expect("encode");
        let sdk_msg =
            wire::ForwardBackwardRequest::decode(sdk_bytes.as_slice()).expect("SDK bytes");
        let our_msg = wire::ForwardBackwardRequest::decode(ours.as_slice()).expect("our bytes");
        assert_eq!(
            our_msg, sdk_msg,
            "{name}: our message differs from the SDK's"
        );
        assert_eq!(
            request.encoded_proto_len().expect("len"),
            ours.len(),
            "{name}"
        );
    }
}

#[test]
fn sdk_request_bytes_decode_to_the_instance() {
    for (name, path) in cases("requests") {
        let request = request_from_view(&read_json(&path));
        let plain = sibling(&path, "pb");
        let compressed = sibling(&path, "pb.zst");
        assert_eq!(
            ForwardBackwardRequest::decode_proto(&plain).expect("decode"),
            request,
            "{name}"
        );
        assert_eq!(
            zstd_decompress(&compressed, plain.len()).expect("SDK zstd frame"),
            plain,
            "{name}: the SDK's zstd body inflates to its plain body"
        );
        assert_eq!(
            ForwardBackwardRequest::decode_proto_zstd(&compressed, 1 << 20).expect("decode zstd"),
            request,
            "{name}"
        );
        let ours = request.encode_proto_zstd().expect("encode zstd");
        assert_eq!(
            ForwardBackwardRequest::decode_proto_zstd(&ours, 1 << 20).expect("our zstd"),
            request,
            "{name}"
        );
    }
}

#[test]
fn ppo_config_is_dual_written_as_the_sdk_does() {
    let path = fixtures("requests").join("ppo_config.json");
    let msg = wire::ForwardBackwardRequest::decode(
        request_from_view(&read_json(&path))
            .encode_proto()
            .expect("encode")
            .as_slice(),
    )
    .expect("decode");
    // Numbers in both maps, the string only in v2.
    assert_eq!(msg.loss_fn_config.len(), 2);
    assert_eq!(msg.loss_fn_config["clip_low_threshold"], 0.8);
    assert_eq!(msg.loss_fn_config_v2.len(), 3);
    assert_eq!(
        msg.loss_fn_config_v2["mode"].value,
        Some(wire::loss_config_value::Value::Text("x".to_owned()))
    );
}

// ---------------------------------------------------------------------------------------
// Responses: our decoded values, in the view the fixture script dumped

fn tensor_view(tensor: &TensorData) -> Value {
    let data = match tensor.values() {
        TensorValues::Float32(v) => json!(v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
        TensorValues::Int64(v) => json!(v),
        other => panic!("unexpected values {other:?}"),
    };
    let mut view = json!({"data": data, "dtype": tensor.dtype().as_str()});
    if let Some(shape) = tensor.shape() {
        view["shape"] = json!(shape);
    }
    if let Some(csr) = tensor.csr_indices() {
        view["sparse_crow_indices"] = json!(csr.crow_indices);
        view["sparse_col_indices"] = json!(csr.col_indices);
    }
    view
}

fn topk_view(topk: Option<&TopkLogprobs>) -> Value {
    topk.map_or(Value::Null, |t| {
        json!(
            t.rows()
                .into_iter()
                .map(|row| row.map(|cells| cells
                    .into_iter()
                    .map(|(id, lp)| json!([id, f64::from(lp)]))
                    .collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        )
    })
}

fn fwd_output_view(output: &ForwardBackwardOutput) -> Value {
    json!({
        "loss_fn_output_type": output.loss_fn_output_type,
        "loss_fn_outputs": output.loss_fn_outputs.iter().map(|datum| {
            datum.iter().map(|(k, t)| (k.clone(), tensor_view(t))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "metrics": output.metrics,
    })
}

fn sample_view(resp: &SampleResponse) -> Value {
    let f32s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    json!({
        "sequences": resp.sequences.iter().map(|s| json!({
            "stop_reason": s.stop_reason.as_str(),
            "tokens": s.tokens,
            "logprobs": s.logprobs.as_deref().map(f32s),
            "topk_logprobs": topk_view(s.topk_logprobs.as_ref()),
        })).collect::<Vec<_>>(),
        "prompt_logprobs": resp.prompt_logprobs.as_ref().map(|lps| {
            lps.iter().map(|lp| lp.map(f64::from)).collect::<Vec<_>>()
        }),
        "topk_prompt_logprobs": topk_view(resp.topk_prompt_logprobs.as_ref()),
        "prompt_cache_hit_tokens": resp.prompt_cache_hit_tokens,
        "target_prompt_logprobs": resp.target_prompt_logprobs.as_ref().map(tensor_view),
        "prompt_alt_tokens": resp.prompt_alt_tokens.as_ref().map(|alt| json!({
            "tokens": tensor_view(&alt.tokens),
            "logprobs": tensor_view(&alt.logprobs),
        })),
    })
}

/// Fixtures whose message is already in the form our encoder writes (public dtypes, one
/// record per run of like datums, no present-but-empty optionals), so re-encoding what we
/// decoded must give back the very same message.
const CANONICAL: &[&str] = &[
    "fwd_datums_without_fields",
    "sample_minimal",
    "sample_logprobs",
    "sample_prompt_logprobs",
    "sample_topk",
    "sample_target_dense",
    "sample_target_csr",
    "sample_everything",
];

#[test]
fn we_decode_every_response_as_the_sdk_did() {
    let cases = cases("responses");
    assert_eq!(cases.len(), 15, "every response fixture is checked");
    for (name, path) in cases {
        let fixture = read_json(&path);
        let bytes = sibling(&path, "pb");
        let expected = &fixture["decoded"];
        match fixture["type"].as_str() {
            Some("ForwardBackwardOutput") => {
                let output = ForwardBackwardOutput::decode_proto(&bytes).expect(&name);
                assert_eq!(&fwd_output_view(&output), expected, "{name}");
            }
            Some("SampleResponse") => {
                let resp = SampleResponse::decode_proto(&bytes).expect(&name);
                assert_eq!(&sample_view(&resp), expected, "{name}");
            }
            other => panic!("{name}: unknown fixture type {other:?}"),
        }
    }
}

#[test]
fn re_encoding_a_decoded_response_keeps_its_values() {
    for (name, path) in cases("responses") {
        let fixture = read_json(&path);
        let bytes = sibling(&path, "pb");
        let canonical = CANONICAL.contains(&name.as_str());
        match fixture["type"].as_str() {
            Some("ForwardBackwardOutput") => {
                let output = ForwardBackwardOutput::decode_proto(&bytes).expect(&name);
                let ours = output.encode_proto().expect("encode");
                assert_eq!(
                    ForwardBackwardOutput::decode_proto(&ours).expect(&name),
                    output,
                    "{name}"
                );
                if canonical {
                    assert_eq!(
                        wire::ForwardBackwardOutput::decode(ours.as_slice()).expect("ours"),
                        wire::ForwardBackwardOutput::decode(bytes.as_slice()).expect("SDK"),
                        "{name}"
                    );
                }
            }
            Some("SampleResponse") => {
                let resp = SampleResponse::decode_proto(&bytes).expect(&name);
                let ours = resp.encode_proto().expect("encode");
                assert_eq!(
                    SampleResponse::decode_proto(&ours).expect(&name),
                    resp,
                    "{name}"
                );
                if canonical {
                    assert_eq!(
                        wire::SampleResponse::decode(ours.as_slice()).expect("ours"),
                        wire::SampleResponse::decode(bytes.as_slice()).expect("SDK"),
                        "{name}"
                    );
                }
            }
            other => panic!("{name}: unknown fixture type {other:?}"),
        }
    }
}
