//! The HTTP surface: routing, errors, authentication and fault middleware.

mod digest;
mod futures;
mod hub;
mod legacy;
mod owned;
mod rest;
mod sampling;
mod service;
mod training;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::{self, AuthFailure};
use crate::faults::FaultAction;
use crate::state::AppState;

type AppStateRef = State<Arc<AppState>>;

/// An error answer: a status and `{"detail": ...}`; a 400 (the request itself is wrong)
/// also says `"category": "user"`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    pub(crate) detail: String,
    www_authenticate: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            www_authenticate: false,
        }
    }
    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub(crate) fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.status == StatusCode::BAD_REQUEST {
            json!({ "detail": self.detail, "category": "user" })
        } else {
            json!({ "detail": self.detail })
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

impl From<crate::worker::SubmitError> for ApiError {
    fn from(e: crate::worker::SubmitError) -> Self {
        match e {
            crate::worker::SubmitError::TooFarAhead(m) => Self::bad_request(m),
            crate::worker::SubmitError::Conflict(m) => Self::conflict(m),
        }
    }
}

/// Parses a JSON body into a `tinker-types` request: 400 (category user) for invalid JSON
/// or JSON of the wrong shape, naming the offending field's path.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    legacy::tag_chunks(&mut value);
    tinker_types::json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// String metadata from a request's free-form JSON metadata: strings as they are, other
/// values as their JSON text (sessions, runs and checkpoints keep string metadata).
pub(crate) fn string_map(
    map: serde_json::Map<String, serde_json::Value>,
) -> std::collections::BTreeMap<String, String> {
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// A JSON 200 answer.
pub(crate) fn ok(value: serde_json::Value) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

/// A JSON 200 answer built from a `tinker-types` response type.
pub(crate) fn reply<T: serde::Serialize>(value: &T) -> ApiResult {
    let body = tinker_types::json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Builds the router with all routes and middleware.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/client/config", post(service::client_config))
        .route("/client/dynamic_config", post(service::dynamic_config))
        .route("/auth/token", post(service::auth_token))
        .route(
            "/auth/apikey/me",
            get(service::apikey_me).delete(service::apikey_revoke),
        )
        .route("/healthz", get(service::healthz))
        .route("/get_server_capabilities", get(service::capabilities))
        .route("/create_session", post(service::create_session))
        .route("/session_heartbeat", post(service::heartbeat))
        .route(
            "/sessions/{session_id}/finish",
            post(service::finish_session),
        )
        .route("/telemetry", post(service::telemetry))
        .route("/create_model", post(training::create_model))
        .route("/get_info", post(training::get_info))
        .route("/forward_backward", post(training::forward_backward))
        .route("/forward", post(training::forward))
        .route("/unload_model", post(legacy::unload_model))
        .route("/optim_step", post(training::optim_step))
        .route("/save_weights", post(training::save_weights))
        .route(
            "/save_weights_for_sampler",
            post(training::save_weights_for_sampler),
        )
        .route(
            "/save_weights_external",
            post(training::save_weights_external),
        )
        .route("/load_weights", post(training::load_weights))
        .route("/create_custom_loss", post(training::create_custom_loss))
        .route(
            "/create_sampling_session",
            post(sampling::create_sampling_session),
        )
        .route(
            "/join_sampling_session",
            post(sampling::join_sampling_session),
        )
        .route("/samplers/{sampler_id}", get(sampling::get_sampler))
        .route("/asample", post(sampling::asample))
        .route("/retrieve_future", post(futures::retrieve_future))
        .route("/retrieve_futures", post(futures::retrieve_futures))
        .route("/cancel_future", post(futures::cancel_future))
        .merge(rest::routes())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ));
    Router::new()
        .nest("/api/v1", v1)
        .merge(rest::signed_routes())
        .merge(hub::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            inject_faults,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("internal server error").into_response()
            },
        ))
        .with_state(state)
}

/// Rewrites error answers produced outside our handlers (extractor rejections such as a bad
/// query string or path) into the `{"detail": ...}` shape clients expect.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let detail = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Checks `X-API-Key` and stores the [`Caller`] in the request extensions.
async fn authenticate(State(state): AppStateRef, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.ends_with("/healthz") {
        return next.run(req).await;
    }
    let credential = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    // The token exchange and client config always use the underlying credential.
    let raw_only = path.ends_with("/auth/token") || path.ends_with("/client/config");
    let checked = match credential {
        Some(c) if raw_only && !c.starts_with("eyJ") => auth::check_api_key(&state, c),
        other => auth::check(&state, other),
    };
    match checked {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(AuthFailure::Missing(detail)) => {
            ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response()
        }
        Err(AuthFailure::InvalidToken(detail)) => ApiError {
            status: StatusCode::UNAUTHORIZED,
            detail,
            www_authenticate: true,
        }
        .into_response(),
    }
}

/// Applies the fault plan (latency, injected statuses, dropped connections, stalls).
async fn inject_faults(State(state): AppStateRef, req: Request, next: Next) -> Response {
    let (latency, action) = state.faults.decide(req.uri().path());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match action {
        FaultAction::Pass => next.run(req).await,
        FaultAction::Status(status) => {
            tracing::debug!(path = %req.uri().path(), status, "injected fault");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response =
                ApiError::new(status, format!("injected fault ({status})")).into_response();
            if status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert("retry-after-ms", HeaderValue::from_static("100"));
            }
            response
        }
        FaultAction::Drop => {
            tracing::debug!(path = %req.uri().path(), "injected dropped connection");
            let stream = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("injected dropped connection"))
            });
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        FaultAction::Stall(pause) => {
            let response = next.run(req).await;
            let (parts, body) = response.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
                return ApiError::internal("could not buffer the response").into_response();
            };
            let half = bytes.len() / 2;
            let (head, tail) = (bytes.slice(..half), bytes.slice(half..));
            let stream = futures_util::stream::iter([0u8, 1]).then(move |i| {
                let (head, tail) = (head.clone(), tail.clone());
                async move {
                    if i == 0 {
                        Ok::<Bytes, std::io::Error>(head)
                    } else {
                        tokio::time::sleep(pause).await;
                        Ok(tail)
                    }
                }
            });
            let mut parts = parts;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from_stream(stream))
        }
    }
}
