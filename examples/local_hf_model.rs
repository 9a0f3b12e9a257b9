//! Fine-tune a Hugging Face model folder offline (beyond tinkex; issue 16): the embedded
//! `tinker-local` serves the folder under a name of your choice, and the same SDK calls that
//! train on Tinker train it here on the CPU. The LoRA adapter is then exported and downloaded
//! in PEFT's layout (`adapter_config.json`, `adapter_model.safetensors`).
//!
//! ```sh
//! # a real model you have on disk (Llama, Qwen2/2.5, Qwen3 or Mistral; safetensors):
//! TINKER_HF_MODEL_DIR=~/models/Qwen3-0.6B cargo run --release --example local_hf_model
//! # no folder: the example writes a tiny random-weight Qwen3 folder and uses it
//! cargo run --release --example local_hf_model
//! ```
//!
//! Settings: `TINKER_HF_MODEL_DIR` (a model folder, or a repo id in the local Hugging Face
//! cache), `TINKER_WEIGHTS_DTYPE` (`f32`, the default, or `stored`: half the memory for
//! bf16 weights, slower), `TINKER_STEPS` (8), `TINKER_LORA_RANK` (8), `TINKER_OUTPUT_DIR`
//! (where the adapter is downloaded; a temporary folder by default). Always runs on the
//! embedded server: a remote service cannot read a folder on this machine.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::PathBuf;

use common::{BoxError, Connection};
use tinker::local::engine::{HfArch, TinyHfModel, WeightsDtype};
use tinker::prelude::*;
use tinker::transport::Env;

/// The name the embedded server serves the folder under.
const MODEL: &str = "local/hf-model";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The folder is on this machine, so the server must be too: ignore TINKER_API_KEY.
    let env = Env::from_pairs(std::env::vars().filter(|(k, _)| k != "TINKER_API_KEY"));
    let scratch = tempfile::tempdir()?;
    let source = match env.get("TINKER_HF_MODEL_DIR") {
        Some(dir) => dir,
        None => {
            let dir = scratch.path().join("tiny-qwen3");
            TinyHfModel::tiny(HfArch::Qwen3).write(&dir)?;
            println!(
                "No TINKER_HF_MODEL_DIR: wrote a tiny random-weight Qwen3 folder to {}",
                dir.display()
            );
            dir.to_string_lossy().into_owned()
        }
    };
    let weights_dtype = match env.get("TINKER_WEIGHTS_DTYPE").as_deref() {
        None | Some("f32") => WeightsDtype::F32,
        Some("stored") => WeightsDtype::Stored,
        Some(other) => {
            return Err(format!("TINKER_WEIGHTS_DTYPE={other}: use f32 or stored").into());
        }
    };
    let conn = Connection::open_with(env, |config| {
        config.models.push((MODEL.to_owned(), source.clone()));
        config.weights_dtype = weights_dtype;
    })
    .await?;
    let steps: usize = conn.setting("TINKER_STEPS", 8);
    let rank: u32 = conn.setting("TINKER_LORA_RANK", 8);

    let capabilities = conn.service.get_server_capabilities().await?;
    let served: Vec<&str> = capabilities
        .supported_models
        .iter()
        .filter_map(|m| m.model_name.as_deref())
        .collect();
    println!("Served models: {served:?}");
    if !served.contains(&MODEL) {
        return Err(format!("the server does not list {MODEL}").into());
    }

    let training = conn
        .service
        .create_lora_training_client(MODEL, rank)
        .await?;
    let info = training.get_info().await?;
    println!(
        "Training {MODEL} from {source} (LoRA rank {rank}, weights {weights_dtype:?}); tokenizer {:?}",
        info.model_data.tokenizer_id
    );
    let tokenizer = training.get_tokenizer().await?;
    let pairs = [
        ("The capital of France is", " Paris."),
        ("The capital of Italy is", " Rome."),
        ("The capital of Spain is", " Madrid."),
    ];
    let data = pairs
        .iter()
        .map(|(p, c)| common::datum(&tokenizer, p, c))
        .collect::<Result<Vec<_>, _>>()?;
    // Targets with weight 1: the completions' tokens.
    let mut weight = 0.0;
    for (_, completion) in pairs {
        weight += tokenizer.encode(completion, false)?.len() as f64;
    }
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        let fb = training.forward_backward(data.clone(), LossFn::CrossEntropy);
        let optim = training.optim_step(AdamParams::with_learning_rate(2e-2));
        let out = fb.await?;
        optim.await?;
        let loss = out.metrics.get("loss:sum").copied().unwrap_or(f64::NAN) / weight;
        println!("step {step}: loss per target token {loss:.4}");
        losses.push(loss);
    }

    let sampler = training.save_weights_and_get_sampling_client().await?;
    let prompt = tokenizer.encode("The capital of France is", true)?;
    let out = sampler
        .sample(
            ModelInput::from_tokens(&prompt),
            1,
            SamplingParams::with_max_tokens(4),
        )
        .await?;
    let seq = out.sequences.first().ok_or("no sequence returned")?;
    println!(
        "Sample after training: The capital of France is{}",
        tokenizer.decode(&seq.tokens, true)?
    );

    let export = training.save_weights_external("local-hf-adapter").await?;
    let out_dir: PathBuf = conn
        .env
        .get("TINKER_OUTPUT_DIR")
        .map_or_else(|| scratch.path().join("adapter"), PathBuf::from);
    let rest = conn.service.create_rest_client().await?;
    let files = rest
        .download_external_weights(&export.path, &out_dir, |_| {})
        .await?;
    println!("PEFT adapter downloaded to {}:", out_dir.display());
    for f in &files {
        println!(
            "  {} ({} bytes)",
            f.strip_prefix(&out_dir).unwrap_or(f).display(),
            std::fs::metadata(f)?.len()
        );
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for needed in ["adapter_config.json", "adapter_model.safetensors"] {
        if !names.iter().any(|n| n == needed) {
            return Err(format!("the export has no {needed}").into());
        }
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    // NaN (a broken loss) fails too.
    if last.partial_cmp(&first) != Some(std::cmp::Ordering::Less) {
        return Err(format!("the loss did not fall: {losses:?}").into());
    }
    println!("Loss fell from {first:.4} to {last:.4} in {steps} steps");
    conn.close().await
}
