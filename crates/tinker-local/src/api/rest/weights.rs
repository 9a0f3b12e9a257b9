//! Access to checkpoint weights: their info, copies (across accounts with a weights access
//! token), and the signed external-weights download URLs.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use chrono::Utc;
use serde_json::json;
use tinker_types::{
    CopyWeightsRequest, CopyWeightsResponse, ExternalWeightsUrlsResponse, WeightsInfoRequest,
    WeightsInfoResponse,
};

use super::checkpoints::{MAX_TTL, MIN_TTL, checkpoint_id};
use super::signed::{Signature, base_url, check_signature, signed_query};
use crate::api::owned::{self, Access};
use crate::api::{ApiError, ApiResult, AppStateRef, ok, parse, reply};
use crate::auth::Caller;
use crate::persist::{CheckpointRecord, RunRecord, copy_dir, dir_size, list_files};
use crate::state::lock;

pub(super) async fn external_weights_urls(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((run_id, kind, name)): Path<(String, String, String)>,
) -> ApiResult {
    if kind != "external_weights" {
        return Err(ApiError::bad_request(
            "external_weights_urls only applies to external_weights checkpoints",
        ));
    }
    let path = format!("tinker://{run_id}/{kind}/{name}");
    let (_, _, dir) = owned::checkpoint(&state, &caller, &path, Access::OwnOrPublished)?;
    let base = base_url(&state, &headers);
    let mut urls = BTreeMap::new();
    let mut expires = Utc::now();
    for file in list_files(&dir) {
        let resource = format!("{run_id}/{kind}/{name}/{file}");
        let (query, exp) = signed_query(&state, &resource);
        expires = exp;
        urls.insert(file, format!("{base}/files/{resource}?{query}"));
    }
    reply(&ExternalWeightsUrlsResponse { urls, expires })
}

/// A file of an external-weights export, through a signed URL (no API key).
pub(super) async fn download_file(
    State(state): AppStateRef,
    Path((run_id, kind, name, file)): Path<(String, String, String, String)>,
    Query(sig): Query<Signature>,
) -> ApiResult {
    let resource = format!("{run_id}/{kind}/{name}/{file}");
    check_signature(&state, &resource, &sig)?;
    let id = checkpoint_id(&kind, &name)?;
    let dir = state.store.checkpoint_dir(&run_id, &id);
    // Only files the export lists (no path tricks).
    if !list_files(&dir).contains(&file) {
        return Err(ApiError::not_found("no such file"));
    }
    let bytes = tokio::fs::read(dir.join(&file))
        .await
        .map_err(|e| ApiError::not_found(format!("reading {file}: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response())
}

pub(super) async fn weights_info(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: WeightsInfoRequest = parse(&body)?;
    let (run, _, _) = owned::checkpoint(&state, &caller, &req.tinker_path, Access::OwnOrPublished)?;
    reply(&WeightsInfoResponse {
        base_model: run.base_model.clone(),
        optimizer_config: tinker_types::json::from_value(run.optimizer_config.clone())
            .unwrap_or_default(),
        is_lora: true,
        lora_rank: u32::try_from(run.lora.rank).ok(),
        train_unembed: Some(run.lora.train_unembed),
        train_mlp: Some(run.lora.train_mlp),
        train_attn: Some(run.lora.train_attn),
    })
}

pub(super) async fn copy_weights(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: CopyWeightsRequest = parse(&body)?;
    let idempotency = headers
        .get("x-idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| (format!("copy:{}:{k}", caller.owner), "copy", 0i64));
    if let Some(key) = &idempotency
        && let Some(previous) = lock(&state.creations).get(key)
    {
        return ok(previous.clone());
    }
    // The header is how the SDK sends the token; a token in the body is accepted too.
    let header_token = headers
        .get("x-tinker-weights-access-token")
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::bad_request("X-Tinker-Weights-Access-Token is not valid text")
            })
        })
        .transpose()?;
    let token = header_token.or(req.weights_access_token.as_ref().map(|t| t.expose()));
    let (source, record, dir) =
        owned::checkpoint(&state, &caller, &req.source_path, Access::WithToken(token))?;
    if let Some(t) = req.ttl_seconds
        && !(MIN_TTL..=MAX_TTL).contains(&t)
    {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds must be between {MIN_TTL} and {MAX_TTL}"
        )));
    }
    let run_id = match (&req.session_id, req.model_seq_id) {
        (Some(s), Some(n)) => {
            owned::session(&state, &caller, s)?;
            format!("{s}:train:{n}")
        }
        _ => format!("copy-{}:train:0", uuid::Uuid::new_v4().simple()),
    };
    if state.store.run(&run_id).is_some() {
        return Err(ApiError::conflict(format!(
            "training run {run_id} already exists"
        )));
    }
    let now = Utc::now();
    let run = RunRecord {
        training_run_id: run_id.clone(),
        session_id: req.session_id.clone().unwrap_or_default(),
        base_model: source.base_model.clone(),
        model_owner: caller.owner.clone(),
        lora: source.lora.clone(),
        optimizer_config: source.optimizer_config.clone(),
        created_at: now,
        last_request_time: now,
        user_metadata: source.user_metadata.clone(),
        project_id: req.destination_project_id.clone(),
        corrupted: false,
        checkpoints: Vec::new(),
    };
    state
        .store
        .insert_run(run)
        .map_err(|e| ApiError::internal(format!("creating the copy's run: {e}")))?;
    let staged = state
        .store
        .staging_dir()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    copy_dir(&dir, &staged).map_err(|e| ApiError::internal(format!("copying: {e}")))?;
    let copy = CheckpointRecord {
        checkpoint_id: record.checkpoint_id.clone(),
        time: now,
        size_bytes: dir_size(&staged),
        public: false,
        user_metadata: record.user_metadata.clone(),
        expires_at: req
            .ttl_seconds
            .map(|t| now + chrono::Duration::seconds(t as i64)),
        has_optimizer: record.has_optimizer,
    };
    state
        .store
        .commit_checkpoint(&run_id, &staged, copy)
        .map_err(ApiError::internal)?;
    let path = format!("tinker://{run_id}/{}", record.checkpoint_id);
    state.audit(
        &caller.owner,
        "checkpoint_copy",
        Some(&run_id),
        Some(&path),
        json!({ "source_path": req.source_path }),
    );
    let response = tinker_types::json::to_value(&CopyWeightsResponse { tinker_path: path })
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(key) = idempotency {
        lock(&state.creations).insert(key, response.clone());
    }
    ok(response)
}
