//! `tinker-wire`: the wire test of `cargo xtask test`. Runs one scenario through the
//! official Python SDK (`scripts/wire/scenario.py`) and through tinker-rs (the
//! [`scenario`] module), each against a fresh zero-compute tinker-local behind a recording
//! proxy, then compares the two recordings request by request (method, path, query,
//! headers, JSON and decoded protobuf bodies). Fails on any difference that
//! `docs/compat.md`'s table does not list.
//!
//! ```text
//! tinker-wire --python VENV/bin/python [--script scripts/wire/scenario.py]
//!             [--compat docs/compat.md] [--dump DIR]
//! ```
//!
//! Run from the workspace root (the default paths are relative to it).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test tooling: a broken fixture panics at once"
)]
#![allow(clippy::disallowed_methods, reason = "test tooling times a real run")]

mod compare;
mod compat;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;

use tinker_local::{LocalServer, LocalServerConfig};
use tinker_testkit::record::{Recorded, RecordingProxy};

struct Args {
    python: PathBuf,
    script: PathBuf,
    compat: PathBuf,
    dump: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut python = None;
    let mut script = PathBuf::from("scripts/wire/scenario.py");
    let mut compat = PathBuf::from("docs/compat.md");
    let mut dump = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--python" => python = Some(PathBuf::from(value()?)),
            "--script" => script = PathBuf::from(value()?),
            "--compat" => compat = PathBuf::from(value()?),
            "--dump" => dump = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        python: python.ok_or("--python VENV/bin/python is required")?,
        script,
        compat,
        dump,
    })
}

/// Which client drives a run.
enum Side<'a> {
    Python(&'a Args),
    Rust,
}

/// A fresh zero-compute tinker-local behind a recording proxy; runs `side`'s scenario
/// through the proxy and returns what it recorded.
async fn capture(side: Side<'_>) -> Result<Vec<Recorded>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = LocalServerConfig::new(dir.path());
    config.zero_compute = true;
    let server = LocalServer::start(config)
        .await
        .map_err(|e| format!("starting tinker-local: {e}"))?;
    let proxy = RecordingProxy::start(&server.url()).await;
    let url = proxy.url.clone();
    let outcome = match side {
        Side::Python(args) => {
            let (python, script) = (args.python.clone(), args.script.clone());
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(&python)
                    .arg(&script)
                    .arg(&url)
                    // Telemetry uploads are timed, not part of the scenario (tinker-rs's
                    // side turns it off too).
                    .env("TINKER_TELEMETRY", "0")
                    .env_remove("TINKER_BASE_URL")
                    .env_remove("TINKER_API_KEY")
                    .status()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("could not run {}: {e}", args.python.display()))
            .and_then(|status| {
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("the Python scenario exited with {status}"))
                }
            })
        }
        Side::Rust => scenario::run(&url)
            .await
            .map_err(|e| format!("the Rust scenario failed: {e}")),
    };
    let recorded = proxy.recorded();
    drop(proxy);
    server.shutdown().await;
    outcome.map(|()| recorded)
}

fn dump(dir: &std::path::Path, name: &str, recorded: &[Recorded]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut text = String::new();
    for r in recorded {
        text.push_str(&format!(
            "{} {} {:?} -> {}\n",
            r.method, r.path, r.query, r.status
        ));
        for (k, v) in &r.headers {
            text.push_str(&format!("  {k}: {v}\n"));
        }
        text.push_str(&format!("  body: {} bytes\n", r.body.len()));
    }
    std::fs::write(dir.join(name), text).map_err(|e| e.to_string())
}

async fn run() -> Result<bool, String> {
    let args = parse_args()?;
    let markdown = std::fs::read_to_string(&args.compat)
        .map_err(|e| format!("reading {}: {e}", args.compat.display()))?;
    let compat = compat::parse(&markdown)?;
    let started = std::time::Instant::now();
    let python = capture(Side::Python(&args)).await?;
    let python_time = started.elapsed();
    let rust = capture(Side::Rust).await?;
    if let Some(dir) = &args.dump {
        dump(dir, "python.txt", &python)?;
        dump(dir, "rust.txt", &rust)?;
    }
    let report = compare::compare(&python, &rust, &compat);
    println!(
        "wire: {} requests from the SDK ({python_time:.1?}), {} from tinker-rs ({:.1?}); {} compared side by side",
        python.len(),
        rust.len(),
        started.elapsed() - python_time,
        report.compared
    );
    for note in &report.notes {
        println!("  note: {note}");
    }
    for (key, n) in &report.allowed {
        println!("  allowed by docs/compat.md ({key}): {n}x");
    }
    let used: Vec<String> = report.allowed.keys().cloned().collect();
    for row in &compat {
        if !used.contains(&row.key()) {
            println!("  compat row not needed in this run: {}", row.key());
        }
    }
    for failure in &report.failures {
        println!("  DIFF {failure}");
    }
    if report.failures.is_empty() {
        println!("wire: OK, no difference outside docs/compat.md");
    } else {
        println!(
            "wire: FAILED, {} difference(s) not listed in docs/compat.md",
            report.failures.len()
        );
    }
    Ok(report.failures.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tinker-wire: {e}");
            ExitCode::FAILURE
        }
    }
}
