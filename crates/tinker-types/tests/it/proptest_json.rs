//! Property tests: every public wire type survives a JSON round trip (`json::to_vec` then
//! `json::from_slice` gives the same value), for tensors of random shapes and dtypes, CSR
//! tensors, chunk sequences and every request/response body.

use std::collections::BTreeMap;
use std::fmt::Debug;

use chrono::{DateTime, Utc};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tinker_types::admin::{
    AuditLogEntry, AuditLogResponse, BillingEventInfo, BillingUsageEvent, BillingUsageResponse,
    CheckpointBillingEvent, StorageBillingEvent, TrainingBillingEvent,
};
use tinker_types::custom_loss::{
    CreateCustomLossRequest, CustomLossGraph, CustomLossInput, CustomLossNode, CustomLossOp,
};
use tinker_types::rest::{Checkpoint, CheckpointsListResponse, Cursor, TrainingRun};
use tinker_types::search::{
    FailedRequestReason, SearchOwner, SessionActive, SessionCancelled, SessionFailed,
    SessionFailureCategory, SessionSearchRequest, SessionStatus, SessionStatusQuery,
};
use tinker_types::telemetry::{
    GenericEvent, SessionEndEvent, Severity, TelemetryEvent, TelemetrySendRequest,
};
use tinker_types::weights::{
    LoadWeightsRequest, SamplerWeightsKind, SaveWeightsForSamplerRequest, SaveWeightsRequest,
};
use tinker_types::*;

/// Encodes and decodes `value`, asserting nothing changed.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = json::to_vec(value).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let back: T = json::from_slice(&bytes).map_err(|e| {
        TestCaseError::fail(format!(
            "decode: {e} in {}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    prop_assert_eq!(&back, value, "JSON was {}", String::from_utf8_lossy(&bytes));
    Ok(())
}

fn finite_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("finite", |x| x.is_finite())
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |x| x.is_finite())
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,11}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

/// A string no open enum knows (the `x-` prefix is not a wire value anywhere).
fn unknown_wire() -> impl Strategy<Value = String> {
    "x-[a-z_]{1,10}"
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::<Utc>::from_timestamp(secs, nanos).unwrap())
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(name(), text(), 0..4)
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        finite_f64().prop_map(Value::from),
        text().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(name(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    btree_map(name(), json_value(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn shape() -> impl Strategy<Value = Vec<usize>> {
    vec(0usize..5, 0..4)
}

/// Dense tensors of random dtype and shape; sometimes without a declared shape.
fn dense_tensor() -> impl Strategy<Value = TensorData> {
    (shape(), any::<bool>(), any::<bool>()).prop_flat_map(|(shape, float, declared)| {
        let n: usize = shape.iter().product();
        let values = if float {
            vec(finite_f32(), n).prop_map(TensorValues::Float32).boxed()
        } else {
            vec(any::<i64>(), n).prop_map(TensorValues::Int64).boxed()
        };
        values.prop_map(move |values| {
            let shape = declared.then(|| shape.clone());
            TensorData::new(values, shape).unwrap()
        })
    })
}

/// CSR tensors: a random dense matrix with random pad cells, sparsified.
fn csr_tensor() -> impl Strategy<Value = TensorData> {
    (0usize..6, 0usize..6, any::<bool>()).prop_flat_map(|(rows, cols, float)| {
        let n = rows * cols;
        if float {
            vec(prop_oneof![Just(0.0f32), finite_f32()], n)
                .prop_map(move |d| TensorData::sparsify_f32(&d, [rows, cols], 0.0).unwrap())
                .boxed()
        } else {
            vec(prop_oneof![Just(-1i64), any::<i64>()], n)
                .prop_map(move |d| TensorData::sparsify_i64(&d, [rows, cols], -1).unwrap())
                .boxed()
        }
    })
}

fn tensor() -> impl Strategy<Value = TensorData> {
    prop_oneof![dense_tensor(), csr_tensor()]
}

fn image_format() -> impl Strategy<Value = ImageFormat> {
    prop_oneof![Just(ImageFormat::Png), Just(ImageFormat::Jpeg)]
}

fn chunk() -> impl Strategy<Value = ModelInputChunk> {
    prop_oneof![
        vec(any::<u32>(), 0..8).prop_map(|t| EncodedTextChunk::new(t).into()),
        (
            vec(any::<u8>(), 0..16),
            image_format(),
            option::of(any::<u32>())
        )
            .prop_map(|(d, f, n)| {
                ModelInputChunk::Image(ImageChunk {
                    data: d,
                    format: f,
                    expected_tokens: n,
                })
            }),
        (text(), image_format(), option::of(any::<u32>())).prop_map(|(l, f, n)| {
            ModelInputChunk::ImageAssetPointer(ImageAssetPointerChunk {
                format: f,
                location: l,
                expected_tokens: n,
            })
        }),
        vec(any::<u8>(), 0..16).prop_map(|d| DmelChunk::new(d).into()),
    ]
}

fn model_input() -> impl Strategy<Value = ModelInput> {
    vec(chunk(), 0..6).prop_map(ModelInput::from_chunks)
}

fn span() -> impl Strategy<Value = ProvenanceSpan> {
    (any::<bool>(), name(), any::<u64>(), any::<u64>()).prop_map(|(prompt, id, offset, length)| {
        if prompt {
            ProvenanceSpan::prompt(id, offset, length)
        } else {
            ProvenanceSpan::sampled(id, offset, length)
        }
    })
}

fn datum() -> impl Strategy<Value = Datum> {
    (
        model_input(),
        btree_map(name(), tensor(), 0..3),
        option::of((vec(span(), 0..3), vec(span(), 0..3))),
    )
        .prop_map(|(input, inputs, spans)| {
            let mut datum = Datum::new(input, inputs);
            if let Some((a, b)) = spans {
                datum.model_input_spans = Some(a);
                datum.loss_fn_input_spans = Some(b);
            }
            datum
        })
}

fn loss_fn() -> impl Strategy<Value = LossFn> {
    prop_oneof![
        Just(LossFn::CrossEntropy),
        Just(LossFn::ImportanceSampling),
        Just(LossFn::Ppo),
        Just(LossFn::Cispo),
        Just(LossFn::Dro),
        Just(LossFn::Gspo),
        Just(LossFn::StableReinforce),
        Just(LossFn::Custom),
        unknown_wire().prop_map(|s| LossFn::from_wire(&s)),
    ]
}

fn loss_config() -> impl Strategy<Value = LossFnConfig> {
    btree_map(
        name(),
        prop_oneof![
            finite_f64().prop_map(LossConfigValue::Number),
            "[a-z]{0,8}".prop_map(LossConfigValue::Text),
        ],
        0..4,
    )
}

fn generic_optimizer(
    reserved: &'static [&'static str],
) -> impl Strategy<Value = GenericOptimizerObject> {
    (unknown_wire(), json_object()).prop_filter_map("reserved kind", move |(kind, mut fields)| {
        fields.remove("type");
        (!reserved.contains(&kind.as_str())).then_some(GenericOptimizerObject { kind, fields })
    })
}

fn adam() -> impl Strategy<Value = AdamParams> {
    (
        finite_f64(),
        finite_f64(),
        finite_f64(),
        finite_f64(),
        finite_f64(),
        finite_f64(),
    )
        .prop_map(
            |(learning_rate, beta1, beta2, eps, weight_decay, grad_clip_norm)| AdamParams {
                learning_rate,
                beta1,
                beta2,
                eps,
                weight_decay,
                grad_clip_norm,
            },
        )
}

fn optim_params() -> impl Strategy<Value = OptimParams> {
    prop_oneof![
        adam().prop_map(OptimParams::Adam),
        (finite_f64(), finite_f64(), finite_f64()).prop_map(
            |(learning_rate, grad_clip_norm, beta1)| {
                OptimParams::Dimuon(DimuonParams {
                    learning_rate,
                    grad_clip_norm,
                    beta1,
                })
            }
        ),
        generic_optimizer(&["dimuon"]).prop_map(OptimParams::Other),
    ]
}

fn optimizer_config() -> impl Strategy<Value = OptimizerConfig> {
    prop_oneof![
        Just(OptimizerConfig::AdamW),
        any::<u32>().prop_map(|version| OptimizerConfig::Dimuon { version }),
        generic_optimizer(&["adamw", "dimuon"]).prop_map(OptimizerConfig::Other),
    ]
}

fn lora() -> impl Strategy<Value = LoraConfig> {
    (
        any::<u32>(),
        option::of(any::<u64>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(rank, seed, train_unembed, train_mlp, train_attn)| LoraConfig {
                rank,
                seed,
                train_unembed,
                train_mlp,
                train_attn,
            },
        )
}

fn stop() -> impl Strategy<Value = StopCondition> {
    prop_oneof![
        text().prop_map(StopCondition::Text),
        vec(text(), 1..4).prop_map(StopCondition::Strings),
        vec(any::<i64>(), 1..4).prop_map(StopCondition::Tokens),
    ]
}

fn sampling_params() -> impl Strategy<Value = SamplingParams> {
    (
        option::of(any::<u32>()),
        option::of(any::<u64>()),
        option::of(stop()),
        finite_f64(),
        any::<i64>(),
        finite_f64(),
    )
        .prop_map(
            |(max_tokens, seed, stop, temperature, top_k, top_p)| SamplingParams {
                max_tokens,
                seed,
                stop,
                temperature,
                top_k,
                top_p,
            },
        )
}

fn topk() -> impl Strategy<Value = TopkLogprobs> {
    // Real cells are never the padding sentinel (id 0 with logprob -99999).
    let cell = (1u32..100_000, finite_f32());
    vec(option::of(vec(cell, 0..4)), 0..5).prop_map(|rows| TopkLogprobs::from_rows(&rows))
}

fn stop_reason() -> impl Strategy<Value = StopReason> {
    prop_oneof![
        Just(StopReason::Stop),
        Just(StopReason::Length),
        unknown_wire().prop_map(|s| StopReason::from_wire(&s)),
    ]
}

fn sampled_sequence() -> impl Strategy<Value = SampledSequence> {
    (
        stop_reason(),
        name(),
        vec(any::<u32>(), 0..8),
        option::of(vec(finite_f32(), 0..8)),
        option::of(topk()),
    )
        .prop_map(
            |(stop_reason, sequence_id, tokens, logprobs, topk_logprobs)| SampledSequence {
                stop_reason,
                sequence_id,
                tokens,
                logprobs,
                topk_logprobs,
            },
        )
}

fn checkpoint() -> impl Strategy<Value = Checkpoint> {
    (
        name(),
        prop_oneof![
            Just(CheckpointType::Training),
            Just(CheckpointType::Sampler),
            Just(CheckpointType::External),
            unknown_wire().prop_map(|s| CheckpointType::from_wire(&s)),
        ],
        timestamp(),
        option::of(any::<u64>()),
        any::<bool>(),
        option::of(string_map()),
        option::of(timestamp()),
    )
        .prop_map(
            |(name, checkpoint_type, time, size_bytes, public, user_metadata, expires_at)| {
                Checkpoint {
                    checkpoint_id: format!("weights/{name}"),
                    checkpoint_type,
                    time,
                    tinker_path: format!("tinker://run:train:0/weights/{name}"),
                    size_bytes,
                    public,
                    user_metadata,
                    expires_at,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tensors_round_trip(t in tensor()) {
        round_trip(&t)?;
        // The dense view agrees with the declared shape.
        prop_assert_eq!(
            t.to_dense_f32(0.0).map(|v| v.len()).or_else(|| t.to_dense_i64(-1).map(|v| v.len())),
            Some(t.dense_len())
        );
    }

    #[test]
    fn csr_tensors_round_trip_and_densify(rows in 0usize..6, cols in 0usize..6, seed in vec(prop_oneof![Just(-1i64), 0i64..50], 36)) {
        let dense = &seed[..rows * cols];
        let t = TensorData::sparsify_i64(dense, [rows, cols], -1).unwrap();
        round_trip(&t)?;
        prop_assert_eq!(t.to_dense_i64(-1).unwrap(), dense.to_vec());
    }

    #[test]
    fn chunk_sequences_round_trip(input in model_input()) {
        round_trip(&input)?;
        for chunk in &input.chunks {
            round_trip(chunk)?;
        }
    }

    #[test]
    fn datums_round_trip(d in datum()) {
        round_trip(&d)?;
    }

    #[test]
    fn forward_backward_requests_round_trip(
        model_id in name(), seq_id in option::of(any::<u64>()), data in vec(datum(), 0..3),
        loss_fn in loss_fn(), loss_fn_config in option::of(loss_config()), forward_only in any::<bool>(),
    ) {
        round_trip(&ForwardBackwardRequest { model_id, seq_id, data, loss_fn, loss_fn_config, forward_only })?;
    }

    #[test]
    fn forward_backward_outputs_round_trip(
        kind in name(), outputs in vec(btree_map(name(), tensor(), 0..3), 0..3),
        metrics in btree_map(name(), finite_f64(), 0..4),
    ) {
        round_trip(&ForwardBackwardOutput { loss_fn_output_type: kind, loss_fn_outputs: outputs, metrics })?;
    }

    #[test]
    fn optimizer_types_round_trip(
        model_id in name(), seq_id in option::of(any::<u64>()), params in optim_params(),
        config in optimizer_config(), lora in lora(),
    ) {
        round_trip(&OptimStepRequest { model_id: model_id.clone(), seq_id, params })?;
        round_trip(&config)?;
        round_trip(&lora)?;
        let mut create = CreateModelRequest::new(model_id, 3, "base");
        create.lora_config = Some(lora);
        create.optimizer_config = config;
        round_trip(&create)?;
    }

    #[test]
    fn sample_requests_round_trip(
        prompt in model_input(), params in sampling_params(), n in any::<u32>(), seq in any::<u64>(),
        logprobs in option::of(any::<bool>()), k1 in any::<u32>(), k2 in any::<u32>(),
        target in option::of(tensor()), alt in any::<u32>(), last_n in option::of(any::<u32>()),
    ) {
        let mut request = SampleRequest::new("s:sample:0", seq, prompt, params, n);
        request.prompt_logprobs = logprobs;
        request.topk_prompt_logprobs = k1;
        request.topk_sample_logprobs = k2;
        request.target_prompt_logprobs = target;
        request.prompt_alt_tokens_k = alt;
        request.prompt_logprobs_last_n = last_n;
        request.record_stability_info = logprobs;
        round_trip(&request)?;
    }

    #[test]
    fn sample_responses_round_trip(
        sequences in vec(sampled_sequence(), 0..3),
        prompt_logprobs in option::of(vec(option::of(finite_f32()), 0..6)),
        topk in option::of(topk()), target in option::of(tensor()),
        hits in any::<u64>(), alt in option::of((dense_tensor(), dense_tensor())),
    ) {
        round_trip(&SampleResponse {
            sequences,
            prompt_logprobs,
            topk_prompt_logprobs: topk,
            target_prompt_logprobs: target,
            prompt_cache_hit_tokens: hits,
            prompt_alt_tokens: alt.map(|(tokens, logprobs)| PromptAltTokens { tokens, logprobs }),
        })?;
    }

    #[test]
    fn topk_list_view_round_trips(t in topk()) {
        prop_assert_eq!(TopkLogprobs::from_rows(&t.rows()), t);
    }

    #[test]
    fn future_shapes_round_trip(
        id in name(), model_id in option::of(name()), ids in option::of(vec(name(), 0..3)),
        state in prop_oneof![Just(QueueState::Active), Just(QueueState::PausedCapacity),
            Just(QueueState::PausedRateLimit), unknown_wire().prop_map(|s| QueueState::from_wire(&s))],
        reason in option::of(text()), size in any::<u64>(), error in text(),
        category in prop_oneof![Just(RequestErrorCategory::User), Just(RequestErrorCategory::Server),
            Just(RequestErrorCategory::Unspecified), unknown_wire().prop_map(|s| RequestErrorCategory::from_wire(&s))],
        cursor in any::<u64>(), timeout in option::of(finite_f64()), allow in any::<bool>(),
    ) {
        round_trip(&UntypedFuture { request_id: id.clone(), model_id, sample_sequence_ids: ids })?;
        round_trip(&FutureRetrieveRequest { request_id: id.clone(), allow_metadata_only: allow })?;
        let try_again = TryAgainResponse { request_id: id.clone(), queue_state: Some(state), queue_state_reason: reason };
        round_trip(&try_again)?;
        let bytes = json::to_vec(&try_again).unwrap();
        prop_assert_eq!(FutureOutcome::<Value>::from_json(&bytes).unwrap(), FutureOutcome::TryAgain(try_again));
        let metadata = CompleteMetadataResponse { response_payload_size: size };
        let bytes = json::to_vec(&metadata).unwrap();
        prop_assert_eq!(FutureOutcome::<Value>::from_json(&bytes).unwrap(), FutureOutcome::CompleteMetadata(metadata));
        let failed = RequestFailedResponse { error, category };
        round_trip(&failed)?;
        let bytes = json::to_vec(&failed).unwrap();
        prop_assert_eq!(FutureOutcome::<Value>::from_json(&bytes).unwrap(), FutureOutcome::Failed(failed));
        round_trip(&FuturesRetrieveRequest {
            target: SamplingSessionFuturesTarget { sampling_session_id: id.clone(), cloned_sampler_id: cursor },
            prev_cursor: cursor, timeout, retrieved_request_ids: vec![id.clone()],
        })?;
        round_trip(&FuturesRetrieveResponse {
            completions: vec![
                FutureCompletion { state: CompletionState::Finished, request_id: id.clone(), response_payload_uncompressed_size: Some(size) },
                FutureCompletion { state: CompletionState::Failed, request_id: id, response_payload_uncompressed_size: None },
            ],
            cursor,
        })?;
    }

    #[test]
    fn config_round_trips(
        flags in vec(any::<bool>(), 9), numbers in vec(any::<u64>(), 10),
        source in prop_oneof![Just(CredentialSource::ApiKey), Just(CredentialSource::CredentialCmd),
            unknown_wire().prop_map(|s| CredentialSource::from_wire(&s))],
    ) {
        round_trip(&ClientConfig {
            pjwt_auth_enabled: flags[0],
            credential_default_source: source,
            sample_dispatch_bytes_semaphore_size: numbers[0],
            inflight_response_bytes_semaphore_size: numbers[1],
            parallel_fwdbwd_chunks: flags[1],
            proto_compress_fwdbwd: flags[2],
            fwdbwd_max_chunk_len: numbers[2],
            fwdbwd_max_chunk_bytes_count: numbers[3],
            fwdbwd_dispatch_bytes_semaphore_size: numbers[4],
            billing_exception_max_pause_duration_sec: numbers[5],
            sample_no_retries: flags[3],
            sample_enable_stuck_detection: flags[4],
            sample_max_concurrent_requests: numbers[6],
            use_pyqwest_transport: flags[5],
            sample_use_retrieve_futures: flags[6],
            custom_loss_server_side: flags[7],
            sample_join_sampling_session: flags[8],
        })?;
        round_trip(&DynamicConfig {
            refresh_interval_sec: numbers[7],
            sample_cancel_enabled: flags[0],
            sample_cancel_max_batch_size: numbers[8],
        })?;
    }

    #[test]
    fn session_and_weights_requests_round_trip(
        id in name(), tags in vec(text(), 0..3), metadata in json_object(), strings in string_map(),
        project in option::of(name()), seq in option::of(any::<u64>()), ttl in option::of(any::<u64>()),
        overwrite in any::<bool>(), inflight in any::<bool>(), optimizer in any::<bool>(),
        config in option::of(optimizer_config()), token in option::of(text()),
    ) {
        let mut session = CreateSessionRequest::new("0.38.0");
        session.tags = tags;
        session.user_metadata = metadata.clone();
        session.project_id = project.clone();
        session.display_name = project.clone();
        round_trip(&session)?;
        round_trip(&SessionHeartbeatRequest { session_id: id.clone() })?;
        round_trip(&FinishSessionRequest::new(SessionFinishReason::from_wire(&id), project.clone()))?;
        round_trip(&SaveWeightsRequest {
            model_id: id.clone(), path: project.clone(), seq_id: seq, ttl_seconds: ttl, overwrite,
            user_metadata: Some(strings.clone()),
        })?;
        round_trip(&SaveWeightsForSamplerRequest {
            model_id: id.clone(), path: project.clone(), sampling_session_seq_id: seq,
            kind: if inflight { SamplerWeightsKind::Inflight } else { SamplerWeightsKind::Snapshot },
            seq_id: seq, ttl_seconds: ttl, user_metadata: None,
        })?;
        round_trip(&LoadWeightsRequest {
            model_id: project.clone(), seq_id: seq, session_id: Some(id.clone()), model_seq_id: ttl,
            base_model: project, user_metadata: Some(metadata), path: format!("tinker://{id}/weights/x"),
            optimizer, optimizer_config: config, weights_access_token: token.map(Sensitive::new),
        })?;
    }

    #[test]
    fn custom_loss_requests_round_trip(
        id in name(), nodes in vec((name(), name(), vec(json_value(), 0..3), json_object()), 0..4),
        ranks in vec((name(), 0u8..3), 0..3),
    ) {
        let ops = [CustomLossOp::Placeholder, CustomLossOp::CallFunction, CustomLossOp::CallMethod, CustomLossOp::Output];
        round_trip(&CreateCustomLossRequest {
            session_id: id.clone(),
            custom_loss_seq_id: 0,
            name: id,
            inputs: ranks.into_iter().map(|(name, rank)| CustomLossInput { name, rank }).collect(),
            graph: CustomLossGraph {
                format: 1,
                nodes: nodes.into_iter().enumerate().map(|(i, (name, target, args, kwargs))| CustomLossNode {
                    op: ops[i % ops.len()].clone(), name, target, args, kwargs,
                }).collect(),
            },
        })?;
    }

    #[test]
    fn rest_types_round_trip(
        checkpoints in vec(checkpoint(), 0..3), last in option::of(checkpoint()), t in timestamp(),
        rank in option::of(any::<u32>()), corrupted in any::<bool>(), meta in option::of(string_map()),
        offset in any::<u64>(), limit in any::<u64>(), total in any::<u64>(),
    ) {
        let cursor = Cursor { offset, limit, total_count: total };
        round_trip(&CheckpointsListResponse { checkpoints, cursor: Some(cursor) })?;
        round_trip(&TrainingRun {
            training_run_id: "s:train:0".into(), base_model: "m".into(), model_owner: "o".into(),
            is_lora: rank.is_some(), corrupted, lora_rank: rank, last_request_time: t,
            last_checkpoint: last.clone(), last_sampler_checkpoint: last, user_metadata: meta,
        })?;
    }

    #[test]
    fn tinker_paths_round_trip(run in "[a-z0-9:]{1,12}", name in "[a-zA-Z0-9._-]{1,12}", kind in 0usize..3) {
        let kind = [CheckpointKind::Weights, CheckpointKind::SamplerWeights, CheckpointKind::ExternalWeights][kind];
        let path = TinkerPath::new(run, kind, name);
        prop_assert_eq!(TinkerPath::parse(&path.to_string()).unwrap(), path);
    }

    #[test]
    fn search_and_status_types_round_trip(
        id in name(), t in timestamp(), detail in option::of(text()), unknown_kind in unknown_wire(),
        extra in json_object(), limit in any::<u32>(), urns in vec(name(), 1..3),
    ) {
        let mut unknown = extra;
        unknown.insert("type".into(), Value::String(unknown_kind));
        for status in [
            SessionStatus::Active(SessionActive {}),
            SessionStatus::Cancelled(SessionCancelled { detail: detail.clone() }),
            SessionStatus::Failed(SessionFailed {
                category: SessionFailureCategory::User,
                reason: FailedRequestReason { request_id: id.clone(), request_type: "Sample".into() }.into(),
                message: id.clone(),
            }),
            SessionStatus::Unknown(Value::Object(unknown.clone())),
        ] {
            round_trip(&status)?;
        }
        round_trip(&SessionSearchRequest {
            session_id: Some(id.clone()),
            owner: SearchOwner::User { owner_urns: urns },
            statuses: Some(vec![SessionStatusQuery::Failed, SessionStatusQuery::ClientFinished { reasons: None }]),
            limit,
            cursor: Some(tinker_types::search::SessionSearchCursor { last_created_at: t, last_session_id: id }),
            ..SessionSearchRequest::default()
        })?;
        round_trip(&BillingEventInfo::Unknown(Value::Object(unknown)))?;
    }

    #[test]
    fn admin_and_telemetry_round_trip(
        t in timestamp(), tokens in any::<u64>(), hours in finite_f64(), cost in option::of(finite_f64()),
        data in json_object(), index in any::<u64>(), name in name(),
    ) {
        round_trip(&BillingUsageResponse {
            data: vec![
                BillingUsageEvent {
                    bucket_start: t, bucket_end: t, base_model: Some(name.clone()), user_id: None, user_name: None,
                    session_id: None, project_id: None, estimated_cost_usd: cost,
                    effective_rate_usd_per_million_tokens: cost, effective_rate_usd_per_gigabyte_month: None,
                    event_info: TrainingBillingEvent { token_count: tokens }.into(),
                },
                BillingUsageEvent {
                    bucket_start: t, bucket_end: t, base_model: None, user_id: None, user_name: None,
                    session_id: None, project_id: None, estimated_cost_usd: None,
                    effective_rate_usd_per_million_tokens: None, effective_rate_usd_per_gigabyte_month: cost,
                    event_info: StorageBillingEvent { free: true, gigabyte_hours: hours }.into(),
                },
                BillingUsageEvent {
                    bucket_start: t, bucket_end: t, base_model: None, user_id: None, user_name: None,
                    session_id: None, project_id: None, estimated_cost_usd: None,
                    effective_rate_usd_per_million_tokens: None, effective_rate_usd_per_gigabyte_month: None,
                    event_info: CheckpointBillingEvent { count: tokens }.into(),
                },
            ],
            sessions: BTreeMap::new(),
            cost_data_through: Some(t),
        })?;
        round_trip(&AuditLogResponse {
            entries: vec![AuditLogEntry {
                timestamp: t, event: name.clone(), event_details: data.clone(), model_id: None,
                tinker_path: Some(name.clone()), purpose: None,
            }],
        })?;
        round_trip(&TelemetrySendRequest {
            events: vec![
                TelemetryEvent::from(GenericEvent {
                    event_id: name.clone(), event_name: name.clone(), event_session_index: index,
                    severity: Severity::from_wire(&name), timestamp: t, event_data: data,
                }),
                SessionEndEvent {
                    duration: "0:00:01.000000".into(), event_id: name.clone(), event_session_index: index,
                    severity: Severity::Critical, timestamp: t,
                }.into(),
            ],
            platform: "Linux".into(),
            sdk_version: "0.38.0".into(),
            session_id: name.clone(),
            process_uuid: name,
        })?;
    }

    #[test]
    fn nan_anywhere_in_a_tensor_is_refused(mut values in vec(finite_f32(), 1..8), at in any::<prop::sample::Index>()) {
        let i = at.index(values.len());
        values[i] = f32::NAN;
        let t = TensorData::vector_f32(values);
        let refused = matches!(json::to_vec(&t), Err(Error::NonFinite { .. }));
        prop_assert!(refused);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Network input never panics: arbitrary tensor-like JSON either fails to decode with an
    /// error or yields a tensor whose invariants hold (densifying it is safe).
    #[test]
    fn hostile_tensor_json_is_refused_or_valid(
        data in vec(-3i64..6, 0..8), shape in option::of(vec(0usize..4, 0..3)),
        crow in option::of(vec(-1i64..6, 0..5)), col in option::of(vec(-1i64..6, 0..5)), float in any::<bool>(),
    ) {
        let mut value = serde_json::json!({"data": data, "dtype": if float { "float32" } else { "int64" }});
        if let Some(shape) = shape { value["shape"] = shape.into(); }
        if let Some(crow) = crow { value["sparse_crow_indices"] = crow.into(); }
        if let Some(col) = col { value["sparse_col_indices"] = col.into(); }
        if let Ok(t) = json::from_value::<TensorData>(value) {
            let dense = t.to_dense_f32(0.0).map(|v| v.len()).or_else(|| t.to_dense_i64(0).map(|v| v.len()));
            prop_assert_eq!(dense, Some(t.dense_len()));
        }
    }

    /// Arbitrary JSON never panics the response decoders.
    #[test]
    fn arbitrary_json_never_panics_response_decoders(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = json::from_slice::<SampleResponse>(&bytes);
        let _ = json::from_slice::<ForwardBackwardOutput>(&bytes);
        let _ = json::from_slice::<tinker_types::search::SessionSearchResponse>(&bytes);
        let _ = json::from_slice::<ClientConfig>(&bytes);
        let _ = FutureOutcome::<Value>::from_json(&bytes);
    }
}
