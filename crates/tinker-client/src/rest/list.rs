//! [`ListOptions`]: paging and filters of the REST listings, with the SDK's defaults.

use tinker_types::rest::AccessScope;

/// Paging and filters of [`RestClient`](crate::RestClient)'s listings
/// (`list_training_runs`, `list_user_checkpoints`, `list_sessions`). `Default` asks for
/// the first page with the SDK's page size (20 runs or sessions, 100 checkpoints), owned
/// resources only, any project.
///
/// ```
/// use tinker_client::{AccessScope, ListOptions};
///
/// let first = ListOptions::default();
/// let third_page = ListOptions::default().limit(10).offset(20).access_scope(AccessScope::Accessible);
/// # let _ = (first, third_page);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Page size; `None` is the listing's default (as the SDK's).
    pub limit: Option<u64>,
    /// How many entries to skip.
    pub offset: u64,
    /// Owned or every accessible resource (runs and sessions; checkpoint listings are
    /// always the caller's own).
    pub access_scope: AccessScope,
    /// Only this project's training runs (`list_training_runs` only).
    pub project_id: Option<String>,
}

impl ListOptions {
    /// Sets the page size.
    #[must_use]
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets how many entries to skip.
    #[must_use]
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// Sets the access scope.
    #[must_use]
    pub fn access_scope(mut self, scope: AccessScope) -> Self {
        self.access_scope = scope;
        self
    }

    /// Filters training runs by project.
    #[must_use]
    pub fn project_id(mut self, project_id: impl Into<String>) -> Self {
        self.project_id = Some(project_id.into());
        self
    }

    /// The `limit`/`offset` query pair, with `default_limit` when no limit was set.
    pub(crate) fn paging(&self, default_limit: u64) -> [(&'static str, String); 2] {
        [
            ("limit", self.limit.unwrap_or(default_limit).to_string()),
            ("offset", self.offset.to_string()),
        ]
    }
}
