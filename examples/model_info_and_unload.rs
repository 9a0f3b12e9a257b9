//! The raw API layer, without the clients (port of tinkex's `model_info_and_unload.exs`):
//! `create_session` → `create_model` (polling its future by hand) → `get_info` →
//! `unload_model`, each a plain JSON request through `tinker::transport`.
//!
//! ```sh
//! cargo run --release --example model_info_and_unload
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`. The hosted service
//! answers `unload_model` with 404 (tinkex's reference run ends there, and so does this
//! example, with exit code 1); tinker-local serves it as SDK ≤ 0.25 used it.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{BoxError, Connection};
use serde_json::{Value, json};
use tinker::transport::{RequestSpec, Transport};

/// One JSON POST; the reply's JSON.
async fn post(transport: &Transport, path: &str, body: Value) -> Result<Value, BoxError> {
    let spec = RequestSpec::post(path).with_json(&body)?;
    let resp = transport.send(spec).await?;
    Ok(serde_json::from_slice(resp.body())?)
}

/// Polls `retrieve_future` until the request is done; returns its result.
async fn wait(transport: &Transport, what: &str, request_id: &str) -> Result<Value, BoxError> {
    for poll in 1..=600 {
        println!("[tinker] poll #{poll} {what} request_id={request_id}");
        let reply = post(
            transport,
            "/api/v1/retrieve_future",
            json!({ "request_id": request_id, "allow_metadata_only": false }),
        )
        .await?;
        if reply.get("type").and_then(Value::as_str) == Some("try_again") {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if let Some(error) = reply.get("error") {
            return Err(format!("{what} failed: {error} (category {})", reply["category"]).into());
        }
        return Ok(reply);
    }
    Err(format!("{what} did not finish after 600 polls").into())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let base_model = conn.base_model("meta-llama/Llama-3.1-8B");
    let key = if conn.remote {
        conn.env.get("TINKER_API_KEY").unwrap_or_default()
    } else {
        common::LOCAL_API_KEY.to_owned()
    };
    let transport = Transport::builder()
        .base_url(conn.service.base_url())
        .api_key(key.into())
        .build()?;

    let session = post(
        &transport,
        "/api/v1/create_session",
        json!({ "tags": ["tinker-rs", "raw-api"], "user_metadata": null,
                "sdk_version": tinker::SDK_VERSION, "type": "create_session" }),
    )
    .await?;
    let session_id = session["session_id"]
        .as_str()
        .ok_or("create_session returned no session_id")?
        .to_owned();
    println!("[tinker] created session_id={session_id}");

    let created = post(
        &transport,
        "/api/v1/create_model",
        json!({ "session_id": session_id, "model_seq_id": 0, "base_model": base_model,
                "lora_config": { "rank": 8 }, "type": "create_model" }),
    )
    .await?;
    let created = match created.get("request_id").and_then(Value::as_str) {
        Some(id) => wait(&transport, "create_model", id).await?,
        None => created,
    };
    let model_id = created["model_id"]
        .as_str()
        .ok_or("create_model returned no model_id")?
        .to_owned();
    println!("[tinker] model_id={model_id}");

    let info = post(
        &transport,
        "/api/v1/get_info",
        json!({ "model_id": model_id, "type": "get_info" }),
    )
    .await?;
    println!("[tinker] get_info:");
    for field in [
        "model_id",
        "model_name",
        "tokenizer_id",
        "is_lora",
        "lora_rank",
    ] {
        println!("  {field}: {}", info.get(field).unwrap_or(&Value::Null));
    }
    let arch = info
        .pointer("/model_data/arch")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    println!("  arch: {arch}");
    if info["model_id"] != json!(model_id) || info["lora_rank"] != json!(8) {
        return Err("get_info does not describe the model just created".into());
    }

    let unloaded = post(
        &transport,
        "/api/v1/unload_model",
        json!({ "model_id": model_id, "type": "unload_model" }),
    )
    .await;
    let unloaded = match unloaded {
        Ok(reply) => match reply.get("request_id").and_then(Value::as_str) {
            Some(id) => wait(&transport, "unload_model", id).await?,
            None => reply,
        },
        Err(e) => {
            eprintln!("[tinker] unload failed: {e}");
            std::process::exit(1);
        }
    };
    println!("[tinker] unload_model: {unloaded}");
    if unloaded["model_id"] != json!(model_id) {
        return Err("unload_model did not name the model".into());
    }
    // The model is gone: a second get_info is refused.
    let again = post(
        &transport,
        "/api/v1/get_info",
        json!({ "model_id": model_id, "type": "get_info" }),
    )
    .await;
    match again {
        Err(e) => println!("[tinker] get_info after unload is refused, as it should be: {e}"),
        Ok(v) => return Err(format!("get_info still answers after unload: {v}").into()),
    }
    conn.close().await
}
