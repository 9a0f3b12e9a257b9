//! The `tinker` command-line tool: checkpoints, runs, sessions, auth, billing and models,
//! with the names, options and defaults of the official SDK's CLI (protocol §7).
//!
//! Section numbers such as §6.4 refer to `docs/protocol.md`, the wire protocol as tinker-rs
//! implements it.
#![allow(clippy::print_stdout, clippy::print_stderr)]
// A command-line tool has no injected clock; it shows and measures real time.
#![allow(clippy::disallowed_methods)]

mod archive;
mod commands;
mod connect;
mod download;
mod error;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::error::CliError;
use crate::output::Format;

/// Command-line interface to the Tinker training API.
#[derive(Debug, Parser)]
#[command(name = "tinker", version, about)]
struct Cli {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table", global = true)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage checkpoints.
    #[command(subcommand)]
    Checkpoint(commands::checkpoint::Cmd),
    /// Manage training runs.
    #[command(subcommand)]
    Run(commands::run::Cmd),
    /// Manage sessions.
    #[command(subcommand)]
    Session(commands::session::Cmd),
    /// Log in, log out and check credentials.
    #[command(subcommand)]
    Auth(commands::auth::Cmd),
    /// Usage and storage billing.
    #[command(subcommand)]
    Billing(commands::billing::Cmd),
    /// List available models.
    #[command(subcommand)]
    Model(commands::model::Cmd),
    /// Sample from a base model or saved sampler weights (beyond the SDK's CLI: tinkex's
    /// sampling command).
    Sample(commands::sample::Args),
    /// Print the version of this tool.
    Version,
    /// Print a shell completion script (e.g. `tinker completions bash > /etc/bash_completion.d/tinker`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let f = cli.format;
    match cli.command {
        Command::Checkpoint(c) => commands::checkpoint::run(c, f).await,
        Command::Run(c) => commands::run::run(c, f).await,
        Command::Session(c) => commands::session::run(c, f).await,
        Command::Auth(c) => commands::auth::run(c, f).await,
        Command::Billing(c) => commands::billing::run(c, f).await,
        Command::Model(c) => commands::model::run(c, f).await,
        Command::Sample(a) => commands::sample::run(a, f).await,
        Command::Version => {
            println!("tinker {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tinker", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(cli) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // Don't wait for background tasks (telemetry flushes) past the command.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        None => {
            eprintln!("\nInterrupted");
            ExitCode::from(130)
        }
    }
}
