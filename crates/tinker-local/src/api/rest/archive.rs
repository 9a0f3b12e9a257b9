//! The checkpoint archive of SDK ≤ 0.25 and tinkex: `GET .../checkpoints/{kind}/{name}/archive`
//! gives a signed URL of a tar of the checkpoint. SDK 0.15 and 0.25 send the same `Accept:
//! application/json`, but 0.15 only reads a 302 (its 200 path is broken) while 0.25 reads
//! either; so the answer follows the SDK version the client states
//! (`X-Stainless-Package-Version`): from 0.25 on (this project's client states 0.38) a 200
//! `{"url", "expires"}`, else (0.15, tinkex, curl) 302 to the URL with `Expires` (the
//! service's answer; clients that follow redirects get the archive itself).

use std::io::Write;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::checkpoints::checkpoint_id;
use super::signed::{Signature, base_url, check_signature, signed_query};
use crate::api::owned::{self, Access};
use crate::api::{ApiError, ApiResult, AppStateRef};
use crate::auth::Caller;
use crate::persist::list_files;

/// Tar bytes are sent in chunks of this size as they are produced.
const CHUNK_BYTES: usize = 256 * 1024;

/// The signed-URL resource of a checkpoint's archive.
fn resource(run_id: &str, kind: &str, name: &str) -> String {
    format!("archive:{run_id}/{kind}/{name}")
}

/// `GET /api/v1/training_runs/{run}/checkpoints/{kind}/{name}/archive`: the signed archive
/// URL (200 JSON or 302 by the client's SDK version, see the module). Readable like the checkpoint itself (its owner,
/// or anyone once published).
pub(super) async fn archive_url(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((run_id, kind, name)): Path<(String, String, String)>,
) -> ApiResult {
    let id = checkpoint_id(&kind, &name)?;
    let path = format!("tinker://{run_id}/{id}");
    owned::checkpoint(&state, &caller, &path, Access::OwnOrPublished)?;
    let (query, expires) = signed_query(&state, &resource(&run_id, &kind, &name));
    let url = format!(
        "{}/archives/{run_id}/{kind}/{name}?{query}",
        base_url(&state, &headers)
    );
    let body = serde_json::json!({ "url": url, "expires": expires.to_rfc3339() });
    if reads_json_answer(&headers) {
        return Ok(axum::Json(body).into_response());
    }
    let mut response = (StatusCode::FOUND, axum::Json(body)).into_response();
    let http_date = expires.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    for (name, value) in [(header::LOCATION, url), (header::EXPIRES, http_date)] {
        let value = HeaderValue::from_str(&value).map_err(|e| ApiError::internal(e.to_string()))?;
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

/// Whether the client states an SDK version of 0.25 or later (see the module).
fn reads_json_answer(headers: &HeaderMap) -> bool {
    let Some(version) = headers
        .get("x-stainless-package-version")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (0, 25),
        _ => false,
    }
}

/// `GET /archives/{run}/{kind}/{name}?expires&sig`: the checkpoint's files as a tar,
/// streamed while it is written (regular files only, paths relative to the checkpoint).
pub(super) async fn download_archive(
    State(state): AppStateRef,
    Path((run_id, kind, name)): Path<(String, String, String)>,
    Query(sig): Query<Signature>,
) -> ApiResult {
    check_signature(&state, &resource(&run_id, &kind, &name), &sig)?;
    let id = checkpoint_id(&kind, &name)?;
    let exists = state
        .store
        .run(&run_id)
        .is_some_and(|run| run.checkpoints.iter().any(|c| c.checkpoint_id == id));
    if !exists {
        return Err(ApiError::not_found(format!(
            "checkpoint tinker://{run_id}/{id} does not exist"
        )));
    }
    let dir = state.store.checkpoint_dir(&run_id, &id);
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK_BYTES),
        });
        builder.follow_symlinks(false);
        let written = list_files(&dir)
            .iter()
            .try_for_each(|file| {
                let path = dir.join(file);
                let meta = std::fs::symlink_metadata(&path)?;
                if !meta.is_file() {
                    return Ok(());
                }
                builder.append_path_with_name(&path, file)
            })
            .and_then(|()| builder.into_inner())
            .and_then(|mut w| w.flush());
        if let Err(e) = written {
            // The client sees a broken body, not a truncated archive that looks whole.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(response)
}

/// Collects tar bytes into chunks and hands them to the response body.
struct ChunkWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}
