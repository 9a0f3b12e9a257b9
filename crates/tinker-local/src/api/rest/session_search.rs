//! Session search (`POST /sessions/search`): filters, validation and cursor paging.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use tinker_types::{
    SearchOwner, SessionActive, SessionFinishReason, SessionSearchCursor, SessionSearchRequest,
    SessionSearchResponse, SessionStatus, SessionStatusQuery, SessionSummary,
};

use crate::api::owned;
use crate::api::{ApiError, ApiResult, AppStateRef, parse, reply};
use crate::auth::Caller;
use crate::state::{AppState, Session};

/// The status of session `s` (active until it ends).
fn session_status(s: &Session) -> SessionStatus {
    s.ended
        .clone()
        .unwrap_or(SessionStatus::Active(SessionActive {}))
}

/// How many checkpoints the runs of session `s` hold, and their bytes.
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

/// The sessions a search may return, newest first. On tinker-local every account is its
/// own organization, so what the caller may access (`own`, `accessible`) is its account's
/// sessions, and a search by `user` finds only those of the caller's own URN: other
/// accounts' sessions are never listed (their ids would reveal that they exist).
fn searchable_sessions(state: &AppState, caller: &Caller, owner: &SearchOwner) -> Vec<Session> {
    let mut sessions = owned::sessions(state, caller);
    if let SearchOwner::User { owner_urns } = owner {
        sessions.retain(|s| owner_urns.contains(&s.owner));
    }
    sessions
}

pub(super) async fn search_sessions(
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
