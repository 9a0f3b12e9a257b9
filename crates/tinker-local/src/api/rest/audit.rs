//! The audit log (`GET /audit`): the caller's own account's events only (other accounts'
//! entries name their model ids and checkpoint paths).

use axum::Extension;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::Value;
use tinker_types::{AuditLogEntry, AuditLogResponse};

use crate::api::{ApiError, ApiResult, AppStateRef, reply};
use crate::auth::Caller;

/// The audit log's filters.
#[derive(Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    day: Option<String>,
}

pub(super) async fn audit_log(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    let prefix = match q.event_type.as_deref().unwrap_or("all") {
        "all" => "",
        "checkpoints" => "checkpoint_",
        "projects" => "project_",
        "teams" => "team_",
        "organizations" => "organization_",
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown event_type `{other}`"
            )));
        }
    };
    let day = match &q.day {
        None => None,
        Some(d) => Some(
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::bad_request("day must be YYYY-MM-DD"))?,
        ),
    };
    let mut entries: Vec<AuditLogEntry> = state
        .audit_records()
        .into_iter()
        .filter(|a| a.owner == caller.owner)
        .filter(|a| a.event.starts_with(prefix))
        .filter(|a| day.is_none_or(|d| a.timestamp.date_naive() == d))
        .map(|a| AuditLogEntry {
            timestamp: a.timestamp,
            event: a.event,
            event_details: match a.event_details {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            model_id: a.model_id,
            tinker_path: a.tinker_path,
            purpose: None,
        })
        .collect();
    entries.sort_by_key(|a| a.timestamp);
    reply(&AuditLogResponse { entries })
}
