//! The reporter against a real collecting sink, on tokio's paused clock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tinker_telemetry::{
    ErrorReport, Telemetry, TelemetryOptions, TelemetrySink, platform_name, process_uuid,
};
use tinker_types::Severity;
use tokio::time::Instant;

/// A sink that keeps every batch it is given (or fails them all).
#[derive(Clone, Default)]
struct Collect {
    batches: Arc<Mutex<Vec<Value>>>,
    fail: bool,
}

impl Collect {
    fn failing() -> Self {
        Self {
            fail: true,
            ..Self::default()
        }
    }

    fn sink(&self) -> impl TelemetrySink {
        let this = self.clone();
        move |body: Vec<u8>| {
            let this = this.clone();
            async move {
                let batch: Value = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
                if this.fail {
                    return Err(std::io::Error::other("503 Service Unavailable"));
                }
                // A poisoned lock means another test thread already panicked.
                this.batches
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(batch);
                Ok(())
            }
        }
    }

    fn batches(&self) -> Vec<Value> {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every event of every batch, or the first batch without an `events` array.
    fn events(&self) -> Result<Vec<Value>, Value> {
        let mut events = Vec::new();
        for batch in self.batches() {
            match batch["events"].as_array() {
                Some(list) => events.extend(list.iter().cloned()),
                None => return Err(batch),
            }
        }
        Ok(events)
    }
}

/// Lets the background task run without moving the paused clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn start(
    session: Option<&str>,
    sink: impl TelemetrySink,
) -> Result<Telemetry, tinker_telemetry::TelemetryError> {
    Telemetry::start(
        session.map(str::to_owned),
        sink,
        TelemetryOptions::default(),
    )
}

#[tokio::test(start_paused = true)]
async fn flushes_every_ten_seconds_with_the_sdk_envelope() {
    let c = Collect::default();
    let t = start(Some("sess-1"), c.sink()).unwrap();
    assert!(t.log("step", Map::new(), Severity::Info));
    settle().await;
    assert!(c.batches().is_empty(), "nothing before the interval");
    tokio::time::advance(Duration::from_millis(9_999)).await;
    settle().await;
    assert!(c.batches().is_empty(), "nothing at 9.999 s");
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    let batches = c.batches();
    assert_eq!(batches.len(), 1, "one batch at 10 s");
    let batch = &batches[0];
    let mut keys: Vec<&str> = batch
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "events",
            "platform",
            "process_uuid",
            "sdk_version",
            "session_id"
        ]
    );
    assert_eq!(batch["sdk_version"], "0.38.0");
    assert_eq!(batch["session_id"], "sess-1");
    assert_eq!(batch["platform"], platform_name());
    assert_eq!(batch["process_uuid"], process_uuid());
    let events = batch["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"], "SESSION_START");
    assert_eq!(events[0]["severity"], "INFO");
    assert_eq!(events[0]["event_session_index"], 0);
    assert_eq!(events[1]["event"], "GENERIC_EVENT");
    assert_eq!(events[1]["event_name"], "step");
    assert_eq!(events[1]["event_data"], json!({}));
    assert_eq!(events[1]["event_session_index"], 1);
    for e in events {
        let ts = e["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z'), "{ts}");
        chrono::DateTime::parse_from_rfc3339(ts).unwrap();
        uuid::Uuid::parse_str(e["event_id"].as_str().unwrap()).unwrap();
    }

    // The next interval sends the next events.
    t.log("step", Map::new(), Severity::Info);
    tokio::time::advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(c.batches().len(), 2);
    assert_eq!(c.batches()[1]["events"][0]["event_session_index"], 2);
}

#[tokio::test(start_paused = true)]
async fn errors_trigger_an_immediate_flush() {
    let c = Collect::default();
    let t = start(Some("sess-2"), c.sink()).unwrap();
    let report = ErrorReport::new("BadRequestError", "invalid loss_fn")
        .status(400)
        .body(json!({"detail": "unknown loss"}));
    assert!(t.log_error(&report, Severity::Error));
    settle().await;
    let events = c.events().unwrap();
    assert_eq!(events.len(), 2, "sent without waiting for the interval");
    assert_eq!(events[1]["event"], "GENERIC_EVENT");
    assert_eq!(events[1]["event_name"], "user_error");
    assert_eq!(events[1]["severity"], "WARNING");
    assert_eq!(events[1]["event_data"]["status_code"], 400);
    assert_eq!(events[1]["event_data"]["body"]["detail"], "unknown loss");

    let report = ErrorReport::new("APIConnectionError", "connection reset")
        .traceback("Caused by: os error 104");
    t.log_error(&report, Severity::Critical);
    settle().await;
    let events = c.events().unwrap();
    assert_eq!(events[2]["event"], "UNHANDLED_EXCEPTION");
    assert_eq!(events[2]["severity"], "CRITICAL");
    assert_eq!(events[2]["error_type"], "APIConnectionError");
    assert_eq!(events[2]["error_message"], "connection reset");
    assert_eq!(events[2]["traceback"], "Caused by: os error 104");
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_end_the_session_and_wait_for_delivery() {
    let c = Collect::default();
    let t = start(Some("sess-3"), c.sink()).unwrap();
    tokio::time::advance(Duration::from_millis(1)).await;
    let report = ErrorReport::new("InternalServerError", "boom").status(500);
    assert!(t.log_fatal_error(&report, Severity::Error).await);
    // Delivered by the time the call returns.
    let events = c.events().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["SESSION_START", "UNHANDLED_EXCEPTION", "SESSION_END"]
    );
    assert_eq!(events[2]["event_session_index"], 2);
    assert_eq!(events[2]["severity"], "INFO");
    let duration = events[2]["duration"].as_str().unwrap();
    assert!(
        duration.starts_with("0:00:") && duration.len() <= "0:00:00.000000".len(),
        "Python timedelta text: {duration}"
    );
}

#[tokio::test(start_paused = true)]
async fn sessionless_reporters_have_a_synthetic_id_and_no_session_events() {
    let c = Collect::default();
    let t = start(None, c.sink()).unwrap();
    let id = t.session_id().strip_prefix("sessionless-").unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    t.log_fatal_error(&ErrorReport::new("E", "x"), Severity::Error)
        .await;
    let events = c.events().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "UNHANDLED_EXCEPTION");
    assert_eq!(events[0]["event_session_index"], 0);
    assert_eq!(c.batches()[0]["session_id"], t.session_id());
}

#[tokio::test(start_paused = true)]
async fn batches_hold_at_most_100_events() {
    let c = Collect::default();
    let t = start(Some("sess-4"), c.sink()).unwrap();
    for i in 0..250 {
        let mut data = Map::new();
        data.insert("i".into(), i.into());
        t.log("step", data, Severity::Debug);
    }
    assert!(t.close().await);
    let sizes: Vec<usize> = c
        .batches()
        .iter()
        .map(|b| b["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 51]);
    let indices: Vec<u64> = c
        .events()
        .unwrap()
        .iter()
        .map(|e| e["event_session_index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, (0..251).collect::<Vec<_>>(), "in order, none lost");
    let stats = t.stats();
    assert_eq!((stats.sent, stats.batches_sent, stats.queued), (251, 3, 0));
    // Closed: later events are dropped and counted.
    assert!(!t.log("late", Map::new(), Severity::Info));
    assert_eq!(t.stats().dropped_queue_full, 1);
}

#[tokio::test(start_paused = true)]
async fn queue_is_capped_at_10000_events() {
    let c = Collect::default();
    let t = start(Some("sess-5"), c.sink()).unwrap();
    // SESSION_START plus 9 999 events fill the queue.
    for _ in 0..9_999 {
        assert!(t.log("step", Map::new(), Severity::Debug));
    }
    assert!(!t.log("step", Map::new(), Severity::Debug));
    let stats = t.stats();
    assert_eq!(
        (stats.queued, stats.logged, stats.dropped_queue_full),
        (10_000, 10_000, 1)
    );
    assert!(t.close().await);
    assert_eq!(c.batches().len(), 100);
    assert_eq!(t.stats().sent, 10_000);
}

#[tokio::test(start_paused = true)]
async fn failed_batches_are_dropped_and_counted() {
    let c = Collect::failing();
    let t = start(Some("sess-6"), c.sink()).unwrap();
    t.log_error(&ErrorReport::new("E", "x"), Severity::Error);
    assert!(
        t.wait_until_drained().await,
        "a failing sink does not block draining"
    );
    let stats = t.stats();
    assert_eq!(
        (
            stats.sent,
            stats.dropped_send_failed,
            stats.batches_failed,
            stats.queued
        ),
        (0, 2, 1, 0)
    );
    assert!(t.close().await);
}

#[tokio::test(start_paused = true)]
async fn slow_sends_time_out_after_5_s_and_close_waits_at_most_30_s() {
    let hanging = |_body: Vec<u8>| std::future::pending::<Result<(), std::io::Error>>();
    let t = start(Some("sess-7"), hanging).unwrap();
    let t0 = Instant::now();
    t.flush();
    assert!(t.wait_until_drained().await);
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "the batch timed out after 5 s"
    );
    assert_eq!(t.stats().batches_failed, 1);

    let mut options = TelemetryOptions::default();
    options.send_timeout = Duration::from_secs(3600);
    let t = Telemetry::start(Some("sess-8".into()), hanging, options).unwrap();
    let t0 = Instant::now();
    assert!(!t.close().await, "never drained");
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_the_task() {
    let c = Collect::default();
    let t = start(Some("sess-9"), c.sink()).unwrap();
    let clone = t.clone();
    drop(t);
    clone.log("still-alive", Map::new(), Severity::Info);
    drop(clone);
    tokio::time::advance(Duration::from_secs(20)).await;
    settle().await;
    assert!(c.batches().is_empty());
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let err =
        Telemetry::start(None, Collect::default().sink(), TelemetryOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"));
}

#[tokio::test(start_paused = true)]
async fn capture_logs_failures_and_passes_results_through() {
    let c = Collect::default();
    let t = start(Some("sess-10"), c.sink()).unwrap();
    let ok: Result<u32, std::io::Error> = t
        .capture(
            false,
            Severity::Error,
            async { Ok(7) },
            ErrorReport::from_error,
        )
        .await;
    assert_eq!(ok.unwrap(), 7);
    let failed: Result<u32, std::io::Error> = t
        .capture(
            true,
            Severity::Critical,
            async { Err(std::io::Error::other("disk full")) },
            ErrorReport::from_error,
        )
        .await;
    assert_eq!(failed.unwrap_err().to_string(), "disk full");
    let kinds: Vec<String> = c
        .events()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["SESSION_START", "UNHANDLED_EXCEPTION", "SESSION_END"]
    );
    let e = &c.events().unwrap()[1];
    assert_eq!(e["error_type"], "Error");
    assert_eq!(e["error_message"], "disk full");
    assert_eq!(e["severity"], "CRITICAL");
}
