//! Training runs: listing them and reading one.

use axum::Extension;
use axum::extract::{Path, Query, State};
use tinker_types::{TrainingRun, TrainingRunsResponse};

use super::checkpoints::checkpoint_of;
use super::{Page, check_scope, paginate};
use crate::api::owned;
use crate::api::{ApiError, ApiResult, AppStateRef, reply};
use crate::auth::Caller;
use crate::persist::RunRecord;
use crate::state::AppState;

/// The wire form of a run, with its latest checkpoint of each kind.
fn training_run_of(run: &RunRecord) -> TrainingRun {
    let latest = |kind: &str| {
        run.checkpoints
            .iter()
            .filter(|c| c.checkpoint_type() == kind)
            .max_by_key(|c| c.time)
            .map(|c| checkpoint_of(&run.training_run_id, c))
    };
    TrainingRun {
        training_run_id: run.training_run_id.clone(),
        base_model: run.base_model.clone(),
        model_owner: run.model_owner.clone(),
        is_lora: true,
        corrupted: run.corrupted,
        lora_rank: u32::try_from(run.lora.rank).ok(),
        last_request_time: run.last_request_time,
        last_checkpoint: latest("training"),
        last_sampler_checkpoint: latest("sampler"),
        user_metadata: run.user_metadata.clone(),
    }
}

pub(super) async fn list_runs(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> ApiResult {
    check_scope(&page)?;
    let mut runs: Vec<RunRecord> = state
        .store
        .runs()
        .into_iter()
        .filter(|r| owned::run_visible(r, &caller, page.access_scope.as_deref()))
        .filter(|r| {
            page.project_id
                .as_ref()
                .is_none_or(|p| r.project_id.as_ref() == Some(p))
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let (slice, cursor) = paginate(&runs, &page, 20);
    reply(&TrainingRunsResponse {
        training_runs: slice.iter().map(training_run_of).collect(),
        cursor,
    })
}

/// A run the caller may read: its own, or one with a published checkpoint.
pub(super) fn visible_run(
    state: &AppState,
    caller: &Caller,
    run_id: &str,
    scope: Option<&str>,
) -> ApiResult<RunRecord> {
    state
        .store
        .run(run_id)
        .filter(|r| owned::run_visible(r, caller, scope.or(Some("accessible"))))
        .ok_or_else(|| ApiError::not_found(format!("training run {run_id} does not exist")))
}

pub(super) async fn get_run(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(run_id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult {
    check_scope(&page)?;
    let run = visible_run(&state, &caller, &run_id, page.access_scope.as_deref())?;
    reply(&training_run_of(&run))
}
