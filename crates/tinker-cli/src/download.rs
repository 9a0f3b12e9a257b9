//! Streaming downloads of signed URLs: no Tinker credential is sent, every read has a
//! timeout, the size is bounded, and the file appears only when complete (a private temp
//! file in the target's folder, renamed without replacing anything).

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::CliError;

/// The SDK's per-read timeout of a signed-URL download.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest file accepted (a bound on what the network may make us write).
const MAX_FILE_BYTES: u64 = 1 << 40;

/// A progress bar on stderr, hidden unless `show` and stdout is a terminal.
pub(crate) fn progress(len: Option<u64>, label: &str, show: bool) -> ProgressBar {
    let visible = show && std::io::stdout().is_terminal();
    let bar = ProgressBar::with_draw_target(
        len,
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(label.to_owned());
    bar
}

/// Downloads `url` to `target` (which must not exist); returns the bytes written.
pub(crate) async fn fetch(url: &str, target: &Path, bar: &ProgressBar) -> Result<u64, CliError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| CliError::new("The server sent an invalid download URL"))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let fail = |e: &dyn std::fmt::Display| {
        CliError::with(
            format!("Download failed: {e}"),
            "The signed URL may have expired; re-run the command to get a fresh one.",
        )
    };
    let response = tokio::time::timeout(READ_TIMEOUT, client.get(uri))
        .await
        .map_err(|_| fail(&"timed out"))?
        .map_err(|e| fail(&e))?;
    if !response.status().is_success() {
        return Err(fail(&format!("HTTP {}", response.status())));
    }
    let length = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l > MAX_FILE_BYTES) {
        return Err(fail(&"file larger than 1 TiB"));
    }
    if let Some(l) = length {
        bar.inc_length(l);
    }
    let dir = target
        .parent()
        .ok_or_else(|| CliError::new("The download target has no folder"))?;
    // Exclusively created, mode 0600, removed on drop if we fail.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tinker-download-")
        .tempfile_in(dir)
        .map_err(|e| CliError::io(&format!("creating a file in {}", dir.display()), &e))?;
    let mut body = response.into_body();
    let mut written: u64 = 0;
    loop {
        let frame = tokio::time::timeout(READ_TIMEOUT, body.frame())
            .await
            .map_err(|_| fail(&"no data for 60 s"))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| fail(&e))?;
        if let Ok(chunk) = frame.into_data() {
            written += chunk.len() as u64;
            if written > MAX_FILE_BYTES || length.is_some_and(|l| written > l) {
                return Err(fail(&"more data than announced"));
            }
            tmp.write_all(&chunk)
                .map_err(|e| CliError::io(&format!("writing {}", target.display()), &e))?;
            bar.inc(chunk.len() as u64);
        }
    }
    if length.is_some_and(|l| written != l) {
        return Err(fail(&"connection closed before the end of the file"));
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| CliError::io(&format!("writing {}", target.display()), &e))?;
    tmp.persist_noclobber(target)
        .map_err(|e| CliError::io(&format!("creating {}", target.display()), &e.error))?;
    Ok(written)
}
