//! The `tinker` command-line tool.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{Parser, Subcommand};

/// Command-line interface to the Tinker training API.
#[derive(Debug, Parser)]
#[command(name = "tinker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of this tool.
    Version,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("tinker {}", env!("CARGO_PKG_VERSION")),
    }
}
