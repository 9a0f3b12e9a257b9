//! Every lookup of an id a caller names, on behalf of that caller. A session, model,
//! sampler, future, training run or custom loss of another account is answered exactly as
//! an id that does not exist (404 with the same message), so ids reveal nothing about other
//! accounts. Checkpoints ([`checkpoint`]) are the one way across accounts: published ones,
//! and, where a route takes one, with a weights access token of the owning account.

use std::sync::Arc;

use super::{ApiError, ApiResult};
use crate::auth::Caller;
use crate::engine::CustomGraph;
use crate::persist::{CheckpointRecord, RunRecord, parse_tinker_path};
use crate::promise::Waiter;
use crate::state::{AppState, SamplerEntry, Session, lock};
use crate::worker::ModelWorker;

/// The one ownership rule: a resource is the caller's if the caller's account made it.
fn mine(caller: &Caller, owner: &str) -> bool {
    caller.owner == owner
}

/// The caller's session `id`, active or ended.
pub(crate) fn session(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Session> {
    lock(&state.sessions)
        .get(id)
        .filter(|s| mine(caller, &s.owner))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("session {id} does not exist")))
}

/// Every session of the caller's account, newest first (lists and searches).
pub(crate) fn sessions(state: &AppState, caller: &Caller) -> Vec<Session> {
    let mut sessions: Vec<Session> = lock(&state.sessions)
        .values()
        .filter(|s| mine(caller, &s.owner))
        .cloned()
        .collect();
    sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    sessions
}

/// The caller's session `id`; 400 if it has ended.
pub(crate) fn active_session(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Session> {
    let session = self::session(state, caller, id)?;
    match &session.ended {
        Some(end) => Err(ApiError::bad_request(format!(
            "session {id} is finished ({})",
            super::service::end_kind(end)
        ))),
        None => Ok(session),
    }
}

/// The caller's live model `model_id`.
pub(crate) fn model(
    state: &AppState,
    caller: &Caller,
    model_id: &str,
) -> ApiResult<Arc<ModelWorker>> {
    let live = lock(&state.models).get(model_id).cloned();
    match live {
        Some(worker) if mine(caller, &worker.owner) => Ok(worker),
        Some(_) => Err(unknown_model(model_id)),
        None => match state.store.run(model_id) {
            Some(run) if mine(caller, &run.model_owner) => Err(ApiError::not_found(format!(
                "model {model_id} is not loaded (its session ended or the server restarted); \
                 create a training client from one of its checkpoints"
            ))),
            _ => Err(unknown_model(model_id)),
        },
    }
}

fn unknown_model(model_id: &str) -> ApiError {
    ApiError::not_found(format!("model {model_id} does not exist"))
}

/// The caller's sampling session `id`.
pub(crate) fn sampler(state: &AppState, caller: &Caller, id: &str) -> ApiResult<SamplerEntry> {
    lock(&state.samplers)
        .get(id)
        .filter(|s| mine(caller, &s.owner))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("sampling session {id} does not exist")))
}

/// The caller's future `request_id` (`None` if unknown or another account's).
pub(crate) fn future(state: &AppState, caller: &Caller, request_id: &str) -> Option<Waiter> {
    state
        .promises
        .waiter(request_id)
        .filter(|w| mine(caller, &w.owner))
}

/// The caller's training run `run_id` (to change or delete; reading may also go through
/// published checkpoints, see `rest::runs::visible_run`).
pub(crate) fn run(state: &AppState, caller: &Caller, run_id: &str) -> ApiResult<RunRecord> {
    state
        .store
        .run(run_id)
        .filter(|r| mine(caller, &r.model_owner))
        .ok_or_else(|| ApiError::not_found(format!("training run {run_id} does not exist")))
}

/// Whether `run` is listed to the caller: its own, or (scope `accessible`) one with a
/// published checkpoint.
pub(crate) fn run_visible(run: &RunRecord, caller: &Caller, scope: Option<&str>) -> bool {
    mine(caller, &run.model_owner)
        || (scope == Some("accessible") && run.checkpoints.iter().any(|c| c.public))
}

/// Whether checkpoint `c` of `run` is listed to the caller (its own, or published).
pub(crate) fn checkpoint_visible(run: &RunRecord, c: &CheckpointRecord, caller: &Caller) -> bool {
    mine(caller, &run.model_owner) || c.public
}

/// The custom loss `loss_id` for a `custom` forward/backward on the caller's `model_id`: it
/// must have been created in that model's session (so by the same account). Any other loss
/// is reported as not existing.
pub(crate) fn custom_loss(
    state: &AppState,
    caller: &Caller,
    model_id: &str,
    loss_id: &str,
) -> Result<Arc<CustomGraph>, String> {
    let stored = lock(&state.custom_losses).get(loss_id).cloned();
    let owner = stored.as_ref().and_then(|s| {
        lock(&state.sessions)
            .get(&s.session_id)
            .map(|x| x.owner.clone())
    });
    match (stored, owner) {
        (Some(s), Some(owner))
            if mine(caller, &owner)
                && model_id.starts_with(&format!("{}:train:", s.session_id)) =>
        {
            Ok(s.graph)
        }
        _ => Err(format!(
            "custom loss {loss_id:?} does not exist in this model's session (create it with \
             create_custom_loss)"
        )),
    }
}

/// How a route may reach another account's checkpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access<'a> {
    /// Only the caller's own and published checkpoints; others are unknown (404).
    OwnOrPublished,
    /// Also with a weights access token of the owning account: a credential this server
    /// accepts for that account (its API key, or in JWT mode a JWT minted for it). Without
    /// a valid one the checkpoint is unknown (404), as with [`Access::OwnOrPublished`].
    WithToken(Option<&'a str>),
}

/// Whether `access` carries a weights access token of `run`'s owning account.
fn grants_access(state: &AppState, run: &RunRecord, access: Access<'_>) -> bool {
    let Access::WithToken(Some(token)) = access else {
        return false;
    };
    let token = token.trim();
    !token.is_empty()
        && crate::auth::check(state, Some(token))
            .is_ok_and(|grantor| grantor.owner == run.model_owner)
}

/// A readable checkpoint: its run record, its own record and its directory.
///
/// Who may read a checkpoint (`load_weights`, `copy_weights`, `weights_info`, sampling from
/// it, external-weights URLs): its owner, always; anyone, once it is published; anyone
/// else only through a route that takes a weights access token (`copy_weights` in
/// `X-Tinker-Weights-Access-Token` or the body's `weights_access_token`, `load_weights` in
/// the body's `weights_access_token`), with a token of the owning account.
pub(crate) fn checkpoint(
    state: &AppState,
    caller: &Caller,
    path: &str,
    access: Access<'_>,
) -> ApiResult<(RunRecord, CheckpointRecord, std::path::PathBuf)> {
    let (run_id, segment, name) = parse_tinker_path(path)
        .ok_or_else(|| ApiError::bad_request(format!("invalid tinker path `{path}`")))?;
    let unknown = || ApiError::not_found(format!("checkpoint {path} does not exist"));
    let run = state.store.run(&run_id).ok_or_else(unknown)?;
    let checkpoint_id = format!("{segment}/{name}");
    let record = run
        .checkpoints
        .iter()
        .find(|c| c.checkpoint_id == checkpoint_id)
        .ok_or_else(unknown)?;
    // Without a valid token of the owning account, a private checkpoint of another account
    // is answered as an unknown one, whatever the token's fault: a distinct answer would
    // tell the caller that the path exists.
    if !checkpoint_visible(&run, record, caller) && !grants_access(state, &run, access) {
        return Err(unknown());
    }
    let record = record.clone();
    let dir = state.store.checkpoint_dir(&run_id, &checkpoint_id);
    Ok((run, record, dir))
}
