//! Downloading weights (port of tinkex's `checkpoint_download.exs`, on SDK 0.38's route):
//! train one step, export the weights in Hugging Face/PEFT layout with
//! `save_weights_external`, then download every file of the export into a folder, with
//! progress, and list what was written.
//!
//! tinkex downloads a training checkpoint's tar `archive`; SDK 0.38 and this SDK download
//! external-weights exports. (The `archive` route of older servers comes with issue 17.)
//!
//! ```sh
//! cargo run --release --example checkpoint_download
//! ```
//!
//! Settings: `TINKER_OUTPUT_DIR` (default a temporary folder), `TINKER_BASE_MODEL`.
//! Offline without `TINKER_API_KEY`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::PathBuf;

use common::{BoxError, Connection};
use tinker::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.2-1B");
    let service = &conn.service;

    let training = service.create_lora_training_client(&model, 8).await?;
    let tokenizer = training.get_tokenizer().await?;
    let datum = common::datum(&tokenizer, "checkpoint download smoke test", "")?;
    let fb = training.forward_backward(vec![datum], LossFn::CrossEntropy);
    let step = training.optim_step(AdamParams::default());
    println!(
        "Trained one step: loss:sum {:.3}",
        fb.await?
            .metrics
            .get("loss:sum")
            .copied()
            .unwrap_or(f64::NAN)
    );
    step.await?;

    let export = training.save_weights_external("download-example").await?;
    println!(
        "Exported {} ({} bytes)",
        export.path,
        export.size_bytes.map_or("?".to_owned(), |b| b.to_string())
    );

    let tmp = tempfile::tempdir()?;
    let out_dir: PathBuf = conn
        .env
        .get("TINKER_OUTPUT_DIR")
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let target = out_dir.join(
        export
            .path
            .trim_start_matches("tinker://")
            .replace(['/', ':'], "_"),
    );
    let rest = service.create_rest_client().await?;
    let files = rest
        .download_external_weights(&export.path, &target, |p| {
            println!(
                "Progress: file {}/{} {} ({} bytes)",
                p.file_index + 1,
                p.file_count,
                p.file,
                p.bytes
            );
        })
        .await?;
    println!("Download complete! Extracted to: {}", target.display());
    let mut total = 0;
    for f in &files {
        let len = std::fs::metadata(f)?.len();
        total += len;
        println!(
            "  {} ({len} bytes)",
            f.strip_prefix(&target).unwrap_or(f).display()
        );
    }
    println!("{} file(s), {total} bytes", files.len());
    if files.is_empty() || total == 0 {
        return Err("the download wrote nothing".into());
    }
    conn.close().await
}
