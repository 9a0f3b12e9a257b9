//! Sessions through the REST client (port of tinkex's `sessions_management.exs`): list the
//! sessions the key can see, then show the training runs and samplers of one.
//!
//! ```sh
//! cargo run --release --example sessions_management
//! ```
//!
//! Offline without `TINKER_API_KEY`: the session of this run (with one training run and
//! one sampler created here) is then the only one.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.2-1B");
    let service = &conn.service;
    println!("This session: {}", service.session_id());

    // Something to list: one training run and one sampler in this session.
    let training = service.create_lora_training_client(&model, 8).await?;
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(model.clone()))
        .await?;
    println!(
        "Created training run {} and sampler {}",
        training.model_id(),
        sampler.sampling_session_id()
    );

    let rest = service.create_rest_client().await?;
    let page = rest
        .list_sessions(
            ListOptions::default()
                .limit(10)
                .access_scope(AccessScope::Accessible),
        )
        .await?;
    println!("Found {} sessions:", page.sessions.len());
    for id in &page.sessions {
        println!("  - {id}");
    }
    if !page.sessions.iter().any(|s| s == service.session_id()) {
        return Err("this session is not in the list".into());
    }

    let session = rest
        .get_session(service.session_id(), AccessScope::Accessible)
        .await?;
    println!("Session {}:", service.session_id());
    println!("  Training Runs: {}", session.training_run_ids.len());
    for id in &session.training_run_ids {
        println!("    - {id}");
    }
    println!("  Samplers: {}", session.sampler_ids.len());
    for id in &session.sampler_ids {
        println!("    - {id}");
    }
    if !session
        .training_run_ids
        .iter()
        .any(|r| r == training.model_id())
    {
        return Err("the session does not list its training run".into());
    }
    conn.close().await?;
    println!("=== Example Complete ===");
    Ok(())
}
