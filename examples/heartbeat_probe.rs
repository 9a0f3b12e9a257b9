//! The heartbeat endpoint, probed through the raw API (port of tinkex's
//! `heartbeat_probe.exs`): a session created by hand, `session_heartbeat` answers 200, and
//! the legacy path `/api/v1/heartbeat` answers 404 (the canonical path is
//! `/session_heartbeat`).
//!
//! ```sh
//! cargo run --release --example heartbeat_probe
//! ```
//!
//! Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use serde_json::json;
use tinker::transport::{RequestSpec, Transport};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let key = if conn.remote {
        conn.env.get("TINKER_API_KEY").unwrap_or_default()
    } else {
        common::LOCAL_API_KEY.to_owned()
    };
    let transport = Transport::builder()
        .base_url(conn.service.base_url())
        .api_key(key.into())
        .build()?;

    let spec = RequestSpec::post("/api/v1/create_session").with_json(&json!({
        "tags": ["tinker-rs", "heartbeat-probe"],
        "user_metadata": null,
        "sdk_version": tinker::SDK_VERSION,
        "type": "create_session",
    }))?;
    let session: serde_json::Value = serde_json::from_slice(transport.send(spec).await?.body())?;
    let session_id = session["session_id"]
        .as_str()
        .ok_or("create_session returned no session_id")?;
    println!("created session_id={session_id}");

    let body = json!({ "session_id": session_id, "type": "session_heartbeat" });
    let beat = RequestSpec::post("/api/v1/session_heartbeat")
        .with_json(&body)?
        .with_max_retries(0);
    match transport.send(beat).await {
        Ok(resp) => println!(
            "/api/v1/session_heartbeat => {} (ok)",
            resp.status().as_u16()
        ),
        Err(e) => {
            eprintln!("/api/v1/session_heartbeat failed: {e}");
            std::process::exit(1);
        }
    }

    let legacy = RequestSpec::post("/api/v1/heartbeat")
        .with_json(&body)?
        .with_max_retries(0);
    match transport.send(legacy).await {
        Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => {
            println!("/api/v1/heartbeat => 404 (expected)");
        }
        Err(e) => {
            eprintln!("/api/v1/heartbeat: unexpected failure {e}");
            std::process::exit(1);
        }
        Ok(resp) => {
            eprintln!(
                "/api/v1/heartbeat => {} (expected 404: the legacy path must not exist)",
                resp.status().as_u16()
            );
            std::process::exit(1);
        }
    }
    conn.close().await
}
