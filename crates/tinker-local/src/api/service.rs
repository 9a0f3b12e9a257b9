//! Client configuration, authentication, sessions, capabilities and telemetry.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, AppStateRef, ok, parse};
use crate::auth::{self, Caller};
use crate::state::{Finish, Session, lock};

pub(crate) async fn client_config(State(state): AppStateRef) -> ApiResult {
    let c = &state.config;
    ok(json!({
        "pjwt_auth_enabled": c.jwt,
        "credential_default_source": "api_key",
        "parallel_fwdbwd_chunks": true,
        "proto_compress_fwdbwd": c.proto_compress_fwdbwd,
        "use_pyqwest_transport": c.use_pyqwest_transport,
        "sample_use_retrieve_futures": c.sample_use_retrieve_futures,
        "custom_loss_server_side": c.custom_loss_server_side,
        "sample_join_sampling_session": c.sample_join_sampling_session,
    }))
}

pub(crate) async fn dynamic_config() -> ApiResult {
    ok(json!({
        "refresh_interval_sec": 300,
        "sample_cancel_enabled": true,
        "sample_cancel_max_batch_size": 64,
    }))
}

pub(crate) async fn auth_token(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
) -> ApiResult {
    if !state.config.jwt {
        return Err(ApiError::not_found(
            "JWT mode is off on this server (start it with --jwt)",
        ));
    }
    ok(json!({ "jwt": auth::mint_jwt(&state, &caller) }))
}

pub(crate) async fn apikey_me(Extension(caller): Extension<Caller>) -> ApiResult {
    ok(json!({
        "key_id": 1,
        "name": "tinker-local",
        "note": "any tml- key is accepted by tinker-local",
        "details": {
            "org_details": { "name": "tinker-local" },
            "user_details": { "email": format!("{}@tinker-local.invalid", caller.owner.replace(':', "-")) },
        },
    }))
}

pub(crate) async fn apikey_revoke() -> ApiResult {
    ok(json!({}))
}

pub(crate) async fn healthz() -> ApiResult {
    ok(json!({ "status": "ok" }))
}

pub(crate) async fn capabilities(State(state): AppStateRef) -> ApiResult {
    let models: Vec<_> = state
        .specs
        .iter()
        .map(|s| {
            json!({
                "model_name": s.name,
                "max_context_length": s.max_context,
                "trainable": true,
                "sampleable": true,
            })
        })
        .collect();
    ok(json!({ "supported_models": models }))
}

#[derive(Deserialize)]
struct CreateSession {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    user_metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    sdk_version: Option<String>,
}

pub(crate) async fn create_session(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: CreateSession = parse(&body)?;
    let id = format!("session-{}", uuid::Uuid::new_v4().simple());
    let now = Utc::now();
    let session = Session {
        id: id.clone(),
        created_at: now,
        tags: req.tags,
        user_metadata: req.user_metadata.unwrap_or_default(),
        project_id: req.project_id,
        display_name: req.display_name,
        owner: caller.owner,
        finished: None,
        last_heartbeat: now,
        training_run_ids: Vec::new(),
        sampler_ids: Vec::new(),
    };
    tracing::info!(session = %id, sdk = ?req.sdk_version, "session created");
    lock(&state.sessions).insert(id.clone(), session);
    state.audit("session_create", None, None, json!({ "session_id": id }));
    ok(json!({
        "type": "create_session",
        "session_id": id,
        "info_message": null,
        "warning_message": null,
        "error_message": null,
    }))
}

#[derive(Deserialize)]
struct Heartbeat {
    session_id: String,
}

pub(crate) async fn heartbeat(State(state): AppStateRef, body: Bytes) -> ApiResult {
    let req: Heartbeat = parse(&body)?;
    let mut sessions = lock(&state.sessions);
    let Some(session) = sessions.get_mut(&req.session_id) else {
        return Err(ApiError::not_found(format!(
            "session {} does not exist",
            req.session_id
        )));
    };
    if session.finished.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("session {} is finished", req.session_id),
        ));
    }
    session.last_heartbeat = Utc::now();
    ok(json!({ "type": "session_heartbeat" }))
}

#[derive(Deserialize)]
struct FinishReason {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct FinishSession {
    reason: FinishReason,
    #[serde(default)]
    detail: Option<String>,
}

pub(crate) async fn finish_session(
    State(state): AppStateRef,
    Path(session_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: FinishSession = parse(&body)?;
    if !matches!(
        req.reason.kind.as_str(),
        "success" | "errored" | "interrupted"
    ) {
        return Err(ApiError::bad_request(format!(
            "unknown finish reason `{}`",
            req.reason.kind
        )));
    }
    {
        let mut sessions = lock(&state.sessions);
        let Some(session) = sessions.get_mut(&session_id) else {
            return Err(ApiError::not_found(format!(
                "session {session_id} does not exist"
            )));
        };
        // The first finish reason wins.
        if session.finished.is_none() {
            session.finished = Some(Finish {
                reason: req.reason.kind.clone(),
                detail: req.detail,
            });
        }
    }
    state.audit(
        "session_finish",
        None,
        None,
        json!({ "session_id": session_id, "reason": req.reason.kind }),
    );
    ok(json!({}))
}

#[derive(Deserialize)]
struct TelemetryBatch {
    events: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    sdk_version: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    process_uuid: Option<String>,
}

pub(crate) async fn telemetry(State(state): AppStateRef, body: Bytes) -> ApiResult {
    let req: TelemetryBatch = parse(&body)?;
    let mut store = lock(&state.telemetry);
    for mut event in req.events {
        event.insert("session_id".into(), json!(req.session_id));
        event.insert("platform".into(), json!(req.platform));
        event.insert("sdk_version".into(), json!(req.sdk_version));
        event.insert("process_uuid".into(), json!(req.process_uuid));
        store.push(serde_json::Value::Object(event));
    }
    ok(json!({ "status": "accepted" }))
}

/// Fails with 400 if the session does not exist or is finished.
pub(crate) fn require_active_session(
    state: &crate::state::AppState,
    session_id: &str,
) -> ApiResult<Session> {
    let sessions = lock(&state.sessions);
    match sessions.get(session_id) {
        None => Err(ApiError::not_found(format!(
            "session {session_id} does not exist"
        ))),
        Some(s) if s.finished.is_some() => Err(ApiError::bad_request(format!(
            "session {session_id} is finished"
        ))),
        Some(s) => Ok(s.clone()),
    }
}
