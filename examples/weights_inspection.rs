//! Inspecting training runs and weights (port of tinkex's `weights_inspection.exs`):
//! training runs, one run in detail, the caller's checkpoints, what a checkpoint holds
//! (`weights_info`, with a LoRA rank check), the run of a `tinker://` path, and a sampler.
//!
//! ```sh
//! cargo run --release --example weights_inspection
//! ```
//!
//! Settings: `TINKER_CHECKPOINT_PATH` (default: one saved here), `TINKER_EXPECTED_RANK`
//! (default the rank used here, 8), `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::prelude::*;

const RANK: u32 = 8;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.2-1B");
    let service = &conn.service;

    let training = service.create_lora_training_client(&model, RANK).await?;
    let saved = training.save_state("inspect-me").await?;
    let sampler = training.create_sampling_client(&saved.path).await?;
    println!(
        "Saved {} and opened sampler {}",
        saved.path,
        sampler.sampling_session_id()
    );

    let rest = service.create_rest_client().await?;
    let runs = rest
        .list_training_runs(
            ListOptions::default()
                .limit(10)
                .access_scope(AccessScope::Accessible),
        )
        .await?;
    println!(
        "=== Training runs ({} of {}) ===",
        runs.training_runs.len(),
        runs.cursor.total_count
    );
    for run in &runs.training_runs {
        println!("  {}", run.training_run_id);
        println!("    Base Model: {}", run.base_model);
        println!("    Is LoRA: {} (rank {:?})", run.is_lora, run.lora_rank);
        println!("    Corrupted: {}", run.corrupted);
        println!(
            "    Last Checkpoint: {}",
            run.last_checkpoint
                .as_ref()
                .map_or("none", |c| c.tinker_path.as_str())
        );
        println!("    Owner: {}", run.model_owner);
    }

    let run = rest
        .get_training_run(training.model_id(), AccessScope::Accessible)
        .await?;
    println!("=== Run {} ===", run.training_run_id);
    println!(
        "  Last Sampler Checkpoint: {}",
        run.last_sampler_checkpoint
            .as_ref()
            .map_or("none", |c| c.tinker_path.as_str())
    );
    println!("  Last Request: {}", run.last_request_time);

    let checkpoints = rest
        .list_user_checkpoints(ListOptions::default().limit(10))
        .await?;
    println!(
        "=== Your checkpoints ({}) ===",
        checkpoints.checkpoints.len()
    );
    for c in &checkpoints.checkpoints {
        println!(
            "  {} [{:?}] {} {:.2} MB, {}",
            c.tinker_path,
            c.checkpoint_type,
            c.checkpoint_id,
            c.size_bytes.unwrap_or(0) as f64 / 1e6,
            c.time
        );
    }

    let path: String = conn.setting("TINKER_CHECKPOINT_PATH", saved.path.clone());
    let expected_rank: u32 = conn.setting("TINKER_EXPECTED_RANK", RANK);
    let info = rest.get_weights_info_by_tinker_path(&path).await?;
    println!("=== Weights info of {path} ===");
    println!("  base_model: {}", info.base_model);
    println!(
        "  is_lora: {}, lora_rank: {:?}",
        info.is_lora, info.lora_rank
    );
    println!(
        "  train_attn {:?}, train_mlp {:?}, train_unembed {:?}",
        info.train_attn, info.train_mlp, info.train_unembed
    );
    let matches = info.lora_rank == Some(expected_rank);
    println!(
        "  Rank validation: expected {expected_rank}, got {:?} ({})",
        info.lora_rank,
        if matches { "match" } else { "mismatch" }
    );
    let run_of_path = rest.get_training_run_by_tinker_path(&path).await?;
    println!(
        "  Training run of the path: {}",
        run_of_path.training_run_id
    );

    let info = rest.get_sampler(sampler.sampling_session_id()).await?;
    println!("=== Sampler {} ===", sampler.sampling_session_id());
    println!("  {info:?}");

    if !matches {
        return Err("the checkpoint's LoRA rank is not the expected one".into());
    }
    conn.close().await
}
