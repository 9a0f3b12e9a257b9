//! [`AdminClient`]: billing usage and audit log (protocol §2.7). Needs an admin or
//! billing-admin role on the real service.

use std::sync::Arc;

use tinker_transport::Transport;
use tinker_types::{
    AuditLogQuery, AuditLogResponse, BillingUsageQuery, BillingUsageResponse,
    CurrentCheckpointStorageUsageQuery, CurrentCheckpointStorageUsageResponse,
};

use crate::error::Result;
use crate::session::Session;

/// Billing and audit queries. Cheap to clone.
#[derive(Clone)]
pub struct AdminClient {
    holder: Arc<Session>,
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
            holder: Session::start(transport, None).await?,
        })
    }

    pub(crate) fn from_holder(holder: Arc<Session>) -> Self {
        Self { holder }
    }

    /// The telemetry reporter of this client's holder (`None` when telemetry is off); a
    /// session-less admin client reports as `sessionless-<uuid4>`.
    pub fn get_telemetry(&self) -> Option<&crate::Telemetry> {
        self.holder.telemetry()
    }

    /// Hourly usage buckets of a window (build it with [`BillingUsageQuery::new`] or
    /// [`BillingUsageQuery::parse`]). The window rules are checked again here, since the
    /// query's fields are public.
    ///
    /// # Errors
    /// A misaligned, inverted, too wide or future window ([`ErrorKind::InvalidInput`],
    /// nothing sent); API errors.
    ///
    /// [`ErrorKind::InvalidInput`]: crate::ErrorKind::InvalidInput
    pub async fn get_billing_usage(
        &self,
        query: &BillingUsageQuery,
    ) -> Result<BillingUsageResponse> {
        let clock = &self.holder.transport.runtime().clock;
        let now = tinker_types::time::from_unix_seconds(clock.unix_now())
            .unwrap_or(tinker_types::chrono::DateTime::UNIX_EPOCH);
        query.validate_at(now)?;
        self.holder
            .get_json(
                "/api/v1/billing/usage/events",
                &query.query_pairs(),
                "AdminClient.get_billing_usage",
            )
            .await
    }

    /// Current checkpoint storage: of the organization, or of one project.
    ///
    /// # Errors
    /// API errors.
    pub async fn get_current_checkpoint_storage_usage(
        &self,
        query: &CurrentCheckpointStorageUsageQuery,
    ) -> Result<CurrentCheckpointStorageUsageResponse> {
        self.holder
            .get_json(
                "/api/v1/billing/usage/checkpoints/current",
                &query.query_pairs(),
                "AdminClient.get_current_checkpoint_storage_usage",
            )
            .await
    }

    /// The audit log of one UTC day (the service's default: today).
    ///
    /// # Errors
    /// API errors.
    pub async fn get_audit_log(&self, query: &AuditLogQuery) -> Result<AuditLogResponse> {
        self.holder
            .get_json(
                "/api/v1/audit",
                &query.query_pairs(),
                "AdminClient.get_audit_log",
            )
            .await
    }
}
