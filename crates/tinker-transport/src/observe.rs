//! Per-call observation: a [`RequestObserver`] sees one [`RequestRecord`] for every call a
//! [`Transport`](crate::Transport) handle sends (HTTP-layer retries included in the one
//! record), so a caller can keep request counts, bytes and latencies without wrapping each
//! call site. The transport keeps no figures itself.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

/// Called once per finished call, in the task that sent it (so task-local context of the
/// caller is visible). Keep it cheap: it runs on every request.
pub type RequestObserver = Arc<dyn Fn(&RequestRecord<'_>) + Send + Sync>;

/// One finished call, as a [`RequestObserver`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestRecord<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The request path (may hold ids: not a low-cardinality label).
    pub path: &'a str,
    /// The call's `x-sdk-method`, when it has one (e.g. `RestClient.list_checkpoints`).
    pub sdk_method: Option<&'a str>,
    /// The final status; `None` when no response came (connection error, timeout, …).
    pub status: Option<StatusCode>,
    /// Whether the call succeeded (a 2xx the transport returned as a success).
    pub ok: bool,
    /// HTTP-layer retries the call took (attempts − 1).
    pub retries: u32,
    /// Request body bytes put on the wire, every attempt counted (after compression).
    pub bytes_sent: u64,
    /// Response body bytes of the final answer (decoded).
    pub bytes_received: u64,
    /// From the start of the call to its result, backoff sleeps included.
    pub elapsed: Duration,
}
