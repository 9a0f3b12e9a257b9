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

use super::service::require_active_session;
use tinker_types::UntypedFuture;

use super::{ApiError, ApiResult, AppStateRef, ok, parse, reply};
use crate::auth::Caller;
use crate::engine::{AdamStep, CustomGraph, LoraSpec};
use crate::engine_wire;
use crate::persist::{CheckpointRecord, LoraRecord, RunRecord, parse_tinker_path, valid_name};
use crate::promise::{FutureKind, Outcome};
use crate::state::{AppState, StoredCustomLoss, lock};
use crate::worker::{Init, ModelWorker, TrainOp, short_id};

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
    let key = (session_id.to_owned(), "model", model_seq_id);
    let mut creations = lock(&state.creations);
    if let Some(previous) = creations.get(&key) {
        return ok(previous.clone());
    }
    let session = require_active_session(state, session_id)?;
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
        .create(request_id.clone(), FutureKind::Training);
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
        session_id.to_owned(),
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

/// The live model `model_id`, or 404.
fn live_model(state: &AppState, model_id: &str) -> ApiResult<Arc<ModelWorker>> {
    lock(&state.models).get(model_id).cloned().ok_or_else(|| {
        if state.store.run(model_id).is_some() {
            ApiError::not_found(format!(
                "model {model_id} is not loaded (its session ended or the server restarted); \
                 create a training client from one of its checkpoints"
            ))
        } else {
            ApiError::not_found(format!("model {model_id} does not exist"))
        }
    })
}

/// The live model of a training request whose session must still be active.
fn training_model(state: &AppState, model_id: &str) -> ApiResult<Arc<ModelWorker>> {
    let worker = live_model(state, model_id)?;
    require_active_session(state, &worker.session_id)?;
    Ok(worker)
}

pub(crate) async fn get_info(State(state): AppStateRef, body: Bytes) -> ApiResult {
    let req: tinker_types::GetInfoRequest = parse(&body)?;
    let worker = live_model(&state, &req.model_id)?;
    reply(&tinker_types::GetInfoResponse {
        model_data: tinker_types::ModelData {
            arch: Some("llama".to_owned()),
            model_name: Some(worker.spec.name.clone()),
            tokenizer_id: Some(worker.spec.tokenizer_dir.to_string_lossy().into_owned()),
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
        "zstd" => {
            zstd::stream::read::Decoder::new(body).and_then(|d| d.take(bound).read_to_end(&mut out))
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
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("json") {
        return Err(ApiError::bad_request(
            "forward_backward takes a protobuf ForwardBackwardRequest (Content-Type: application/x-protobuf)",
        ));
    }
    let raw = decode_body(&headers, &body, state.config.max_body_bytes)?;
    let resolve = |model_id: &str, loss_id: &str| custom_loss_for(&state, model_id, loss_id);
    let req =
        engine_wire::decode_forward_backward(&raw, &resolve).map_err(ApiError::bad_request)?;
    let worker = training_model(&state, &req.model_id)?;
    let op = match req.batch {
        Ok((batch, loss)) => TrainOp::ForwardBackward {
            batch,
            loss,
            forward_only: req.forward_only,
            tokens: req.tokens,
        },
        Err(message) => TrainOp::Reject(message),
    };
    let id = worker
        .submit(&state, req.seq_id, op)
        .map_err(ApiError::bad_request)?;
    ok(future_response(&id, &req.model_id))
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

pub(crate) async fn optim_step(State(state): AppStateRef, body: Bytes) -> ApiResult {
    let req: tinker_types::OptimStepRequest = parse(&body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let worker = training_model(&state, &req.model_id)?;
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
        Ok(step) => {
            let id = worker
                .submit(&state, seq_id, TrainOp::OptimStep(step))
                .map_err(ApiError::bad_request)?;
            ok(future_response(&id, &req.model_id))
        }
        Err(message) => {
            // Consume the seq_id so later requests of this model are not stuck behind it.
            let _ = worker.submit(&state, seq_id, TrainOp::Reject(message.clone()));
            Err(ApiError::bad_request(message))
        }
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

/// Submits `op`, or a rejection carrying `check`'s error (so the `seq_id` is still used).
fn submit_checked(
    state: &Arc<AppState>,
    worker: &ModelWorker,
    seq_id: i64,
    check: Result<(), String>,
    op: impl FnOnce() -> TrainOp,
) -> ApiResult {
    let op = match check {
        Ok(()) => op(),
        Err(message) => TrainOp::Reject(message),
    };
    let id = worker
        .submit(state, seq_id, op)
        .map_err(ApiError::bad_request)?;
    ok(future_response(&id, &worker.model_id))
}

pub(crate) async fn save_weights(State(state): AppStateRef, body: Bytes) -> ApiResult {
    let req: tinker_types::SaveWeightsRequest = parse(&body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let worker = training_model(&state, &req.model_id)?;
    let name = req.path.unwrap_or_else(|| format!("seq-{seq_id}"));
    let ttl = ttl_of(req.ttl_seconds);
    let check = check_name(&name).and(ttl.clone().and_then(check_ttl).map(|_| ()));
    submit_checked(&state, &worker, seq_id, check, || TrainOp::SaveWeights {
        name,
        ttl_seconds: ttl.ok().flatten(),
        overwrite: req.overwrite,
        user_metadata: req.user_metadata,
    })
}

pub(crate) async fn save_weights_for_sampler(State(state): AppStateRef, body: Bytes) -> ApiResult {
    let req: tinker_types::SaveWeightsForSamplerRequest = parse(&body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let worker = training_model(&state, &req.model_id)?;
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
    submit_checked(&state, &worker, seq_id, check, || TrainOp::SaveForSampler {
        name: req.path,
        ttl_seconds: ttl.ok().flatten(),
        user_metadata: req.user_metadata,
        sampling_session_id,
    })
}

pub(crate) async fn save_weights_external(State(state): AppStateRef, body: Bytes) -> ApiResult {
    let req: tinker_types::SaveWeightsExternalRequest = parse(&body)?;
    let seq_id = required_seq_id(req.seq_id)?;
    let worker = training_model(&state, &req.model_id)?;
    let ttl = ttl_of(req.ttl_seconds);
    let mut check = check_name(&req.path).and(ttl.clone().and_then(check_ttl).map(|_| ()));
    if req
        .age_encryption_recipients
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        check = Err("age encryption of exports is not supported by tinker-local".to_owned());
    }
    submit_checked(&state, &worker, seq_id, check, || TrainOp::SaveExternal {
        name: req.path,
        ttl_seconds: ttl.ok().flatten(),
    })
}

/// A readable checkpoint: its run record and directory.
///
/// Who may read a checkpoint (`load_weights`, `copy_weights`, `weights_info`, sampling from
/// it, external-weights URLs):
/// * its owner, always;
/// * anyone, once it is published;
/// * anyone else only with a weights access token of the owning account: a credential this
///   server accepts for that account (its API key, or in JWT mode a JWT minted for it).
///   `copy_weights` takes it in `X-Tinker-Weights-Access-Token` (or the body's
///   `weights_access_token`), `load_weights` in the body's `weights_access_token`.
///
/// A token is only consulted when it is needed; an invalid one, or one of another account,
/// is a 403 that never repeats the token.
pub(crate) fn resolve_checkpoint(
    state: &AppState,
    caller: &Caller,
    path: &str,
    access_token: Option<&str>,
) -> ApiResult<(RunRecord, CheckpointRecord, std::path::PathBuf)> {
    let (run_id, segment, name) = parse_tinker_path(path)
        .ok_or_else(|| ApiError::bad_request(format!("invalid tinker path `{path}`")))?;
    let run = state
        .store
        .run(&run_id)
        .ok_or_else(|| ApiError::not_found(format!("training run {run_id} does not exist")))?;
    let checkpoint_id = format!("{segment}/{name}");
    let record = run
        .checkpoints
        .iter()
        .find(|c| c.checkpoint_id == checkpoint_id)
        .ok_or_else(|| ApiError::not_found(format!("checkpoint {path} does not exist")))?;
    if !record.public && run.model_owner != caller.owner {
        let forbidden = |why: &str| {
            ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                format!("checkpoint {path} belongs to another account and is not published; {why}"),
            )
        };
        let Some(token) = access_token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(forbidden(
                "pass a weights access token of the owning account to read it",
            ));
        };
        match crate::auth::check(state, Some(token)) {
            Ok(grantor) if grantor.owner == run.model_owner => {}
            Ok(_) => {
                return Err(forbidden(
                    "the weights access token belongs to a different account",
                ));
            }
            Err(_) => return Err(forbidden("the weights access token is not valid")),
        }
    }
    let record = record.clone();
    let dir = state.store.checkpoint_dir(&run_id, &checkpoint_id);
    Ok((run, record, dir))
}

pub(crate) async fn load_weights(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::LoadWeightsRequest = parse(&body)?;
    let token = req.weights_access_token.as_ref().map(|t| t.expose());
    let (run, record, dir) = resolve_checkpoint(&state, &caller, &req.path, token)?;
    let has_optimizer = record.has_optimizer;
    let optimizer_problem = (req.optimizer && !has_optimizer).then(|| {
        format!(
            "checkpoint {} has no optimizer state (only `weights/...` checkpoints from save_state do)",
            req.path
        )
    });
    match (&req.model_id, req.seq_id, &req.session_id, req.model_seq_id) {
        (Some(model_id), Some(seq_id), _, _) => {
            let seq_id = wire_int("seq_id", seq_id)?;
            let worker = training_model(&state, model_id)?;
            let mut check = optimizer_problem.map_or(Ok(()), Err);
            if run.base_model != worker.spec.name {
                check = Err(format!(
                    "checkpoint is for {} but model {model_id} is {}",
                    run.base_model, worker.spec.name
                ));
            }
            submit_checked(&state, &worker, seq_id, check, || TrainOp::LoadWeights {
                dir,
                path: req.path.clone(),
                optimizer: req.optimizer,
            })
        }
        (_, _, Some(session_id), Some(model_seq_id)) => {
            let model_seq_id = wire_int("model_seq_id", model_seq_id)?;
            if let Some(problem) = optimizer_problem {
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
pub(crate) async fn create_custom_loss(State(state): AppStateRef, body: Bytes) -> ApiResult {
    if !state.config.custom_loss_server_side {
        return Err(ApiError::bad_request(
            "server-side custom losses are off on this server (custom_loss_server_side is \
             false); forward_backward_custom runs client-side",
        ));
    }
    let req: tinker_types::custom_loss::CreateCustomLossRequest = parse(&body)?;
    let seq = wire_int("custom_loss_seq_id", req.custom_loss_seq_id)?;
    let key = (req.session_id.clone(), "custom_loss", seq);
    let mut creations = lock(&state.creations);
    if let Some(previous) = creations.get(&key) {
        return ok(previous.clone());
    }
    require_active_session(&state, &req.session_id)?;
    let loss_id = format!("{}:loss:{}", req.session_id, req.custom_loss_seq_id);
    let request_id = format!("{loss_id}:{}", short_id());
    let done = state
        .promises
        .create(request_id.clone(), FutureKind::Training);
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

/// The custom loss `loss_id`, if it exists and belongs to `model_id`'s session.
fn custom_loss_for(
    state: &AppState,
    model_id: &str,
    loss_id: &str,
) -> Result<Arc<CustomGraph>, String> {
    let stored = lock(&state.custom_losses).get(loss_id).cloned();
    match stored {
        None => Err(format!(
            "custom loss {loss_id:?} does not exist (create it with create_custom_loss)"
        )),
        Some(s) if !model_id.starts_with(&format!("{}:train:", s.session_id)) => Err(format!(
            "custom loss {loss_id:?} belongs to another session"
        )),
        Some(s) => Ok(s.graph),
    }
}
