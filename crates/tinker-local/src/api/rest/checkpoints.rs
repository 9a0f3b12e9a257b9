//! Checkpoints of training runs: listing them, deleting them, publishing and unpublishing,
//! and their time to live.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde_json::json;
use tinker_types::{Checkpoint, CheckpointType, CheckpointsListResponse, SetCheckpointTtlRequest};

use super::runs::visible_run;
use super::{Page, paginate};
use crate::api::owned;
use crate::api::{ApiError, ApiResult, AppStateRef, ok, parse, reply};
use crate::auth::Caller;
use crate::persist::{CheckpointRecord, RunRecord, valid_name};
use crate::state::AppState;

/// Longest TTL accepted (10 years).
pub(super) const MAX_TTL: u64 = 10 * 365 * 24 * 3600;
/// Shortest TTL accepted (1 hour).
pub(super) const MIN_TTL: u64 = 3600;

/// The wire form of checkpoint `c` of run `run_id`.
pub(super) fn checkpoint_of(run_id: &str, c: &CheckpointRecord) -> Checkpoint {
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

/// The checkpoints of `run` the caller may see, newest first.
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

pub(super) async fn run_checkpoints(
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

pub(super) async fn list_checkpoints(
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

/// The checkpoint id `<kind>/<name>` of a URL's path segments; 400 if they are not valid.
pub(super) fn checkpoint_id(kind: &str, name: &str) -> ApiResult<String> {
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

pub(super) async fn delete_checkpoint(
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
    state.audit(
        &caller.owner,
        "checkpoint_delete",
        Some(&run_id),
        Some(&path),
        json!({}),
    );
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
    state.audit(&caller.owner, event, Some(&run_id), Some(&path), json!({}));
    ok(json!({}))
}

pub(super) async fn publish(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult {
    set_public(&state, &caller, ids, true).await
}

pub(super) async fn unpublish(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult {
    set_public(&state, &caller, ids, false).await
}

pub(super) async fn set_ttl(
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
        &caller.owner,
        "checkpoint_set_ttl",
        Some(&run_id),
        Some(&path),
        json!({ "ttl_seconds": req.ttl_seconds }),
    );
    ok(json!({}))
}
