//! Telemetry events and their batch (`POST /api/v1/telemetry`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::macros::{open_enum, open_union};
use crate::time::Timestamp;

open_enum! {
    /// Log severity of an event.
    pub enum Severity {
        /// Debug.
        Debug = "DEBUG",
        /// Info.
        Info = "INFO",
        /// Warning.
        Warning = "WARNING",
        /// Error.
        Error = "ERROR",
        /// Critical.
        Critical = "CRITICAL",
    }
}

/// Declares an event struct whose JSON carries the constant `"event"` discriminator at the
/// position the SDK's model puts it (fields are listed in the SDK's declaration order).
macro_rules! telemetry_event {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $tag:literal {
            $( $(#[$bmeta:meta])* pub $before:ident : $bty:ty, )*
            @event
            $( $(#[$ameta:meta])* pub $after:ident : $aty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        pub struct $name {
            $( $(#[$bmeta])* pub $before: $bty, )*
            $( $(#[$ameta])* pub $after: $aty, )*
        }

        impl $name {
            /// The `"event"` discriminator of this event.
            pub const EVENT: &'static str = $tag;
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                #[derive(Serialize)]
                struct Wire<'a> {
                    $( $(#[$bmeta])* $before: &'a $bty, )*
                    event: &'static str,
                    $( $(#[$ameta])* $after: &'a $aty, )*
                }
                Wire { $( $before: &self.$before, )* event: $tag, $( $after: &self.$after, )* }
                    .serialize(serializer)
            }
        }
    };
}

telemetry_event! {
    /// `SESSION_START`: the session holder started.
    pub struct SessionStartEvent = "SESSION_START" {
        @event
        /// uuid4 of the event.
        pub event_id: String,
        /// Per-holder counter from 0.
        pub event_session_index: u64,
        /// Severity.
        pub severity: Severity,
        /// When (UTC, `Z`).
        #[serde(serialize_with = "crate::time::serialize_ref", deserialize_with = "crate::time::deserialize")]
        pub timestamp: Timestamp,
    }
}

telemetry_event! {
    /// `SESSION_END` (appended on a fatal error).
    pub struct SessionEndEvent = "SESSION_END" {
        /// Python `timedelta` text, `H:MM:SS.ffffff`.
        pub duration: String,
        @event
        /// uuid4 of the event.
        pub event_id: String,
        /// Per-holder counter from 0.
        pub event_session_index: u64,
        /// Severity.
        pub severity: Severity,
        /// When (UTC, `Z`).
        #[serde(serialize_with = "crate::time::serialize_ref", deserialize_with = "crate::time::deserialize")]
        pub timestamp: Timestamp,
    }
}

telemetry_event! {
    /// `UNHANDLED_EXCEPTION`: a non-user error.
    pub struct UnhandledExceptionEvent = "UNHANDLED_EXCEPTION" {
        /// Message.
        pub error_message: String,
        /// Exception type name.
        pub error_type: String,
        @event
        /// uuid4 of the event.
        pub event_id: String,
        /// Per-holder counter from 0.
        pub event_session_index: u64,
        /// Severity.
        pub severity: Severity,
        /// When (UTC, `Z`).
        #[serde(serialize_with = "crate::time::serialize_ref", deserialize_with = "crate::time::deserialize")]
        pub timestamp: Timestamp,
        /// Traceback text.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub traceback: Option<String>,
    }
}

telemetry_event! {
    /// `GENERIC_EVENT`: a named event with a JSON payload (e.g. `user_error`).
    pub struct GenericEvent = "GENERIC_EVENT" {
        @event
        /// uuid4 of the event.
        pub event_id: String,
        /// Low-cardinality name.
        pub event_name: String,
        /// Per-holder counter from 0.
        pub event_session_index: u64,
        /// Severity.
        pub severity: Severity,
        /// When (UTC, `Z`).
        #[serde(serialize_with = "crate::time::serialize_ref", deserialize_with = "crate::time::deserialize")]
        pub timestamp: Timestamp,
        /// Structured payload.
        #[serde(default)]
        pub event_data: Map<String, Value>,
    }
}

open_union! {
    /// One telemetry event, discriminated by `"event"`.
    pub enum TelemetryEvent tag "event" {
        /// Session started.
        SessionStart(SessionStartEvent) = "SESSION_START",
        /// Session ended.
        SessionEnd(SessionEndEvent) = "SESSION_END",
        /// Unhandled exception.
        UnhandledException(UnhandledExceptionEvent) = "UNHANDLED_EXCEPTION",
        /// Generic event.
        Generic(GenericEvent) = "GENERIC_EVENT",
    }
}

/// `POST /api/v1/telemetry` body: at most 100 events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySendRequest {
    /// Events.
    pub events: Vec<TelemetryEvent>,
    /// OS name, e.g. `Linux`.
    pub platform: String,
    /// SDK version.
    pub sdk_version: String,
    /// Session id, or `sessionless-<uuid4>`.
    pub session_id: String,
    /// uuid4 of the process.
    pub process_uuid: String,
}

/// Response of `telemetry` (`{"status":"accepted"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryResponse {
    /// `accepted`.
    pub status: String,
}
