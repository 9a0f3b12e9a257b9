//! Trace exports: a signed URL to a Chrome/Perfetto trace of a session's accounted work.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use tinker_types::{TraceExportResponse, TraceExportStatus};

use super::signed::{Signature, base_url, check_signature, signed_query};
use crate::api::owned;
use crate::api::{ApiResult, AppStateRef, ok, reply};
use crate::auth::Caller;

pub(super) async fn trace_export(
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
pub(super) async fn download_trace(
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
