//! Deleting several checkpoints (port of tinkex's `checkpoint_multi_delete_live.exs`):
//! save two checkpoints, delete both by `tinker://` path through the REST client, and
//! check that the run no longer lists them. (tinkex drives its CLI's `checkpoint delete`;
//! the `tinker` CLI's commands come with issue 11.)
//!
//! ```sh
//! cargo run --release --example checkpoint_multi_delete_live
//! ```
//!
//! Settings: `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{BoxError, Connection};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let service = &conn.service;

    let training = service.create_lora_training_client(&model, 8).await?;
    let ts = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let a = training.save_state(&format!("multi-delete-{ts}-a"));
    let b = training.save_state(&format!("multi-delete-{ts}-b"));
    let paths = vec![a.await?.path, b.await?.path];
    for p in &paths {
        println!("Saved {p}");
    }

    let rest = service.create_rest_client().await?;
    let before = rest.list_checkpoints(training.model_id()).await?;
    println!("The run lists {} checkpoint(s)", before.checkpoints.len());

    let (mut deleted, mut failed) = (0, 0);
    for (i, p) in paths.iter().enumerate() {
        println!("Deleting {}/{}: {p}", i + 1, paths.len());
        match rest.delete_checkpoint_from_tinker_path(p).await {
            Ok(()) => {
                deleted += 1;
                println!("Deleted {p}");
            }
            Err(e) => {
                failed += 1;
                println!("Failed {p}: {e}");
            }
        }
    }
    let after = rest.list_checkpoints(training.model_id()).await?;
    let left: Vec<&str> = after
        .checkpoints
        .iter()
        .map(|c| c.tinker_path.as_str())
        .filter(|t| paths.iter().any(|p| p == t))
        .collect();
    println!(
        "deleted: {deleted}, failed: {failed}, still listed: {}, checkpoints left in the run: {}",
        left.len(),
        after.checkpoints.len()
    );
    if failed > 0 || !left.is_empty() {
        return Err("not every checkpoint was deleted".into());
    }
    conn.close().await
}
