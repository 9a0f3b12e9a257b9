//! `cargo xtask fuzz [--seconds N] [--only LIST]`: runs every cargo-fuzz target of
//! `fuzz/` for N seconds each (default 10) on the installed nightly toolchain, and prints
//! one line per target: executions, corpus size, crashes. Not part of `cargo xtask test`.
//!
//! cargo-fuzz is installed (once) into the tool cache when it is not on PATH, as
//! cargo-deny is for `cargo xtask test`. Crash inputs land in `fuzz/artifacts/<target>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace_root;

/// The cargo-fuzz version installed into the cache when it is not on PATH.
const CARGO_FUZZ_VERSION: &str = "0.12.0";
/// The toolchain the targets build with (also pinned by `fuzz/rust-toolchain.toml`).
const TOOLCHAIN: &str = "+nightly";

/// What one target's run reported.
struct Outcome {
    target: String,
    runs: Option<u64>,
    corpus: Option<u64>,
    crashed: bool,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let seconds = flag_value(args, "--seconds")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| format!("--seconds {v:?} is not a number"))
        })
        .transpose()?
        .unwrap_or(10);
    let only: Option<Vec<String>> =
        flag_value(args, "--only").map(|v| v.split(',').map(str::to_owned).collect());
    let root = workspace_root();
    let tools_bin = ensure_cargo_fuzz()?;
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![tools_bin];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).map_err(|e| format!("bad PATH: {e}"))?
        }
        None => tools_bin.into_os_string(),
    };
    let mut targets = list_targets(&root, &path)?;
    if let Some(only) = &only {
        targets.retain(|t| only.contains(t));
    }
    if targets.is_empty() {
        return Err("no fuzz targets to run".to_owned());
    }
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(&root, &path, target, seconds)?);
    }
    println!("fuzz summary ({seconds} s per target):");
    for o in &outcomes {
        println!(
            "  {:<32} {:>12} execs  corpus {:>6}  {}",
            o.target,
            o.runs.map_or("?".to_owned(), |r| r.to_string()),
            o.corpus.map_or("?".to_owned(), |c| c.to_string()),
            if o.crashed { "CRASH" } else { "no crash" }
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "crashes in {} (inputs under fuzz/artifacts/)",
            crashed.join(", ")
        ))
    }
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The directory holding `cargo-fuzz`: PATH's when installed, else the tool cache (after
/// installing it there).
fn ensure_cargo_fuzz() -> Result<PathBuf, String> {
    crate::tools::ensure("cargo-fuzz", CARGO_FUZZ_VERSION)?;
    Ok(crate::tools::tools_dir().join("bin"))
}

fn fuzz_command(root: &Path, path: &std::ffi::OsStr) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(TOOLCHAIN)
        .arg("fuzz")
        .current_dir(root)
        .env("PATH", path)
        // The workspace's CARGO_TARGET_DIR is for the pinned toolchain; nightly
        // sanitizer builds keep their own (fuzz/target).
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    cmd
}

fn list_targets(root: &Path, path: &std::ffi::OsStr) -> Result<Vec<String>, String> {
    let out = fuzz_command(root, path)
        .arg("list")
        .output()
        .map_err(|e| format!("could not run cargo fuzz list: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn run_target(
    root: &Path,
    path: &std::ffi::OsStr,
    target: &str,
    seconds: u64,
) -> Result<Outcome, String> {
    println!("fuzzing {target} for {seconds} s");
    let out = fuzz_command(root, path)
        .args(["run", target, "--"])
        .arg(format!("-max_total_time={seconds}"))
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .output()
        .map_err(|e| format!("could not run cargo fuzz run {target}: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').trim().parse::<u64>().ok())
    };
    // libFuzzer's final stats: `stat::number_of_executed_units: N`.
    let runs = stat("stat::number_of_executed_units").or_else(|| {
        log.lines()
            .find_map(|l| l.strip_prefix("Done "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    });
    // The last status line names the corpus size: `#N ... corp: C/...`.
    let corpus = log
        .lines()
        .rev()
        .find_map(|l| l.split("corp: ").nth(1))
        .and_then(|rest| rest.split('/').next()?.parse().ok());
    let crashed = !out.status.success();
    if crashed {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "{target} failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Outcome {
        target: target.to_owned(),
        runs,
        corpus,
        crashed,
    })
}
