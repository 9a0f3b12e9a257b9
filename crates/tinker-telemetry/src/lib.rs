//! The telemetry event reporter (with its counters) of the Tinker SDK.
//!
//! * [`Telemetry`]: the event reporter of the official SDK (`SESSION_START`,
//!   `SESSION_END`, `UNHANDLED_EXCEPTION`, `GENERIC_EVENT` incl. `user_error`), queued,
//!   batched and flushed in the background to a [`TelemetrySink`] that the client
//!   implements with its transport (`POST /api/v1/telemetry`). The event types are
//!   `tinker-types`' [`TelemetryEvent`](tinker_types::TelemetryEvent) family.
//! * [`telemetry_enabled`] reads `TINKER_TELEMETRY` (on unless set to something else than
//!   `1`, `true`, `yes` or `on`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use tinker_telemetry::{ErrorReport, Telemetry, TelemetryOptions};
//! use tinker_types::Severity;
//!
//! let sink = |batch: Vec<u8>| async move {
//!     // POST `batch` to /api/v1/telemetry with the SDK transport.
//!     Ok::<(), std::io::Error>(())
//! };
//! let telemetry = Telemetry::start(Some("session-1".into()), sink, TelemetryOptions::default())
//!     .expect("inside a tokio runtime");
//! telemetry.log_error(&ErrorReport::new("BadRequestError", "bad").status(400), Severity::Error);
//! assert!(telemetry.close().await);
//! assert_eq!(telemetry.stats().sent, 2); // SESSION_START and the user_error event
//! # }
//! ```
//!
//! Section numbers such as §6.4 refer to `docs/protocol.md`, the wire protocol as tinker-rs
//! implements it.

mod enabled;
mod error_report;
mod events;
mod platform;
mod reporter;
mod sink;
mod timedelta;

pub use enabled::{TINKER_TELEMETRY, telemetry_enabled, telemetry_enabled_with};
pub use error_report::{ErrorReport, is_user_error_status};
pub use events::USER_ERROR_EVENT;
pub use platform::{platform_name, process_uuid};
pub use reporter::{
    DRAIN_TIMEOUT, FLUSH_INTERVAL, MAX_BATCH_SIZE, MAX_QUEUE_SIZE, SDK_VERSION, SEND_TIMEOUT,
    Telemetry, TelemetryError, TelemetryOptions, TelemetryStats,
};
pub use sink::{BoxError, SinkFuture, TelemetrySink};
pub use timedelta::format_timedelta;
