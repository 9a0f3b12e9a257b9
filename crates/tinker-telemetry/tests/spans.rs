//! The shared spans carry the documented names and fields.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinker_telemetry::spans::{
    attempt_span, fields, future_span, names, operation_span, record_attempt_outcome, request_span,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};

type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// Records every span's name and the fields given a value.
struct Capture(Spans);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Capture
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut map = BTreeMap::new();
        attrs.record(&mut Fields(&mut map));
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name().to_owned(), map));
        assert_eq!(
            spans.len() as u64,
            id.into_u64(),
            "ids follow creation order here"
        );
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        let index = usize::try_from(id.into_u64()).unwrap() - 1;
        values.record(&mut Fields(&mut spans[index].1));
    }
}

#[test]
fn spans_have_the_shared_names_and_fields() {
    let spans: Spans = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Capture(spans.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let op = operation_span("forward_backward");
        op.record(fields::SEQ_ID, 3);
        op.record(fields::SESSION_ID, "s1");
        let _entered = op.enter();
        let request = request_span("POST", "/api/v1/forward_backward", "forward_backward");
        request.record(fields::RETRIES, 1);
        let attempt = attempt_span(2);
        record_attempt_outcome(
            &attempt,
            Some(503),
            Duration::from_millis(42),
            Some(&"busy"),
        );
        let fut = future_span("req-9");
        fut.record(fields::POLLS, 4);
    });
    let spans = spans.lock().unwrap();
    let by_name = |name: &str| spans.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let op = by_name(names::OPERATION);
    assert_eq!(op["operation"], "forward_backward");
    assert_eq!(op["seq_id"], "3");
    assert_eq!(op["session_id"], "s1");
    let request = by_name(names::REQUEST);
    assert_eq!(request["http.method"], "POST");
    assert_eq!(request["path"], "/api/v1/forward_backward");
    assert_eq!(request["sdk_method"], "forward_backward");
    assert_eq!(request["retries"], "1");
    let attempt = by_name(names::ATTEMPT);
    assert_eq!(attempt["attempt"], "2");
    assert_eq!(attempt["status"], "503");
    assert_eq!(attempt["elapsed_ms"], "42");
    assert_eq!(attempt["error"], "busy");
    let fut = by_name(names::FUTURE);
    assert_eq!(fut["request_id"], "req-9");
    assert_eq!(fut["polls"], "4");
}
