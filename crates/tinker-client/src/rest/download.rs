//! Writing downloaded files safely (protocol §6.11, hardened): signed URLs only over https
//! (plain http only when the API itself is loopback http, as with tinker-local), every file
//! streamed to disk under a size bound, and created exclusively inside the target folder:
//! never through a link already there, never below a symlinked sub-folder.
//!
//! Files arrive as `<name>.part` (created with `O_CREAT | O_EXCL`, so an existing file or
//! link of that name is refused, not written through) and are renamed when complete.

use std::io::ErrorKind as IoKind;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, ErrorKind, Result};

/// Default bound on one downloaded file: larger than any LoRA export, small enough that a
/// hostile or broken server cannot fill the disk.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 32 << 30;

/// How long one read of a signed URL may wait (the SDK's 60 s timeout).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of [`RestClient::download_external_weights_with`](crate::RestClient::download_external_weights_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// Largest accepted file, in bytes (default [`DEFAULT_MAX_FILE_BYTES`]); a larger one
    /// fails with [`ErrorKind::DownloadRefused`] and leaves nothing behind.
    pub max_file_bytes: u64,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl DownloadOptions {
    /// Sets the largest accepted file.
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }
}

fn refused(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::DownloadRefused, message)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}: {e}", path.display())).with_source(e)
}

/// Whether `host` (a URI host, IPv6 in brackets) is a loopback address or `localhost`.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a signed URL before anything connects to it: https, or http to a loopback host
/// when the API base URL is itself loopback http (a local server such as tinker-local).
///
/// # Errors
/// [`ErrorKind::DownloadRefused`] for any other URL; [`ErrorKind::Protocol`] for one that
/// does not parse.
pub(crate) fn check_signed_url(url: &str, base_url: &str) -> Result<http::Uri> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::protocol("the server sent a signed URL that does not parse"))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::protocol("the server sent a signed URL without a host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") => {
            let base: Option<http::Uri> = base_url.parse().ok();
            let base_is_loopback_http = base.as_ref().is_some_and(|b| {
                b.scheme_str() == Some("http") && b.host().is_some_and(is_loopback_host)
            });
            if base_is_loopback_http && is_loopback_host(host) {
                Ok(uri)
            } else {
                Err(refused(format!(
                    "refusing a plain-http signed URL to {host}: downloads use https unless \
                     the API itself is a loopback http server"
                )))
            }
        }
        other => Err(refused(format!(
            "refusing a signed URL with scheme {:?}",
            other.unwrap_or("")
        ))),
    }
}

/// Resolves `rel` (already checked to be plain `Normal` components) below `root`, creating
/// missing sub-folders one at a time. Refuses any existing component that is not a real
/// folder (a symlink, a file), so the path cannot lead outside `root`.
pub(crate) fn prepare_target(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut at = root.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        let Component::Normal(name) = part else {
            return Err(Error::invalid(format!(
                "refusing download path {}: it escapes the target folder",
                rel.display()
            )));
        };
        at.push(name);
        if parts.peek().is_none() {
            break;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(refused(format!(
                    "refusing to download {}: {} is a link or a file, not a folder",
                    rel.display(),
                    at.display()
                )));
            }
            Err(e) if e.kind() == IoKind::NotFound => match std::fs::create_dir(&at) {
                Ok(()) => {}
                // Created meanwhile by someone else: check it again next time round.
                Err(e) if e.kind() == IoKind::AlreadyExists => {
                    let m =
                        std::fs::symlink_metadata(&at).map_err(|e| io_error("checking", &at, e))?;
                    if !m.file_type().is_dir() {
                        return Err(refused(format!(
                            "refusing to download {}: {} is not a folder",
                            rel.display(),
                            at.display()
                        )));
                    }
                }
                Err(e) => return Err(io_error("creating", &at, e)),
            },
            Err(e) => return Err(io_error("checking", &at, e)),
        }
    }
    match std::fs::symlink_metadata(&at) {
        Ok(_) => Err(refused(format!(
            "refusing to download {}: {} already exists",
            rel.display(),
            at.display()
        ))),
        Err(e) if e.kind() == IoKind::NotFound => Ok(at),
        Err(e) => Err(io_error("checking", &at, e)),
    }
}

/// `<target>.part`: the name a file has while it arrives.
fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    target.with_file_name(name)
}

/// Streams `uri` (checked by [`check_signed_url`]) into a new file `target`, through
/// `<target>.part`; returns the number of bytes written.
pub(crate) async fn fetch_to_file(
    uri: http::Uri,
    target: &Path,
    options: &DownloadOptions,
) -> Result<u64> {
    let part = part_path(target);
    // O_CREAT | O_EXCL: an existing file, symlink or hard link here is refused, never
    // written through.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(|e| {
            if e.kind() == IoKind::AlreadyExists {
                refused(format!(
                    "refusing to download through {}: something (a file or a link) is already \
                     there",
                    part.display()
                ))
            } else {
                io_error("creating", &part, e)
            }
        })?;
    let mut file = tokio::fs::File::from_std(file);
    let written = stream_into(uri, &mut file, options).await;
    let written = match written {
        Ok(n) => file
            .sync_all()
            .await
            .map(|()| n)
            .map_err(|e| io_error("writing", &part, e)),
        Err(e) => Err(e),
    };
    drop(file);
    let published = written.and_then(|n| {
        // The target was checked to be absent; `rename` replaces (never follows) a link
        // that appeared there since.
        std::fs::rename(&part, target)
            .map(|()| n)
            .map_err(|e| io_error("renaming", &part, e))
    });
    if published.is_err() {
        // Ours: created exclusively above.
        let _ = std::fs::remove_file(&part);
    }
    published
}

/// A plain, unauthenticated GET of `uri`, written to `file` as it arrives.
async fn stream_into(
    uri: http::Uri,
    file: &mut tokio::fs::File,
    options: &DownloadOptions,
) -> Result<u64> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let host = uri.host().unwrap_or_default().to_owned();
    let request = http::Request::get(uri)
        // Identity only: the size bound then holds for the bytes written too.
        .header(ACCEPT_ENCODING, "identity")
        .body(Empty::new())
        .map_err(|e| Error::protocol(format!("invalid signed URL request: {e}")))?;
    let connection = |e: String| {
        Error::new(
            ErrorKind::Connection,
            format!("downloading from {host}: {e}"),
        )
    };
    let response = tokio::time::timeout(READ_TIMEOUT, client.request(request))
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("{host} did not answer in 60 s")))?
        .map_err(|e| connection(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::api(status.as_u16(), "signed URL download failed"));
    }
    if let Some(enc) = response.headers().get(CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(refused(format!(
            "the signed URL answered with Content-Encoding {:?} although only identity was \
             accepted",
            String::from_utf8_lossy(enc.as_bytes())
        )));
    }
    let too_large = |n: u64| {
        refused(format!(
            "the file is larger than the download limit of {} bytes ({n} bytes or more; see \
             DownloadOptions::max_file_bytes)",
            options.max_file_bytes
        ))
    };
    if let Some(len) = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > options.max_file_bytes
    {
        return Err(too_large(len));
    }
    let mut body = response.into_body();
    let mut written: u64 = 0;
    loop {
        let frame = tokio::time::timeout(READ_TIMEOUT, body.frame())
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, format!("{host} stalled for 60 s")))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| connection(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        written += data.len() as u64;
        if written > options.max_file_bytes {
            return Err(too_large(written));
        }
        file.write_all(&data)
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("writing the download: {e}")))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_must_be_https_unless_all_is_loopback() {
        let https = "https://storage.example/a?sig=1";
        assert!(check_signed_url(https, "https://api.example").is_ok());
        assert!(check_signed_url(https, "http://127.0.0.1:8790").is_ok());
        let local = "http://127.0.0.1:8790/files/a?sig=1";
        assert!(check_signed_url(local, "http://127.0.0.1:8790").is_ok());
        assert!(check_signed_url("http://[::1]:1/x", "http://localhost:8790").is_ok());
        for (url, base) in [
            ("http://127.0.0.1:1/", "https://api.example"),
            ("http://storage.example/a", "http://127.0.0.1:8790"),
            ("http://127.0.0.1:1/", "http://api.example"),
            ("ftp://127.0.0.1/a", "http://127.0.0.1:8790"),
        ] {
            let err = check_signed_url(url, base).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{url} with {base}");
        }
    }

    #[test]
    fn part_name_keeps_the_extension() {
        assert_eq!(
            part_path(Path::new("/d/model.safetensors")),
            Path::new("/d/model.safetensors.part")
        );
    }
}
