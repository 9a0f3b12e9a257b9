//! `tinker session export-trace`.

use std::path::PathBuf;

use crate::connect;
use crate::download;
use crate::error::CliError;
use crate::output::{self, Format, Properties};

/// `tinker session …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// Export a session's timeline as a Perfetto trace (.pftrace).
    ExportTrace {
        /// The session id.
        session_id: String,
        /// Output file path (default: ./<session-id>.pftrace).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Print the signed download URL instead of downloading the trace.
        #[arg(long)]
        url_only: bool,
    },
}

/// Runs `tinker session …`.
pub(crate) async fn run(cmd: Cmd, format: Format) -> Result<(), CliError> {
    let Cmd::ExportTrace {
        session_id,
        output,
        url_only,
    } = cmd;
    let client = connect::rest().await?;
    if format == Format::Table {
        eprintln!("Exporting trace for session {session_id} (this may take a while)...");
    }
    let url = client.export_session_trace(&session_id).await?;
    if url_only {
        if format == Format::Json {
            println!(
                "{}",
                output::to_json(&serde_json::json!({ "session_id": session_id, "url": url }))?
            );
        } else {
            // Bare URL so `curl -o t.pftrace "$(tinker session export-trace ID --url-only)"` works.
            println!("{url}");
        }
        return Ok(());
    }
    let target = output.unwrap_or_else(|| PathBuf::from(format!("{session_id}.pftrace")));
    let target = if target.is_absolute() {
        target
    } else {
        std::env::current_dir()
            .map_err(|e| CliError::io("reading the current folder", &e))?
            .join(target)
    };
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::io(&format!("creating {}", dir.display()), &e))?;
    }
    if target.exists() {
        return Err(CliError::with(
            format!("File already exists: {}", target.display()),
            "Remove it or choose another path with --output.",
        ));
    }
    let bar = download::progress(None, "Downloading trace", format == Format::Table);
    let bytes = download::fetch(&url, &target, &bar).await?;
    bar.finish_and_clear();
    let destination = target.display().to_string();
    let rows = vec![
        ("Session ID".into(), session_id.clone()),
        ("Destination".into(), destination.clone()),
        ("Size".into(), output::size(bytes)),
    ];
    let json = serde_json::json!({
        "session_id": session_id,
        "destination": destination,
        "file_size_bytes": bytes,
    });
    output::print(
        &Properties {
            title: Some("Trace exported".into()),
            rows,
            json,
        },
        format,
    )
}
