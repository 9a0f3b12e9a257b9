//! Reinforcement learning, GRPO-style: sample a group of completions per prompt from the
//! current policy, score each with a reward function, turn the rewards into
//! group-normalised advantages and train with the `importance_sampling` loss. Prints the
//! mean reward of every step and fails (exit 1) unless it rose.
//!
//! ```sh
//! cargo run --release --example rl_grpo                 # 12 steps, under a minute on 2 cores
//! cargo run --release --example rl_grpo -- --steps 40   # a longer run
//! ```
//!
//! **The task is a toy, on purpose.** `tinker-local/small` has random weights, so it knows
//! no language and cannot learn a task that needs any. The reward here is the fraction of
//! generated tokens whose text starts with an upper-case letter (`" The"`, `"A"`, …): about
//! one token in ten of the vocabulary, so a random policy scores near 0.1 and every group
//! has some variance to learn from. What the run shows is the RL machinery working end to
//! end: the policy's samples change in the direction the reward points, through
//! sampler-weight snapshots, sampled logprobs and advantage-weighted updates. It says
//! nothing about language quality.
//!
//! Without `TINKER_API_KEY` it starts an embedded `tinker-local` server (CPU, offline);
//! with it (and optionally `TINKER_BASE_URL`) the same program trains on that service.
//!
//! Flags: `--steps N` (default 12). Settings (environment): `TINKER_BASE_MODEL` (default
//! `tinker-local/small` locally, `meta-llama/Llama-3.2-1B` remotely), `TINKER_GROUP_SIZE`
//! (8), `TINKER_MAX_TOKENS` (8), `TINKER_LR` (default 2e-2 locally, 4e-5 remotely),
//! `TINKER_LORA_RANK` (8), `TINKER_SEED` (0).
//!
//! Per step: `save_weights_and_get_sampling_client` (the current policy), one `sample` of
//! `G` completions per prompt, all submitted before any is awaited, then one
//! `forward_backward` with `importance_sampling` and one `optim_step`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::process::ExitCode;
use std::time::Instant;

use common::{BoxError, Connection};
use tinker::prelude::*;
use tinker::tokenizer::Tokenizer;
use tinker::types::PolicyGradientInputs;

/// The prompts of every step (each gets a group of samples).
const PROMPTS: [&str; 4] = [
    "Write a headline:",
    "Title of the book:",
    "Name a city:",
    "Tell me something.",
];

/// Mean reward of the last 3 steps must beat that of the first 3 by this much.
const REQUIRED_GAIN: f64 = 0.10;

/// Steps averaged at each end of the curve for the pass criterion.
const ENDS: usize = 3;

fn main() -> ExitCode {
    let steps = match parse_steps(std::env::args().skip(1)) {
        Ok(steps) => steps,
        Err(e) => {
            eprintln!(
                "rl_grpo: {e}\nusage: rl_grpo [--steps N]  (N >= {})",
                2 * ENDS
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rl_grpo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(steps)) {
        Ok(curve) => verdict(&curve),
        Err(e) => {
            eprintln!("rl_grpo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--steps N` (or `--steps=N`); nothing else is accepted.
fn parse_steps(mut args: impl Iterator<Item = String>) -> Result<usize, String> {
    let mut steps = 12;
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--steps") {
            Some("") => args.next().ok_or("--steps needs a value")?,
            Some(rest) if rest.starts_with('=') => rest[1..].to_owned(),
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        steps = value
            .parse()
            .map_err(|_| format!("--steps: {value:?} is not a number"))?;
    }
    if steps < 2 * ENDS {
        return Err(format!("--steps must be at least {}", 2 * ENDS));
    }
    Ok(steps)
}

/// Prints the curve and the pass criterion; non-zero exit when the reward did not rise.
fn verdict(curve: &[f64]) -> ExitCode {
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let first = mean(&curve[..ENDS]);
    let last = mean(&curve[curve.len() - ENDS..]);
    let points: Vec<String> = curve
        .iter()
        .enumerate()
        .map(|(i, r)| format!("({}, {r:.3})", i + 1))
        .collect();
    println!("reward curve (step, mean reward): {}", points.join(" "));
    println!(
        "mean reward, first {ENDS} steps {first:.3} -> last {ENDS} steps {last:.3} (gain {:+.3}, required {REQUIRED_GAIN:+.2})",
        last - first
    );
    if last - first > REQUIRED_GAIN {
        println!("PASS: the reward rose");
        ExitCode::SUCCESS
    } else {
        println!("FAIL: the reward did not rise by {REQUIRED_GAIN}");
        ExitCode::FAILURE
    }
}

/// The toy reward's token set: ids whose text (leading spaces aside) starts with an ASCII
/// upper-case letter.
fn rewarded_tokens(tokenizer: &Tokenizer) -> Result<Vec<bool>, BoxError> {
    (0..tokenizer.vocab_size())
        .map(|id| {
            let id = u32::try_from(id)?;
            let text = tokenizer.decode(&[id], true)?;
            Ok(text
                .trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase()))
        })
        .collect()
}

/// Reward of one completion: the fraction of its tokens in the rewarded set (0 if empty).
fn reward(completion: &[u32], rewarded: &[bool]) -> f64 {
    if completion.is_empty() {
        return 0.0;
    }
    let hits = completion
        .iter()
        .filter(|&&t| rewarded.get(t as usize).copied().unwrap_or(false))
        .count();
    hits as f64 / completion.len() as f64
}

/// Group-normalised advantages: `(r - mean) / (std + eps)`; all zero when the group's
/// rewards are equal (nothing to learn from it).
fn advantages(rewards: &[f64]) -> Vec<f64> {
    let n = rewards.len() as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    if std < 1e-9 {
        return vec![0.0; rewards.len()];
    }
    rewards.iter().map(|r| (r - mean) / (std + 1e-6)).collect()
}

/// One training datum for a sampled completion: the model reads prompt + completion and
/// scores the completion's tokens; prompt positions carry logprob 0 and advantage 0, so
/// they add nothing to the loss.
fn rl_datum(
    prompt: &[u32],
    completion: &[u32],
    sampled_logprobs: &[f32],
    advantage: f64,
) -> Result<Datum, BoxError> {
    if completion.len() != sampled_logprobs.len() {
        return Err("the sampler returned a logprob count unlike its token count".into());
    }
    let all: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let input = ModelInput::from_tokens(&all[..all.len() - 1]);
    let targets: Vec<i64> = all[1..].iter().map(|&t| i64::from(t)).collect();
    // Position i predicts all[i + 1]; the completion starts at target index prompt.len()-1.
    let offset = prompt.len() - 1;
    let mut logprobs = vec![0.0_f32; targets.len()];
    let mut adv = vec![0.0_f32; targets.len()];
    for (i, &lp) in sampled_logprobs.iter().enumerate() {
        logprobs[offset + i] = lp;
        adv[offset + i] = advantage as f32;
    }
    let inputs = PolicyGradientInputs::new(targets, logprobs, adv)?
        .into_inputs_for(&LossFn::ImportanceSampling)?;
    Ok(Datum::new(input, inputs))
}

/// The whole run; returns the mean reward of every step.
async fn run(steps: usize) -> Result<Vec<f64>, BoxError> {
    let conn = Connection::from_process_env().await?;
    let remote_default = "meta-llama/Llama-3.2-1B";
    let base_model: String = conn.setting(
        "TINKER_BASE_MODEL",
        if conn.remote {
            remote_default
        } else {
            "tinker-local/small"
        }
        .to_owned(),
    );
    let group: u32 = conn.setting("TINKER_GROUP_SIZE", 8);
    let max_tokens: u32 = conn.setting("TINKER_MAX_TOKENS", 8);
    let learning_rate: f64 = conn.setting("TINKER_LR", if conn.remote { 4e-5 } else { 2e-2 });
    let rank: u32 = conn.setting("TINKER_LORA_RANK", 8);
    let seed: u64 = conn.setting("TINKER_SEED", 0);
    println!(
        "model {base_model} | LoRA rank {rank} | {steps} steps x {} prompts x {group} samples, {max_tokens} tokens each | lr {learning_rate}",
        PROMPTS.len()
    );

    let training = conn
        .service
        .create_lora_training_client(&base_model, rank)
        .await?;
    let tokenizer = training.get_tokenizer().await?;
    let rewarded = rewarded_tokens(&tokenizer)?;
    println!(
        "reward: fraction of generated tokens starting with an upper-case letter ({} of {} vocabulary tokens)",
        rewarded.iter().filter(|&&r| r).count(),
        rewarded.len()
    );
    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| tokenizer.encode(p, true))
        .collect::<Result<_, _>>()?;
    if prompts.iter().any(Vec::is_empty) {
        return Err("a prompt encoded to no tokens".into());
    }

    let adam = AdamParams::with_learning_rate(learning_rate);
    let mut curve = Vec::with_capacity(steps);
    let started = Instant::now();
    for step in 0..steps {
        let step_started = Instant::now();
        // The current policy, as a sampler (ephemeral weights, no checkpoint kept).
        let sampler = training.save_weights_and_get_sampling_client().await?;
        let pending: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, prompt)| {
                let params = SamplingParams {
                    max_tokens: Some(max_tokens),
                    // Temperature 1: the sampled logprobs are the policy's own.
                    temperature: 1.0,
                    seed: Some(seed.wrapping_mul(1_000_003) + (step * PROMPTS.len() + i) as u64),
                    ..SamplingParams::default()
                };
                sampler.sample(ModelInput::from_tokens(prompt), group, params)
            })
            .collect();

        let mut batch = Vec::new();
        let mut rewards_all = Vec::new();
        let mut example = None;
        for (prompt, fut) in prompts.iter().zip(pending) {
            let out = fut.await?;
            let rewards: Vec<f64> = out
                .sequences
                .iter()
                .map(|s| reward(&s.tokens, &rewarded))
                .collect();
            for (seq, adv) in out.sequences.iter().zip(advantages(&rewards)) {
                if seq.tokens.is_empty() || adv == 0.0 {
                    continue;
                }
                let logprobs = seq
                    .logprobs
                    .as_deref()
                    .ok_or("the sampler returned no logprobs")?;
                batch.push(rl_datum(prompt, &seq.tokens, logprobs, adv)?);
            }
            if example.is_none()
                && let Some(best) = out
                    .sequences
                    .iter()
                    .zip(&rewards)
                    .max_by(|a, b| a.1.total_cmp(b.1))
            {
                example = Some((tokenizer.decode(&best.0.tokens, true)?, *best.1));
            }
            rewards_all.extend(rewards);
        }
        let mean_reward = rewards_all.iter().sum::<f64>() / rewards_all.len().max(1) as f64;
        curve.push(mean_reward);

        let trained = batch.len();
        if !batch.is_empty() {
            let fb = training.forward_backward(batch, LossFn::ImportanceSampling);
            let opt = training.optim_step(adam);
            fb.await?;
            opt.await?;
        }
        let (text, r) = example.unwrap_or_default();
        println!(
            "step {:>3}/{steps}: mean reward {mean_reward:.3} | {trained} datums | {:.1?} | best of group 1 ({r:.2}): {text:?}",
            step + 1,
            step_started.elapsed()
        );
    }
    println!("trained {steps} steps in {:.1?}", started.elapsed());
    conn.close().await?;
    Ok(curve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_centred_and_scaled_per_group() {
        let adv = advantages(&[0.0, 0.5, 1.0]);
        assert!(adv.iter().sum::<f64>().abs() < 1e-9);
        assert!(adv[0] < 0.0 && adv[2] > 0.0 && adv[1].abs() < 1e-9);
        assert_eq!(advantages(&[0.3, 0.3]), vec![0.0, 0.0]);
    }

    #[test]
    fn steps_flag() {
        let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(parse_steps(args(&[]).into_iter()), Ok(12));
        assert_eq!(parse_steps(args(&["--steps", "40"]).into_iter()), Ok(40));
        assert_eq!(parse_steps(args(&["--steps=7"]).into_iter()), Ok(7));
        assert!(parse_steps(args(&["--steps", "2"]).into_iter()).is_err());
        assert!(parse_steps(args(&["--step", "9"]).into_iter()).is_err());
    }
}
