//! Admin payloads: billing usage, checkpoint storage usage, audit log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use chrono::{NaiveDate, Timelike};

use crate::error::{Error, Result};
use crate::macros::{open_enum, open_union};
use crate::time::Timestamp;

/// The widest billing window the service answers.
pub const MAX_BILLING_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(14);

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

impl BillingUsageQuery {
    /// A checked window: both bounds on a UTC hour, `ending_before` after `starting_on` and
    /// at most [`MAX_BILLING_WINDOW`] later (rules the service enforces, checked here so bad
    /// input fails before anything is sent). The service's last rule, `starting_on` not in
    /// the future, needs the time: [`Self::validate_at`] (the admin client checks it against
    /// its injected clock; this crate never reads the clock).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the rule broken.
    pub fn new(starting_on: Timestamp, ending_before: Timestamp) -> Result<Self> {
        let query = Self {
            starting_on,
            ending_before,
        };
        query.validate()?;
        Ok(query)
    }

    /// Parses RFC 3339 bounds (e.g. `2026-07-13T00:00:00Z`) and checks them as [`Self::new`].
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for an unparsable timestamp or a broken rule.
    pub fn parse(starting_on: &str, ending_before: &str) -> Result<Self> {
        let parse = |field: &str, text: &str| {
            crate::time::parse(text).ok_or_else(|| Error::InvalidValue {
                field: field.to_owned(),
                reason: format!("{text:?} is not an RFC 3339 timestamp"),
            })
        };
        Self::new(
            parse("starting_on", starting_on)?,
            parse("ending_before", ending_before)?,
        )
    }

    /// Checks the window rules of [`Self::new`].
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the rule broken.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, reason: &str| Error::InvalidValue {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        for (field, t) in [
            ("starting_on", &self.starting_on),
            ("ending_before", &self.ending_before),
        ] {
            if t.minute() != 0 || t.second() != 0 || t.nanosecond() != 0 {
                return Err(invalid(field, "must be aligned to a UTC hour"));
            }
        }
        if self.ending_before <= self.starting_on {
            return Err(invalid("ending_before", "must be after starting_on"));
        }
        if self.ending_before - self.starting_on > MAX_BILLING_WINDOW {
            return Err(invalid(
                "ending_before",
                "must be at most 14 days after starting_on",
            ));
        }
        Ok(())
    }

    /// [`Self::validate`], and `starting_on` not after `now`.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the rule broken.
    pub fn validate_at(&self, now: Timestamp) -> Result<()> {
        self.validate()?;
        if self.starting_on > now {
            return Err(Error::InvalidValue {
                field: "starting_on".to_owned(),
                reason: "must not be in the future".to_owned(),
            });
        }
        Ok(())
    }

    /// The URL query parameters, in the SDK's order and spelling.
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("starting_on", crate::time::to_wire(&self.starting_on)),
            ("ending_before", crate::time::to_wire(&self.ending_before)),
        ]
    }
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

impl CurrentCheckpointStorageUsageQuery {
    /// Usage of the whole organization.
    pub fn all() -> Self {
        Self::default()
    }

    /// Usage of one project.
    pub fn project(project_id: impl Into<String>) -> Self {
        Self {
            project_id: Some(project_id.into()),
        }
    }

    /// The URL query parameters (none for the whole organization).
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        self.project_id
            .iter()
            .map(|p| ("project_id", p.clone()))
            .collect()
    }
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
    /// The UTC day to list (`YYYY-MM-DD` on the wire); the service's default is today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<NaiveDate>,
}

impl AuditLogQuery {
    /// Events of one kind, for today.
    pub fn new(event_type: AuditEventType) -> Self {
        Self {
            event_type,
            day: None,
        }
    }

    /// Restricts the query to one UTC day.
    pub fn on_day(mut self, day: NaiveDate) -> Self {
        self.day = Some(day);
        self
    }

    /// The URL query parameters, in the SDK's order (`event_type` always sent).
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("event_type", self.event_type.as_str().to_owned())];
        if let Some(day) = self.day {
            pairs.push(("day", day.format("%Y-%m-%d").to_string()));
        }
        pairs
    }
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
