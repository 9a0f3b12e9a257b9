//! The caller's sessions: listing them, reading one, assigning its project.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde_json::json;
use tinker_types::{GetSessionResponse, ListSessionsResponse, SetSessionProjectRequest};

use super::{Page, check_scope, paginate};
use crate::api::owned;
use crate::api::{ApiError, ApiResult, AppStateRef, ok, parse, reply};
use crate::auth::Caller;
use crate::state::lock;

pub(super) async fn list_sessions(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> ApiResult {
    check_scope(&page)?;
    let ids: Vec<String> = owned::sessions(&state, &caller)
        .into_iter()
        .map(|s| s.id)
        .collect();
    let (slice, _) = paginate(&ids, &page, 20);
    reply(&ListSessionsResponse { sessions: slice })
}

pub(super) async fn get_session(
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

pub(super) async fn set_project(
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
        &caller.owner,
        "project_assign_session",
        None,
        None,
        json!({ "session_id": session_id, "project_id": req.project_id }),
    );
    ok(json!({}))
}
