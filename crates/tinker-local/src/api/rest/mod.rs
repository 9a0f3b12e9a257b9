//! The REST catalogue, one concept per module: training runs, checkpoints, weights (info,
//! copies, external-weights downloads), sessions and their search, trace exports, billing
//! and the audit log. This module holds their routes and the helpers they share.

mod archive;
mod audit;
mod billing;
mod checkpoints;
mod runs;
mod session_search;
mod sessions;
mod signed;
mod traces;
mod weights;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use tinker_types::Cursor;

use super::{ApiError, ApiResult};
use crate::state::AppState;

/// The catalogue's routes under `/api/v1` (behind authentication).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/copy_weights", post(weights::copy_weights))
        .route("/training_runs", get(runs::list_runs))
        .route("/training_runs/{run}", get(runs::get_run))
        .route(
            "/training_runs/{run}/checkpoints",
            get(checkpoints::run_checkpoints),
        )
        .route(
            "/training_runs/{run}/checkpoints/{kind}/{name}",
            delete(checkpoints::delete_checkpoint),
        )
        .route(
            "/training_runs/{run}/checkpoints/{kind}/{name}/publish",
            post(checkpoints::publish).delete(checkpoints::unpublish),
        )
        .route(
            "/training_runs/{run}/checkpoints/{kind}/{name}/ttl",
            put(checkpoints::set_ttl),
        )
        .route(
            "/training_runs/{run}/checkpoints/{kind}/{name}/external_weights_urls",
            get(weights::external_weights_urls),
        )
        .route(
            "/training_runs/{run}/checkpoints/{kind}/{name}/archive",
            get(archive::archive_url),
        )
        .route("/checkpoints", get(checkpoints::list_checkpoints))
        .route("/weights_info", post(weights::weights_info))
        .route("/sessions", get(sessions::list_sessions))
        .route("/sessions/search", post(session_search::search_sessions))
        .route("/sessions/{session_id}", get(sessions::get_session))
        .route("/sessions/{session_id}/project", put(sessions::set_project))
        .route(
            "/sessions/{session_id}/trace_export",
            get(traces::trace_export),
        )
        .route("/billing/usage/events", get(billing::billing_events))
        .route(
            "/billing/usage/checkpoints/current",
            get(billing::billing_storage),
        )
        .route("/audit", get(audit::audit_log))
}

/// The signed-URL downloads, outside `/api/v1`: the signature is the credential.
pub(super) fn signed_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/files/{run}/{kind}/{name}/{*file}",
            get(weights::download_file),
        )
        .route("/traces/{session_id}", get(traces::download_trace))
        .route(
            "/archives/{run}/{kind}/{name}",
            get(archive::download_archive),
        )
}

/// The paging and scope query of the catalogue's list routes.
#[derive(Deserialize)]
pub(super) struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    access_scope: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
}

/// One page of `items` (`limit` 0 = all) and the cursor describing it.
fn paginate<T: Clone>(items: &[T], page: &Page, default_limit: usize) -> (Vec<T>, Cursor) {
    let offset = page.offset.unwrap_or(0);
    let limit = match page.limit {
        None => default_limit,
        Some(0) => items.len(),
        Some(l) => l,
    };
    let slice: Vec<T> = items.iter().skip(offset).take(limit).cloned().collect();
    let cursor = Cursor {
        offset: offset as u64,
        limit: limit as u64,
        total_count: items.len() as u64,
    };
    (slice, cursor)
}

/// Refuses an `access_scope` other than `owned` or `accessible`.
fn check_scope(page: &Page) -> ApiResult<()> {
    match page.access_scope.as_deref() {
        None | Some("owned") | Some("accessible") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "access_scope must be owned or accessible, got `{other}`"
        ))),
    }
}

/// The display name of an owner URN (`tml:user:local-…` → `local-…`).
pub(crate) fn user_name(owner: &str) -> String {
    owner.strip_prefix("tml:user:").unwrap_or(owner).to_owned()
}

/// The (undeliverable) e-mail address tinker-local reports for an owner.
pub(crate) fn user_email(owner: &str) -> String {
    format!("{}@tinker-local.invalid", owner.replace(':', "-"))
}
