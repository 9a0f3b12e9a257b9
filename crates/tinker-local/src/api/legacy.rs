//! What older clients send and expect (official SDK ≤ 0.24 and the Elixir SDK tinkex, which
//! speaks the 0.15 wire): JSON training requests, `POST /api/v1/forward`, `unload_model`, and
//! JSON results for clients that do not ask for protobuf. See `docs/protocol.md`, "Older
//! clients".

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::{ApiError, ApiResult, AppStateRef, owned, parse, reply};
use crate::auth::Caller;
use crate::promise::{FutureKind, Outcome};
use crate::state::lock;

/// Why a JSON training request was refused, and whether it named its model and `seq_id`
/// (then the refusal still takes that `seq_id`, so nothing queued behind it waits).
pub(crate) struct Refusal {
    /// `(model_id, seq_id)` when the body named both readably.
    pub(crate) address: Option<(String, i64)>,
    /// The answer.
    pub(crate) error: ApiError,
}

/// The `(model_id, seq_id)` a JSON training body names, read leniently (the rest of the body
/// may be malformed).
pub(crate) fn address_of(body: &[u8]) -> Option<(String, i64)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let model_id = value.get("model_id")?.as_str()?.to_owned();
    let seq_id = value.get("seq_id")?.as_i64().filter(|s| *s >= 1)?;
    Some((model_id, seq_id))
}

/// A JSON `forward_backward` body (SDK ≤ 0.24, tinkex: `{"forward_backward_input": {data,
/// loss_fn, loss_fn_config}, model_id, seq_id}`; `forward` sends `forward_input` instead)
/// as the protobuf `ForwardBackwardRequest` it stands for. The flat JSON form of
/// `tinker_types::ForwardBackwardRequest` is accepted too. `forward_only` is set for
/// `POST /api/v1/forward`.
pub(crate) fn forward_backward_proto(body: &[u8], forward_only: bool) -> Result<Vec<u8>, Refusal> {
    let address = address_of(body);
    let refuse = |error: ApiError| Refusal {
        address: address.clone(),
        error,
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(ApiError::bad_request(format!("invalid JSON body: {e}"))))?;
    let Value::Object(mut map) = value else {
        return Err(refuse(ApiError::bad_request(
            "invalid request body: expected a JSON object",
        )));
    };
    for wrapper in ["forward_backward_input", "forward_input"] {
        if let Some(inner) = map.remove(wrapper) {
            let Value::Object(inner) = inner else {
                return Err(refuse(ApiError::bad_request(format!(
                    "{wrapper}: expected an object"
                ))));
            };
            map.extend(inner);
        }
    }
    // Older clients add a `type` tag; the typed request has none.
    map.remove("type");
    if let Some(data) = map.get_mut("data") {
        tag_chunks(data);
    }
    if forward_only {
        map.insert("forward_only".to_owned(), Value::Bool(true));
    }
    let request: tinker_types::ForwardBackwardRequest =
        tinker_types::json::from_value(Value::Object(map))
            .map_err(|e| refuse(ApiError::bad_request(format!("invalid request body: {e}"))))?;
    request
        .encode_proto()
        .map_err(|e| refuse(ApiError::bad_request(format!("invalid request: {e}"))))
}

/// SDK 0.15 leaves out the `type` of model-input chunks (pydantic `exclude_unset` drops the
/// default) in every request that carries a `ModelInput` (`forward_backward`, `asample`):
/// it is implied by the chunk's fields. Tags every `chunks` array found in `value`.
pub(crate) fn tag_chunks(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(chunks)) = map.get_mut("chunks") {
                chunks.iter_mut().for_each(tag_chunk);
            }
            map.values_mut().for_each(tag_chunks);
        }
        Value::Array(items) => items.iter_mut().for_each(tag_chunks),
        _ => {}
    }
}

fn tag_chunk(chunk: &mut Value) {
    let Value::Object(chunk) = chunk else {
        return;
    };
    if chunk.contains_key("type") {
        return;
    }
    let kind = if chunk.contains_key("tokens") {
        "encoded_text"
    } else if chunk.contains_key("location") {
        "image_asset_pointer"
    } else if chunk.contains_key("data") {
        "image"
    } else {
        return;
    };
    chunk.insert("type".to_owned(), Value::String(kind.to_owned()));
}

/// Whether a `retrieve_future` caller takes protobuf results (`Accept:
/// application/x-protobuf`, sent by SDK ≥ 0.18.1 and this project's client). Older clients
/// get the JSON form of the same result.
pub(crate) fn accepts_proto(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/x-protobuf"))
}

/// The JSON form of a protobuf result of a future of `kind` (`ForwardBackwardOutput` or
/// `SampleResponse`), for clients that did not ask for protobuf.
pub(crate) fn proto_result_as_json(kind: FutureKind, bytes: &[u8]) -> ApiResult {
    let decoding = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("re-encoding the result as JSON: {e}"))
    };
    if kind == FutureKind::Sample {
        reply(&tinker_types::SampleResponse::decode_proto(bytes).map_err(|e| decoding(&e))?)
    } else {
        reply(&tinker_types::ForwardBackwardOutput::decode_proto(bytes).map_err(|e| decoding(&e))?)
    }
}

/// `POST /api/v1/unload_model` (SDK ≤ 0.25, tinkex): a future that completes with
/// `{"model_id", "type": "unload_model"}` once the caller's model is dropped from memory.
/// Its checkpoints and run record stay; later training requests for it get 404.
pub(crate) async fn unload_model(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: tinker_types::UnloadModelRequest = parse(&body)?;
    let worker = owned::model(&state, &caller, &req.model_id)?;
    lock(&state.models).remove(&req.model_id);
    drop(worker);
    state.audit(
        &caller.owner,
        "model_unload",
        Some(&req.model_id),
        None,
        serde_json::json!({}),
    );
    let request_id = format!("{}:unload:{}", req.model_id, crate::worker::short_id());
    state
        .promises
        .create(request_id.clone(), FutureKind::Training, &caller.owner)
        .complete(Outcome::Json(serde_json::json!({
            "model_id": req.model_id,
            "type": "unload_model",
        })));
    reply(&tinker_types::UntypedFuture {
        request_id,
        model_id: Some(req.model_id),
        sample_sequence_ids: None,
    })
}
