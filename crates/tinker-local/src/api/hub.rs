//! The Hugging Face Hub's file routes, for the tokenizers of the models this server serves.
//!
//! `get_info` reports `tokenizer_id` = the model name (e.g. `tinker-local/micro`), an id a
//! client on any machine can load: with `HF_ENDPOINT=<this server's URL>`, `huggingface_hub`
//! (Python SDK) and the Rust SDK's hub fetcher download it like a hub repository. Only the
//! tokenizer files of served models are answered, read-only and without credentials (like a
//! public hub repository: they hold no account data); everything else is a hub-style 404.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppStateRef;
use crate::state::AppState;
use std::sync::Arc;

/// The files of a tokenizer folder this server hands out (nothing else in the folder is).
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
];

/// Largest tokenizer file served (the biggest real ones are ~30 MB).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The hub routes (outside `/api/v1`, unauthenticated).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/{org}/{repo}/resolve/{revision}/{*file}", get(resolve))
        .route("/api/models/{org}/{repo}", get(model_info_main))
        .route(
            "/api/models/{org}/{repo}/revision/{revision}",
            get(model_info),
        )
        .route("/api/models/{org}/{repo}/tree/{revision}", get(tree))
        .route(
            "/api/models/{org}/{repo}/tree/{revision}/{*path}",
            get(tree_path),
        )
}

/// The tokenizer folder of the served model `model_name`, if it serves one.
///
/// Every served model has a name and a tokenizer folder; this is the one lookup from a
/// name to that folder (the HF-folder models of `serve --model NAME=DIR` extend it).
pub(crate) fn tokenizer_dir(state: &AppState, model_name: &str) -> Option<PathBuf> {
    state.spec(model_name).map(|s| s.tokenizer_dir.clone())
}

/// A served tokenizer: its files (name, bytes) and a content-derived commit id.
struct Repo {
    files: Vec<(String, Vec<u8>)>,
    commit: String,
}

// The error side is the hub-style reply the route sends as is; these run once per request,
// so its size does not matter.
#[allow(clippy::result_large_err)]
impl Repo {
    fn load(state: &AppState, org: &str, repo: &str) -> Result<Self, Response> {
        let name = format!("{org}/{repo}");
        let dir = tokenizer_dir(state, &name)
            .ok_or_else(|| hub_error("RepoNotFound", &format!("Repository {name} not found")))?;
        let files: Vec<(String, Vec<u8>)> = TOKENIZER_FILES
            .iter()
            .filter_map(|file| read_bounded(&dir.join(file)).map(|b| ((*file).to_owned(), b)))
            .collect();
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for (file, bytes) in &files {
            digest.update(file.as_bytes());
            digest.update(&(bytes.len() as u64).to_le_bytes());
            digest.update(bytes);
        }
        let commit = hex(&digest.finish().as_ref()[..20]);
        Ok(Self { files, commit })
    }

    /// [`Repo::load`], then [`Repo::check_revision`]: what every route starts with.
    fn at_revision(
        state: &AppState,
        org: &str,
        repo: &str,
        revision: &str,
    ) -> Result<Self, Response> {
        let loaded = Self::load(state, org, repo)?;
        loaded.check_revision(revision)?;
        Ok(loaded)
    }

    /// `main` (the default every client asks for) or this content's commit id.
    fn check_revision(&self, revision: &str) -> Result<(), Response> {
        if revision == "main" || revision == self.commit {
            Ok(())
        } else {
            Err(hub_error(
                "RevisionNotFound",
                &format!("Invalid rev id: {revision}"),
            ))
        }
    }
}

/// A regular file (not a link) of at most [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    std::fs::read(path).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 404 as the hub words it: `X-Error-Code` tells clients which thing is missing (a
/// missing optional file is `EntryNotFound`, which tokenizer loaders skip).
fn hub_error(code: &'static str, message: &str) -> Response {
    let mut response = (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": message })),
    )
        .into_response();
    response
        .headers_mut()
        .insert("x-error-code", HeaderValue::from_static(code));
    if let Ok(value) = HeaderValue::from_str(message) {
        response.headers_mut().insert("x-error-message", value);
    }
    response
}

/// `GET/HEAD /{org}/{repo}/resolve/{revision}/{file}`: the file, with the headers hub
/// clients check (`X-Repo-Commit`, `ETag`, `Content-Length`).
async fn resolve(
    State(state): AppStateRef,
    UrlPath((org, repo, revision, file)): UrlPath<(String, String, String, String)>,
) -> Response {
    let repo = match Repo::at_revision(&state, &org, &repo, &revision) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Some((_, bytes)) = repo.files.iter().find(|(name, _)| *name == file) else {
        return hub_error("EntryNotFound", &format!("{file} does not exist"));
    };
    let etag = {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        format!("\"{}\"", hex(d.as_ref()))
    };
    let mut headers = HeaderMap::new();
    let pairs = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, bytes.len().to_string()),
        (header::ETAG, etag),
        (
            header::HeaderName::from_static("x-repo-commit"),
            repo.commit.clone(),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (headers, bytes.clone()).into_response()
}

async fn model_info_main(
    state: AppStateRef,
    UrlPath((org, repo)): UrlPath<(String, String)>,
) -> Response {
    model_info(state, UrlPath((org, repo, "main".to_owned()))).await
}

/// `GET /api/models/{org}/{repo}/revision/{revision}`: the repository's id, commit and files.
async fn model_info(
    State(state): AppStateRef,
    UrlPath((org, repo_name, revision)): UrlPath<(String, String, String)>,
) -> Response {
    let repo = match Repo::at_revision(&state, &org, &repo_name, &revision) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let id = format!("{org}/{repo_name}");
    let siblings: Vec<_> = repo
        .files
        .iter()
        .map(|(name, _)| json!({ "rfilename": name }))
        .collect();
    axum::Json(json!({
        "_id": id,
        "id": id,
        "modelId": id,
        "sha": repo.commit,
        "private": false,
        "gated": false,
        "disabled": false,
        "tags": ["tokenizer", "tinker-local"],
        "siblings": siblings,
    }))
    .into_response()
}

async fn tree(
    State(state): AppStateRef,
    UrlPath((org, repo_name, revision)): UrlPath<(String, String, String)>,
) -> Response {
    let repo = match Repo::at_revision(&state, &org, &repo_name, &revision) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let entries: Vec<_> = repo
        .files
        .iter()
        .map(|(name, bytes)| json!({ "type": "file", "path": name, "size": bytes.len() }))
        .collect();
    axum::Json(entries).into_response()
}

/// A tokenizer repository has no folders (e.g. `additional_chat_templates`).
async fn tree_path(
    State(state): AppStateRef,
    UrlPath((org, repo_name, revision, path)): UrlPath<(String, String, String, String)>,
) -> Response {
    if let Err(e) = Repo::at_revision(&state, &org, &repo_name, &revision) {
        return e;
    }
    hub_error("EntryNotFound", &format!("{path} does not exist"))
}
