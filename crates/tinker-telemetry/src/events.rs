//! Building the events of one telemetry holder: ids, per-holder indices, timestamps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::SubsecRound as _;
use serde_json::{Map, Value};
use tinker_types::{
    GenericEvent, SessionEndEvent, SessionStartEvent, Severity, TelemetryEvent, Timestamp,
    UnhandledExceptionEvent,
};

use crate::error_report::ErrorReport;
use crate::timedelta::format_timedelta;

/// The name of the generic event recording a user error.
pub const USER_ERROR_EVENT: &str = "user_error";

use tinker_transport::clock::Clock;

/// Makes the events of one holder (one session, or one session-less client).
#[derive(Debug)]
pub(crate) struct EventFactory {
    next_index: AtomicU64,
    session_start: Timestamp,
    clock: Arc<dyn Clock>,
}

impl EventFactory {
    /// Timestamps come from `clock` (the transport's, so tests can pause time).
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        let session_start = now(clock.as_ref());
        Self {
            next_index: AtomicU64::new(0),
            session_start,
            clock,
        }
    }

    fn now(&self) -> Timestamp {
        now(self.clock.as_ref())
    }

    /// A fresh uuid4 `event_id` and the next `event_session_index`.
    fn next_id(&self) -> (String, u64) {
        (
            uuid::Uuid::new_v4().to_string(),
            self.next_index.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// `SESSION_START`, stamped with the holder's creation time.
    pub(crate) fn session_start(&self) -> TelemetryEvent {
        let (event_id, event_session_index) = self.next_id();
        SessionStartEvent {
            event_id,
            event_session_index,
            severity: Severity::Info,
            timestamp: self.session_start,
        }
        .into()
    }

    /// `SESSION_END` with the session's duration as Python `timedelta` text.
    pub(crate) fn session_end(&self) -> TelemetryEvent {
        let (event_id, event_session_index) = self.next_id();
        let end = self.now();
        SessionEndEvent {
            duration: format_timedelta(end - self.session_start),
            event_id,
            event_session_index,
            severity: Severity::Info,
            timestamp: end,
        }
        .into()
    }

    /// `GENERIC_EVENT`.
    pub(crate) fn generic(
        &self,
        name: &str,
        data: Map<String, Value>,
        severity: Severity,
    ) -> TelemetryEvent {
        let (event_id, event_session_index) = self.next_id();
        GenericEvent {
            event_id,
            event_name: name.to_owned(),
            event_session_index,
            severity,
            timestamp: self.now(),
            event_data: data,
        }
        .into()
    }

    /// A `user_error` generic event (severity `WARNING`) for a user error, else
    /// `UNHANDLED_EXCEPTION` with `severity`.
    pub(crate) fn for_error(&self, report: &ErrorReport, severity: Severity) -> TelemetryEvent {
        if report.user_error {
            return self.generic(USER_ERROR_EVENT, user_error_data(report), Severity::Warning);
        }
        let (event_id, event_session_index) = self.next_id();
        UnhandledExceptionEvent {
            error_message: report.message.clone(),
            error_type: report.error_type.clone(),
            event_id,
            event_session_index,
            severity,
            timestamp: self.now(),
            traceback: report.traceback.clone(),
        }
        .into()
    }
}

/// The clock's wall time at the microsecond precision of Python's `datetime` (the epoch if
/// the clock reads before it).
fn now(clock: &dyn Clock) -> Timestamp {
    tinker_types::time::from_unix_seconds(clock.unix_now())
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
        .trunc_subsecs(6)
}

/// `{"error_type", "message"?, "status_code"?, "body"?}`; empty values are left out, as
/// Python's truthiness tests do.
fn user_error_data(report: &ErrorReport) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("error_type".into(), report.error_type.clone().into());
    if !report.message.is_empty() {
        data.insert("message".into(), report.message.clone().into());
    }
    if let Some(status) = report.status_code {
        data.insert("status_code".into(), status.into());
    }
    let truthy = |v: &Value| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(_) => true,
    };
    if let Some(body) = report.body.as_ref().filter(|b| truthy(b)) {
        data.insert("body".into(), body.clone());
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_increment_and_ids_are_uuid4() {
        let f = EventFactory::new(Arc::new(tinker_transport::clock::SystemClock));
        let a = serde_json::to_value(f.session_start()).unwrap();
        let b = serde_json::to_value(f.generic("x", Map::new(), Severity::Debug)).unwrap();
        assert_eq!(a["event_session_index"], 0);
        assert_eq!(b["event_session_index"], 1);
        assert_eq!(a["event"], "SESSION_START");
        assert_eq!(b["severity"], "DEBUG");
        let id = uuid::Uuid::parse_str(a["event_id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(a["event_id"], b["event_id"]);
        let ts = a["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z'), "{ts}");
    }

    #[test]
    fn user_errors_become_generic_warnings() {
        let f = EventFactory::new(Arc::new(tinker_transport::clock::SystemClock));
        let report = ErrorReport::new("BadRequestError", "bad input")
            .status(400)
            .body(serde_json::json!({"detail": "no"}));
        let v = serde_json::to_value(f.for_error(&report, Severity::Error)).unwrap();
        assert_eq!(v["event"], "GENERIC_EVENT");
        assert_eq!(v["event_name"], "user_error");
        assert_eq!(v["severity"], "WARNING");
        assert_eq!(
            v["event_data"],
            serde_json::json!({"error_type": "BadRequestError", "message": "bad input",
                               "status_code": 400, "body": {"detail": "no"}})
        );
        let quiet = ErrorReport::new("E", "")
            .user_error(true)
            .body(Value::String(String::new()));
        let v = serde_json::to_value(f.for_error(&quiet, Severity::Error)).unwrap();
        assert_eq!(v["event_data"], serde_json::json!({"error_type": "E"}));
    }

    #[test]
    fn other_errors_are_unhandled_exceptions_without_null_fields() {
        let f = EventFactory::new(Arc::new(tinker_transport::clock::SystemClock));
        let report = ErrorReport::new("InternalServerError", "boom").status(500);
        let v = serde_json::to_value(f.for_error(&report, Severity::Critical)).unwrap();
        assert_eq!(v["event"], "UNHANDLED_EXCEPTION");
        assert_eq!(v["severity"], "CRITICAL");
        assert_eq!(v["error_type"], "InternalServerError");
        assert_eq!(v["error_message"], "boom");
        assert!(v.get("traceback").is_none(), "null fields are omitted: {v}");
    }

    #[test]
    fn session_end_carries_timedelta_duration() {
        let f = EventFactory::new(Arc::new(tinker_transport::clock::SystemClock));
        let v = serde_json::to_value(f.session_end()).unwrap();
        assert_eq!(v["event"], "SESSION_END");
        let duration = v["duration"].as_str().unwrap();
        assert!(duration.starts_with("0:00:0"), "{duration}");
    }
}
