//! `cargo xtask soak [--steps N] [--release]`: the long soak of issue 9. Runs the soak test
//! of `tinker-client` (`tests/soak.rs`: pipelined training steps at ~10% injected faults,
//! answers dropped after execution included) with `TINKER_SOAK_STEPS=N`, and shows the
//! numbers it prints: operations, faults injected by kind, retries, the exactly-once and
//! bit-identical verdicts, wall time. `cargo test` runs the same test with 50 steps.

use std::process::Command;
use std::time::Instant;

use crate::workspace_root;

/// Steps when `--steps` is not given.
const DEFAULT_STEPS: u32 = 400;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut steps = DEFAULT_STEPS;
    let mut release = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--steps" => {
                steps = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--steps needs a positive number")?;
            }
            "--release" => release = true,
            other => return Err(format!("soak: unknown argument {other:?}")),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["test", "-p", "tinker-client", "--test", "soak"]);
    if release {
        cmd.arg("--release");
    }
    cmd.args(["--", "--nocapture", "--exact"])
        .arg("soak_pipelined_steps_under_faults_run_exactly_once")
        .env("TINKER_SOAK_STEPS", steps.to_string())
        // Tiny CPU models are fastest single-threaded (and deterministic to compare).
        .env(
            "RAYON_NUM_THREADS",
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "1".to_owned()),
        );
    println!("xtask soak: {steps} steps");
    let started = Instant::now();
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    println!(
        "xtask soak: finished in {:.1} s (build included)",
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("the soak failed ({status}); its numbers are above"))
    }
}
