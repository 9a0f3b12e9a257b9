//! The future protocol: `retrieve_future` (long poll), `retrieve_futures`, `cancel_future`.

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use tinker_types::{
    CancelFutureRequest, CompleteMetadataResponse, CompletionState, FutureCompletion,
    FutureRetrieveRequest, FuturesRetrieveRequest, FuturesRetrieveResponse, QueueState,
    RequestErrorCategory, RequestFailedResponse, TryAgainResponse,
};

use super::{ApiError, ApiResult, AppStateRef, legacy, ok, owned, parse, reply};
use crate::auth::Caller;
use crate::config::PayloadFault;
use crate::faults;
use crate::promise::{FutureKind, Outcome};

pub(crate) async fn retrieve_future(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: FutureRetrieveRequest = parse(&body)?;
    let Some(mut waiter) = owned::future(&state, &caller, &req.request_id) else {
        return Err(ApiError::not_found(format!(
            "unknown request_id {}",
            req.request_id
        )));
    };
    if let Some(status) = state.faults.poll_fault(waiter.kind == FutureKind::Sample) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::REQUEST_TIMEOUT);
        let body = if status == StatusCode::REQUEST_TIMEOUT {
            json!({ "detail": "injected fault: try again", "queue_state": "active" })
        } else {
            json!({ "detail": "injected fault: the promise expired" })
        };
        return Ok((status, axum::Json(body)).into_response());
    }
    let mut shutdown = state.shutdown_rx.clone();
    if let Some(paused) = state.faults.queue_pause(waiter.kind, &req.request_id) {
        // A paused queue holds the result back (the request itself runs meanwhile).
        let hold = paused.hold.min(state.config.long_poll);
        tokio::select! {
            () = tokio::time::sleep(hold) => {},
            _ = shutdown.wait_for(|s| *s) => {},
        }
        return reply(&TryAgainResponse {
            request_id: req.request_id,
            queue_state: Some(paused.state),
            queue_state_reason: paused.reason,
        });
    }
    let outcome = tokio::select! {
        r = waiter.rx.wait_for(Option::is_some) => r.ok().and_then(|v| v.clone()),
        () = tokio::time::sleep(state.config.long_poll) => None,
        _ = shutdown.wait_for(|s| *s) => None,
    };
    let Some(outcome) = outcome else {
        let reason = queue_reason(&state, &req.request_id);
        return reply(&TryAgainResponse {
            request_id: req.request_id,
            queue_state: Some(QueueState::Active),
            queue_state_reason: Some(reason),
        });
    };
    let limit = state.config.inline_result_limit;
    let metadata_only = match &*outcome {
        Outcome::Proto(bytes) => bytes.len() > limit,
        Outcome::Json(value) => value.to_string().len() > limit,
        Outcome::Failed { .. } => false,
    } && req.allow_metadata_only;
    if !metadata_only
        && !matches!(&*outcome, Outcome::Failed { .. })
        && let Some(fault) = state.faults.take_payload_fault()
    {
        return Ok(damaged_result(&outcome, fault));
    }
    match &*outcome {
        Outcome::Proto(bytes) => {
            if req.allow_metadata_only && bytes.len() > limit {
                return reply(&CompleteMetadataResponse {
                    response_payload_size: bytes.len() as u64,
                });
            }
            if !legacy::accepts_proto(&headers) {
                return legacy::proto_result_as_json(waiter.kind, bytes);
            }
            let mut response = Response::new(axum::body::Body::from(bytes.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            Ok(response)
        }
        Outcome::Json(value) => {
            let text = value.to_string();
            if req.allow_metadata_only && text.len() > limit {
                return reply(&CompleteMetadataResponse {
                    response_payload_size: text.len() as u64,
                });
            }
            Ok((
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                text,
            )
                .into_response())
        }
        Outcome::Failed { error, category } => reply(&RequestFailedResponse {
            error: error.clone(),
            category: RequestErrorCategory::from_wire(category),
        }),
    }
}

/// A result answer damaged by a scripted payload fault (see [`PayloadFault`]).
fn damaged_result(outcome: &Outcome, fault: PayloadFault) -> Response {
    tracing::debug!(?fault, "injected payload fault");
    let (content_type, body) = match (fault, outcome) {
        (PayloadFault::Corrupt, Outcome::Proto(bytes)) => (
            "application/x-protobuf",
            axum::body::Body::from(faults::corrupt_proto(bytes)),
        ),
        (PayloadFault::Corrupt, Outcome::Json(value)) => (
            "application/json",
            axum::body::Body::from(faults::corrupt_json(&value.to_string())),
        ),
        (_, Outcome::Json(value)) => (
            "application/json",
            axum::body::Body::from(faults::wrong_shape(Some(value)).to_string()),
        ),
        _ => (
            "application/json",
            axum::body::Body::from(faults::wrong_shape(None).to_string()),
        ),
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A human-readable queue position for a pending request.
fn queue_reason(state: &crate::state::AppState, request_id: &str) -> String {
    // Training request ids are `<model id>:<seq_id>:<suffix>`.
    let mut parts = request_id.rsplitn(3, ':');
    let (_, seq, model) = (parts.next(), parts.next(), parts.next());
    let worker = model.and_then(|m| crate::state::lock(&state.models).get(m).cloned());
    match (worker, seq.and_then(|s| s.parse::<i64>().ok())) {
        (Some(w), Some(seq)) => {
            let (next, waiting) = w.queue_state();
            if seq >= next {
                format!(
                    "waiting for seq_id {next} of the model ({waiting} requests queued behind the gap)"
                )
            } else {
                "running or queued on the model".to_owned()
            }
        }
        _ => "running".to_owned(),
    }
}

pub(crate) async fn retrieve_futures(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: FuturesRetrieveRequest = parse(&body)?;
    // serde does not check the tag value of a tagged struct: check it here.
    let target_type = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["target"]["type"].as_str().map(str::to_owned));
    if let Some(kind) = target_type.filter(|k| k != "sampling_session") {
        return Err(ApiError::bad_request(format!(
            "target.type: unknown target type `{kind}` (only sampling_session)"
        )));
    }
    let wait = match req.timeout {
        Some(t) if t.is_finite() && t >= 0.0 => Duration::try_from_secs_f64(t)
            .unwrap_or(Duration::MAX)
            .min(state.config.long_poll),
        Some(_) => return Err(ApiError::bad_request("timeout: must be >= 0")),
        None => state.config.long_poll,
    };
    let clone_id = i64::try_from(req.target.cloned_sampler_id)
        .map_err(|_| ApiError::bad_request("target.cloned_sampler_id: too large"))?;
    owned::sampler(&state, &caller, &req.target.sampling_session_id)?;
    let group = (req.target.sampling_session_id, clone_id);
    let mut completions = state.promises.completions();
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = state.shutdown_rx.clone();
    let found = loop {
        completions.borrow_and_update();
        let found = state.promises.completed_in_group(&group, req.prev_cursor);
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::select! {
            r = completions.changed() => if r.is_err() { break found },
            () = tokio::time::sleep_until(deadline) => {},
            _ = shutdown.wait_for(|s| *s) => break found,
        }
    };
    let cursor = found.last().map_or(req.prev_cursor, |c| c.cursor);
    let completions: Vec<FutureCompletion> = found
        .iter()
        .map(|c| FutureCompletion {
            state: if c.failed {
                CompletionState::Failed
            } else {
                CompletionState::Finished
            },
            request_id: c.request_id.clone(),
            response_payload_uncompressed_size: (!c.failed).then_some(c.size as u64),
        })
        .collect();
    crate::state::lock(&state.futures_polls).push(crate::state::FuturesPoll {
        sampling_session_id: group.0,
        cloned_sampler_id: group.1,
        prev_cursor: req.prev_cursor,
        timeout: req.timeout,
        retrieved_request_ids: req.retrieved_request_ids,
        cursor,
        completed: found.iter().map(|c| c.request_id.clone()).collect(),
    });
    reply(&FuturesRetrieveResponse {
        completions,
        cursor,
    })
}

pub(crate) async fn cancel_future(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: CancelFutureRequest = parse(&body)?;
    crate::state::lock(&state.cancel_requests).push(req.request_id.clone());
    // Only sampling requests are cancellable: a training request keeps its place in the
    // model's sequence and always runs. Another account's request is unknown: not cancelled.
    let is_sample = owned::future(&state, &caller, &req.request_id)
        .is_some_and(|w| w.kind == FutureKind::Sample);
    let cancelled = is_sample && state.promises.cancel(&req.request_id);
    ok(json!({ "request_id": req.request_id, "cancelled": cancelled }))
}
