//! `cargo xtask examples`: builds every example of `tinker-examples` (and the `tinker` CLI
//! the CLI examples run) once in release, runs
//! each offline (no `TINKER_*` variable, so each starts its embedded `tinker-local`) under
//! a timeout, and prints a line per example and `N passed, M failed`.
//!
//! The tinkex examples whose feature is not in tinker-rs yet are listed in [`PENDING`]
//! with the issue that brings it; they are printed as `pending`, never run or counted.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::workspace_root;

/// The examples that run, in tinkex's `run_all.sh` order (`training_loop` first: it is
/// the README's).
pub(crate) const RUNNABLE: &[&str] = &[
    "training_loop",
    "sampling_basic",
    "custom_loss_training",
    "forward_inference",
    "structured_regularizers",
    "structured_regularizers_live",
    "sessions_management",
    "checkpoints_management",
    "weights_inspection",
    "checkpoint_download",
    "async_client_creation",
    "metrics_live",
    "telemetry_live",
    "telemetry_reporter_demo",
    "retry_and_capture",
    "live_capabilities_and_logprobs",
    "adam_and_chunking_live",
    "queue_reasons_and_sampling_throttling",
    "training_persistence_live",
    "checkpoint_multi_delete_live",
    "save_weights_and_sample",
    "queue_state_observer_demo",
    "cli_run_text",
    "cli_run_prompt_file",
    // Beyond tinkex (issue 12): SFT on a shipped chat dataset, GRPO-style RL on a toy reward.
    "sft_chat",
    "rl_grpo",
    "recovery_simulated",
    "recovery_live_injected",
    "model_info_and_unload",
    "heartbeat_probe",
    // Beyond tinkex (issue 16): a Hugging Face model folder served and fine-tuned offline.
    "local_hf_model",
];

/// tinkex examples not ported yet: (name, what is missing and the issue that brings it).
pub(crate) const PENDING: &[(&str, &str)] = &[
    (
        "file_upload_multipart",
        "nothing to port: no Tinker endpoint takes multipart (SDK 0.38 sends JSON or protobuf; its unused generic `files=` plumbing is the only multipart code)",
    ),
    (
        "llama3_tokenizer_override_live",
        "needs the real Llama-3 tokenizer (thinkingmachineslabinc/meta-llama-3-tokenizer) from the Hugging Face Hub, which no machine here reaches; local folders and cached repos do load (issue 10)",
    ),
    (
        "multimodal_resume_and_cleanup",
        "needs a vision-language model: tinker-local serves text-only decoders (issue 16), so image chunks have nothing to run on",
    ),
    (
        "kimi_k2_sampling_live",
        "needs Kimi K2 (a tiktoken tokenizer, which tinker-tokenizer loads) served by a Tinker service: its tokenizer file comes from the Hugging Face Hub, which no machine here reaches, and tinker-local serves no MoE model",
    ),
];

/// Longest run of one example; the slowest takes a few seconds on 2 cores.
const TIMEOUT: Duration = Duration::from_secs(90);

/// Lines of output shown for a failed example.
const TAIL_LINES: usize = 40;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let no_build = args.iter().any(|a| a == "--no-build");
    let only: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(unknown) = only.iter().find(|n| !RUNNABLE.contains(n)) {
        return Err(format!("no runnable example named {unknown:?}"));
    }

    if !no_build {
        let started = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--examples",
                "-p",
                "tinker-examples",
                // The CLI examples run the `tinker` binary.
                "--bin",
                "tinker",
                "-p",
                "tinker-cli",
                "--locked",
            ])
            .current_dir(&root)
            .status()
            .map_err(|e| format!("could not run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building the examples failed ({status})"));
        }
        println!("built the examples in {:.1?}", started.elapsed());
    }

    let bin_dir = target_dir(&root).join("release").join("examples");
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for name in RUNNABLE
        .iter()
        .filter(|n| only.is_empty() || only.contains(n))
    {
        let outcome = run_one(&bin_dir.join(name), &root)?;
        let secs = outcome.elapsed.as_secs_f64();
        if outcome.ok {
            passed += 1;
            println!("{name:<40} pass  {secs:>6.1}s");
        } else {
            failed += 1;
            println!("{name:<40} FAIL  {secs:>6.1}s ({})", outcome.why);
            for line in &outcome.tail {
                println!("    | {line}");
            }
        }
    }
    if only.is_empty() {
        for (name, why) in PENDING {
            println!("{name:<40} pending ({why})");
        }
    }
    println!(
        "{passed} passed, {failed} failed ({} pending) in {:.1?}",
        if only.is_empty() { PENDING.len() } else { 0 },
        started.elapsed()
    );
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} example(s) failed"))
    }
}

/// Where cargo puts build outputs: `CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| root.join("target"), |d| root.join(d))
}

struct Outcome {
    ok: bool,
    why: String,
    elapsed: Duration,
    tail: Vec<String>,
}

/// Runs one example binary with no `TINKER_*` variable (so it uses the embedded server)
/// and its output in a temporary file, killing it after [`TIMEOUT`].
fn run_one(bin: &Path, root: &Path) -> Result<Outcome, String> {
    let mut log = tempfile::tempfile().map_err(|e| format!("temp file: {e}"))?;
    let log_err = log.try_clone().map_err(|e| format!("temp file: {e}"))?;
    let log_out = log.try_clone().map_err(|e| format!("temp file: {e}"))?;
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TINKER_") {
            cmd.env_remove(key);
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .current_dir(root)
        // Tiny CPU models are fastest single-threaded on a shared 2-core machine.
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_out))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", bin.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            // Ours to end: the child we spawned, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let (ok, why) = match status {
        Some(s) if s.success() => (true, String::new()),
        Some(s) => (false, format!("exited with {s}")),
        None => (false, format!("timed out after {TIMEOUT:?}")),
    };
    let mut tail = Vec::new();
    if !ok {
        let mut text = String::new();
        log.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        log.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(TAIL_LINES);
        tail = lines[from..].iter().map(|l| (*l).to_owned()).collect();
    }
    Ok(Outcome {
        ok,
        why,
        elapsed,
        tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 32 tinkex example script (`run_all.sh` is this runner).
    const TINKEX: &[&str] = &[
        "sampling_basic",
        "training_loop",
        "custom_loss_training",
        "forward_inference",
        "structured_regularizers",
        "structured_regularizers_live",
        "sessions_management",
        "checkpoints_management",
        "weights_inspection",
        "checkpoint_download",
        "async_client_creation",
        "cli_run_text",
        "cli_run_prompt_file",
        "metrics_live",
        "telemetry_live",
        "telemetry_reporter_demo",
        "retry_and_capture",
        "live_capabilities_and_logprobs",
        "file_upload_multipart",
        "adam_and_chunking_live",
        "llama3_tokenizer_override_live",
        "queue_reasons_and_sampling_throttling",
        "multimodal_resume_and_cleanup",
        "training_persistence_live",
        "checkpoint_multi_delete_live",
        "save_weights_and_sample",
        "queue_state_observer_demo",
        "recovery_simulated",
        "recovery_live_injected",
        "kimi_k2_sampling_live",
        "model_info_and_unload",
        "heartbeat_probe",
    ];

    /// Runnable examples that tinkex does not have (issues 12 and 16).
    const BEYOND_TINKEX: &[&str] = &["sft_chat", "rl_grpo", "local_hf_model"];

    /// Each tinkex example is either runnable or pending, never both, never neither; the
    /// only other runnable ones are those listed as beyond tinkex.
    #[test]
    fn every_tinkex_example_is_runnable_or_pending() {
        for name in TINKEX {
            let runnable = RUNNABLE.contains(name);
            let pending = PENDING.iter().any(|(p, _)| p == name);
            assert!(
                runnable != pending,
                "{name}: runnable {runnable}, pending {pending}"
            );
        }
        for name in BEYOND_TINKEX {
            assert!(!TINKEX.contains(name) && RUNNABLE.contains(name), "{name}");
        }
        assert_eq!(
            RUNNABLE.len() + PENDING.len(),
            TINKEX.len() + BEYOND_TINKEX.len()
        );
    }

    /// The runner runs exactly the examples `examples/Cargo.toml` declares.
    #[test]
    fn the_list_matches_the_manifest() {
        let manifest =
            std::fs::read_to_string(workspace_root().join("examples").join("Cargo.toml")).unwrap();
        let mut declared: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.trim().strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "tinker-examples")
            .collect();
        declared.sort_unstable();
        let mut listed = RUNNABLE.to_vec();
        listed.sort_unstable();
        assert_eq!(declared, listed);
    }
}
