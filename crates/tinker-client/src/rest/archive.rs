//! Checkpoint archives: the download of servers that still serve
//! `GET .../checkpoints/{kind}/{name}/archive` (the Tinker service before 0.38 external
//! weights, tinker-local): a signed URL of a tar of the checkpoint.
//!
//! The tar is streamed to disk under the size bound (as [`super::download`] writes any
//! download: exclusive create, `.part` then rename), then extracted entry by entry with
//! the same rules: only plain files and folders, paths made of normal components only,
//! every file created exclusively inside the target folder (never through a link), each
//! file and the whole archive bounded. Whatever is refused leaves the archive removed.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tinker_transport::RequestSpec;
use tinker_types::TinkerPath;

use super::download::{self, DownloadOptions};
use super::{DownloadProgress, RestClient, checkpoint_route, safe_join};
use crate::error::{Error, ErrorKind, Result};
use crate::session::parse_json;

/// Most entries one archive may hold (a checkpoint has a handful of files).
const MAX_ENTRIES: usize = 10_000;

/// The signed URL of a checkpoint archive and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct CheckpointArchiveUrl {
    /// Signed download URL of the tar (no API key needed).
    pub url: String,
    /// When the URL expires.
    pub expires: tinker_types::Timestamp,
}

fn refused(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::DownloadRefused, message)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}: {e}", path.display())).with_source(e)
}

impl RestClient {
    /// The signed archive URL of a training or sampler checkpoint (`tinker://…`), from a
    /// server that serves the archive route (404 or 405 from one that does not: use
    /// [`download_external_weights`](Self::download_external_weights) there).
    ///
    /// # Errors
    /// A bad path; API errors; [`ErrorKind::Protocol`] for an answer without a URL.
    pub async fn get_checkpoint_archive_url(&self, path: &str) -> Result<CheckpointArchiveUrl> {
        let route = format!("{}/archive", checkpoint_route(&TinkerPath::parse(path)?));
        // The client states SDK 0.38 (`x-stainless-package-version`), so tinker-local
        // answers 200 `{"url", "expires"}`, not a redirect the transport would follow
        // into the archive itself (protocol §10.2).
        let response = self
            .holder
            .send_retrying("RestClient.get_checkpoint_archive_url", || {
                Ok(RequestSpec::get(route.clone())
                    .with_accept(tinker_transport::APPLICATION_JSON)
                    .with_sdk_method("RestClient.get_checkpoint_archive_url"))
            })
            .await?;
        parse_json(&response)
    }

    /// Downloads a checkpoint's archive and extracts it into `dir` (created if missing),
    /// with the default [`DownloadOptions`]. See
    /// [`download_checkpoint_archive_with`](Self::download_checkpoint_archive_with).
    ///
    /// # Errors
    /// As [`download_checkpoint_archive_with`](Self::download_checkpoint_archive_with).
    pub async fn download_checkpoint_archive(
        &self,
        path: &str,
        dir: &Path,
        progress: impl FnMut(&DownloadProgress) + Send,
    ) -> Result<Vec<PathBuf>> {
        self.download_checkpoint_archive_with(path, dir, &DownloadOptions::default(), progress)
            .await
    }

    /// Downloads a checkpoint's archive (see
    /// [`get_checkpoint_archive_url`](Self::get_checkpoint_archive_url)) and extracts it
    /// into `dir` (created if missing); returns the written files. `progress` is called
    /// once per extracted file.
    ///
    /// The URL must be https (plain http only when this client's base URL is itself
    /// loopback http, as with tinker-local). The archive, bounded by
    /// `options.max_file_bytes`, is streamed to a hidden `.part` file in `dir`, then every
    /// entry is checked before it is written: plain files and folders only (a link, device
    /// or other entry is refused), relative paths that stay inside `dir`, no file that
    /// already exists, no sub-folder that is a link. The archive is removed afterwards.
    ///
    /// # Errors
    /// [`ErrorKind::DownloadRefused`] for an insecure URL, an archive over the limit or an
    /// entry that breaks a rule; [`ErrorKind::InvalidInput`] for a bad path; API,
    /// connection and I/O errors.
    pub async fn download_checkpoint_archive_with(
        &self,
        path: &str,
        dir: &Path,
        options: &DownloadOptions,
        mut progress: impl FnMut(&DownloadProgress) + Send,
    ) -> Result<Vec<PathBuf>> {
        let signed = self.get_checkpoint_archive_url(path).await?;
        let base_url = self.holder.transport.base_url().to_owned();
        let uri = download::check_signed_url(&signed.url, &base_url)?;
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            Error::new(ErrorKind::Io, format!("creating {}: {e}", dir.display())).with_source(e)
        })?;
        let tar = dir.join(format!(".checkpoint-archive-{}.tar", uuid::Uuid::new_v4()));
        download::fetch_to_file(uri, &tar, options).await?;
        let (dir_owned, tar_owned, limit) =
            (dir.to_path_buf(), tar.clone(), options.max_file_bytes);
        let extracted =
            tokio::task::spawn_blocking(move || extract(&tar_owned, &dir_owned, limit)).await;
        // Ours: created exclusively by the download.
        let _ = std::fs::remove_file(&tar);
        let extracted = extracted
            .map_err(|e| Error::new(ErrorKind::Io, format!("extracting the archive: {e}")))??;
        let count = extracted.len();
        let mut written = Vec::with_capacity(count);
        for (i, (rel, target, bytes)) in extracted.into_iter().enumerate() {
            progress(&DownloadProgress {
                file: rel,
                file_index: i,
                file_count: count,
                bytes,
            });
            written.push(target);
        }
        Ok(written)
    }
}

/// Extracts the tar at `tar` into `dir` by the rules of the module; returns each file's
/// relative path, written path and size. At most `limit` bytes are written in all.
fn extract(tar: &Path, dir: &Path, limit: u64) -> Result<Vec<(String, PathBuf, u64)>> {
    let file = std::fs::File::open(tar).map_err(|e| io_error("opening", tar, e))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries()
        .map_err(|e| refused(format!("the checkpoint archive is not a tar: {e}")))?;
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for (i, entry) in entries.enumerate() {
        if i >= MAX_ENTRIES {
            return Err(refused(format!(
                "the checkpoint archive has more than {MAX_ENTRIES} entries"
            )));
        }
        let mut entry = entry.map_err(|e| refused(format!("a damaged checkpoint archive: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| refused(format!("an archive entry with a bad path: {e}")))?
            .to_string_lossy()
            .into_owned();
        let rel = raw
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if !rel.is_empty() {
                safe_join(dir, &rel)?;
                // Sub-folders are made (and checked) when a file below them is written.
            }
            continue;
        }
        if !kind.is_file() {
            return Err(refused(format!(
                "refusing archive entry {raw:?}: only plain files and folders are extracted"
            )));
        }
        safe_join(dir, &rel)?;
        let size = entry.header().size().unwrap_or(u64::MAX);
        total = total.saturating_add(size);
        if total > limit {
            return Err(refused(format!(
                "the checkpoint archive unpacks to more than the download limit of {limit} \
                 bytes (see DownloadOptions::max_file_bytes)"
            )));
        }
        let target = download::prepare_target(dir, Path::new(&rel))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    refused(format!(
                        "refusing to extract through {}: something is already there",
                        target.display()
                    ))
                } else {
                    io_error("creating", &target, e)
                }
            })?;
        // The header's size bounds what is read (a lying header cannot write more).
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut file)
            .map_err(|e| io_error("writing", &target, e))?;
        out.push((rel, target, copied));
    }
    Ok(out)
}
