//! Golden tests against JSON written by the official SDK (`scripts/fixtures/gen_json_fixtures.py`).
//!
//! * Requests: our encoding of the same instance equals the SDK's bytes as JSON values and in
//!   key order (struct keys; map keys such as `user_metadata` are unordered); decoding the
//!   SDK's bytes and encoding again gives the same value.
//! * Responses: every fixture decodes into its type.
//! * Error paths: missing fields name their JSON path, unknown fields are ignored, unknown
//!   enum values are kept, NaN is refused, malformed `tinker://` paths are typed errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tinker_types::admin::{
    AuditLogResponse, BillingUsageResponse, CurrentCheckpointStorageUsageResponse,
};
use tinker_types::auth::{
    AuthTokenRequest, AuthTokenResponse, GetServerCapabilitiesResponse, HealthResponse,
    SelfApiKeyResponse, WhoamiResponse,
};
use tinker_types::custom_loss::{
    CreateCustomLossRequest, CreateCustomLossResponse, CustomLossGraph, CustomLossInput,
    CustomLossNode, CustomLossOp,
};
use tinker_types::rest::{
    CheckpointsListResponse, GetSessionResponse, ListSessionsResponse, SetSessionProjectRequest,
    TraceExportResponse, TraceExportStatus, TrainingRun, TrainingRunsResponse,
};
use tinker_types::search::{
    SearchOwner, SessionSearchCursor, SessionSearchRequest, SessionSearchResponse, SessionStatus,
    SessionStatusQuery,
};
use tinker_types::telemetry::{
    GenericEvent, SessionEndEvent, SessionStartEvent, Severity, TelemetryEvent, TelemetryResponse,
    TelemetrySendRequest, UnhandledExceptionEvent,
};
use tinker_types::weights::{
    CopyWeightsRequest, CopyWeightsResponse, ExternalWeightsUrlsResponse, LoadWeightsRequest,
    LoadWeightsResponse, SamplerWeightsKind, SaveWeightsExternalRequest,
    SaveWeightsExternalResponse, SaveWeightsForSamplerRequest, SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal, SaveWeightsRequest, SaveWeightsResponse,
    SetCheckpointTtlRequest, WeightsInfoRequest, WeightsInfoResponse,
};
use tinker_types::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json")
}

fn fixture(kind: &str, name: &str) -> Vec<u8> {
    let path = fixture_dir().join(kind).join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// JSON equality where numbers compare by value (`1` == `1.0`, as Python and Rust print
/// floats differently).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.as_f64().is_some() && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// Records the key order of every object in a JSON document, by path (`/a/0/b`).
fn key_orders(bytes: &[u8]) -> BTreeMap<String, Vec<String>> {
    fn walk(
        de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
        path: String,
        out: &mut BTreeMap<String, Vec<String>>,
    ) {
        // Re-parse with a visitor that keeps order: serde_json's Map (no preserve_order) sorts.
        use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
        struct Walker<'o> {
            path: String,
            out: &'o mut BTreeMap<String, Vec<String>>,
        }
        impl<'de> Visitor<'de> for Walker<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let child = format!("{}/{key}", self.path);
                    map.next_value_seed(Seed {
                        path: child,
                        out: self.out,
                    })?;
                    keys.push(key);
                }
                let path = if self.path.is_empty() {
                    "/".to_owned()
                } else {
                    self.path
                };
                self.out.insert(path, keys);
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut i = 0;
                while seq
                    .next_element_seed(Seed {
                        path: format!("{}/{i}", self.path),
                        out: self.out,
                    })?
                    .is_some()
                {
                    i += 1;
                }
                Ok(())
            }
            fn visit_bool<E>(self, _: bool) -> Result<(), E> {
                Ok(())
            }
            fn visit_i64<E>(self, _: i64) -> Result<(), E> {
                Ok(())
            }
            fn visit_u64<E>(self, _: u64) -> Result<(), E> {
                Ok(())
            }
            fn visit_f64<E>(self, _: f64) -> Result<(), E> {
                Ok(())
            }
            fn visit_str<E>(self, _: &str) -> Result<(), E> {
                Ok(())
            }
            fn visit_unit<E>(self) -> Result<(), E> {
                Ok(())
            }
        }
        struct Seed<'o> {
            path: String,
            out: &'o mut BTreeMap<String, Vec<String>>,
        }
        impl<'de> serde::de::DeserializeSeed<'de> for Seed<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(Walker {
                    path: self.path,
                    out: self.out,
                })
            }
        }
        (&mut *de)
            .deserialize_any(Walker { path, out })
            .expect("valid JSON");
    }
    let mut out = BTreeMap::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    walk(&mut de, String::new(), &mut out);
    out
}

/// Object keys whose values are maps (user data): their key order carries no meaning.
const MAP_KEYS: &[&str] = &[
    "user_metadata",
    "loss_fn_inputs",
    "event_data",
    "kwargs",
    "metrics",
    "urls",
    "sessions",
];

fn is_map_path(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|last| MAP_KEYS.contains(&last))
}

/// Asserts that `ours` encodes to the SDK's request fixture `name` (values and key order),
/// and that decoding the fixture and encoding it again is stable.
fn check_request<T: Serialize + DeserializeOwned + std::fmt::Debug>(name: &str, ours: &T) {
    let sdk_bytes = fixture("requests", name);
    let our_bytes = json::to_vec(ours).unwrap_or_else(|e| panic!("{name}: encode: {e}"));
    let sdk: Value = serde_json::from_slice(&sdk_bytes).unwrap();
    let mine: Value = serde_json::from_slice(&our_bytes).unwrap();
    assert!(
        same_value(&sdk, &mine),
        "{name}: value differs\n  sdk:  {}\n  ours: {}",
        String::from_utf8_lossy(&sdk_bytes),
        String::from_utf8_lossy(&our_bytes)
    );
    let sdk_orders = key_orders(&sdk_bytes);
    let our_orders = key_orders(&our_bytes);
    for (path, keys) in &sdk_orders {
        if is_map_path(path) {
            continue;
        }
        assert_eq!(
            Some(keys),
            our_orders.get(path),
            "{name}: key order differs at {path}"
        );
    }
    // Compact output, as the SDK's.
    assert!(!our_bytes.contains(&b'\n') && !our_bytes.windows(2).any(|w| w == b": "));
    // Decoding the SDK's body gives the same value back.
    let decoded: T = json::from_slice(&sdk_bytes).unwrap_or_else(|e| panic!("{name}: decode: {e}"));
    let again: Value = serde_json::from_slice(&json::to_vec(&decoded).unwrap()).unwrap();
    assert!(
        same_value(&sdk, &again),
        "{name}: decode/encode is not stable: {again}"
    );
}

fn decode_response<T: DeserializeOwned>(name: &str) -> T {
    json::from_slice(&fixture("responses", name))
        .unwrap_or_else(|e| panic!("response {name} does not decode: {e}"))
}

fn ts(text: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn json_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfixture";

#[test]
fn service_and_session_requests_match_the_sdk() {
    check_request(
        "client_config",
        &ClientConfigRequest {
            sdk_version: "0.38.0".into(),
        },
    );
    check_request("auth_token", &AuthTokenRequest {});
    let mut session = CreateSessionRequest::new("0.38.0");
    session.tags = vec!["a".into(), "b".into()];
    session.user_metadata = json_map(json!({"k": "v"}));
    session.project_id = Some("proj".into());
    session.display_name = Some("disp".into());
    check_request("create_session", &session);
    check_request(
        "create_session_minimal",
        &CreateSessionRequest::new("0.38.0"),
    );
    check_request(
        "session_heartbeat",
        &SessionHeartbeatRequest {
            session_id: "sess1".into(),
        },
    );
    check_request(
        "finish_session",
        &FinishSessionRequest::new(SessionFinishReason::Success, None),
    );
    check_request(
        "finish_session_errored",
        &FinishSessionRequest::new(SessionFinishReason::Errored, Some("boom".into())),
    );
}

#[test]
fn model_and_training_requests_match_the_sdk() {
    let mut create = CreateModelRequest::new("sess1", 0, "Qwen/Qwen3-8B");
    create.user_metadata = Some(json_map(json!({"purpose": "fixture"})));
    create.lora_config = Some(LoraConfig {
        seed: Some(1),
        ..LoraConfig::default()
    });
    check_request("create_model", &create);
    let mut dimuon = CreateModelRequest::new("sess1", 1, "Qwen/Qwen3-8B");
    dimuon.lora_config = Some(LoraConfig {
        train_unembed: false,
        ..LoraConfig::with_rank(8)
    });
    dimuon.optimizer_config = OptimizerConfig::dimuon();
    check_request("create_model_dimuon", &dimuon);
    check_request(
        "get_info",
        &GetInfoRequest {
            model_id: "sess1:train:0".into(),
        },
    );
    check_request(
        "unload_model",
        &UnloadModelRequest {
            model_id: "sess1:train:0".into(),
        },
    );
    let adam = AdamParams {
        weight_decay: 0.01,
        grad_clip_norm: 1.0,
        ..AdamParams::default()
    };
    check_request(
        "optim_step",
        &OptimStepRequest::new("sess1:train:0", 2, adam),
    );
    check_request(
        "optim_step_dimuon",
        &OptimStepRequest::new("sess1:train:1", 3, DimuonParams::new(0.01)),
    );
    let datum = Datum::new(
        ModelInput::from_tokens(&[1, 2, 3]),
        CrossEntropyInputs::new(vec![2, 3, 4], vec![1.0, 1.0, 0.0])
            .unwrap()
            .into_inputs()
            .unwrap(),
    );
    check_request("datum", &datum);
    let loss = CreateCustomLossRequest {
        session_id: "sess1".into(),
        custom_loss_seq_id: 0,
        name: "neg_ll".into(),
        inputs: vec![
            CustomLossInput {
                name: "logprobs".into(),
                rank: 1,
            },
            CustomLossInput {
                name: "weights".into(),
                rank: 1,
            },
        ],
        graph: CustomLossGraph {
            format: 1,
            nodes: vec![
                node(
                    CustomLossOp::Placeholder,
                    "logprobs",
                    "logprobs",
                    json!([]),
                    json!({}),
                ),
                node(
                    CustomLossOp::Placeholder,
                    "weights",
                    "weights",
                    json!([]),
                    json!({}),
                ),
                node(
                    CustomLossOp::CallFunction,
                    "mul",
                    "operator.mul",
                    json!([{"ref": "logprobs"}, {"ref": "weights"}]),
                    json!({}),
                ),
                node(
                    CustomLossOp::CallMethod,
                    "sum_1",
                    "sum",
                    json!([{"ref": "mul"}]),
                    json!({"dim": -1}),
                ),
                node(
                    CustomLossOp::Output,
                    "output",
                    "output",
                    json!([{"tuple": [{"ref": "sum_1"}, {"dict": {}}]}]),
                    json!({}),
                ),
            ],
        },
    };
    check_request("create_custom_loss", &loss);
}

fn node(op: CustomLossOp, name: &str, target: &str, args: Value, kwargs: Value) -> CustomLossNode {
    CustomLossNode {
        op,
        name: name.into(),
        target: target.into(),
        args: match args {
            Value::Array(a) => a,
            other => panic!("{other}"),
        },
        kwargs: json_map(kwargs),
    }
}

#[test]
fn weights_requests_match_the_sdk() {
    check_request(
        "save_weights",
        &SaveWeightsRequest {
            model_id: "sess1:train:0".into(),
            path: Some("step-100".into()),
            seq_id: Some(4),
            ttl_seconds: Some(7200),
            overwrite: false,
            user_metadata: Some(map(&[("step", "100")])),
        },
    );
    check_request(
        "save_weights_for_sampler",
        &SaveWeightsForSamplerRequest {
            model_id: "sess1:train:0".into(),
            path: Some("sampler-100".into()),
            sampling_session_seq_id: None,
            kind: SamplerWeightsKind::Snapshot,
            seq_id: Some(5),
            ttl_seconds: None,
            user_metadata: None,
        },
    );
    check_request(
        "save_weights_for_sampler_ephemeral",
        &SaveWeightsForSamplerRequest {
            model_id: "sess1:train:0".into(),
            path: None,
            sampling_session_seq_id: Some(0),
            kind: SamplerWeightsKind::Inflight,
            seq_id: Some(6),
            ttl_seconds: None,
            user_metadata: None,
        },
    );
    check_request(
        "save_weights_external",
        &SaveWeightsExternalRequest {
            model_id: "sess1:train:0".into(),
            path: "download".into(),
            seq_id: Some(7),
            ttl_seconds: Some(3600),
            age_encryption_recipients: Some(vec![
                "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq".into(),
            ]),
        },
    );
    let mut create =
        LoadWeightsRequest::create_from("sess1", 2, "tinker://sess0:train:0/weights/final", true);
    create.user_metadata = Some(json_map(json!({"created_by": "fixture"})));
    check_request("load_weights_create", &create);
    // Every override of SDK 0.38's `create_training_client_from_state`.
    let mut overrides =
        LoadWeightsRequest::create_from("sess1", 3, "tinker://sess0:train:0/weights/final", false);
    overrides.base_model = Some("Qwen/Qwen3-8B".into());
    overrides.user_metadata = Some(json_map(json!({"origin": "fixture"})));
    overrides.optimizer_config = Some(OptimizerConfig::AdamW);
    overrides.weights_access_token = Some("tok-fixture".into());
    check_request("load_weights_create_overrides", &overrides);
    check_request(
        "load_weights_legacy",
        &LoadWeightsRequest {
            model_id: Some("sess1:train:0".into()),
            seq_id: Some(8),
            session_id: None,
            model_seq_id: None,
            base_model: None,
            user_metadata: None,
            path: "tinker://sess0:train:0/weights/final".into(),
            optimizer: false,
            optimizer_config: Some(OptimizerConfig::AdamW),
            weights_access_token: None,
        },
    );
    check_request(
        "copy_weights",
        &CopyWeightsRequest {
            session_id: None,
            model_seq_id: None,
            destination_project_id: Some("proj2".into()),
            source_path: "tinker://sess1:train:0/weights/final".into(),
            ttl_seconds: Some(86400),
            weights_access_token: None,
        },
    );
    check_request(
        "weights_info",
        &WeightsInfoRequest {
            tinker_path: "tinker://sess1:train:0/weights/final".into(),
        },
    );
    check_request(
        "set_checkpoint_ttl",
        &SetCheckpointTtlRequest {
            ttl_seconds: Some(7200),
        },
    );
    check_request(
        "set_checkpoint_ttl_remove",
        &SetCheckpointTtlRequest { ttl_seconds: None },
    );
    check_request(
        "set_session_project",
        &SetSessionProjectRequest {
            project_id: "proj2".into(),
        },
    );
}

#[test]
fn sampling_requests_match_the_sdk() {
    check_request(
        "create_sampling_session",
        &CreateSamplingSessionRequest {
            session_id: "sess1".into(),
            sampling_session_seq_id: 1,
            base_model: None,
            model_path: Some("tinker://sess1:train:0/sampler_weights/s1".into()),
        },
    );
    check_request(
        "create_sampling_session_base",
        &CreateSamplingSessionRequest {
            session_id: "sess1".into(),
            sampling_session_seq_id: 2,
            base_model: Some("Qwen/Qwen3-8B".into()),
            model_path: None,
        },
    );
    check_request(
        "join_sampling_session",
        &JoinSamplingSessionRequest {
            sampling_session_id: "sess1:sample:0".into(),
        },
    );

    let mut sample = SampleRequest::new(
        "sess1:sample:0",
        0,
        ModelInput::from_tokens(&[1, 2, 3]),
        SamplingParams {
            max_tokens: Some(5),
            seed: Some(3),
            stop: Some(StopCondition::Strings(vec!["\n".into()])),
            ..SamplingParams::default()
        },
        2,
    );
    sample.prompt_logprobs = Some(true);
    sample.record_stability_info = Some(false);
    check_request("sample", &sample);

    let prompt = ModelInput::from_tokens(&[10, 11, 12])
        .with_chunk(ImageChunk::new(PNG.to_vec(), ImageFormat::Png).expected_tokens(4))
        .with_chunk(
            ImageAssetPointerChunk::new("s3://bucket/cat.jpg", ImageFormat::Jpeg)
                .expected_tokens(2),
        )
        .with_chunk(DmelChunk::new(
            [&[0xFE, 1, 2, 3, 80][..], &[0u8; 8][..]].concat(),
        ))
        .with_token(13);
    assert_eq!(prompt.length().unwrap(), 3 + 4 + 2 + 3 + 1);
    let mut targets = vec![-1i64; 24];
    targets[0] = 11;
    targets[5] = 12;
    targets[22] = 13;
    let mut full = SampleRequest::new(
        "sess1:sample:3",
        1_000_000_007,
        prompt,
        SamplingParams {
            max_tokens: Some(16),
            stop: Some(StopCondition::Tokens(vec![7, 8])),
            temperature: 0.5,
            top_k: 20,
            top_p: 0.95,
            seed: None,
        },
        1,
    );
    full.prompt_logprobs = Some(true);
    full.topk_prompt_logprobs = 3;
    full.topk_sample_logprobs = 2;
    full.target_prompt_logprobs = Some(TensorData::sparsify_i64(&targets, [12, 2], -1).unwrap());
    full.prompt_alt_tokens_k = 2;
    full.prompt_logprobs_last_n = Some(4);
    full.record_stability_info = Some(true);
    full.validate().unwrap();
    check_request("sample_all_features", &full);

    let mut stop = SampleRequest::new(
        "sess1:sample:0",
        1,
        ModelInput::from_tokens(&[5, 6]),
        SamplingParams {
            max_tokens: Some(1),
            stop: Some(StopCondition::Text("</s>".into())),
            ..SamplingParams::default()
        },
        1,
    );
    stop.target_prompt_logprobs = Some(TensorData::from_i64(vec![6, -1], vec![1, 2]).unwrap());
    check_request("sample_stop_string", &stop);
}

#[test]
fn future_and_telemetry_requests_match_the_sdk() {
    check_request(
        "retrieve_future",
        &FutureRetrieveRequest {
            request_id: "req-1".into(),
            allow_metadata_only: true,
        },
    );
    check_request(
        "retrieve_futures",
        &FuturesRetrieveRequest {
            target: SamplingSessionFuturesTarget {
                sampling_session_id: "sess1:sample:0".into(),
                cloned_sampler_id: 0,
            },
            prev_cursor: 17,
            timeout: None,
            retrieved_request_ids: vec!["sess1:sample:0:0".into(), "sess1:sample:0:1".into()],
        },
    );
    check_request(
        "retrieve_futures_ack",
        &FuturesRetrieveRequest {
            target: SamplingSessionFuturesTarget {
                sampling_session_id: "sess1:sample:0".into(),
                cloned_sampler_id: 7,
            },
            prev_cursor: 18,
            timeout: Some(0.0),
            retrieved_request_ids: vec![],
        },
    );
    check_request(
        "cancel_future",
        &CancelFutureRequest {
            request_id: "req-2".into(),
        },
    );
    let at = ts("2026-07-13T12:30:00Z");
    let events = vec![
        TelemetryEvent::from(SessionStartEvent {
            event_id: "e1".into(),
            event_session_index: 0,
            severity: Severity::Info,
            timestamp: at,
        }),
        GenericEvent {
            event_id: "e2".into(),
            event_name: "user_error".into(),
            event_session_index: 1,
            severity: Severity::Warning,
            timestamp: at,
            event_data: json_map(json!({"error_type": "BadRequestError", "status_code": 400})),
        }
        .into(),
        UnhandledExceptionEvent {
            error_message: "boom".into(),
            error_type: "RuntimeError".into(),
            event_id: "e3".into(),
            event_session_index: 2,
            severity: Severity::Error,
            timestamp: at,
            traceback: Some("Traceback ...".into()),
        }
        .into(),
        SessionEndEvent {
            duration: "0:00:12.500000".into(),
            event_id: "e4".into(),
            event_session_index: 3,
            severity: Severity::Info,
            timestamp: at,
        }
        .into(),
    ];
    check_request(
        "telemetry",
        &TelemetrySendRequest {
            events,
            platform: "Linux".into(),
            sdk_version: "0.38.0".into(),
            session_id: "sess1".into(),
            process_uuid: "6f1c7a52-64f4-4c1f-9c38-0b9f1f7a1b2c".into(),
        },
    );
}

#[test]
fn session_search_requests_match_the_sdk() {
    check_request(
        "session_search",
        &SessionSearchRequest {
            display_name: Some("my run".into()),
            project_ids: Some(vec!["proj".into()]),
            user_metadata: map(&[("team", "rl")]),
            owner: SearchOwner::User {
                owner_urns: vec!["tml:user:1".into()],
            },
            statuses: Some(vec![
                SessionStatusQuery::Active,
                SessionStatusQuery::ClientFinished {
                    reasons: Some(vec![
                        SessionFinishReason::Success,
                        SessionFinishReason::Errored,
                    ]),
                },
            ]),
            limit: 20,
            cursor: Some(SessionSearchCursor {
                last_created_at: ts("2026-07-13T12:30:00Z"),
                last_session_id: "sess0".into(),
            }),
            ..SessionSearchRequest::default()
        },
    );
    check_request("session_search_default", &SessionSearchRequest::default());
}

#[test]
fn every_request_fixture_is_checked() {
    // Keeps this file honest: a fixture added by the script must get a check above.
    let checked = [
        "auth_token",
        "cancel_future",
        "client_config",
        "copy_weights",
        "create_custom_loss",
        "create_model",
        "create_model_dimuon",
        "create_sampling_session",
        "create_sampling_session_base",
        "create_session",
        "create_session_minimal",
        "datum",
        "finish_session",
        "finish_session_errored",
        "get_info",
        "join_sampling_session",
        "load_weights_create",
        "load_weights_create_overrides",
        "load_weights_legacy",
        "optim_step",
        "optim_step_dimuon",
        "retrieve_future",
        "retrieve_futures",
        "retrieve_futures_ack",
        "sample",
        "sample_all_features",
        "sample_stop_string",
        "save_weights",
        "save_weights_external",
        "save_weights_for_sampler",
        "save_weights_for_sampler_ephemeral",
        "session_heartbeat",
        "session_search",
        "session_search_default",
        "set_checkpoint_ttl",
        "set_checkpoint_ttl_remove",
        "set_session_project",
        "telemetry",
        "unload_model",
        "weights_info",
    ];
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir().join("requests"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut checked: Vec<String> = checked.iter().map(|s| (*s).to_owned()).collect();
    checked.sort();
    assert_eq!(on_disk, checked);
}

#[test]
fn every_response_fixture_decodes() {
    let mut seen = 0;
    let mut check = |name: &str, ok: bool| {
        assert!(ok, "response {name} decoded to an unexpected value");
        seen += 1;
    };

    let config: ClientConfig = decode_response("client_config");
    check(
        "client_config",
        config.pjwt_auth_enabled && config.proto_compress_fwdbwd,
    );
    let empty: ClientConfig = decode_response("client_config_empty");
    check("client_config_empty", empty == ClientConfig::default());
    let dynamic: DynamicConfig = decode_response("dynamic_config");
    check(
        "dynamic_config",
        dynamic.refresh_interval_sec == 60
            && dynamic.sample_cancel_enabled
            && dynamic.sample_cancel_max_batch_size == 64,
    );
    let token: AuthTokenResponse = decode_response("auth_token");
    check(
        "auth_token",
        token.jwt.expose().starts_with("eyJ") && !format!("{token:?}").contains("eyJ"),
    );
    let me: SelfApiKeyResponse = decode_response("apikey_me");
    check(
        "apikey_me",
        me.key_id == 42 && me.details.user_details.email == "u@example.com",
    );
    let health: HealthResponse = decode_response("healthz");
    check("healthz", health.status == "ok");
    let caps: GetServerCapabilitiesResponse = decode_response("server_capabilities");
    check(
        "server_capabilities",
        caps.supported_models.len() == 2
            && caps.supported_models[0].max_context_length == Some(32768),
    );
    let who: WhoamiResponse = decode_response("whoami");
    check(
        "whoami",
        who.email.is_none() && who.org_urn == "tml:organization:2",
    );
    let session: CreateSessionResponse = decode_response("create_session");
    check(
        "create_session",
        session.session_id == "sess1"
            && session.warning_message.is_some()
            && session.info_message.is_none(),
    );
    let _: SessionHeartbeatResponse = decode_response("session_heartbeat");
    check("session_heartbeat", true);
    let future: UntypedFuture = decode_response("untyped_future");
    check(
        "untyped_future",
        future.model_id.as_deref() == Some("sess1:train:0"),
    );
    let future: UntypedFuture = decode_response("untyped_future_sample");
    check(
        "untyped_future_sample",
        future.sample_sequence_ids == Some(vec!["seq-a".into(), "seq-b".into()]),
    );

    let outcome =
        |name: &str| FutureOutcome::<Value>::from_json(&fixture("responses", name)).unwrap();
    check(
        "try_again",
        matches!(outcome("try_again"), FutureOutcome::TryAgain(t)
            if t.queue_state == Some(QueueState::PausedCapacity) && t.queue_state_reason.as_deref() == Some("busy")),
    );
    check(
        "try_again_unknown_state",
        matches!(outcome("try_again_unknown_state"), FutureOutcome::TryAgain(t)
            if t.queue_state == Some(QueueState::Unknown("warming_up".into()))),
    );
    check(
        "complete_metadata",
        matches!(outcome("complete_metadata"), FutureOutcome::CompleteMetadata(m) if m.response_payload_size == 123_456),
    );
    check(
        "request_failed",
        matches!(outcome("request_failed"), FutureOutcome::Failed(f)
            if f.category == RequestErrorCategory::User && f.error == "bad input"),
    );
    check(
        "request_failed_unknown_category",
        matches!(outcome("request_failed_unknown_category"), FutureOutcome::Failed(f)
            if f.category == RequestErrorCategory::Unknown("cosmic_rays".into())),
    );
    let pending: PendingStatusBody = decode_response("pending_408");
    check(
        "pending_408",
        pending.queue_state == Some(QueueState::Active),
    );
    check(
        "create_model",
        matches!(FutureOutcome::<CreateModelResponse>::from_json(&fixture("responses", "create_model")).unwrap(),
            FutureOutcome::Complete(r) if r.model_id == "sess1:train:0"),
    );
    let info: GetInfoResponse = decode_response("get_info");
    check(
        "get_info",
        info.tokenizer_id() == Some("Qwen/Qwen3-8B")
            && info.optimizer_config == OptimizerConfig::AdamW
            && info.lora_rank == Some(32),
    );
    let info: GetInfoResponse = decode_response("get_info_dimuon");
    check(
        "get_info_dimuon",
        info.optimizer_config == OptimizerConfig::dimuon()
            && info.model_data == ModelData::default(),
    );
    let copy: CopyWeightsResponse = decode_response("copy_weights");
    check(
        "copy_weights",
        copy.tinker_path.starts_with("tinker://sess2"),
    );
    let step: OptimStepResponse = decode_response("optim_step");
    check(
        "optim_step",
        step.metrics
            .as_ref()
            .is_some_and(|m| m["grad_norm:mean"] == 0.5),
    );
    let step: OptimStepResponse = decode_response("optim_step_empty");
    check("optim_step_empty", step.metrics.is_none());
    let saved: SaveWeightsResponse = decode_response("save_weights");
    check("save_weights", TinkerPath::parse(&saved.path).is_ok());
    let sampler: SaveWeightsForSamplerResponse = decode_response("save_weights_for_sampler");
    check(
        "save_weights_for_sampler",
        TinkerPath::parse(&sampler.path).is_ok(),
    );
    let sampler: SaveWeightsForSamplerResponseInternal =
        decode_response("save_weights_for_sampler_ephemeral");
    check(
        "save_weights_for_sampler_ephemeral",
        sampler.sampling_session_id.as_deref() == Some("sess1:sample:0"),
    );
    let external: SaveWeightsExternalResponse = decode_response("save_weights_external");
    check(
        "save_weights_external",
        external.path == "tinker://sess1:train:0/external_weights/download"
            && external.size_bytes == Some(1_048_576),
    );
    let load: LoadWeightsResponse = decode_response("load_weights");
    check(
        "load_weights",
        load.model_id.as_deref() == Some("sess1:train:2"),
    );
    let unload: UnloadModelResponse = decode_response("unload_model");
    check("unload_model", unload.model_id == "sess1:train:0");
    let custom: CreateCustomLossResponse = decode_response("create_custom_loss");
    check("create_custom_loss", custom.loss_id == "loss-abc");
    let sampling: CreateSamplingSessionResponse = decode_response("create_sampling_session");
    check(
        "create_sampling_session",
        sampling.sampling_session_id == "sess1:sample:1",
    );
    let join: JoinSamplingSessionResponse = decode_response("join_sampling_session");
    check("join_sampling_session", join.client_counter == 7);
    let sampler: GetSamplerResponse = decode_response("get_sampler");
    check("get_sampler", sampler.model_path.is_some());
    let futures: FuturesRetrieveResponse = decode_response("retrieve_futures");
    check(
        "retrieve_futures",
        futures.cursor == 17
            && futures.completions[0].state == CompletionState::Finished
            && futures.completions[0].response_payload_uncompressed_size == Some(1234)
            && futures.completions[1].state == CompletionState::Failed,
    );
    let telemetry: TelemetryResponse = decode_response("telemetry");
    check("telemetry", telemetry.status == "accepted");
    let run: TrainingRun = decode_response("training_run");
    check(
        "training_run",
        run.last_checkpoint.as_ref().is_some_and(|c| {
            c.checkpoint_type == CheckpointType::Training
                && c.expires_at == Some(ts("2026-07-14T00:00:00Z"))
                && c.user_metadata == Some(map(&[("step", "100")]))
        }) && run
            .last_sampler_checkpoint
            .as_ref()
            .is_some_and(|c| c.public),
    );
    let runs: TrainingRunsResponse = decode_response("training_runs");
    check(
        "training_runs",
        runs.training_runs.len() == 2
            && runs.training_runs[1].corrupted
            && runs.cursor.total_count == 2,
    );
    let list: CheckpointsListResponse = decode_response("checkpoints_list");
    check(
        "checkpoints_list",
        list.checkpoints[1].checkpoint_type == CheckpointType::External && list.cursor.is_some(),
    );
    let list: CheckpointsListResponse = decode_response("checkpoints_list_run");
    check("checkpoints_list_run", list.cursor.is_none());
    let urls: ExternalWeightsUrlsResponse = decode_response("external_weights_urls");
    check(
        "external_weights_urls",
        urls.urls.len() == 2 && urls.expires == ts("2026-07-14T00:00:00Z"),
    );
    let info: WeightsInfoResponse = decode_response("weights_info");
    check(
        "weights_info",
        info.train_attn == Some(false) && info.optimizer_config == OptimizerConfig::AdamW,
    );
    let sessions: ListSessionsResponse = decode_response("list_sessions");
    check("list_sessions", sessions.sessions.len() == 2);
    let session: GetSessionResponse = decode_response("get_session");
    check(
        "get_session",
        session.display_name.as_deref() == Some("disp"),
    );
    for (name, status) in [
        ("trace_export_pending", TraceExportStatus::Pending),
        ("trace_export_ready", TraceExportStatus::Ready),
        ("trace_export_failed", TraceExportStatus::Failed),
    ] {
        let trace: TraceExportResponse = decode_response(name);
        check(name, trace.status == status);
    }
    let search: SessionSearchResponse = decode_response("session_search");
    let statuses: Vec<&str> = search
        .sessions
        .iter()
        .map(|s| s.status.as_ref().map_or("", SessionStatus::kind))
        .collect();
    check(
        "session_search",
        statuses == ["active", "client_finished", "failed", "cancelled"]
            && search.next_cursor.is_some(),
    );
    let billing: BillingUsageResponse = decode_response("billing_usage");
    let kinds: Vec<&str> = billing.data.iter().map(|e| e.event_info.kind()).collect();
    check(
        "billing_usage",
        kinds
            == [
                "training",
                "sampling_prefill",
                "sampling_sample",
                "checkpoint",
                "storage",
            ]
            && billing.sessions.contains_key("sess1")
            && billing.cost_data_through.is_some(),
    );
    let storage: CurrentCheckpointStorageUsageResponse = decode_response("checkpoint_storage");
    check("checkpoint_storage", storage.data[0].size_gigabytes == 3.0);
    let audit: AuditLogResponse = decode_response("audit_log");
    check(
        "audit_log",
        audit.entries.len() == 2 && audit.entries[0].event == "checkpoint_published",
    );
    let output: ForwardBackwardOutput = decode_response("forward_backward_output");
    check(
        "forward_backward_output",
        output.loss_fn_outputs.len() == 2
            && output.loss_fn_outputs[1]["logprobs"].values().as_f32() == Some(&[-0.75, -0.25][..])
            && output.metrics["loss:sum"] == 4.75,
    );
    let sample: SampleResponse = decode_response("sample_response");
    let topk = sample.topk_prompt_logprobs.as_ref().map(TopkLogprobs::rows);
    check(
        "sample_response",
        sample.sequences[0].stop_reason == StopReason::Stop
            && sample.sequences[1].stop_reason == StopReason::Length
            && sample.sequences[1].logprobs.is_none()
            && sample.prompt_logprobs == Some(vec![None, Some(-1.5), Some(-0.5)])
            && topk
                == Some(vec![
                    None,
                    Some(vec![(5, -0.25), (6, -1.5)]),
                    Some(vec![(7, -0.5)]),
                ]),
    );

    let on_disk = std::fs::read_dir(fixture_dir().join("responses"))
        .unwrap()
        .count();
    assert_eq!(seen, on_disk, "every response fixture must be decoded here");
}

#[test]
fn missing_required_fields_name_their_path() {
    let err =
        json::from_str::<SampleResponse>(r#"{"sequences":[{"stop_reason":"stop"}]}"#).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path, .. } if path == "sequences[0].tokens"),
        "{err}"
    );
    let err = json::from_str::<CreateSessionResponse>("{}").unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path, .. } if path == "session_id"),
        "{err}"
    );
    let err = json::from_str::<TrainingRunsResponse>(
        r#"{"training_runs":[],"cursor":{"offset":0,"limit":20}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path, .. } if path == "cursor.total_count"),
        "{err}"
    );
    // Inside a server union: the failed status lacks its message.
    let err = json::from_str::<SessionSearchResponse>(
        r#"{"sessions":[{"session_id":"s","created_at":"2026-01-01T00:00:00Z","owner":"o","project_id":"p","checkpoints_count":0,
            "status":{"type":"failed","category":"user","reason":{"type":"training_run","training_run_id":"r"}}}]}"#,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path, .. } if path == "sessions[0].status.message"),
        "{err}"
    );
    // A wrongly typed value names its path too.
    let err = json::from_str::<CreateModelResponse>(r#"{"model_id": 5}"#).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path, .. } if path == "model_id"),
        "{err}"
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let r: CreateSessionResponse =
        json::from_str(r#"{"session_id":"s","brand_new":{"x":[1,2]},"type":"create_session"}"#)
            .unwrap();
    assert_eq!(r.session_id, "s");
    let c: ClientConfig =
        json::from_str(r#"{"some_future_flag":true,"fwdbwd_max_chunk_len":8}"#).unwrap();
    assert_eq!(c.fwdbwd_max_chunk_len, 8);
    assert_eq!(c.sample_max_concurrent_requests, 2000);
}

#[test]
fn unknown_enum_values_are_kept() {
    let seq: SampledSequence =
        json::from_str(r#"{"stop_reason":"tool_call","tokens":[1]}"#).unwrap();
    assert_eq!(seq.stop_reason, StopReason::Unknown("tool_call".into()));
    assert_eq!(json::to_string(&seq.stop_reason).unwrap(), r#""tool_call""#);
    let ckpt: CheckpointType = json::from_str(r#""archive""#).unwrap();
    assert_eq!(ckpt.as_str(), "archive");
    let status: SessionStatus =
        json::from_str(r#"{"type":"hibernating","since":"yesterday"}"#).unwrap();
    assert_eq!(status.kind(), "hibernating");
    assert_eq!(
        json::to_value(&status).unwrap(),
        json!({"type":"hibernating","since":"yesterday"})
    );
    let event: BillingEventInfo = json::from_str(r#"{"type":"gpu_seconds","seconds":3}"#).unwrap();
    assert!(matches!(event, BillingEventInfo::Unknown(_)));
    let config: OptimizerConfig = json::from_str(r#"{"type":"lion","beta":0.9}"#).unwrap();
    assert_eq!(config.kind(), "lion");
    assert_eq!(
        json::to_string(&config).unwrap(),
        r#"{"type":"lion","beta":0.9}"#
    );
}

#[test]
fn non_finite_numbers_are_refused() {
    let step = OptimStepRequest::new("m", 1, AdamParams::with_learning_rate(f64::NAN));
    let err = json::to_vec(&step).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { path } if path == "adam_params.learning_rate"),
        "{err}"
    );
    let params = SamplingParams {
        temperature: f64::INFINITY,
        ..SamplingParams::default()
    };
    assert!(matches!(
        json::to_vec(&params),
        Err(Error::NonFinite { .. })
    ));
    let mut request = SampleRequest::new(
        "s",
        0,
        ModelInput::from_tokens(&[1]),
        SamplingParams::default(),
        1,
    );
    request.target_prompt_logprobs = Some(TensorData::vector_f32(vec![0.5, f32::NAN]));
    let err = json::to_vec(&request).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { path } if path == "target_prompt_logprobs"),
        "{err}"
    );
    let mut config = LossFnConfig::new();
    config.insert("beta".into(), LossConfigValue::Number(f64::NEG_INFINITY));
    let err = json::to_vec(&config).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { path } if path == "beta"),
        "{err}"
    );
    let mut output = ForwardBackwardOutput::default();
    output.metrics.insert("loss:sum".into(), f64::NAN);
    assert!(matches!(
        json::to_vec(&output),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn tinker_paths_parse_and_fail_with_reasons() {
    let path = TinkerPath::parse("tinker://sess1:train:0/sampler_weights/s-1").unwrap();
    assert_eq!(path.training_run_id, "sess1:train:0");
    assert_eq!(path.kind, CheckpointKind::SamplerWeights);
    assert_eq!(path.checkpoint_type(), CheckpointType::Sampler);
    assert_eq!(path.checkpoint_id(), "sampler_weights/s-1");
    assert_eq!(
        path.to_string(),
        "tinker://sess1:train:0/sampler_weights/s-1"
    );
    let problem = |text: &str| match TinkerPath::parse(text) {
        Err(Error::InvalidTinkerPath { path, problem }) => {
            assert_eq!(path, text);
            problem
        }
        other => panic!("{text}: expected an invalid-path error, got {other:?}"),
    };
    assert_eq!(
        problem("s3://run/weights/x"),
        TinkerPathProblem::MissingScheme
    );
    assert_eq!(
        problem("tinker://run/weights"),
        TinkerPathProblem::WrongPartCount { found: 2 }
    );
    assert_eq!(
        problem("tinker://run/weights/a/b"),
        TinkerPathProblem::WrongPartCount { found: 4 }
    );
    assert_eq!(
        problem("tinker://run/optimizer/x"),
        TinkerPathProblem::UnknownCheckpointKind
    );
    assert_eq!(
        problem("tinker:///weights/x"),
        TinkerPathProblem::EmptyTrainingRunId
    );
    assert_eq!(
        problem("tinker://run/weights/"),
        TinkerPathProblem::EmptyName
    );
    let message = TinkerPath::parse("tinker://run/optimizer/x")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("weights") && message.contains("tinker://run/optimizer/x"),
        "{message}"
    );
}

#[test]
fn secrets_stay_out_of_debug() {
    let mut load = LoadWeightsRequest::create_from("s", 0, "tinker://r/weights/x", false);
    load.weights_access_token = Some(Sensitive::new("tok-secret-123"));
    let debug = format!("{load:?}");
    assert!(!debug.contains("tok-secret-123"), "{debug}");
    // It is still sent.
    assert!(json::to_string(&load).unwrap().contains("tok-secret-123"));
}
