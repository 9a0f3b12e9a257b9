//! Admin payloads: billing usage, checkpoint storage usage, audit log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::macros::{open_enum, open_union};
use crate::time::Timestamp;

/// Query of `GET /api/v1/billing/usage/events` (hour-aligned UTC bounds, at most 14 days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingUsageQuery {
    /// Start (inclusive).
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub starting_on: Timestamp,
    /// End (exclusive).
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub ending_before: Timestamp,
}

/// Training tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "training")]
pub struct TrainingBillingEvent {
    /// Tokens.
    pub token_count: u64,
}

/// Sampling prefill tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "sampling_prefill")]
pub struct SamplingPrefillBillingEvent {
    /// Served from the prefix cache.
    pub cached: bool,
    /// Tokens.
    pub token_count: u64,
}

/// Sampled tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "sampling_sample")]
pub struct SamplingSampleBillingEvent {
    /// Tokens.
    pub token_count: u64,
}

/// Checkpoints written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "checkpoint")]
pub struct CheckpointBillingEvent {
    /// Checkpoints.
    pub count: u64,
}

/// Storage used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "storage")]
pub struct StorageBillingEvent {
    /// Free of charge.
    #[serde(default)]
    pub free: bool,
    /// Gigabyte-hours.
    #[serde(serialize_with = "crate::json::finite")]
    pub gigabyte_hours: f64,
}

open_union! {
    /// What a billing event counts.
    pub enum BillingEventInfo tag "type" {
        /// Training tokens.
        Training(TrainingBillingEvent) = "training",
        /// Sampling prefill.
        SamplingPrefill(SamplingPrefillBillingEvent) = "sampling_prefill",
        /// Sampled tokens.
        SamplingSample(SamplingSampleBillingEvent) = "sampling_sample",
        /// Checkpoints.
        Checkpoint(CheckpointBillingEvent) = "checkpoint",
        /// Storage.
        Storage(StorageBillingEvent) = "storage",
    }
}

/// One hourly usage bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingUsageEvent {
    /// Bucket start (UTC hour).
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub bucket_start: Timestamp,
    /// Bucket end.
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub bucket_end: Timestamp,
    /// Base model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Estimated cost.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub estimated_cost_usd: Option<f64>,
    /// Rate per million tokens.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub effective_rate_usd_per_million_tokens: Option<f64>,
    /// Rate per gigabyte-month.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub effective_rate_usd_per_gigabyte_month: Option<f64>,
    /// What is counted.
    pub event_info: BillingEventInfo,
}

/// Per-session details of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BillingUsageSession {
    /// Session metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<BTreeMap<String, String>>,
}

/// Response of `billing/usage/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingUsageResponse {
    /// Usage buckets.
    pub data: Vec<BillingUsageEvent>,
    /// Session id → details.
    #[serde(default)]
    pub sessions: BTreeMap<String, BillingUsageSession>,
    /// Costs are complete up to this time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::option::serialize",
        deserialize_with = "crate::time::option::deserialize"
    )]
    pub cost_data_through: Option<Timestamp>,
}

/// Query of `GET /api/v1/billing/usage/checkpoints/current`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CurrentCheckpointStorageUsageQuery {
    /// Project filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// One row of current checkpoint storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentCheckpointStorageUsageItem {
    /// Project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Owner URN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_user_urn: Option<String>,
    /// Owner e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    /// Owner name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Checkpoints.
    pub checkpoint_count: u64,
    /// Bytes.
    pub size_bytes: u64,
    /// Gigabytes.
    #[serde(serialize_with = "crate::json::finite")]
    pub size_gigabytes: f64,
    /// Estimated monthly cost.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub estimated_monthly_cost_usd: Option<f64>,
}

/// Response of `billing/usage/checkpoints/current`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentCheckpointStorageUsageResponse {
    /// Rate per gigabyte-month.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub effective_rate_usd_per_gigabyte_month: Option<f64>,
    /// Rows.
    pub data: Vec<CurrentCheckpointStorageUsageItem>,
}

open_enum! {
    /// Audit log filter.
    #[derive(Default)]
    pub enum AuditEventType {
        /// Everything (default).
        #[default]
        All = "all",
        /// Checkpoint events.
        Checkpoints = "checkpoints",
        /// Project events.
        Projects = "projects",
        /// Team events.
        Teams = "teams",
        /// Organization events.
        Organizations = "organizations",
    }
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditLogQuery {
    /// Event filter.
    #[serde(default)]
    pub event_type: AuditEventType,
    /// Day `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLogEntry {
    /// When.
    #[serde(
        serialize_with = "crate::time::serialize",
        deserialize_with = "crate::time::deserialize"
    )]
    pub timestamp: Timestamp,
    /// `<resource>_<action>`.
    pub event: String,
    /// Event details.
    #[serde(default)]
    pub event_details: Map<String, Value>,
    /// Model involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Checkpoint involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tinker_path: Option<String>,
    /// Purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// Response of `GET /api/v1/audit` (sorted by time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLogResponse {
    /// Entries.
    pub entries: Vec<AuditLogEntry>,
}
