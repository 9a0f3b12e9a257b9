//! Billing: usage events per hour bucket, and current checkpoint storage.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Query, State};
use chrono::{DateTime, Timelike, Utc};
use tinker_types::{
    BillingEventInfo, BillingUsageEvent, BillingUsageQuery, BillingUsageResponse,
    BillingUsageSession, CheckpointBillingEvent, CurrentCheckpointStorageUsageItem,
    CurrentCheckpointStorageUsageQuery, CurrentCheckpointStorageUsageResponse,
    SamplingPrefillBillingEvent, SamplingSampleBillingEvent, StorageBillingEvent,
    TrainingBillingEvent,
};

use super::{user_email, user_name};
use crate::api::{ApiError, ApiResult, AppStateRef, reply};
use crate::auth::Caller;
use crate::state::{AppState, lock};

/// Whether `t` is a whole UTC hour.
fn hour_aligned(t: &DateTime<Utc>) -> bool {
    t.minute() == 0 && t.second() == 0 && t.nanosecond() == 0
}

/// The start of `t`'s UTC hour.
fn hour_start(t: &DateTime<Utc>) -> DateTime<Utc> {
    t.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(*t)
}

/// Gigabyte-hours each of the caller's checkpoints held in each hour bucket of
/// `[start, end)`, keyed by `(bucket, session, base model)`. A checkpoint counts from its
/// creation until it expires (or until now); deleted checkpoints leave the store and with
/// them their past storage (tinker-local keeps no deletion history).
fn storage_buckets(
    state: &AppState,
    owner: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> BTreeMap<(DateTime<Utc>, String, String), f64> {
    let now = Utc::now();
    let end = end.min(now);
    let mut buckets = BTreeMap::new();
    for run in state.store.runs() {
        if run.model_owner != owner {
            continue;
        }
        for c in &run.checkpoints {
            let (from, to) = (c.time, c.expires_at.unwrap_or(now).min(now));
            let mut bucket = hour_start(&from.max(start));
            while bucket < end && bucket < to {
                let next = bucket + chrono::Duration::hours(1);
                let overlap = to.min(next) - from.max(bucket);
                let hours = overlap.num_milliseconds().max(0) as f64 / 3_600_000.0;
                if hours > 0.0 {
                    *buckets
                        .entry((bucket, run.session_id.clone(), run.base_model.clone()))
                        .or_insert(0.0) += hours * c.size_bytes as f64 / 1e9;
                }
                bucket = next;
            }
        }
    }
    buckets
}

pub(super) async fn billing_events(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(q): Query<BillingUsageQuery>,
) -> ApiResult {
    if !hour_aligned(&q.starting_on) || !hour_aligned(&q.ending_before) {
        return Err(ApiError::bad_request(
            "starting_on, ending_before: bounds must be aligned to the hour (UTC)",
        ));
    }
    if q.ending_before <= q.starting_on
        || q.ending_before - q.starting_on > chrono::Duration::days(14)
    {
        return Err(ApiError::bad_request(
            "ending_before: must be after starting_on and at most 14 days later",
        ));
    }
    if q.starting_on > Utc::now() {
        return Err(ApiError::bad_request("starting_on: is in the future"));
    }
    let sessions = lock(&state.sessions).clone();
    let mut buckets: BTreeMap<(DateTime<Utc>, String, String, String), u64> = BTreeMap::new();
    for u in state.usage_records() {
        let own = sessions
            .get(&u.session_id)
            .is_some_and(|s| s.owner == caller.owner);
        if own && u.time >= q.starting_on && u.time < q.ending_before {
            *buckets
                .entry((hour_start(&u.time), u.session_id, u.base_model, u.kind))
                .or_default() += u.count;
        }
    }
    let event = |start: DateTime<Utc>, session_id: String, base_model: String, info| {
        let session = sessions.get(&session_id);
        BillingUsageEvent {
            bucket_start: start,
            bucket_end: start + chrono::Duration::hours(1),
            base_model: Some(base_model),
            user_id: Some(caller.owner.clone()),
            user_name: Some(user_name(&caller.owner)),
            project_id: session.and_then(|s| s.project_id.clone()),
            session_id: (!session_id.is_empty()).then_some(session_id),
            estimated_cost_usd: Some(0.0),
            effective_rate_usd_per_million_tokens: Some(0.0),
            effective_rate_usd_per_gigabyte_month: None,
            event_info: info,
        }
    };
    let mut data: Vec<BillingUsageEvent> = buckets
        .into_iter()
        .map(|((start, session_id, base_model, kind), count)| {
            let info = match kind.as_str() {
                "sampling_prefill" => {
                    BillingEventInfo::SamplingPrefill(SamplingPrefillBillingEvent {
                        cached: false,
                        token_count: count,
                    })
                }
                "sampling_sample" => BillingEventInfo::SamplingSample(SamplingSampleBillingEvent {
                    token_count: count,
                }),
                "checkpoint" => BillingEventInfo::Checkpoint(CheckpointBillingEvent { count }),
                _ => BillingEventInfo::Training(TrainingBillingEvent { token_count: count }),
            };
            event(start, session_id, base_model, info)
        })
        .collect();
    for ((start, session_id, base_model), gigabyte_hours) in
        storage_buckets(&state, &caller.owner, q.starting_on, q.ending_before)
    {
        let mut e = event(
            start,
            session_id,
            base_model,
            BillingEventInfo::Storage(StorageBillingEvent {
                free: false,
                gigabyte_hours,
            }),
        );
        e.effective_rate_usd_per_million_tokens = None;
        e.effective_rate_usd_per_gigabyte_month = Some(0.0);
        data.push(e);
    }
    data.sort_by_key(|e| e.bucket_start);
    let session_meta = data
        .iter()
        .filter_map(|e| e.session_id.clone())
        .map(|id| {
            let user_metadata = sessions.get(&id).map(|s| s.user_metadata.clone());
            (id, BillingUsageSession { user_metadata })
        })
        .collect();
    reply(&BillingUsageResponse {
        data,
        sessions: session_meta,
        cost_data_through: Some(Utc::now()),
    })
}

pub(super) async fn billing_storage(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Query(q): Query<CurrentCheckpointStorageUsageQuery>,
) -> ApiResult {
    let mut by_project: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for run in state.store.runs() {
        if run.model_owner != caller.owner
            || q.project_id
                .as_ref()
                .is_some_and(|p| run.project_id.as_ref() != Some(p))
        {
            continue;
        }
        let entry = by_project.entry(run.project_id.clone()).or_default();
        for c in &run.checkpoints {
            entry.0 += 1;
            entry.1 += c.size_bytes;
        }
    }
    let data = by_project
        .into_iter()
        .map(
            |(project_id, (count, bytes))| CurrentCheckpointStorageUsageItem {
                project_id,
                org_user_urn: Some(caller.owner.clone()),
                user_email: Some(user_email(&caller.owner)),
                user_name: Some(user_name(&caller.owner)),
                checkpoint_count: count,
                size_bytes: bytes,
                size_gigabytes: bytes as f64 / 1e9,
                estimated_monthly_cost_usd: Some(0.0),
            },
        )
        .collect();
    reply(&CurrentCheckpointStorageUsageResponse {
        effective_rate_usd_per_gigabyte_month: Some(0.0),
        data,
    })
}
