//! Client configuration, authentication, sessions, capabilities and telemetry.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use tinker_types::{
    ApiKeyDetails, AuthTokenResponse, ClientConfig, CredentialSource, DynamicConfig,
    GetServerCapabilitiesResponse, HealthResponse, OrgDetails, SelfApiKeyResponse, Sensitive,
    SessionFinishReason, SupportedModel, TelemetryResponse, TelemetrySendRequest, UserDetails,
};

use super::{ApiError, ApiResult, AppStateRef, ok, owned, parse, reply};
use crate::auth::{self, Caller};
use crate::state::{Session, lock};

pub(crate) async fn client_config(State(state): AppStateRef) -> ApiResult {
    let c = &state.config;
    // Everything this server does not decide keeps the SDK's default.
    reply(&ClientConfig {
        pjwt_auth_enabled: c.jwt,
        credential_default_source: CredentialSource::ApiKey,
        parallel_fwdbwd_chunks: true,
        proto_compress_fwdbwd: c.proto_compress_fwdbwd,
        use_pyqwest_transport: c.use_pyqwest_transport,
        sample_use_retrieve_futures: c.sample_use_retrieve_futures,
        custom_loss_server_side: c.custom_loss_server_side,
        sample_join_sampling_session: c.sample_join_sampling_session,
        ..ClientConfig::default()
    })
}

pub(crate) async fn dynamic_config() -> ApiResult {
    reply(&DynamicConfig {
        refresh_interval_sec: 300,
        sample_cancel_enabled: true,
        sample_cancel_max_batch_size: 64,
    })
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
    reply(&AuthTokenResponse {
        jwt: Sensitive::new(auth::mint_jwt(&state, &caller)),
    })
}

pub(crate) async fn apikey_me(Extension(caller): Extension<Caller>) -> ApiResult {
    reply(&SelfApiKeyResponse {
        key_id: 1,
        name: "tinker-local".to_owned(),
        note: "any tml- key is accepted by tinker-local".to_owned(),
        details: ApiKeyDetails {
            org_details: OrgDetails {
                name: "tinker-local".to_owned(),
            },
            user_details: UserDetails {
                email: super::rest::user_email(&caller.owner),
            },
        },
    })
}

/// Revokes the API key the request was made with; a JWT cannot revoke its key (the
/// server does not know which key it was exchanged for).
pub(crate) async fn apikey_revoke(
    State(state): AppStateRef,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with("eyJ"))
        .ok_or_else(|| {
            ApiError::bad_request("revoke an API key by sending the key itself in X-API-Key")
        })?;
    state.revoke_key(key);
    ok(json!({}))
}

pub(crate) async fn healthz() -> ApiResult {
    reply(&HealthResponse {
        status: "ok".to_owned(),
    })
}

pub(crate) async fn capabilities(State(state): AppStateRef) -> ApiResult {
    let supported_models = state
        .specs
        .iter()
        .map(|s| SupportedModel {
            model_name: Some(s.name.clone()),
            max_context_length: u64::try_from(s.max_context).ok(),
            trainable: Some(true),
            sampleable: Some(true),
        })
        .collect();
    reply(&GetServerCapabilitiesResponse { supported_models })
}

pub(crate) async fn create_session(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::CreateSessionRequest = parse(&body)?;
    let id = format!("session-{}", uuid::Uuid::new_v4().simple());
    let now = Utc::now();
    let session = Session {
        id: id.clone(),
        created_at: now,
        user_metadata: super::string_map(req.user_metadata),
        project_id: req.project_id,
        display_name: req.display_name,
        owner: caller.owner.clone(),
        ended: None,
        last_heartbeat: now,
        training_run_ids: Vec::new(),
        sampler_ids: Vec::new(),
    };
    tracing::info!(session = %id, sdk = %req.sdk_version, "session created");
    lock(&state.sessions).insert(id.clone(), session);
    state.audit(
        &caller.owner,
        "session_create",
        None,
        None,
        json!({ "session_id": id }),
    );
    reply(&tinker_types::CreateSessionResponse {
        session_id: id,
        info_message: None,
        warning_message: None,
        error_message: None,
    })
}

pub(crate) async fn heartbeat(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::SessionHeartbeatRequest = parse(&body)?;
    owned::session(&state, &caller, &req.session_id)?;
    let mut sessions = lock(&state.sessions);
    let Some(session) = sessions.get_mut(&req.session_id) else {
        return Err(ApiError::not_found(format!(
            "session {} does not exist",
            req.session_id
        )));
    };
    if let Some(end) = &session.ended {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("session {} is finished ({})", req.session_id, end_kind(end)),
        ));
    }
    session.last_heartbeat = Utc::now();
    reply(&tinker_types::SessionHeartbeatResponse {})
}

pub(crate) async fn finish_session(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(session_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::FinishSessionRequest = parse(&body)?;
    if let SessionFinishReason::Unknown(other) = &req.reason.kind {
        return Err(ApiError::bad_request(format!(
            "reason.type: unknown finish reason `{other}` (success, errored or interrupted)"
        )));
    }
    owned::session(&state, &caller, &session_id)?;
    let reason = req.reason.kind.as_str().to_owned();
    // The first end wins (a later finish, or a finish after a cancel, changes nothing).
    state.end_session(
        &session_id,
        tinker_types::SessionStatus::ClientFinished(tinker_types::SessionClientFinished {
            reason: req.reason,
            detail: req.detail,
        }),
    );
    state.audit(
        &caller.owner,
        "session_finish",
        None,
        None,
        json!({ "session_id": session_id, "reason": reason }),
    );
    ok(json!({}))
}

/// Telemetry names a session but does nothing to it: batches are recorded whoever sends
/// them (sessionless clients send ids the server never made), so a session of another
/// account is treated like an unknown one.
///
/// The events of a telemetry batch exactly as sent (the test hook keeps them verbatim,
/// including fields newer SDKs may add).
#[derive(Deserialize)]
struct RawEvents {
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

pub(crate) async fn telemetry(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    // Validate against the SDK's batch type; store the raw events.
    let req: TelemetrySendRequest = parse(&body)?;
    // A batch names one of the caller's sessions, or is a session-less client's
    // (`sessionless-<uuid4>`, protocol §6.12), which names no session at all.
    if !req.session_id.starts_with("sessionless-") {
        owned::session(&state, &caller, &req.session_id)?;
    }
    let raw: RawEvents = parse(&body)?;
    for mut event in raw.events {
        event.insert("session_id".into(), json!(req.session_id));
        event.insert("platform".into(), json!(req.platform));
        event.insert("sdk_version".into(), json!(req.sdk_version));
        event.insert("process_uuid".into(), json!(req.process_uuid));
        state.keep_telemetry_event(serde_json::Value::Object(event));
    }
    reply(&TelemetryResponse {
        status: "accepted".to_owned(),
    })
}

/// How a session ended, for error messages.
pub(crate) fn end_kind(end: &tinker_types::SessionStatus) -> &'static str {
    match end {
        tinker_types::SessionStatus::ClientFinished(_) => "the client finished it",
        tinker_types::SessionStatus::Cancelled(_) => "cancelled",
        tinker_types::SessionStatus::Failed(_) => "failed",
        _ => "ended",
    }
}
