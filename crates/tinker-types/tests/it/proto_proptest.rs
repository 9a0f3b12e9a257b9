//! Property tests of the protobuf conversions: random tensors (dtypes, shapes, CSR), chunk
//! sequences, provenance spans, loss configs, outputs and sample responses survive an
//! encode/decode round trip, and the direct `ForwardBackwardRequest` encoder writes exactly
//! the bytes prost writes for the same message.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use prost::Message;
use tinker_types::proto::wire;
use tinker_types::{
    Datum, DmelChunk, EncodedTextChunk, ForwardBackwardOutput, ForwardBackwardRequest, ImageChunk,
    ImageFormat, LossConfigValue, LossFn, ModelInput, ModelInputChunk, PromptAltTokens,
    ProvenanceSpan, SampleResponse, SampledSequence, StopReason, TensorData, TensorValues,
    TopkLogprobs,
};

const MAX_TOKEN: u32 = i32::MAX as u32;

fn finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1.0e6f32..1.0e6f32,
        Just(0.0f32),
        Just(-99999.0f32),
        Just(f32::MIN_POSITIVE),
        Just(f32::MAX),
    ]
}

fn values(dtype_f32: bool, len: usize) -> BoxedStrategy<TensorValues> {
    if dtype_f32 {
        vec(finite_f32(), len)
            .prop_map(TensorValues::Float32)
            .boxed()
    } else {
        vec(any::<i64>(), len).prop_map(TensorValues::Int64).boxed()
    }
}

/// Dense tensors of 1 to 3 dimensions (some of size 0), or shapeless vectors.
fn dense_tensor() -> impl Strategy<Value = TensorData> {
    let shaped = (any::<bool>(), vec(0usize..5, 1..=3)).prop_flat_map(|(f, shape)| {
        let len = shape.iter().product();
        values(f, len)
            .prop_map(move |v| TensorData::new(v, Some(shape.clone())).expect("consistent"))
    });
    let shapeless = (any::<bool>(), 0usize..12).prop_flat_map(|(f, len)| {
        values(f, len).prop_map(|v| TensorData::new(v, None).expect("consistent"))
    });
    prop_oneof![3 => shaped, 1 => shapeless]
}

/// CSR tensors made by sparsifying a random dense matrix (pad 0 cells are left out).
fn csr_tensor() -> impl Strategy<Value = TensorData> {
    (any::<bool>(), 0usize..5, 1usize..6).prop_flat_map(|(f, rows, cols)| {
        let cells = rows * cols;
        if f {
            vec(prop_oneof![Just(0.0f32), finite_f32()], cells)
                .prop_map(move |d| TensorData::sparsify_f32(&d, [rows, cols], 0.0).expect("csr"))
                .boxed()
        } else {
            vec(prop_oneof![Just(0i64), any::<i64>()], cells)
                .prop_map(move |d| TensorData::sparsify_i64(&d, [rows, cols], 0).expect("csr"))
                .boxed()
        }
    })
}

fn tensor() -> impl Strategy<Value = TensorData> {
    prop_oneof![3 => dense_tensor(), 1 => csr_tensor()]
}

fn chunk() -> impl Strategy<Value = ModelInputChunk> {
    let format = prop_oneof![Just(ImageFormat::Png), Just(ImageFormat::Jpeg)];
    prop_oneof![
        4 => vec(0..=MAX_TOKEN, 0..24).prop_map(|t| EncodedTextChunk::new(t).into()),
        1 => (vec(any::<u8>(), 0..16), format, proptest::option::of(0..=MAX_TOKEN)).prop_map(
            |(data, format, expected)| {
                let image = ImageChunk::new(data, format);
                match expected {
                    Some(n) => image.expected_tokens(n).into(),
                    None => image.into(),
                }
            }
        ),
        1 => vec(any::<u8>(), 0..16).prop_map(|d| DmelChunk::new(d).into()),
    ]
}

fn span() -> impl Strategy<Value = ProvenanceSpan> {
    let max = i64::MAX as u64;
    (any::<bool>(), "[a-z0-9-]{1,10}", 0..=max, 0..=max).prop_map(|(prompt, id, offset, length)| {
        if prompt {
            ProvenanceSpan::prompt(id, offset, length)
        } else {
            ProvenanceSpan::sampled(id, offset, length)
        }
    })
}

fn datum() -> impl Strategy<Value = Datum> {
    (
        vec(chunk(), 0..4),
        btree_map("[a-z_]{0,12}", tensor(), 0..4),
        proptest::option::of((vec(span(), 1..3), vec(span(), 1..3))),
    )
        .prop_map(|(chunks, inputs, spans)| {
            let mut datum = Datum::new(ModelInput::from_chunks(chunks), inputs);
            if let Some((model_input, loss_fn_inputs)) = spans {
                datum.model_input_spans = Some(model_input);
                datum.loss_fn_input_spans = Some(loss_fn_inputs);
            }
            datum
        })
}

fn loss_fn() -> impl Strategy<Value = LossFn> {
    prop_oneof![
        Just(LossFn::CrossEntropy),
        Just(LossFn::Ppo),
        Just(LossFn::StableReinforce),
        Just(LossFn::Custom),
        "[a-z_]{1,12}".prop_map(|s| LossFn::from_wire(&s)),
    ]
}

fn config_value() -> impl Strategy<Value = LossConfigValue> {
    prop_oneof![
        Just(LossConfigValue::Number(0.0)),
        (-1.0e9f64..1.0e9).prop_map(LossConfigValue::Number),
        "[ -~]{0,12}".prop_map(LossConfigValue::Text),
    ]
}

fn request() -> impl Strategy<Value = ForwardBackwardRequest> {
    (
        "[a-z0-9:]{0,16}",
        proptest::option::of(1..=i32::MAX as u64),
        vec(datum(), 0..4),
        loss_fn(),
        proptest::option::of(btree_map("[a-z_]{0,10}", config_value(), 1..4)),
        any::<bool>(),
    )
        .prop_map(|(model_id, seq_id, data, loss_fn, config, forward_only)| {
            let mut request = ForwardBackwardRequest::new(model_id, 1, data, loss_fn);
            request.seq_id = seq_id;
            request.loss_fn_config = config;
            request.forward_only = forward_only;
            request
        })
}

/// Output tensors: dense, at least 1-D, trailing dimensions non-zero (the wire derives
/// the leading dimension from the element count).
fn output_tensor() -> impl Strategy<Value = TensorData> {
    (any::<bool>(), 0usize..5, vec(1usize..4, 0..3)).prop_flat_map(|(f, leading, trailing)| {
        let shape: Vec<usize> = std::iter::once(leading).chain(trailing).collect();
        let len = shape.iter().product();
        values(f, len).prop_map(move |v| TensorData::new(v, Some(shape.clone())).expect("ok"))
    })
}

fn forward_backward_output() -> impl Strategy<Value = ForwardBackwardOutput> {
    // Few field names, so consecutive datums often share a record and often do not.
    let datum = btree_map(
        prop_oneof![Just("logprobs"), Just("loss"), Just("ids")].prop_map(str::to_owned),
        output_tensor(),
        0..3,
    );
    (
        prop_oneof![Just("ArrayRecord".to_owned()), "[A-Za-z]{1,12}"],
        vec(datum, 0..6),
        btree_map("[a-z_]{1,8}:(sum|mean|max)", -1.0e9f64..1.0e9, 0..4),
    )
        .prop_map(
            |(loss_fn_output_type, loss_fn_outputs, metrics)| ForwardBackwardOutput {
                loss_fn_output_type,
                loss_fn_outputs,
                metrics,
            },
        )
}

fn topk() -> impl Strategy<Value = TopkLogprobs> {
    (1usize..4, 1usize..5).prop_flat_map(|(k, rows)| {
        (vec(0..=MAX_TOKEN, k * rows), vec(finite_f32(), k * rows)).prop_map(
            move |(token_ids, logprobs)| TopkLogprobs {
                token_ids,
                logprobs,
                k,
            },
        )
    })
}

fn sampled_sequence() -> impl Strategy<Value = SampledSequence> {
    (
        prop_oneof![Just(StopReason::Stop), Just(StopReason::Length)],
        vec(0..=MAX_TOKEN, 0..16),
        proptest::option::of(vec(finite_f32(), 1..16)),
        proptest::option::of(topk()),
    )
        .prop_map(
            |(stop_reason, tokens, logprobs, topk_logprobs)| SampledSequence {
                stop_reason,
                sequence_id: String::new(),
                tokens,
                logprobs,
                topk_logprobs,
            },
        )
}

fn sample_response() -> impl Strategy<Value = SampleResponse> {
    let alt = (dense_tensor(), dense_tensor())
        .prop_map(|(tokens, logprobs)| PromptAltTokens { tokens, logprobs });
    (
        vec(sampled_sequence(), 0..4),
        proptest::option::of(vec(proptest::option::of(finite_f32()), 1..12)),
        proptest::option::of(topk()),
        proptest::option::of(tensor()),
        0..=i32::MAX as u64,
        proptest::option::of(alt),
    )
        .prop_map(
            |(sequences, prompt_logprobs, topk_prompt_logprobs, target, hits, alt)| {
                SampleResponse {
                    sequences,
                    prompt_logprobs,
                    topk_prompt_logprobs,
                    target_prompt_logprobs: target,
                    prompt_cache_hit_tokens: hits,
                    prompt_alt_tokens: alt,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn direct_request_encoder_matches_prost_byte_for_byte(request in request()) {
        let direct = request.encode_proto().expect("encode");
        let via_prost = wire::ForwardBackwardRequest::try_from(&request).expect("convert").encode_to_vec();
        prop_assert_eq!(&direct, &via_prost);
        prop_assert_eq!(request.encoded_proto_len().expect("len"), direct.len());
    }

    #[test]
    fn request_round_trips(request in request()) {
        let bytes = request.encode_proto().expect("encode");
        prop_assert_eq!(ForwardBackwardRequest::decode_proto(&bytes).expect("decode"), request);
    }

    #[test]
    fn tensor_round_trips_through_a_tensor_message(tensor in tensor()) {
        let bytes = wire::Tensor::from(&tensor).encode_to_vec();
        let msg = wire::Tensor::decode(bytes.as_slice()).expect("decode");
        prop_assert_eq!(TensorData::try_from(msg).expect("convert"), tensor);
    }

    #[test]
    fn chunk_sequences_round_trip(chunks in vec(chunk(), 0..8)) {
        let request = ForwardBackwardRequest::new(
            "m",
            1,
            vec![Datum::new(ModelInput::from_chunks(chunks), BTreeMap::new())],
            LossFn::CrossEntropy,
        );
        let decoded = ForwardBackwardRequest::decode_proto(&request.encode_proto().expect("encode")).expect("decode");
        prop_assert_eq!(decoded, request);
    }

    #[test]
    fn forward_backward_output_round_trips(output in forward_backward_output()) {
        let bytes = output.encode_proto().expect("encode");
        prop_assert_eq!(ForwardBackwardOutput::decode_proto(&bytes).expect("decode"), output);
    }

    #[test]
    fn sample_response_round_trips(resp in sample_response()) {
        let bytes = resp.encode_proto().expect("encode");
        prop_assert_eq!(SampleResponse::decode_proto(&bytes).expect("decode"), resp);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        // Errors are fine; a panic on network input is not.
        let _ = ForwardBackwardRequest::decode_proto(&bytes);
        let _ = ForwardBackwardOutput::decode_proto(&bytes);
        let _ = SampleResponse::decode_proto(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn zstd_request_round_trips(request in request()) {
        let frame = request.encode_proto_zstd().expect("encode");
        prop_assert_eq!(ForwardBackwardRequest::decode_proto_zstd(&frame, 1 << 24).expect("decode"), request);
    }
}

/// Present-but-empty optionals and empty top-k matrices mean "not requested", as in the SDK.
#[test]
fn empty_optionals_decode_as_absent() {
    let msg = wire::SampleResponse {
        sequences: vec![wire::SampledSequence {
            stop_reason: wire::StopReason::Length as i32,
            tokens: Vec::new(),
            logprobs: Some(Vec::new()),
            topk_sampled_logprobs: Some(wire::TopkLogprobs {
                k: 0,
                length: 3,
                ..Default::default()
            }),
        }],
        prompt_logprobs: Some(Vec::new()),
        topk_prompt_logprobs: Some(wire::TopkLogprobs {
            k: 2,
            length: 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = SampleResponse::decode_proto(&msg.encode_to_vec()).expect("decode");
    assert_eq!(resp.sequences[0].logprobs, None);
    assert_eq!(resp.sequences[0].topk_logprobs, None);
    assert_eq!(resp.prompt_logprobs, None);
    assert_eq!(resp.topk_prompt_logprobs, None);
}

/// Absent optionals stay absent when we encode (presence is respected both ways).
#[test]
fn none_is_not_written() {
    let resp = SampleResponse {
        sequences: vec![SampledSequence {
            stop_reason: StopReason::Stop,
            sequence_id: String::new(),
            tokens: vec![1],
            logprobs: None,
            topk_logprobs: None,
        }],
        ..Default::default()
    };
    let msg = wire::SampleResponse::decode(resp.encode_proto().expect("encode").as_slice())
        .expect("decode");
    assert_eq!(msg.prompt_logprobs, None);
    assert_eq!(msg.topk_prompt_logprobs, None);
    assert_eq!(msg.sequences[0].logprobs, None);
    assert_eq!(msg.sequences[0].topk_sampled_logprobs, None);
    let with_empty = SampleResponse {
        prompt_logprobs: Some(vec![]),
        ..resp
    };
    let msg = wire::SampleResponse::decode(with_empty.encode_proto().expect("encode").as_slice())
        .expect("decode");
    assert_eq!(
        msg.prompt_logprobs,
        Some(Vec::new()),
        "Some(empty) is written as present"
    );
}

/// Values the wire cannot carry are refused with the field named, never truncated.
#[test]
fn unencodable_values_are_refused() {
    let datum = Datum::new(ModelInput::from_tokens(&[1, u32::MAX]), BTreeMap::new());
    let request = ForwardBackwardRequest::new("m", 1, vec![datum], LossFn::CrossEntropy);
    let err = request.encode_proto().expect_err("token beyond int32");
    assert!(
        err.to_string()
            .contains("data[0].model_input.chunks[0].tokens"),
        "{err}"
    );

    let request = ForwardBackwardRequest::new("m", 1 << 40, vec![], LossFn::CrossEntropy);
    assert!(
        request
            .encode_proto()
            .expect_err("seq_id")
            .to_string()
            .contains("seq_id")
    );

    let pointer = tinker_types::ImageAssetPointerChunk::new("s3://x.png", ImageFormat::Png);
    let datum = Datum::new(
        ModelInput::from_chunks(vec![pointer.into()]),
        BTreeMap::new(),
    );
    let request = ForwardBackwardRequest::new("m", 1, vec![datum], LossFn::CrossEntropy);
    assert!(request.encode_proto().is_err());
    assert!(wire::ForwardBackwardRequest::try_from(&request).is_err());

    let resp = SampleResponse {
        sequences: vec![SampledSequence {
            stop_reason: StopReason::from_wire("abort"),
            sequence_id: String::new(),
            tokens: vec![],
            logprobs: None,
            topk_logprobs: None,
        }],
        ..Default::default()
    };
    assert!(
        resp.encode_proto()
            .expect_err("unknown stop reason")
            .to_string()
            .contains("stop_reason")
    );
}

/// Malformed server messages are errors naming the field, not panics or garbage.
#[test]
fn malformed_outputs_are_refused() {
    let batched = |offsets: &[i64], data_len: usize| wire::ForwardBackwardOutput {
        loss_fn_outputs: vec![wire::ArrayRecord {
            fields: [(
                "logprobs".to_owned(),
                wire::BatchedTensor {
                    data: vec![0; data_len].into(),
                    offsets: offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
                    dtype: wire::DType::DtypeFloat32 as i32,
                    trailing_shape: vec![],
                },
            )]
            .into(),
            num_datums: (offsets.len().saturating_sub(1)) as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    let ok = batched(&[0, 8, 12], 12).encode_to_vec();
    let output = ForwardBackwardOutput::decode_proto(&ok).expect("valid");
    assert_eq!(output.loss_fn_outputs.len(), 2);
    assert_eq!(
        output.loss_fn_outputs[0]["logprobs"].shape(),
        Some(&[2][..])
    );
    for (offsets, len, why) in [
        (&[0i64, 16][..], 12, "past the end"),
        (&[0, 6][..], 12, "not a multiple of the item size"),
        (&[8, 4][..], 12, "decreasing"),
    ] {
        let bytes = batched(offsets, len).encode_to_vec();
        let err = ForwardBackwardOutput::decode_proto(&bytes).expect_err(why);
        assert!(
            err.to_string()
                .contains("loss_fn_outputs[0].fields.logprobs.offsets"),
            "{why}: {err}"
        );
    }
}
