//! `cargo xtask test`: the full test gate run by CI and named in the README.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::workspace_root;

/// The cargo-deny version we install (into the cache, once) when it is not on PATH.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// Runs every check in order; stops at the first failure.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let skip_lint = args.iter().any(|a| a == "--skip-lint");
    let started = Instant::now();
    disk_report(&root);
    if !skip_lint {
        step("rustfmt", || {
            cargo(&root, &["fmt", "--all", "--", "--check"])
        })?;
        step("clippy", || {
            cargo(
                &root,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--locked",
                    "--",
                    "-D",
                    "warnings",
                ],
            )
        })?;
        // Docs are part of the API: broken or private links and stray HTML fail the gate.
        step("cargo doc", || {
            cargo_with_env(
                &root,
                &["doc", "--workspace", "--no-deps", "--locked"],
                &[("RUSTDOCFLAGS", "-D warnings")],
            )
        })?;
        step("codegen --check", || crate::codegen::run(true))?;
        step("facade-check", crate::facade::run)?;
        step("cargo deny", || cargo_deny(&root))?;
    }
    // `--tests` is every target with tests (libs, bins, integration tests, the one example
    // with unit tests) but not the other examples: `cargo xtask examples` builds those in
    // release, and a debug copy of each would cost ~1.6 GB of CI's disk for nothing.
    step("cargo test", || {
        cargo(&root, &test_args(&["--tests"]))?;
        cargo(&root, &test_args(&["--doc"]))
    })?;
    disk_report(&root);
    step("examples", || crate::examples::run(&[]))?;
    disk_report(&root);
    step(
        "conformance matrix (official SDKs 0.15.0, 0.25.0, 0.38.0 vs tinker-local)",
        || conformance_matrix(&root),
    )?;
    step(
        "wire (official SDK 0.38 vs tinker-rs, request by request)",
        || wire(&root),
    )?;
    println!("xtask test: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Prints the free space where the build writes (best effort: `df` may be missing), so a
/// CI log shows how close a run came to filling its disk.
fn disk_report(root: &Path) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let _ = Command::new("df").arg("-h").arg(&target).status();
}

fn step(name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("==> {name}");
    let started = Instant::now();
    let result = f().map_err(|e| format!("{name} failed: {e}"));
    println!("<== {name} ({:.1?})", started.elapsed());
    result
}

fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    cargo_with_env(root, args, &[])
}

/// `cargo args` with extra environment variables (they override inherited ones).
fn cargo_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(root)
        // Tiny CPU models are fastest single-threaded on a shared 2-core machine.
        .env("RAYON_NUM_THREADS", "1")
        // A one-shot gate gains nothing from incremental caches; they were a third of the
        // target folder (3.4 GB) and CI's disk is finite (a link died of SIGBUS on a full disk).
        .env("CARGO_INCREMENTAL", "0")
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` exited with {status}", args.join(" ")))
    }
}

/// The conformance run once per official SDK version of [`crate::venv::MATRIX`] (the
/// pinned one last); each run lists the steps its version lacks as skipped. Prints the
/// time of each run. Also `cargo xtask conformance` (uses the built `tinker-local`).
pub(crate) fn conformance_matrix(root: &Path) -> Result<(), String> {
    let mut times = Vec::new();
    for version in crate::venv::MATRIX {
        println!("--- conformance with tinker {version}");
        let started = Instant::now();
        let python = crate::venv::sdk_python_for(version)?;
        conformance(root, &python).map_err(|e| format!("tinker {version}: {e}"))?;
        times.push(format!("{version} {:.1?}", started.elapsed()));
    }
    println!("conformance matrix: {}", times.join(", "));
    Ok(())
}

/// Drives a freshly built `tinker-local` with an unchanged official Python SDK (the
/// interpreter of its venv).
///
/// `cargo test` builds the `tinker-local` binary for that crate's integration tests, so
/// right after it the binary is current; building it again with the plain (non-test)
/// feature set would recompile much of the dependency graph for nothing (~4 min on CI).
fn conformance(root: &Path, python: &Path) -> Result<(), String> {
    let server = root.join("target").join("debug").join("tinker-local");
    if !server.exists() {
        cargo(
            root,
            &[
                "build",
                "--locked",
                "-p",
                "tinker-local",
                "--bin",
                "tinker-local",
            ],
        )?;
    }
    let status = Command::new(python)
        .arg(root.join("scripts").join("conformance").join("run.py"))
        .arg(&server)
        .current_dir(root)
        .env("RAYON_NUM_THREADS", "1")
        .status()
        .map_err(|e| format!("could not run the conformance script: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the conformance script exited with {status}"))
    }
}

/// `cargo test` over the workspace with `extra` arguments, with the features the wire test
/// needs, so the test step and the wire step share one feature resolution and one build.
fn test_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "test",
        "--workspace",
        "--locked",
        "--no-fail-fast",
        "--features",
        "tinker-testkit/wire",
    ];
    args.extend_from_slice(extra);
    args
}

/// The wire test: `tinker-wire` (crates/tinker-testkit) records the pinned SDK's traffic
/// for `scripts/wire/scenario.py` and tinker-rs's for the same scenario, each against a
/// fresh zero-compute tinker-local, and fails on any difference `docs/compat.md` does not
/// list. Also `cargo xtask wire`.
pub(crate) fn wire(root: &Path) -> Result<(), String> {
    let python = crate::venv::sdk_python()?;
    // Built by the test step's own command (tinker-testkit's `wire_cli` test needs the
    // binary): a `cargo build -p tinker-testkit` resolves other features (no dev-dependencies,
    // so tokio without `test-util`) and rebuilt half the graph, ~150 s of CI. After the test
    // step this is a no-op.
    cargo(root, &test_args(&["--tests", "--no-run"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let status = Command::new(target.join("debug").join("tinker-wire"))
        .arg("--python")
        .arg(&python)
        .current_dir(root)
        .env("RAYON_NUM_THREADS", "1")
        .status()
        .map_err(|e| format!("could not run tinker-wire: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("tinker-wire exited with {status}"))
    }
}

/// `cargo deny check bans licenses sources`. The advisories check needs the network
/// (it fetches the RustSec database), so it is left out; see deny.toml.
fn cargo_deny(root: &Path) -> Result<(), String> {
    let program = crate::tools::ensure("cargo-deny", CARGO_DENY_VERSION)?;
    let status = Command::new(program)
        .args([
            "deny",
            "--all-features",
            "check",
            "bans",
            "licenses",
            "sources",
        ])
        .current_dir(root)
        .status()
        .map_err(|e| format!("could not run cargo-deny: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo-deny exited with {status}"))
    }
}
