//! Project automation for tinker-rs.
//!
//! * `cargo xtask codegen [--check]`: regenerate the committed generated code, or check that
//!   it is up to date.
//! * `cargo xtask fixtures`: regenerate the golden fixtures with the official SDK.
//! * `cargo xtask test`: the whole test gate that CI runs (`.ci/run`) and the README names.
//! * `cargo xtask wire`: the wire test, the official SDK's requests vs tinker-rs's for one
//!   scenario (part of `cargo xtask test`).
//! * `cargo xtask facade-check`: every type a public signature of the clients reaches is
//!   exported at the root of the `tinker` facade (part of `cargo xtask test`).
//! * `cargo xtask examples [--no-build] [NAME…]`: build and run the examples offline.
//! * `cargo xtask bench-sdk`: benchmark the Rust client against the official Python SDK.
//! * `cargo xtask soak --steps N`: the long soak (exactly-once, bit-identical under faults).
//! * `cargo xtask fuzz [--seconds N] [--only LIST]`: run every fuzz target of `fuzz/` for
//!   N seconds (nightly + cargo-fuzz; not part of `cargo xtask test`).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// Project automation has no injected clock; it measures real runs.
#![allow(clippy::disallowed_methods)]

mod bench_sdk;
mod ci;
mod codegen;
mod examples;
mod facade;
mod fixtures;
mod fuzz;
mod soak;
mod tools;
mod venv;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("codegen") => codegen::run(args.iter().any(|a| a == "--check")),
        Some("fixtures") => fixtures::run(),
        Some("test") => ci::run(&args[1..]),
        Some("facade-check") => facade::run(),
        Some("conformance") => ci::conformance_matrix(&workspace_root()),
        Some("wire") => ci::wire(&workspace_root()),
        Some("examples") => examples::run(&args[1..]),
        Some("bench-sdk") => bench_sdk::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("sdk-python") => venv::sdk_python().map(|p| println!("{}", p.display())),
        _ => {
            eprintln!(
                "usage: cargo xtask codegen [--check] | cargo xtask fixtures | cargo xtask test [--skip-lint] | cargo xtask conformance | cargo xtask wire | cargo xtask facade-check | cargo xtask examples [--no-build] [NAME...] | cargo xtask sdk-python | cargo xtask bench-sdk [--reps N] [--only LIST] [--quick] [--no-build] | cargo xtask fuzz [--seconds N] [--only LIST] | cargo xtask soak [--steps N] [--release]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Where tools and the Python venv of the official SDK are cached, outside the clone.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TINKER_RS_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("tinker-rs")
}
