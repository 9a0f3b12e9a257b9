//! Supervised fine-tuning on chat conversations: each conversation is rendered with the
//! tokenizer's chat template, trained on the assistant turns only (all other tokens have
//! weight 0), and the fine-tuned model then answers a new question through the same
//! template.
//!
//! ```sh
//! cargo run --release --example sft_chat
//! ```
//!
//! The dataset is `crates/tinker-local/corpus/sft_chat.jsonl` (32 conversations, single and
//! multi-turn, some with a system prompt). Without `TINKER_API_KEY` it trains on an
//! embedded `tinker-local` server (CPU, offline); with it, on that service.
//!
//! Settings: `TINKER_BASE_MODEL` (default `tinker-local/micro` locally, `Qwen/Qwen3-8B`
//! remotely), `TINKER_STEPS` (20), `TINKER_LR` (1e-2 locally, 1e-4 remotely),
//! `TINKER_LORA_RANK` (16), `TINKER_MAX_LENGTH` (256), `TINKER_TRAIN_ON` (`all` or
//! `last`: every assistant turn or only the final one), `TINKER_SAMPLE_QUESTION`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{BoxError, Connection};
use tinker::chat::{ChatRenderer, Message, Role, TrainOn};
use tinker::data::{DatumOptions, datum_from_conversation};
use tinker::prelude::*;
use tinker::types::StopCondition;

/// The shipped dataset: one `{"messages": [...]}` conversation per line.
const DATASET: &str = include_str!("../crates/tinker-local/corpus/sft_chat.jsonl");

/// The system prompt the dataset uses (and the sample question gets).
const SYSTEM: &str = "You are a friendly assistant. Answer in one short sentence.";

#[derive(serde::Deserialize)]
struct Conversation {
    messages: Vec<Message>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let report = run(Connection::from_process_env().await?).await?;
    if let (Some(first), Some(last)) = (report.losses.first(), report.losses.last()) {
        println!(
            "Done: loss per assistant token {first:.3} -> {last:.3} over {} steps; sample: {:?}",
            report.losses.len(),
            report.sample
        );
    }
    Ok(())
}

/// What a run did, for the tests.
#[derive(Debug)]
struct Report {
    /// Loss per trained (assistant) token, one per step.
    losses: Vec<f64>,
    /// The fine-tuned model's answer to the sample question.
    sample: String,
}

async fn run(conn: Connection) -> Result<Report, BoxError> {
    let model = conn.base_model("Qwen/Qwen3-8B");
    let steps: u32 = conn.setting("TINKER_STEPS", 20);
    let lr: f64 = conn.setting("TINKER_LR", if conn.remote { 1e-4 } else { 1e-2 });
    let rank: u32 = conn.setting("TINKER_LORA_RANK", 16);
    let max_length: usize = conn.setting("TINKER_MAX_LENGTH", 256);
    let train_on = match conn.setting("TINKER_TRAIN_ON", "all".to_owned()).as_str() {
        "all" => TrainOn::AllAssistantMessages,
        "last" => TrainOn::LastAssistantMessage,
        other => {
            return Err(format!("TINKER_TRAIN_ON must be `all` or `last`, not {other:?}").into());
        }
    };
    let question: String = conn.setting(
        "TINKER_SAMPLE_QUESTION",
        "What is the capital of Germany?".to_owned(),
    );
    println!("[setup] model {model} | rank {rank} | {steps} steps | lr {lr} | {train_on:?}");

    let training = conn
        .service
        .create_lora_training_client(&model, rank)
        .await?;
    let tokenizer = training.get_tokenizer().await?;
    // The tokenizer's own chat template, else the built-in one of its family.
    let renderer = ChatRenderer::for_tokenizer(&tokenizer)?;
    println!("[setup] chat template: {}", renderer.template().name());

    let conversations: Vec<Conversation> = DATASET
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let options = DatumOptions::new().max_length(max_length);
    let batch: Vec<Datum> = conversations
        .iter()
        .map(|c| datum_from_conversation(&renderer, &c.messages, train_on, &options))
        .collect::<Result<_, _>>()?;
    let trained_tokens: f64 = batch
        .iter()
        .filter_map(|d| d.loss_fn_inputs.get("weights"))
        .filter_map(|w| w.values().as_f32())
        .flatten()
        .map(|&w| f64::from(w))
        .sum();
    let turns = conversations
        .iter()
        .flat_map(|c| &c.messages)
        .filter(|m| m.role == Role::Assistant)
        .count();
    println!(
        "[data] {} conversations, {turns} assistant turns, {trained_tokens} trained tokens per step",
        batch.len()
    );

    let adam = AdamParams::with_learning_rate(lr);
    let mut losses = Vec::with_capacity(steps as usize);
    for step in 1..=steps {
        let fb = training.forward_backward(batch.clone(), LossFn::CrossEntropy);
        let opt = training.optim_step(adam);
        let fb = fb.await?;
        opt.await?;
        let loss = fb.metrics.get("loss:sum").copied().unwrap_or(f64::NAN) / trained_tokens;
        losses.push(loss);
        println!("[train] step {step:>3}/{steps}: loss {loss:.4} per assistant token");
    }

    let sampler = training.save_weights_and_get_sampling_client().await?;
    let chat = [Message::system(SYSTEM), Message::user(question.as_str())];
    let prompt = ModelInput::from_tokens(&renderer.prompt_tokens(&chat)?);
    // Stop at the template's end of turn (ChatML's `<|im_end|>`, Llama's `<|eot_id|>`, …).
    let stop = tokenizer
        .eos_token_id()
        .map(|id| StopCondition::Tokens(vec![i64::from(id)]));
    let params = SamplingParams {
        max_tokens: Some(24),
        temperature: 0.1,
        seed: Some(7),
        stop,
        ..SamplingParams::default()
    };
    let out = sampler.sample(prompt, 1, params).await?;
    let tokens = out
        .sequences
        .first()
        .map(|s| s.tokens.clone())
        .ok_or("the sampler returned no sequence")?;
    let sample = tokenizer.decode(&tokens, true)?.trim().to_owned();
    println!("[sample] user: {question}");
    println!("[sample] assistant: {sample}");

    conn.close().await?;
    Ok(Report { losses, sample })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinker::transport::Env;

    /// Offline, the loss per assistant token falls within a few steps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loss_falls_on_the_embedded_server() {
        let env = Env::from_pairs([
            ("TINKER_STEPS", "4".to_owned()),
            ("TINKER_TELEMETRY", "0".to_owned()),
        ]);
        let report = run(Connection::open(env).await.unwrap()).await.unwrap();
        assert_eq!(report.losses.len(), 4);
        assert!(
            report.losses[3] < report.losses[0],
            "loss did not fall: {:?}",
            report.losses
        );
    }
}
