//! Checkpoint listing through the REST client (port of tinkex's
//! `checkpoints_management.exs`): the caller's checkpoints with their type, size and expiry,
//! the same list fetched page by page, and the checkpoints of one run.
//!
//! ```sh
//! cargo run --release --example checkpoints_management
//! ```
//!
//! Settings: `TINKER_RUN_ID` (a run to list; default the run created here),
//! `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY`; the example first saves three
//! checkpoints so there is something to list.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::prelude::*;

/// Bytes in B/KB/MB/GB with two decimals.
fn human(bytes: Option<u64>) -> String {
    let Some(b) = bytes else {
        return "unknown".to_owned();
    };
    let units = ["B", "KB", "MB", "GB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.2-1B");
    let service = &conn.service;

    let training = service.create_lora_training_client(&model, 8).await?;
    let a = training.save_state("ckpt-mgmt-a").await?;
    let b = training
        .save_state_with("ckpt-mgmt-b", SaveOptions::default().ttl_seconds(3600))
        .await?;
    let s = training
        .save_weights_for_sampler("ckpt-mgmt-sampler")
        .await?;
    println!("Saved {}, {} (TTL 1 h) and {}", a.path, b.path, s.path);

    let rest = service.create_rest_client().await?;
    let page = rest
        .list_user_checkpoints(ListOptions::default().limit(20))
        .await?;
    let total = page
        .cursor
        .as_ref()
        .map_or(page.checkpoints.len() as u64, |c| c.total_count);
    println!("Found {} of {total} checkpoints:", page.checkpoints.len());
    for c in &page.checkpoints {
        println!("  {}", c.checkpoint_id);
        println!("    Path:    {}", c.tinker_path);
        println!("    Type:    {:?}", c.checkpoint_type);
        println!("    Size:    {}", human(c.size_bytes));
        println!("    Public:  {}", c.public);
        println!("    Created: {}", c.time);
        println!(
            "    Expires: {}",
            c.expires_at.map_or("never".to_owned(), |t| t.to_string())
        );
    }

    // Page by page (two at a time, to show the paging even on a fresh server).
    let mut seen = 0u64;
    let mut offset = 0u64;
    loop {
        let page = rest
            .list_user_checkpoints(ListOptions::default().limit(2).offset(offset))
            .await?;
        if page.checkpoints.is_empty() {
            break;
        }
        println!(
            "Page at offset {offset}: {} checkpoint(s) (total {})",
            page.checkpoints.len(),
            page.cursor.as_ref().map_or(0, |c| c.total_count)
        );
        seen += page.checkpoints.len() as u64;
        offset += page.checkpoints.len() as u64;
        if seen >= total {
            break;
        }
    }
    println!("Paged through {seen} checkpoint(s)");
    if seen != total {
        return Err(format!("paging saw {seen} checkpoints, the total is {total}").into());
    }

    let run_id: String = conn.setting("TINKER_RUN_ID", training.model_id().to_owned());
    let run = rest.list_checkpoints(&run_id).await?;
    println!("Run {run_id}: {} checkpoint(s)", run.checkpoints.len());
    for c in &run.checkpoints {
        println!(
            "  {} (expires {})",
            c.tinker_path,
            c.expires_at.map_or("never".to_owned(), |t| t.to_string())
        );
    }
    if run_id == training.model_id() && run.checkpoints.len() < 3 {
        return Err("the run does not list the three checkpoints just saved".into());
    }
    conn.close().await
}
