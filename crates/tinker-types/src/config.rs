//! Client configuration fetched from the server: feature flags (`client/config`) and dynamic
//! settings (`client/dynamic_config`). Missing fields take the SDK's defaults.

use serde::{Deserialize, Serialize};

use crate::macros::open_enum;

/// Body of `POST /api/v1/client/config` and `POST /api/v1/client/dynamic_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfigRequest {
    /// SDK version, e.g. `0.38.0`.
    pub sdk_version: String,
}

open_enum! {
    /// Which credential the JWT exchange authenticates with.
    pub enum CredentialSource {
        /// The API key (default).
        ApiKey = "api_key",
        /// The output of `TINKER_CREDENTIAL_CMD`.
        CredentialCmd = "credential_cmd",
    }
}

/// Feature flags (response of `client/config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// Exchange the credential for server JWTs (default false).
    pub pjwt_auth_enabled: bool,
    /// Credential used by the JWT exchange (default `api_key`).
    pub credential_default_source: CredentialSource,
    /// Sampling byte budget (default 10 485 760).
    pub sample_dispatch_bytes_semaphore_size: u64,
    /// In-flight large-response byte budget (default 52 428 800).
    pub inflight_response_bytes_semaphore_size: u64,
    /// Submit the chunks of one forward/backward call concurrently (default true).
    pub parallel_fwdbwd_chunks: bool,
    /// zstd-compress forward/backward bodies (default false).
    pub proto_compress_fwdbwd: bool,
    /// Max datums per forward/backward request (default 1024).
    pub fwdbwd_max_chunk_len: u64,
    /// Max estimated bytes per forward/backward request (default 5 000 000).
    pub fwdbwd_max_chunk_bytes_count: u64,
    /// Forward/backward dispatch byte budget (default 50 000 000).
    pub fwdbwd_dispatch_bytes_semaphore_size: u64,
    /// Billing-pause window in seconds (default 3600).
    pub billing_exception_max_pause_duration_sec: u64,
    /// `sample()` bypasses the outer retry handler (default false).
    pub sample_no_retries: bool,
    /// Fail sampling after 7200 s without progress (default true).
    pub sample_enable_stuck_detection: bool,
    /// Sampling retry-handler concurrency (default 2000).
    pub sample_max_concurrent_requests: u64,
    /// Use the reqwest-based transport (default true).
    pub use_pyqwest_transport: bool,
    /// Use the session-wide `retrieve_futures` poller (default false).
    pub sample_use_retrieve_futures: bool,
    /// Run custom losses server-side (default false).
    pub custom_loss_server_side: bool,
    /// Rehydrated sampling clients call `join_sampling_session` (default false).
    pub sample_join_sampling_session: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            pjwt_auth_enabled: false,
            credential_default_source: CredentialSource::ApiKey,
            sample_dispatch_bytes_semaphore_size: 10_485_760,
            inflight_response_bytes_semaphore_size: 52_428_800,
            parallel_fwdbwd_chunks: true,
            proto_compress_fwdbwd: false,
            fwdbwd_max_chunk_len: 1024,
            fwdbwd_max_chunk_bytes_count: 5_000_000,
            fwdbwd_dispatch_bytes_semaphore_size: 50_000_000,
            billing_exception_max_pause_duration_sec: 3600,
            sample_no_retries: false,
            sample_enable_stuck_detection: true,
            sample_max_concurrent_requests: 2000,
            use_pyqwest_transport: true,
            sample_use_retrieve_futures: false,
            custom_loss_server_side: false,
            sample_join_sampling_session: false,
        }
    }
}

/// Dynamic settings (response of `client/dynamic_config`), refreshed periodically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicConfig {
    /// Seconds between refreshes (default 300; clients floor it at 10).
    pub refresh_interval_sec: u64,
    /// Cancel abandoned sampling futures (default false).
    pub sample_cancel_enabled: bool,
    /// Max ids per cancel batch (default 64).
    pub sample_cancel_max_batch_size: u64,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            refresh_interval_sec: 300,
            sample_cancel_enabled: false,
            sample_cancel_max_batch_size: 64,
        }
    }
}

impl DynamicConfig {
    /// The refresh interval clients actually use: `max(refresh_interval_sec, 10)`.
    pub fn effective_refresh_interval_sec(&self) -> u64 {
        self.refresh_interval_sec.max(10)
    }
}
