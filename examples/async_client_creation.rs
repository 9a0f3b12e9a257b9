//! Creating clients concurrently (port of tinkex's `async_client_creation.exs`): a
//! sampling client and a LoRA training client are created at the same time, the training
//! state is saved, and a new training client is restored from it. With
//! `TINKER_CHECKPOINT_PATHS` (comma-separated `tinker://` paths) it instead opens one
//! sampling client per path, all at once.
//!
//! ```sh
//! cargo run --release --example async_client_creation
//! ```
//!
//! Settings: `TINKER_CHECKPOINT_PATHS`, `TINKER_BASE_MODEL`. Offline without
//! `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.2-1B");
    let service = &conn.service;

    if let Some(paths) = conn.env.get("TINKER_CHECKPOINT_PATHS") {
        let paths: Vec<String> = paths
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let started = Instant::now();
        let results = futures_join_all(service, &paths).await;
        println!(
            "Created {} sampling client(s) concurrently in {:.2?}",
            paths.len(),
            started.elapsed()
        );
        let ok = results.iter().filter(|r| r.is_ok()).count();
        for (path, r) in paths.iter().zip(&results) {
            match r {
                Ok(id) => println!("  ✓ {path} -> {id}"),
                Err(e) => println!("  ✗ {path}: {e}"),
            }
        }
        println!("Success: {ok}/{}", paths.len());
        conn.close().await?;
        return if ok == paths.len() {
            Ok(())
        } else {
            Err("some sampling clients failed".into())
        };
    }

    let started = Instant::now();
    let (sampler, training) = tokio::join!(
        service.create_sampling_client(SamplingSource::BaseModel(model.clone())),
        service.create_lora_training_client(&model, 32),
    );
    let (sampler, training) = (sampler?, training?);
    println!(
        "Created concurrently in {:.2?}: ✓ sampling client {} and ✓ training client {}",
        started.elapsed(),
        sampler.sampling_session_id(),
        training.model_id()
    );

    let saved = training.save_state("async_demo_checkpoint").await?;
    println!("Saved state: {}", saved.path);
    let restored = service
        .create_training_client_from_state(&saved.path)
        .await?;
    println!(
        "✓ Training client restored: {} (model {}, LoRA rank {:?})",
        restored.model_id(),
        restored
            .info()
            .model_data
            .model_name
            .as_deref()
            .unwrap_or("?"),
        restored.info().lora_rank
    );
    if restored.model_id() == training.model_id() {
        return Err("the restored client should be a new model".into());
    }
    conn.close().await
}

/// One sampling client per path, all requested at once; each result is the sampling
/// session id or the error.
async fn futures_join_all(
    service: &ServiceClient,
    paths: &[String],
) -> Vec<Result<String, String>> {
    let tasks: Vec<_> = paths
        .iter()
        .map(|p| {
            let service = service.clone();
            let p = p.clone();
            tokio::spawn(async move {
                service
                    .create_sampling_client(SamplingSource::ModelPath(p))
                    .await
                    .map(|s| s.sampling_session_id().to_owned())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    out
}
