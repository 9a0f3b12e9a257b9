//! HTTP transport for the Tinker API: hyper + rustls under a tower stack with auth,
//! retries, limits and budgets. It reproduces what the official Python SDK 0.38 does on
//! the wire (docs/protocol.md §1, §6.1, §6.2, §6.3, §6.6).
//!
//! # The API in one screen
//!
//! * [`Transport`] — concrete, non-generic, cheap to clone. Build it with
//!   [`Transport::builder`] (base URL, credential, default headers, timeouts,
//!   `max_retries`, limits, proxy/TLS, injected clock, user layers), then call
//!   [`Transport::send`] with a [`RequestSpec`] to get a [`Response`] (status, headers,
//!   decoded body) or a [`TransportError`]. [`Transport::send_json`] and
//!   [`Transport::get_json`] add serde.
//! * [`RequestSpec`] — a replayable call: method, `/api/v1/...` path, query, body bytes +
//!   content type, optional zstd compression, `Accept`, per-request `max_retries` and
//!   timeout, extra headers, `x-sdk-method`, a fixed idempotency key if needed.
//! * [`TransportError`] — one opaque error: [`kind()`](TransportError::kind) (the §1.7
//!   table as [`ErrorKind`], plus `ResponseTooLarge` for bodies over
//!   [`TransportBuilder::max_response_bytes`]), `status()`, `is_retryable()`, `request_id()`,
//!   `idempotency_key()`, `retries()`, `elapsed()`, `body_excerpt()` (redacted).
//! * [`retry::OperationRetry`] — the §6.2 loop (402 billing pause, `min(2^a, 30)` s
//!   backoff within 300 s) that the client wraps around whole operations; get the one
//!   bound to a transport with [`Transport::operation_retry`].
//! * [`ByteBudget`] (§6.6), [`limit::SampleDispatchLimiter`] (sampling 400/10 slots + byte
//!   budget + backoff), [`limit::RateLimit`] (governor, shared by clones).
//! * [`auth`] — [`Credential`] resolution (§1.3) and JWT auth switched on with
//!   [`Transport::enable_jwt_auth`] when the client config says `pjwt_auth_enabled`.
//!
//! # The stack (outermost first)
//!
//! operation span → HTTP retry (`tower::retry`, §6.1) → rate limit → concurrency limit →
//! attempt (credential/JWT, §1.5 headers, `invalid_token` replay, attempt span) → user
//! layers → hyper-util client (HTTP/1.1 + HTTP/2 via ALPN, pooled, rustls or native-tls,
//! proxies, redirects, idle timeouts, gzip/deflate/zstd decoding).
//!
//! Non-success statuses are turned into errors after the retry layer; a "bare 400"
//! (empty body) replaces the connection pool and becomes a retryable connection error
//! (within a budget of 16), exactly as the SDK's pool does.
//!
//! # Example
//!
//! ```no_run
//! use tinker_transport::{RequestSpec, Transport};
//!
//! # async fn demo() -> Result<(), tinker_transport::TransportError> {
//! let transport = Transport::builder()
//!     .base_url("http://127.0.0.1:8000")
//!     .api_key("tml-example".to_owned().into())
//!     .build()?;
//! let config: serde_json::Value = transport
//!     .send_json(
//!         RequestSpec::post("/api/v1/client/config"),
//!         &serde_json::json!({"sdk_version": "0.38.0"}),
//!     )
//!     .await?;
//! if config["pjwt_auth_enabled"].as_bool() == Some(true) {
//!     transport.enable_jwt_auth(config["credential_default_source"] == "credential_cmd")?;
//! }
//! // Operations the SDK wraps in its holder loop:
//! let retry = transport.operation_retry();
//! let body = serde_json::json!({"model_id": "m"});
//! let info: serde_json::Value = retry
//!     .run("get_info", || {
//!         transport.send_json(
//!             RequestSpec::post("/api/v1/get_info").with_sdk_method("TrainingClient.get_info"),
//!             &body,
//!         )
//!     })
//!     .await?;
//! # let _ = info;
//! # Ok(())
//! # }
//! ```
//!
//! Section numbers such as §6.4 refer to `docs/protocol.md`, the wire protocol as tinker-rs
//! implements it.

pub mod auth;
mod budget;
mod builder;
pub mod circuit;
pub mod clock;
mod env;
mod error;
mod execute;
pub mod headers;
pub mod http;
pub mod limit;
pub mod observe;
mod redact;
mod request;
mod response;
pub mod retry;
mod stack;
mod transport;

pub use auth::Credential;
pub use budget::{ByteBudget, BytePermit};
pub use builder::{
    DEFAULT_BASE_URL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HTTP1_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_RETRIES, DEFAULT_READ_TIMEOUT, TransportBuilder,
};
pub use env::Env;
pub use error::{ErrorKind, TransportError};
pub use request::{APPLICATION_JSON, APPLICATION_PROTOBUF, Compression, RequestSpec};
pub use response::Response;
pub use transport::Transport;

pub use secrecy::SecretString;
