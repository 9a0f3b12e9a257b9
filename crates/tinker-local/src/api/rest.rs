//! The REST catalogue: training runs, checkpoints, sessions, weights info, copies, exports,
//! billing and audit.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Timelike, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::owned::{self, Access};
use tinker_types::{
    AuditLogEntry, AuditLogResponse, BillingEventInfo, BillingUsageEvent, BillingUsageQuery,
    BillingUsageResponse, BillingUsageSession, Checkpoint, CheckpointBillingEvent, CheckpointType,
    CheckpointsListResponse, CopyWeightsRequest, CopyWeightsResponse,
    CurrentCheckpointStorageUsageItem, CurrentCheckpointStorageUsageQuery,
    CurrentCheckpointStorageUsageResponse, Cursor, ExternalWeightsUrlsResponse, GetSessionResponse,
    ListSessionsResponse, SamplingPrefillBillingEvent, SamplingSampleBillingEvent, SearchOwner,
    SessionActive, SessionFinishReason, SessionSearchCursor, SessionSearchRequest,
    SessionSearchResponse, SessionStatus, SessionStatusQuery, SessionSummary,
    SetCheckpointTtlRequest, SetSessionProjectRequest, StorageBillingEvent, TraceExportResponse,
    TraceExportStatus, TrainingBillingEvent, TrainingRun, TrainingRunsResponse, WeightsInfoRequest,
    WeightsInfoResponse,
};

use super::{ApiError, ApiResult, AppStateRef, ok, parse, reply};
use crate::auth::Caller;
use crate::persist::{CheckpointRecord, RunRecord, copy_dir, dir_size, list_files, valid_name};
use crate::state::{AppState, Session, lock};

/// Longest TTL accepted (10 years).
const MAX_TTL: u64 = 10 * 365 * 24 * 3600;
/// Shortest TTL accepted (1 hour).
const MIN_TTL: u64 = 3600;

fn checkpoint_of(run_id: &str, c: &CheckpointRecord) -> Checkpoint {
    Checkpoint {
        checkpoint_id: c.checkpoint_id.clone(),
        checkpoint_type: CheckpointType::from_wire(c.checkpoint_type()),
        time: c.time,
        tinker_path: format!("tinker://{run_id}/{}", c.checkpoint_id),
        size_bytes: Some(c.size_bytes),
        public: c.public,
        user_metadata: c.user_metadata.clone(),
        expires_at: c.expires_at,
    }
}

fn training_run_of(run: &RunRecord) -> TrainingRun {
    let latest = |kind: &str| {
        run.checkpoints
            .iter()
            .filter(|c| c.checkpoint_type() == kind)
            .max_by_key(|c| c.time)
            .map(|c| checkpoint_of(&run.training_run_id, c))
    };
    TrainingRun {
        training_run_id: run.training_run_id.clone(),
        base_model: run.base_model.clone(),
        model_owner: run.model_owner.clone(),
        is_lora: true,
        corrupted: run.corrupted,
        lora_rank: u32::try_from(run.lora.rank).ok(),
        last_request_time: run.last_request_time,
        last_checkpoint: latest("training"),
        last_sampler_checkpoint: latest("sampler"),
        user_metadata: run.user_metadata.clone(),
    }
}

#[derive(Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    access_scope: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
}

fn paginate<T: Clone>(items: &[T], page: &Page, default_limit: usize) -> (Vec<T>, Cursor) {
    let offset = page.offset.unwrap_or(0);
    let limit = match page.limit {
        None => default_limit,
        Some(0) => items.len(),
        Some(l) => l,
    };
    let slice: Vec<T> = items.iter().skip(offset).take(limit).cloned().collect();
    let cursor = Cursor {
        offset: offset as u64,
        limit: limit as u64,
        total_count: items.len() as u64,
    };
    (slice, cursor)
}

fn check_scope(page: &Page) -> ApiResult<()> {
    match page.access_scope.as_deref() {
        None | Some("owned") | Some("accessible") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "access_scope must be owned or accessible, got `{other}`"
        ))),
    }
}

pub(crate) async fn list_runs(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> ApiResult {
    check_scope(&page)?;
    let mut runs: Vec<RunRecord> = state
        .store
        .runs()
        .into_iter()
        .filter(|r| owned::run_visible(r, &caller, page.access_scope.as_deref()))
        .filter(|r| {
            page.project_id
                .as_ref()
                .is_none_or(|p| r.project_id.as_ref() == Some(p))
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let (slice, cursor) = paginate(&runs, &page, 20);
    reply(&TrainingRunsResponse {
        training_runs: slice.iter().map(training_run_of).collect(),
        cursor,
    })
}

fn visible_run(
    state: &AppState,
    caller: &Caller,
    run_id: &str,
    scope: Option<&str>,
) -> ApiResult<RunRecord> {
    state
        .store
        .run(run_id)
        .filter(|r| owned::run_visible(r, caller, scope.or(Some("accessible"))))
        .ok_or_else(|| ApiError::not_found(format!("training run {run_id} does not exist")))
}

pub(crate) async fn get_run(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(run_id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult {
    check_scope(&page)?;
    let run = visible_run(&state, &caller, &run_id, page.access_scope.as_deref())?;
    reply(&training_run_of(&run))
}

fn sorted_checkpoints(run: &RunRecord, caller: &Caller) -> Vec<Checkpoint> {
    let mut list: Vec<&CheckpointRecord> = run
        .checkpoints
        .iter()
        .filter(|c| owned::checkpoint_visible(run, c, caller))
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.time));
    list.iter()
        .map(|c| checkpoint_of(&run.training_run_id, c))
        .collect()
}

pub(crate) async fn run_checkpoints(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(run_id): Path<String>,
) -> ApiResult {
    let run = visible_run(&state, &caller, &run_id, None)?;
    reply(&CheckpointsListResponse {
        checkpoints: sorted_checkpoints(&run, &caller),
        cursor: None,
    })
}

pub(crate) async fn list_checkpoints(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> ApiResult {
    let mut all: Vec<(DateTime<Utc>, Checkpoint)> = state
        .store
        .runs()
        .iter()
        .filter(|r| r.model_owner == caller.owner)
        .flat_map(|r| {
            r.checkpoints
                .iter()
                .map(|c| (c.time, checkpoint_of(&r.training_run_id, c)))
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_by_key(|c| std::cmp::Reverse(c.0));
    let values: Vec<Checkpoint> = all.into_iter().map(|(_, v)| v).collect();
    let (slice, cursor) = paginate(&values, &page, 100);
    reply(&CheckpointsListResponse {
        checkpoints: slice,
        cursor: Some(cursor),
    })
}

fn checkpoint_id(kind: &str, name: &str) -> ApiResult<String> {
    if !matches!(kind, "weights" | "sampler_weights" | "external_weights") || !valid_name(name) {
        return Err(ApiError::bad_request(format!(
            "invalid checkpoint id `{kind}/{name}`"
        )));
    }
    Ok(format!("{kind}/{name}"))
}

/// Applies `f` to one of the caller's checkpoints.
fn update_checkpoint(
    state: &AppState,
    caller: &Caller,
    run_id: &str,
    kind: &str,
    name: &str,
    f: impl FnOnce(&mut CheckpointRecord) -> ApiResult<()>,
) -> ApiResult<()> {
    let id = checkpoint_id(kind, name)?;
    owned::run(state, caller, run_id)?;
    let mut outcome = Ok(());
    let found = state
        .store
        .update_run(run_id, |run| {
            let Some(c) = run.checkpoints.iter_mut().find(|c| c.checkpoint_id == id) else {
                return Ok(false);
            };
            outcome = f(c);
            Ok(true)
        })
        .map_err(ApiError::internal)?;
    if found != Some(true) {
        return Err(ApiError::not_found(format!(
            "checkpoint tinker://{run_id}/{id} does not exist"
        )));
    }
    outcome
}

pub(crate) async fn delete_checkpoint(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path((run_id, kind, name)): Path<(String, String, String)>,
) -> ApiResult {
    let id = checkpoint_id(&kind, &name)?;
    owned::run(&state, &caller, &run_id)?;
    if !state
        .store
        .delete_checkpoint(&run_id, &id)
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found(format!(
            "checkpoint tinker://{run_id}/{id} does not exist"
        )));
    }
    let path = format!("tinker://{run_id}/{id}");
    state.audit("checkpoint_delete", Some(&run_id), Some(&path), json!({}));
    ok(json!({}))
}

async fn set_public(
    state: &AppState,
    caller: &Caller,
    (run_id, kind, name): (String, String, String),
    public: bool,
) -> ApiResult {
    update_checkpoint(state, caller, &run_id, &kind, &name, |c| {
        if c.public == public {
            return Err(ApiError::conflict(if public {
                "checkpoint is already public"
            } else {
                "checkpoint is already private"
            }));
        }
        c.public = public;
        Ok(())
    })?;
    let path = format!("tinker://{run_id}/{kind}/{name}");
    let event = if public {
        "checkpoint_publish"
    } else {
        "checkpoint_unpublish"
    };
    state.audit(event, Some(&run_id), Some(&path), json!({}));
    ok(json!({}))
}

pub(crate) async fn publish(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult {
    set_public(&state, &caller, ids, true).await
}

pub(crate) async fn unpublish(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult {
    set_public(&state, &caller, ids, false).await
}

pub(crate) async fn set_ttl(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path((run_id, kind, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let req: SetCheckpointTtlRequest = parse(&body)?;
    let expires_at = match req.ttl_seconds {
        None => None,
        Some(t) if (MIN_TTL..=MAX_TTL).contains(&t) => {
            Some(Utc::now() + chrono::Duration::seconds(t as i64))
        }
        Some(t) => {
            return Err(ApiError::bad_request(format!(
                "ttl_seconds must be between {MIN_TTL} and {MAX_TTL}, got {t}"
            )));
        }
    };
    update_checkpoint(&state, &caller, &run_id, &kind, &name, |c| {
        c.expires_at = expires_at;
        Ok(())
    })?;
    let path = format!("tinker://{run_id}/{kind}/{name}");
    state.audit(
        "checkpoint_set_ttl",
        Some(&run_id),
        Some(&path),
        json!({ "ttl_seconds": req.ttl_seconds }),
    );
    ok(json!({}))
}

/// `http://<host>` of the request, for self-referencing URLs.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.config.addr.to_string());
    format!("http://{host}")
}

fn signed_query(state: &AppState, resource: &str) -> (String, DateTime<Utc>) {
    let lifetime = chrono::Duration::from_std(state.config.signed_url_lifetime)
        .unwrap_or(chrono::Duration::hours(1));
    let expires = Utc::now() + lifetime;
    let exp = expires.timestamp();
    let sig = state.sign(&format!("url:{resource}:{exp}"));
    (format!("expires={exp}&sig={sig}"), expires)
}

#[derive(Deserialize)]
pub(crate) struct Signature {
    expires: i64,
    sig: String,
}

fn check_signature(state: &AppState, resource: &str, s: &Signature) -> ApiResult<()> {
    if state.sign(&format!("url:{resource}:{}", s.expires)) != s.sig {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid signature"));
    }
    if s.expires < Utc::now().timestamp() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the signed URL has expired",
        ));
    }
    Ok(())
}

pub(crate) async fn external_weights_urls(
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

pub(crate) async fn download_file(
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

pub(crate) async fn weights_info(
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

pub(crate) async fn copy_weights(
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

fn own_sessions(state: &AppState, caller: &Caller) -> Vec<Session> {
    let mut sessions: Vec<Session> = lock(&state.sessions)
        .values()
        .filter(|s| s.owner == caller.owner)
        .cloned()
        .collect();
    sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    sessions
}

pub(crate) async fn list_sessions(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> ApiResult {
    check_scope(&page)?;
    let ids: Vec<String> = own_sessions(&state, &caller)
        .into_iter()
        .map(|s| s.id)
        .collect();
    let (slice, _) = paginate(&ids, &page, 20);
    reply(&ListSessionsResponse { sessions: slice })
}

pub(crate) async fn get_session(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(session_id): Path<String>,
) -> ApiResult {
    let s = owned::session(&state, &caller, &session_id)?;
    reply(&GetSessionResponse {
        training_run_ids: s.training_run_ids,
        sampler_ids: s.sampler_ids,
        user_metadata: Some(s.user_metadata),
        display_name: s.display_name,
    })
}

pub(crate) async fn set_project(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(session_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: SetSessionProjectRequest = parse(&body)?;
    if req.project_id.is_empty() {
        return Err(ApiError::bad_request("project_id must not be empty"));
    }
    owned::session(&state, &caller, &session_id)?;
    if let Some(s) = lock(&state.sessions).get_mut(&session_id) {
        s.project_id = Some(req.project_id.clone());
    }
    state.audit(
        "project_assign_session",
        None,
        None,
        json!({ "session_id": session_id, "project_id": req.project_id }),
    );
    ok(json!({}))
}

fn session_status(s: &Session) -> SessionStatus {
    s.ended
        .clone()
        .unwrap_or(SessionStatus::Active(SessionActive {}))
}

fn session_storage(state: &AppState, s: &Session) -> (usize, u64) {
    let runs = state.store.runs();
    runs.iter()
        .filter(|r| r.session_id == s.id)
        .flat_map(|r| r.checkpoints.iter())
        .fold((0, 0), |(n, b), c| (n + 1, b + c.size_bytes))
}

/// The project reported for a session created without one.
const DEFAULT_PROJECT_ID: &str = "default";

/// Whether session `s` has a status the query asks for. `cancelled` and `failed` are
/// server-side ends (an operator's cancel; a request that failed on the server), distinct
/// from how the client finished (`client_finished` with reasons success, errored or
/// interrupted).
fn status_matches(s: &Session, q: &SessionStatusQuery) -> bool {
    match (&s.ended, q) {
        (None, SessionStatusQuery::Active) => true,
        (Some(SessionStatus::Cancelled(_)), SessionStatusQuery::Cancelled) => true,
        (Some(SessionStatus::Failed(_)), SessionStatusQuery::Failed) => true,
        (
            Some(SessionStatus::ClientFinished(f)),
            SessionStatusQuery::ClientFinished { reasons },
        ) => reasons.as_ref().is_none_or(|r| r.contains(&f.reason.kind)),
        _ => false,
    }
}

/// Checks what pydantic would refuse in the SDK's own request model.
fn check_search(req: &SessionSearchRequest) -> ApiResult<()> {
    if !(1..=200).contains(&req.limit) {
        return Err(ApiError::bad_request("limit: must be in 1..=200"));
    }
    if req.display_name.as_deref() == Some("") {
        return Err(ApiError::bad_request("display_name: must not be empty"));
    }
    if req.statuses.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::bad_request("statuses: give at least one status"));
    }
    for q in req.statuses.iter().flatten() {
        if let SessionStatusQuery::ClientFinished { reasons: Some(r) } = q {
            if r.is_empty() {
                return Err(ApiError::bad_request(
                    "statuses.reasons: give at least one reason",
                ));
            }
            if let Some(bad) = r
                .iter()
                .find(|x| matches!(x, SessionFinishReason::Unknown(_)))
            {
                return Err(ApiError::bad_request(format!(
                    "statuses.reasons: unknown finish reason `{bad}`"
                )));
            }
        }
    }
    match &req.owner {
        SearchOwner::User { owner_urns } if !(1..=10).contains(&owner_urns.len()) => Err(
            ApiError::bad_request("owner.owner_urns: give 1 to 10 user URNs"),
        ),
        _ => Ok(()),
    }
}

/// The sessions a search may return, newest first. Every caller of a tinker-local server
/// is in the same organization, so `accessible` covers every session and a search by
/// `user` returns the listed owners' sessions.
fn searchable_sessions(state: &AppState, caller: &Caller, owner: &SearchOwner) -> Vec<Session> {
    let mut sessions: Vec<Session> = lock(&state.sessions)
        .values()
        .filter(|s| match owner {
            SearchOwner::User { owner_urns } => owner_urns.contains(&s.owner),
            SearchOwner::Accessible => true,
            _ => s.owner == caller.owner,
        })
        .cloned()
        .collect();
    sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    sessions
}

pub(crate) async fn search_sessions(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: SessionSearchRequest = parse(&body)?;
    check_search(&req)?;
    let words: Vec<String> = req
        .display_name
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let mut matched: Vec<Session> = searchable_sessions(&state, &caller, &req.owner)
        .into_iter()
        .filter(|s| {
            let by_id = req.session_id.as_ref().is_some_and(|id| *id == s.id);
            let by_name = !words.is_empty()
                && s.display_name.as_ref().is_some_and(|n| {
                    let n = n.to_lowercase();
                    words.iter().all(|w| n.contains(w.as_str()))
                });
            let identity = (req.session_id.is_none() && words.is_empty()) || by_id || by_name;
            identity
                && req.project_ids.as_ref().is_none_or(|p| {
                    p.iter().any(|id| {
                        s.project_id.as_deref().unwrap_or(DEFAULT_PROJECT_ID) == id.as_str()
                    })
                })
                && req
                    .user_metadata
                    .iter()
                    .all(|(k, v)| s.user_metadata.get(k) == Some(v))
                && req
                    .statuses
                    .as_ref()
                    .is_none_or(|qs| qs.iter().any(|q| status_matches(s, q)))
        })
        .collect();
    if let Some(c) = &req.cursor {
        matched.retain(|s| {
            (s.created_at, s.id.as_str()) < (c.last_created_at, c.last_session_id.as_str())
        });
    }
    let limit = req.limit as usize;
    let more = matched.len() > limit;
    matched.truncate(limit);
    let next_cursor = if more {
        matched.last().map(|s| SessionSearchCursor {
            last_created_at: s.created_at,
            last_session_id: s.id.clone(),
        })
    } else {
        None
    };
    let sessions = matched
        .iter()
        .map(|s| {
            let (count, bytes) = session_storage(&state, s);
            SessionSummary {
                session_id: s.id.clone(),
                created_at: s.created_at,
                owner: s.owner.clone(),
                // SessionSummary.project_id is required (SDK 0.38): the service puts every
                // session in a project; a session created without one is in the default.
                project_id: s
                    .project_id
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PROJECT_ID.to_owned()),
                status: Some(session_status(s)),
                checkpoints_count: count as u64,
                display_name: s.display_name.clone(),
                user_metadata: Some(s.user_metadata.clone()),
                checkpoint_storage_bytes: Some(bytes),
            }
        })
        .collect();
    reply(&SessionSearchResponse {
        sessions,
        next_cursor,
    })
}

pub(crate) async fn trace_export(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(session_id): Path<String>,
) -> ApiResult {
    owned::session(&state, &caller, &session_id)?;
    let resource = format!("trace:{session_id}");
    let (query, _) = signed_query(&state, &resource);
    let url = format!("{}/traces/{session_id}?{query}", base_url(&state, &headers));
    reply(&TraceExportResponse {
        status: TraceExportStatus::Ready,
        url: Some(url),
        error: None,
    })
}

/// A Chrome/Perfetto JSON trace of the session's accounted work.
pub(crate) async fn download_trace(
    State(state): AppStateRef,
    Path(session_id): Path<String>,
    Query(sig): Query<Signature>,
) -> ApiResult {
    check_signature(&state, &format!("trace:{session_id}"), &sig)?;
    let events: Vec<Value> = state
        .usage_records()
        .iter()
        .filter(|u| u.session_id == session_id)
        .map(|u| {
            json!({
                "name": u.kind,
                "ph": "i",
                "s": "p",
                "ts": u.time.timestamp_micros(),
                "pid": 1,
                "tid": 1,
                "args": { "count": u.count, "base_model": u.base_model },
            })
        })
        .collect();
    ok(json!({ "traceEvents": events, "displayTimeUnit": "ms" }))
}

fn hour_aligned(t: &DateTime<Utc>) -> bool {
    t.minute() == 0 && t.second() == 0 && t.nanosecond() == 0
}

fn hour_start(t: &DateTime<Utc>) -> DateTime<Utc> {
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(*t)
}

/// The display name of an owner URN (`tml:user:local-…` → `local-…`).
pub(crate) fn user_name(owner: &str) -> String {
    owner.strip_prefix("tml:user:").unwrap_or(owner).to_owned()
}

/// The (undeliverable) e-mail address tinker-local reports for an owner.
pub(crate) fn user_email(owner: &str) -> String {
    format!("{}@tinker-local.invalid", owner.replace(':', "-"))
}

/// Gigabyte-hours each of the caller's checkpoints held in each hour bucket of
/// `[start, end)`, keyed by `(bucket, session, base model)`. A checkpoint counts from its
/// creation until it expires (or until now); deleted checkpoints leave the store and with
/// them their past storage (tinker-local keeps no deletion history).
fn storage_buckets(
    state: &AppState,
    owner: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> BTreeMap<(DateTime<Utc>, String, String), f64> {
    let now = Utc::now();
    let end = end.min(now);
    let mut buckets = BTreeMap::new();
    for run in state.store.runs() {
        if run.model_owner != owner {
            continue;
        }
        for c in &run.checkpoints {
            let (from, to) = (c.time, c.expires_at.unwrap_or(now).min(now));
            let mut bucket = hour_start(&from.max(start));
            while bucket < end && bucket < to {
                let next = bucket + chrono::Duration::hours(1);
                let overlap = to.min(next) - from.max(bucket);
                let hours = overlap.num_milliseconds().max(0) as f64 / 3_600_000.0;
                if hours > 0.0 {
                    *buckets
                        .entry((bucket, run.session_id.clone(), run.base_model.clone()))
                        .or_insert(0.0) += hours * c.size_bytes as f64 / 1e9;
                }
                bucket = next;
            }
        }
    }
    buckets
}

pub(crate) async fn billing_events(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BillingUsageQuery>,
) -> ApiResult {
    if !hour_aligned(&q.starting_on) || !hour_aligned(&q.ending_before) {
        return Err(ApiError::bad_request(
            "starting_on, ending_before: bounds must be aligned to the hour (UTC)",
        ));
    }
    if q.ending_before <= q.starting_on
        || q.ending_before - q.starting_on > chrono::Duration::days(14)
    {
        return Err(ApiError::bad_request(
            "ending_before: must be after starting_on and at most 14 days later",
        ));
    }
    if q.starting_on > Utc::now() {
        return Err(ApiError::bad_request("starting_on: is in the future"));
    }
    let sessions = lock(&state.sessions).clone();
    let mut buckets: BTreeMap<(DateTime<Utc>, String, String, String), u64> = BTreeMap::new();
    for u in state.usage_records() {
        let own = sessions
            .get(&u.session_id)
            .is_some_and(|s| s.owner == caller.owner);
        if own && u.time >= q.starting_on && u.time < q.ending_before {
            *buckets
                .entry((hour_start(&u.time), u.session_id, u.base_model, u.kind))
                .or_default() += u.count;
        }
    }
    let event = |start: DateTime<Utc>, session_id: String, base_model: String, info| {
        let session = sessions.get(&session_id);
        BillingUsageEvent {
            bucket_start: start,
            bucket_end: start + chrono::Duration::hours(1),
            base_model: Some(base_model),
            user_id: Some(caller.owner.clone()),
            user_name: Some(user_name(&caller.owner)),
            project_id: session.and_then(|s| s.project_id.clone()),
            session_id: (!session_id.is_empty()).then_some(session_id),
            estimated_cost_usd: Some(0.0),
            effective_rate_usd_per_million_tokens: Some(0.0),
            effective_rate_usd_per_gigabyte_month: None,
            event_info: info,
        }
    };
    let mut data: Vec<BillingUsageEvent> = buckets
        .into_iter()
        .map(|((start, session_id, base_model, kind), count)| {
            let info = match kind.as_str() {
                "sampling_prefill" => {
                    BillingEventInfo::SamplingPrefill(SamplingPrefillBillingEvent {
                        cached: false,
                        token_count: count,
                    })
                }
                "sampling_sample" => BillingEventInfo::SamplingSample(SamplingSampleBillingEvent {
                    token_count: count,
                }),
                "checkpoint" => BillingEventInfo::Checkpoint(CheckpointBillingEvent { count }),
                _ => BillingEventInfo::Training(TrainingBillingEvent { token_count: count }),
            };
            event(start, session_id, base_model, info)
        })
        .collect();
    for ((start, session_id, base_model), gigabyte_hours) in
        storage_buckets(&state, &caller.owner, q.starting_on, q.ending_before)
    {
        let mut e = event(
            start,
            session_id,
            base_model,
            BillingEventInfo::Storage(StorageBillingEvent {
                free: false,
                gigabyte_hours,
            }),
        );
        e.effective_rate_usd_per_million_tokens = None;
        e.effective_rate_usd_per_gigabyte_month = Some(0.0);
        data.push(e);
    }
    data.sort_by_key(|e| e.bucket_start);
    let session_meta = data
        .iter()
        .filter_map(|e| e.session_id.clone())
        .map(|id| {
            let user_metadata = sessions.get(&id).map(|s| s.user_metadata.clone());
            (id, BillingUsageSession { user_metadata })
        })
        .collect();
    reply(&BillingUsageResponse {
        data,
        sessions: session_meta,
        cost_data_through: Some(Utc::now()),
    })
}

pub(crate) async fn billing_storage(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(q): Query<CurrentCheckpointStorageUsageQuery>,
) -> ApiResult {
    let mut by_project: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for run in state.store.runs() {
        if run.model_owner != caller.owner
            || q.project_id
                .as_ref()
                .is_some_and(|p| run.project_id.as_ref() != Some(p))
        {
            continue;
        }
        let entry = by_project.entry(run.project_id.clone()).or_default();
        for c in &run.checkpoints {
            entry.0 += 1;
            entry.1 += c.size_bytes;
        }
    }
    let data = by_project
        .into_iter()
        .map(
            |(project_id, (count, bytes))| CurrentCheckpointStorageUsageItem {
                project_id,
                org_user_urn: Some(caller.owner.clone()),
                user_email: Some(user_email(&caller.owner)),
                user_name: Some(user_name(&caller.owner)),
                checkpoint_count: count,
                size_bytes: bytes,
                size_gigabytes: bytes as f64 / 1e9,
                estimated_monthly_cost_usd: Some(0.0),
            },
        )
        .collect();
    reply(&CurrentCheckpointStorageUsageResponse {
        effective_rate_usd_per_gigabyte_month: Some(0.0),
        data,
    })
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    day: Option<String>,
}

pub(crate) async fn audit_log(State(state): AppStateRef, Query(q): Query<AuditQuery>) -> ApiResult {
    let prefix = match q.event_type.as_deref().unwrap_or("all") {
        "all" => "",
        "checkpoints" => "checkpoint_",
        "projects" => "project_",
        "teams" => "team_",
        "organizations" => "organization_",
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown event_type `{other}`"
            )));
        }
    };
    let day = match &q.day {
        None => None,
        Some(d) => Some(
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::bad_request("day must be YYYY-MM-DD"))?,
        ),
    };
    let mut entries: Vec<AuditLogEntry> = state
        .audit_records()
        .into_iter()
        .filter(|a| a.event.starts_with(prefix))
        .filter(|a| day.is_none_or(|d| a.timestamp.date_naive() == d))
        .map(|a| AuditLogEntry {
            timestamp: a.timestamp,
            event: a.event,
            event_details: match a.event_details {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            model_id: a.model_id,
            tinker_path: a.tinker_path,
            purpose: None,
        })
        .collect();
    entries.sort_by_key(|a| a.timestamp);
    reply(&AuditLogResponse { entries })
}
