//! [`AdminClient`]: billing usage and audit log (protocol §2.7). Needs an admin or
//! billing-admin role on the real service.

use std::sync::Arc;

use serde_json::Value;
use tinker_transport::Transport;

use crate::error::{Error, Result};
use crate::holder::Holder;

/// Which audit events to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuditEventType {
    /// Everything.
    #[default]
    All,
    /// Checkpoint events.
    Checkpoints,
    /// Project events.
    Projects,
    /// Team events.
    Teams,
    /// Organization events.
    Organizations,
}

impl AuditEventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Checkpoints => "checkpoints",
            Self::Projects => "projects",
            Self::Teams => "teams",
            Self::Organizations => "organizations",
        }
    }
}

/// Billing and audit queries. Cheap to clone.
#[derive(Clone)]
pub struct AdminClient {
    holder: Arc<Holder>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("holder", &self.holder)
            .finish()
    }
}

impl AdminClient {
    /// A session-less admin client.
    ///
    /// # Errors
    /// Start-up errors (client config).
    pub async fn connect(transport: Transport) -> Result<Self> {
        Ok(Self {
            holder: Holder::start(transport, None).await?,
        })
    }

    pub(crate) fn from_holder(holder: Arc<Holder>) -> Self {
        Self { holder }
    }

    /// Usage events between two UTC hours (RFC 3339, hour-aligned, at most 14 days apart,
    /// start not in the future). Returns the `BillingUsageResponse` JSON.
    ///
    /// # Errors
    /// Misaligned or too-wide bounds (checked before sending); API errors.
    pub async fn get_billing_usage(&self, starting_on: &str, ending_before: &str) -> Result<Value> {
        let start = parse_hour(starting_on)?;
        let end = parse_hour(ending_before)?;
        if end <= start {
            return Err(Error::invalid("ending_before must be after starting_on"));
        }
        if end - start > 14 * 24 * 3600 {
            return Err(Error::invalid("the billing window is at most 14 days"));
        }
        let q = [
            ("starting_on", starting_on.to_owned()),
            ("ending_before", ending_before.to_owned()),
        ];
        self.holder
            .get_json(
                "/api/v1/billing/usage/events",
                &q,
                "AdminClient.get_billing_usage",
            )
            .await
    }

    /// Current checkpoint storage usage (`CurrentCheckpointStorageUsageResponse` JSON).
    ///
    /// # Errors
    /// API errors.
    pub async fn get_current_checkpoint_storage_usage(
        &self,
        project_id: Option<&str>,
    ) -> Result<Value> {
        let q: Vec<(&str, String)> = project_id
            .map(|p| ("project_id", p.to_owned()))
            .into_iter()
            .collect();
        self.holder
            .get_json(
                "/api/v1/billing/usage/checkpoints/current",
                &q,
                "AdminClient.get_current_checkpoint_storage_usage",
            )
            .await
    }

    /// The audit log (`AuditLogResponse` JSON), optionally for one day (`YYYY-MM-DD`).
    ///
    /// # Errors
    /// A malformed day; API errors.
    pub async fn get_audit_log(
        &self,
        event_type: AuditEventType,
        day: Option<&str>,
    ) -> Result<Value> {
        let mut q = vec![("event_type", event_type.as_str().to_owned())];
        if let Some(d) = day {
            let ok = d.len() == 10
                && d.chars().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        c == '-'
                    } else {
                        c.is_ascii_digit()
                    }
                });
            if !ok {
                return Err(Error::invalid(format!("day {d:?} must be YYYY-MM-DD")));
            }
            q.push(("day", d.to_owned()));
        }
        self.holder
            .get_json("/api/v1/audit", &q, "AdminClient.get_audit_log")
            .await
    }
}

/// Parses `YYYY-MM-DDTHH:00:00Z` (also `+00:00`) into seconds since the epoch.
fn parse_hour(s: &str) -> Result<i64> {
    let bad = || {
        Error::invalid(format!(
            "{s:?} must be an hour-aligned UTC time like 2026-07-13T00:00:00Z"
        ))
    };
    let core = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .ok_or_else(bad)?;
    let b = core.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| core[r].parse::<i64>().map_err(|_| bad());
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if mi != 0 || se != 0 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours() {
        assert_eq!(parse_hour("1970-01-01T01:00:00Z").unwrap(), 3600);
        assert_eq!(parse_hour("2026-07-13T00:00:00Z").unwrap(), 1_783_900_800);
        assert!(parse_hour("2026-07-13T00:30:00Z").is_err());
        assert!(parse_hour("2026-07-13").is_err());
    }
}
