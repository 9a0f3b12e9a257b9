//! Training endpoints: model creation, forward/backward, optimizer steps, saving and loading.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use chrono::Utc;
use serde_json::json;

use tinker_types::UntypedFuture;

use super::owned::{self, Access};
use super::{ApiError, ApiResult, AppStateRef, digest, legacy, ok, parse, reply};
use crate::auth::Caller;
use crate::engine::{AdamStep, CustomGraph, LoraSpec};
use crate::engine_wire;
use crate::persist::{LoraRecord, RunRecord, valid_name};
use crate::promise::{FutureKind, Outcome};
use crate::state::{AppState, StoredCustomLoss, lock};
use crate::worker::{Init, ModelWorker, PayloadDigest, TrainOp, short_id};

/// Largest LoRA rank accepted.
const MAX_RANK: usize = 256;
/// TTL bounds of saved checkpoints (1 hour … 10 years).
const TTL_RANGE: std::ops::RangeInclusive<i64> = 3600..=10 * 365 * 24 * 3600;

/// A wire integer the server keeps as `i64`.
fn wire_int(field: &str, value: u64) -> ApiResult<i64> {
    i64::try_from(value)
        .map_err(|_| ApiError::bad_request(format!("{field}: {value} is too large")))
}

fn check_optimizer_config(kind: Option<&str>) -> ApiResult<serde_json::Value> {
    match kind {
        None | Some("adamw") | Some("adam") => Ok(json!({ "type": "adamw" })),
        Some(other) => Err(ApiError::bad_request(format!(
            "optimizer `{other}` is not supported by tinker-local (only adamw)"
        ))),
    }
}

fn future_response(request_id: &str, model_id: &str) -> serde_json::Value {
    let future = UntypedFuture {
        request_id: request_id.to_owned(),
        model_id: Some(model_id.to_owned()),
        sample_sequence_ids: None,
    };
    tinker_types::json::to_value(&future).unwrap_or_else(|_| json!({ "request_id": request_id }))
}

/// The `seq_id` every training request needs (optional in the SDK's schema only).
fn required_seq_id(seq_id: Option<u64>) -> ApiResult<i64> {
    wire_int(
        "seq_id",
        seq_id.ok_or_else(|| ApiError::bad_request("seq_id: required"))?,
    )
}

/// A TTL as the worker keeps it.
fn ttl_of(ttl_seconds: Option<u64>) -> Result<Option<i64>, String> {
    ttl_seconds
        .map(|t| i64::try_from(t).map_err(|_| format!("ttl_seconds: {t} is too large")))
        .transpose()
}

/// Registers a run and starts its worker; the returned future completes once the model
/// exists. Idempotent per `(session, model_seq_id)`.
#[allow(clippy::too_many_arguments)]
fn start_model(
    state: &Arc<AppState>,
    caller: &Caller,
    session_id: &str,
    model_seq_id: i64,
    base_model: &str,
    lora: LoraRecord,
    optimizer_config: serde_json::Value,
    user_metadata: Option<BTreeMap<String, String>>,
    init: Init,
) -> ApiResult {
    // Ownership first: a creation answer of another account's session is not handed out.
    owned::session(state, caller, session_id)?;
    let key = (session_id.to_owned(), "model", model_seq_id);
    let mut creations = lock(&state.creations);
    if let Some(previous) = creations.get(&key) {
        return ok(previous.clone());
    }
    let session = owned::active_session(state, caller, session_id)?;
    if model_seq_id < 0 {
        return Err(ApiError::bad_request("model_seq_id must be >= 0"));
    }
    let spec = state
        .spec(base_model)
        .ok_or_else(|| {
            let known: Vec<_> = state.specs.iter().map(|s| s.name.as_str()).collect();
            ApiError::bad_request(format!(
                "base model `{base_model}` is not served here (available: {})",
                known.join(", ")
            ))
        })?
        .clone();
    let model_id = format!("{session_id}:train:{model_seq_id}");
    let now = Utc::now();
    let run = RunRecord {
        training_run_id: model_id.clone(),
        session_id: session_id.to_owned(),
        base_model: spec.name.clone(),
        model_owner: caller.owner.clone(),
        lora: lora.clone(),
        optimizer_config,
        created_at: now,
        last_request_time: now,
        user_metadata,
        project_id: session.project_id.clone(),
        corrupted: false,
        checkpoints: Vec::new(),
    };
    state
        .store
        .insert_run(run)
        .map_err(|e| ApiError::internal(format!("recording the training run: {e}")))?;
    let request_id = format!("{model_id}:0:{}", short_id());
    let created = state
        .promises
        .create(request_id.clone(), FutureKind::Training, &caller.owner);
    let lora_spec = LoraSpec {
        rank: lora.rank,
        seed: lora.seed,
        train_attn: lora.train_attn,
        train_mlp: lora.train_mlp,
        train_unembed: lora.train_unembed,
    };
    let worker = ModelWorker::spawn(
        state,
        model_id.clone(),
        (session_id.to_owned(), caller.owner.clone()),
        spec,
        lora_spec,
        init,
        created,
    )
    .map_err(|e| ApiError::internal(format!("starting the model worker: {e}")))?;
    lock(&state.models).insert(model_id.clone(), worker);
    if let Some(s) = lock(&state.sessions).get_mut(session_id) {
        s.training_run_ids.push(model_id.clone());
    }
    state.audit(
        &caller.owner,
        "model_create",
        Some(&model_id),
        None,
        json!({ "base_model": base_model }),
    );
    let response = future_response(&request_id, &model_id);
    creations.insert(key, response.clone());
    ok(response)
}

pub(crate) async fn create_model(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::CreateModelRequest = parse(&body)?;
    let optimizer_config = check_optimizer_config(Some(req.optimizer_config.kind()))?;
    let lora = req.lora_config.unwrap_or_default();
    let rank = lora.rank as usize;
    if rank == 0 || rank > MAX_RANK {
        return Err(ApiError::bad_request(format!(
            "lora rank must be in 1..={MAX_RANK}, got {}",
            lora.rank
        )));
    }
    if !(lora.train_attn || lora.train_mlp || lora.train_unembed) {
        return Err(ApiError::bad_request(
            "at least one of train_attn, train_mlp, train_unembed must be true",
        ));
    }
    let lora = LoraRecord {
        rank,
        seed: lora.seed,
        train_attn: lora.train_attn,
        train_mlp: lora.train_mlp,
        train_unembed: lora.train_unembed,
    };
    start_model(
        &state,
        &caller,
        &req.session_id,
        wire_int("model_seq_id", req.model_seq_id)?,
        &req.base_model,
        lora,
        optimizer_config,
        req.user_metadata.map(super::string_map),
        Init::Fresh,
    )
}

pub(crate) async fn get_info(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::GetInfoRequest = parse(&body)?;
    let worker = owned::model(&state, &caller, &req.model_id)?;
    reply(&tinker_types::GetInfoResponse {
        model_data: tinker_types::ModelData {
            arch: Some("llama".to_owned()),
            model_name: Some(worker.spec.name.clone()),
            // A portable id: the model name, served hub-style by `hub` (never a server path).
            tokenizer_id: Some(worker.spec.name.clone()),
        },
        model_id: req.model_id,
        optimizer_config: tinker_types::OptimizerConfig::AdamW,
        is_lora: Some(true),
        lora_rank: u32::try_from(worker.lora.rank).ok(),
        model_name: Some(worker.spec.name.clone()),
    })
}

/// Decompresses a request body according to `Content-Encoding`, bounded by `limit`.
fn decode_body(headers: &HeaderMap, body: &[u8], limit: usize) -> ApiResult<Vec<u8>> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let result = match encoding.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        // The shared decoder reuses one zstd context per thread.
        "zstd" => {
            return tinker_types::proto::zstd_decompress_bounded(body, limit).map_err(
                |e| match e {
                    tinker_types::proto::ZstdDecodeError::TooLarge { .. } => ApiError::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "decompressed body is too large",
                    ),
                    e => ApiError::bad_request(format!("could not decompress the body: {e}")),
                },
            );
        }
        "gzip" => flate2::read::GzDecoder::new(body)
            .take(bound)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(body)
            .take(bound)
            .read_to_end(&mut out),
        other => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding `{other}`"),
            ));
        }
    };
    result.map_err(|e| ApiError::bad_request(format!("could not decompress the body: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "decompressed body is too large",
        ));
    }
    Ok(out)
}

pub(crate) async fn forward_backward(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    run_forward_backward(&state, &caller, &headers, &body, false)
}

/// `POST /api/v1/forward` (JSON, SDK ≤ 0.24 and tinkex): a forward-only `forward_backward`.
pub(crate) async fn forward(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    run_forward_backward(&state, &caller, &headers, &body, true)
}

/// A `forward_backward` as protobuf (SDK ≥ 0.22.3) or JSON (older clients, see
/// [`legacy::forward_backward_proto`]); `forward_only` for the JSON `forward` route.
fn run_forward_backward(
    state: &Arc<AppState>,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    forward_only: bool,
) -> ApiResult {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let raw = decode_body(headers, body, state.config.max_body_bytes)?;
    let raw = if forward_only || content_type.contains("json") {
        legacy::forward_backward_proto(&raw, forward_only)
            .map_err(|r| refuse_addressed(state, caller, &raw, r))?
    } else {
        raw
    };
    let resolve =
        |model_id: &str, loss_id: &str| owned::custom_loss(state, caller, model_id, loss_id);
    let decoded = engine_wire::decode_forward_backward(&raw).map_err(ApiError::bad_request)?;
    let digest = digest::of_forward_backward(&decoded, &raw);
    let req =
        engine_wire::forward_backward_batch(decoded, &resolve).map_err(ApiError::bad_request)?;
    let ids = (req.seq_id, digest);
    let worker = model_for_request(state, caller, &req.model_id, ids)?;
    let (batch, forward_only, tokens) = (req.batch, req.forward_only, req.tokens);
    let check = batch.as_ref().map(|_| ()).map_err(Clone::clone);
    submit_checked(state, &worker, ids, check, || match batch {
        Ok((batch, loss)) => TrainOp::ForwardBackward {
            batch,
            loss,
            forward_only,
            tokens,
        },
        Err(message) => TrainOp::Reject(message),
    })
}

/// Parses a JSON training request; one that names its model and `seq_id` but is otherwise
/// malformed is refused through that `seq_id` (see [`refuse_addressed`]).
fn parse_training<T: serde::de::DeserializeOwned>(
    state: &Arc<AppState>,
    caller: &Caller,
    body: &[u8],
) -> ApiResult<T> {
    parse(body).map_err(|error| {
        let address = legacy::address_of(body);
        refuse_addressed(state, caller, body, legacy::Refusal { address, error })
    })
}

/// Answers a refused training request. When it named the caller's live model and a
/// `seq_id`, that id is taken by a failed request carrying the refusal, so the requests
/// queued behind it (an `optim_step` after a refused `forward_backward`) do not wait for it.
fn refuse_addressed(
    state: &Arc<AppState>,
    caller: &Caller,
    raw: &[u8],
    refusal: legacy::Refusal,
) -> ApiError {
    let Some((model_id, seq_id)) = refusal.address else {
        return refusal.error;
    };
    let Ok(worker) = owned::model(state, caller, &model_id) else {
        return refusal.error;
    };
    let digest = digest::of_bytes("refused", raw);
    refuse(state, &worker, (seq_id, digest), refusal.error)
}

/// The caller's live model named by a training request with `ids` (404 otherwise, and the
/// request takes no `seq_id`). A model whose session has ended refuses a new request, which
/// still takes its `seq_id`; a resubmission passes (and gets its first future back).
fn model_for_request(
    state: &Arc<AppState>,
    caller: &Caller,
    model_id: &str,
    ids: (i64, PayloadDigest),
) -> ApiResult<Arc<ModelWorker>> {
    let worker = owned::model(state, caller, model_id)?;
    if worker.resubmitted(ids.0, ids.1).is_some() {
        return Ok(worker);
    }
    if let Err(e) = owned::active_session(state, caller, &worker.session_id) {
        return Err(refuse(state, &worker, ids, e));
    }
    Ok(worker)
}

fn adam_step(p: &tinker_types::AdamParams) -> Result<AdamStep, String> {
    let step = AdamStep {
        learning_rate: p.learning_rate,
        beta1: p.beta1,
        beta2: p.beta2,
        eps: p.eps,
        weight_decay: p.weight_decay,
        grad_clip_norm: p.grad_clip_norm,
    };
    let finite = [
        step.learning_rate,
        step.beta1,
        step.beta2,
        step.eps,
        step.weight_decay,
        step.grad_clip_norm,
    ]
    .iter()
    .all(|v| v.is_finite());
    if !finite {
        return Err("adam_params must be finite".to_owned());
    }
    if step.learning_rate < 0.0 {
        return Err("learning_rate must be >= 0".to_owned());
    }
    if !(0.0..1.0).contains(&step.beta1) || !(0.0..1.0).contains(&step.beta2) {
        return Err("beta1 and beta2 must be in [0, 1)".to_owned());
    }
    if step.eps <= 0.0 || step.weight_decay < 0.0 || step.grad_clip_norm < 0.0 {
        return Err("eps must be > 0; weight_decay and grad_clip_norm >= 0".to_owned());
    }
    Ok(step)
}

pub(crate) async fn optim_step(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::OptimStepRequest = parse_training(&state, &caller, &body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let ids = (seq_id, digest::of_json("optim_step", &req, &body));
    let worker = model_for_request(&state, &caller, &req.model_id, ids)?;
    let step = match &req.params {
        tinker_types::OptimParams::Adam(p) => adam_step(p),
        tinker_types::OptimParams::Dimuon(_) => Err(
            "optimizer family `dimuon` is not supported by tinker-local (only Adam: send adam_params)"
                .to_owned(),
        ),
        other => Err(format!(
            "optimizer family `{}` is not supported by tinker-local (only Adam: send adam_params)",
            tinker_types::json::to_value(other)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "?".to_owned())
        )),
    };
    match step {
        Ok(step) => submit_checked(&state, &worker, ids, Ok(()), || TrainOp::OptimStep(step)),
        Err(message) => Err(refuse(&state, &worker, ids, ApiError::bad_request(message))),
    }
}

fn check_ttl(ttl: Option<i64>) -> Result<Option<i64>, String> {
    match ttl {
        Some(t) if !TTL_RANGE.contains(&t) => Err(format!(
            "ttl_seconds must be between {} and {} seconds, got {t}",
            TTL_RANGE.start(),
            TTL_RANGE.end()
        )),
        other => Ok(other),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid checkpoint name `{name}`: use letters, digits and - _ . : + ="
        ))
    }
}

/// Submits `op` as request `seq_id` (with its payload digest) of the caller's `worker`, or
/// a failed request carrying `check`'s error, answered through the future (the `seq_id` is
/// still taken).
fn submit_checked(
    state: &Arc<AppState>,
    worker: &ModelWorker,
    (seq_id, digest): (i64, PayloadDigest),
    check: Result<(), String>,
    op: impl FnOnce() -> TrainOp,
) -> ApiResult {
    let op = match check {
        Ok(()) => op(),
        Err(message) => TrainOp::Reject(message),
    };
    let id = worker.submit(state, seq_id, digest, op)?;
    ok(future_response(&id, &worker.model_id))
}

/// Refuses a request for the caller's own model after its `seq_id` was read: the id is
/// still taken, by a failed request carrying the refusal, so nothing behind it waits. A
/// reused or out-of-window `seq_id` takes nothing and is answered as such.
fn refuse(
    state: &Arc<AppState>,
    worker: &ModelWorker,
    (seq_id, digest): (i64, PayloadDigest),
    refusal: ApiError,
) -> ApiError {
    match worker.submit(
        state,
        seq_id,
        digest,
        TrainOp::Reject(refusal.detail.clone()),
    ) {
        Ok(_) => refusal,
        Err(e) => e.into(),
    }
}

pub(crate) async fn save_weights(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::SaveWeightsRequest = parse_training(&state, &caller, &body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let ids = (seq_id, digest::of_json("save_weights", &req, &body));
    let worker = model_for_request(&state, &caller, &req.model_id, ids)?;
    let name = req.path.unwrap_or_else(|| format!("seq-{seq_id}"));
    let ttl = ttl_of(req.ttl_seconds);
    let check = check_name(&name).and(ttl.clone().and_then(check_ttl).map(|_| ()));
    submit_checked(&state, &worker, ids, check, || TrainOp::SaveWeights {
        name,
        ttl_seconds: ttl.ok().flatten(),
        overwrite: req.overwrite,
        user_metadata: req.user_metadata,
    })
}

pub(crate) async fn save_weights_for_sampler(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::SaveWeightsForSamplerRequest = parse_training(&state, &caller, &body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let ids = (
        seq_id,
        digest::of_json("save_weights_for_sampler", &req, &body),
    );
    let worker = model_for_request(&state, &caller, &req.model_id, ids)?;
    // `kind` (snapshot or inflight) is checked by its type; both save a snapshot here.
    let ttl = ttl_of(req.ttl_seconds);
    let mut check = ttl.clone().and_then(check_ttl).map(|_| ());
    let sampling_session_id = match (&req.path, req.sampling_session_seq_id) {
        (Some(name), _) => {
            check = check.and(check_name(name));
            None
        }
        (None, Some(n)) => Some(format!("{}:sample:{n}", worker.session_id)),
        (None, _) => {
            check = check.and(Err(
                "save_weights_for_sampler needs `path` or `sampling_session_seq_id`".to_owned(),
            ));
            None
        }
    };
    submit_checked(&state, &worker, ids, check, || TrainOp::SaveForSampler {
        name: req.path,
        ttl_seconds: ttl.ok().flatten(),
        user_metadata: req.user_metadata,
        sampling_session_id,
    })
}

pub(crate) async fn save_weights_external(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::SaveWeightsExternalRequest = parse_training(&state, &caller, &body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let ids = (
        seq_id,
        digest::of_json("save_weights_external", &req, &body),
    );
    let worker = model_for_request(&state, &caller, &req.model_id, ids)?;
    let ttl = ttl_of(req.ttl_seconds);
    let mut check = check_name(&req.path).and(ttl.clone().and_then(check_ttl).map(|_| ()));
    if req
        .age_encryption_recipients
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        check = Err("age encryption of exports is not supported by tinker-local".to_owned());
    }
    submit_checked(&state, &worker, ids, check, || TrainOp::SaveExternal {
        name: req.path,
        ttl_seconds: ttl.ok().flatten(),
    })
}

pub(crate) async fn load_weights(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::LoadWeightsRequest = parse_training(&state, &caller, &body)?;
    let token = req.weights_access_token.as_ref().map(|t| t.expose());
    let access = Access::WithToken(token);
    let optimizer_problem = |has_optimizer: bool| {
        (req.optimizer && !has_optimizer).then(|| {
            format!(
                "checkpoint {} has no optimizer state (only `weights/...` checkpoints from save_state do)",
                req.path
            )
        })
    };
    match (&req.model_id, req.seq_id, &req.session_id, req.model_seq_id) {
        (Some(model_id), Some(seq_id), _, _) => {
            let ids = (
                wire_int("seq_id", seq_id)?,
                digest::of_json("load_weights", &req, &body),
            );
            let worker = model_for_request(&state, &caller, model_id, ids)?;
            if let Some(id) = worker.resubmitted(ids.0, ids.1) {
                return ok(future_response(&id, model_id));
            }
            let (run, record, dir) = owned::checkpoint(&state, &caller, &req.path, access)
                .map_err(|e| refuse(&state, &worker, ids, e))?;
            let mut check = optimizer_problem(record.has_optimizer).map_or(Ok(()), Err);
            if run.base_model != worker.spec.name {
                check = Err(format!(
                    "checkpoint is for {} but model {model_id} is {}",
                    run.base_model, worker.spec.name
                ));
            }
            submit_checked(&state, &worker, ids, check, || TrainOp::LoadWeights {
                dir,
                path: req.path.clone(),
                optimizer: req.optimizer,
            })
        }
        (_, _, Some(session_id), Some(model_seq_id)) => {
            let model_seq_id = wire_int("model_seq_id", model_seq_id)?;
            owned::session(&state, &caller, session_id)?;
            let (run, record, dir) = owned::checkpoint(&state, &caller, &req.path, access)?;
            if let Some(problem) = optimizer_problem(record.has_optimizer) {
                return Err(ApiError::bad_request(problem));
            }
            if let Some(base) = &req.base_model
                && *base != run.base_model
            {
                return Err(ApiError::bad_request(format!(
                    "checkpoint is for {} but base_model {base} was asked for",
                    run.base_model
                )));
            }
            let optimizer_config = if req.optimizer {
                run.optimizer_config.clone()
            } else {
                check_optimizer_config(req.optimizer_config.as_ref().map(|c| c.kind()))?
            };
            start_model(
                &state,
                &caller,
                session_id,
                model_seq_id,
                &run.base_model,
                run.lora.clone(),
                optimizer_config,
                req.user_metadata.map(super::string_map),
                Init::FromCheckpoint {
                    dir,
                    path: req.path.clone(),
                    optimizer: req.optimizer,
                },
            )
        }
        _ => Err(ApiError::bad_request(
            "load_weights needs model_id + seq_id, or session_id + model_seq_id",
        )),
    }
}

/// Validates and stores a custom loss (§2.3, §6.8). The answer is a future: its result is
/// `{"loss_id"}`, or a `user` failure naming what the graph may not do. Idempotent per
/// `(session, custom_loss_seq_id)`.
pub(crate) async fn create_custom_loss(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    if !state.config.custom_loss_server_side {
        return Err(ApiError::bad_request(
            "server-side custom losses are off on this server (custom_loss_server_side is \
             false); forward_backward_custom runs client-side",
        ));
    }
    let req: tinker_types::custom_loss::CreateCustomLossRequest = parse(&body)?;
    let seq = wire_int("custom_loss_seq_id", req.custom_loss_seq_id)?;
    // Ownership first: a creation answer of another account's session is not handed out.
    owned::session(&state, &caller, &req.session_id)?;
    let key = (req.session_id.clone(), "custom_loss", seq);
    let mut creations = lock(&state.creations);
    if let Some(previous) = creations.get(&key) {
        return ok(previous.clone());
    }
    owned::active_session(&state, &caller, &req.session_id)?;
    let loss_id = format!("{}:loss:{}", req.session_id, req.custom_loss_seq_id);
    let request_id = format!("{loss_id}:{}", short_id());
    let done = state
        .promises
        .create(request_id.clone(), FutureKind::Training, &caller.owner);
    match CustomGraph::compile(&req.name, &req.inputs, &req.graph) {
        Ok(graph) => {
            lock(&state.custom_losses).insert(
                loss_id.clone(),
                StoredCustomLoss {
                    session_id: req.session_id.clone(),
                    graph: Arc::new(graph),
                },
            );
            tracing::info!(%loss_id, name = %req.name, "custom loss created");
            done.complete(Outcome::typed(
                &tinker_types::custom_loss::CreateCustomLossResponse {
                    loss_id: loss_id.clone(),
                },
            ));
        }
        Err(e) => done.complete(Outcome::user(format!("create_custom_loss: {e}"))),
    }
    let response = tinker_types::json::to_value(&UntypedFuture {
        request_id,
        model_id: None,
        sample_sequence_ids: None,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    creations.insert(key, response.clone());
    ok(response)
}
