//! Request-by-request comparison of two recordings (the SDK's and tinker-rs's), after
//! normalizing what legitimately differs between two runs (ids, uuids, timestamps).

use std::collections::BTreeMap;

use prost::Message as _;
use serde_json::Value;
use tinker_testkit::record::Recorded;

use crate::compat::{Allowance, Row};

/// Requests sent on timers, not in the scenario's order: compared by route (the first of
/// each side), not by position.
const TIMED_ROUTES: &[&str] = &["/api/v1/session_heartbeat", "/api/v1/telemetry"];

/// Headers whose values depend on the body or the connection, not on the SDK.
const IGNORED_HEADERS: &[&str] = &["host", "content-length", "connection", "transfer-encoding"];

/// Headers whose values are measurements (seconds): compared as "a number", not by value.
const MEASURED_HEADERS: &[&str] = &["x-tinker-create-promise-roundtrip-time"];

/// Largest decompressed body considered (the scenario's are tiny).
const MAX_BODY: usize = 64 << 20;

/// The outcome of a comparison.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Differences no compat row allows: each fails the test.
    pub(crate) failures: Vec<String>,
    /// Differences a compat row allows, by the row's key, with a count.
    pub(crate) allowed: BTreeMap<String, usize>,
    /// Things worth printing that are not failures.
    pub(crate) notes: Vec<String>,
    /// Requests compared side by side.
    pub(crate) compared: usize,
}

/// One request, normalized.
#[derive(Debug, Clone)]
struct Exchange {
    /// `METHOD path`, ids replaced.
    route: String,
    query: Vec<(String, String)>,
    headers: BTreeMap<String, String>,
    body: Body,
    status: u16,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Empty,
    Json(Value),
    Proto(String),
    Other(String),
}

/// Compares `python` (the reference) with `rust` under the allowances of `compat`.
pub(crate) fn compare(python: &[Recorded], rust: &[Recorded], compat: &[Row]) -> Report {
    let mut report = Report::default();
    let (py_seq, py_timed) = split(python, "python", &mut report);
    let (rs_seq, rs_timed) = split(rust, "rust", &mut report);
    let py_keys: Vec<&str> = py_seq.iter().map(|e| e.route.as_str()).collect();
    let rs_keys: Vec<&str> = rs_seq.iter().map(|e| e.route.as_str()).collect();
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &py_keys, &rs_keys) {
        match op {
            similar::DiffOp::Equal {
                old_index,
                new_index,
                len,
            } => {
                for i in 0..len {
                    let label = format!("#{} {}", old_index + i + 1, py_seq[old_index + i].route);
                    exchange(
                        &label,
                        &py_seq[old_index + i],
                        &rs_seq[new_index + i],
                        compat,
                        &mut report,
                    );
                }
            }
            // What one side sends and the other does not (a replaced run is both).
            other => {
                let (_, old, new) = other.as_tag_tuple();
                for e in &py_seq[old] {
                    differ(
                        &mut report,
                        compat,
                        |r| r.allowance == Allowance::RequestAbsentRust && r.name == e.route,
                        format!("request only the SDK sends: {}", e.route),
                    );
                }
                for e in &rs_seq[new] {
                    report
                        .failures
                        .push(format!("request only tinker-rs sends: {}", e.route));
                }
            }
        }
    }
    for route in TIMED_ROUTES {
        let py = py_timed.iter().find(|e| e.route.ends_with(route));
        let rs = rs_timed.iter().find(|e| e.route.ends_with(route));
        match (py, rs) {
            (Some(py), Some(rs)) => {
                exchange(
                    &format!("(timed) {}", py.route),
                    py,
                    rs,
                    compat,
                    &mut report,
                );
            }
            (None, None) => {}
            _ => report.notes.push(format!(
                "{route}: sent by one side only (timed; not a failure)"
            )),
        }
    }
    report
}

/// Normalizes `recorded`, collapses repeated polls and sets the timed requests apart.
fn split(recorded: &[Recorded], side: &str, report: &mut Report) -> (Vec<Exchange>, Vec<Exchange>) {
    let mut sequence: Vec<Exchange> = Vec::new();
    let mut timed = Vec::new();
    let mut previous_raw: Option<&Recorded> = None;
    let mut collapsed = 0;
    for r in recorded {
        if TIMED_ROUTES.contains(&r.path.as_str()) {
            timed.push(normalize(r));
            continue;
        }
        // A long poll answered `try_again` is polled again: how often depends on timing.
        let repeat = previous_raw.is_some_and(|p| {
            p.path == r.path && p.body == r.body && r.path.ends_with("/retrieve_future")
        });
        previous_raw = Some(r);
        if repeat {
            collapsed += 1;
            continue;
        }
        sequence.push(normalize(r));
    }
    if collapsed > 0 {
        report.notes.push(format!(
            "{side}: {collapsed} repeated retrieve_future polls collapsed"
        ));
    }
    (sequence, timed)
}

fn normalize(r: &Recorded) -> Exchange {
    let mut headers = BTreeMap::new();
    for (name, value) in &r.headers {
        if IGNORED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = if MEASURED_HEADERS.contains(&name.as_str()) {
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => "<seconds>".to_owned(),
                _ => format!("<not a duration: {value}>"),
            }
        } else {
            value.clone()
        };
        headers
            .entry(name.clone())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.clone());
    }
    let mut query: Vec<(String, String)> = r
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), ids(v))
        })
        .collect();
    query.sort();
    Exchange {
        route: format!("{} {}", r.method, ids(&r.path)),
        query,
        body: body(r, &headers),
        headers,
        status: r.status,
    }
}

fn body(r: &Recorded, headers: &BTreeMap<String, String>) -> Body {
    if r.body.is_empty() {
        return Body::Empty;
    }
    let raw = match headers.get("content-encoding").map(String::as_str) {
        Some("zstd") => match tinker_types::proto::zstd_decompress_bounded(&r.body, MAX_BODY) {
            Ok(bytes) => bytes,
            Err(e) => return Body::Other(format!("undecodable zstd body: {e}")),
        },
        _ => r.body.to_vec(),
    };
    let content_type = headers.get("content-type").map_or("", String::as_str);
    if content_type.contains("protobuf") {
        return match tinker_types::proto::wire::ForwardBackwardRequest::decode(raw.as_slice()) {
            Ok(message) => Body::Proto(ids(&format!("{message:#?}"))),
            Err(e) => Body::Other(format!("undecodable protobuf body: {e}")),
        };
    }
    match serde_json::from_slice::<Value>(&raw) {
        Ok(value) => Body::Json(json_ids(value)),
        Err(_) => Body::Other(ids(&String::from_utf8_lossy(&raw))),
    }
}

/// Records a difference: allowed if a compat row matches, else a failure.
fn differ(report: &mut Report, compat: &[Row], allows: impl Fn(&Row) -> bool, what: String) {
    match compat.iter().find(|r| allows(r)) {
        Some(row) => *report.allowed.entry(row.key()).or_default() += 1,
        None => report.failures.push(what),
    }
}

fn exchange(label: &str, py: &Exchange, rs: &Exchange, compat: &[Row], report: &mut Report) {
    report.compared += 1;
    if py.status != rs.status {
        report.failures.push(format!(
            "{label}: answer status {} (SDK) vs {} (tinker-rs)",
            py.status, rs.status
        ));
    }
    if py.query != rs.query {
        report.failures.push(format!(
            "{label}: query {:?} (SDK) vs {:?} (tinker-rs)",
            py.query, rs.query
        ));
    }
    for (name, pv) in &py.headers {
        match rs.headers.get(name) {
            None => differ(
                report,
                compat,
                |r| r.allowance == Allowance::HeaderAbsentRust && r.name == *name,
                format!("{label}: header {name} ({pv:?}) sent by the SDK only"),
            ),
            Some(rv) => {
                let (pn, rn) = (ids(pv), ids(rv));
                if pn == rn {
                    continue;
                }
                differ(
                    report,
                    compat,
                    |r| {
                        r.name == *name
                            && match &r.allowance {
                                Allowance::HeaderValue => true,
                                Allowance::HeaderPrefix(prefix) => rn
                                    .strip_prefix(prefix.as_str())
                                    .is_some_and(|rest| !rest.is_empty() && pn.ends_with(rest)),
                                _ => false,
                            }
                    },
                    format!("{label}: header {name}: {pv:?} (SDK) vs {rv:?} (tinker-rs)"),
                );
            }
        }
    }
    for (name, rv) in &rs.headers {
        if !py.headers.contains_key(name) {
            differ(
                report,
                compat,
                |r| r.allowance == Allowance::HeaderAbsentPython && r.name == *name,
                format!("{label}: header {name} ({rv:?}) sent by tinker-rs only"),
            );
        }
    }
    if py.body != rs.body {
        report.failures.push(format!(
            "{label}: body differs\n{}",
            body_diff(&py.body, &rs.body)
        ));
    }
}

/// The differing JSON paths (or a line diff of non-JSON bodies).
fn body_diff(py: &Body, rs: &Body) -> String {
    let mut out = Vec::new();
    match (py, rs) {
        (Body::Json(a), Body::Json(b)) => json_diff("$", a, b, &mut out),
        _ => {
            let (a, b) = (body_text(py), body_text(rs));
            let diff = similar::TextDiff::from_lines(&a, &b);
            out.push(
                diff.unified_diff()
                    .context_radius(2)
                    .header("SDK", "tinker-rs")
                    .to_string(),
            );
        }
    }
    out.iter()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn body_text(b: &Body) -> String {
    match b {
        Body::Empty => "(empty)\n".to_owned(),
        Body::Json(v) => format!("{v:#}\n"),
        Body::Proto(s) | Body::Other(s) => format!("{s}\n"),
    }
}

fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => json_diff(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: {va} (SDK) vs absent (tinker-rs)")),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(format!("{path}.{k}: absent (SDK) vs {vb} (tinker-rs)"));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} (SDK) vs {b} (tinker-rs)")),
        _ => {}
    }
}

/// Replaces the run-dependent parts of JSON strings (ids, timestamps).
fn json_ids(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(if is_timestamp(&s) {
            "<time>".to_owned()
        } else {
            ids(&s)
        }),
        Value::Array(items) => Value::Array(items.into_iter().map(json_ids).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, json_ids(v))).collect())
        }
        other => other,
    }
}

/// An RFC 3339 timestamp (`2026-12-07T13:05:41...`).
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
}

/// Replaces uuids (`<uuid>`) and runs of 12 or more hex digits (`<id>`: session ids,
/// request ids) in `s`.
pub(crate) fn ids(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(len) = uuid_at(&bytes[i..]) {
            out.push_str("<uuid>");
            i += len;
            continue;
        }
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        let word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if run >= 12 && word_start {
            out.push_str("<id>");
            i += run;
            continue;
        }
        let step = run.max(1);
        out.push_str(&s[i..i + step]);
        i += step;
    }
    out
}

/// The length of a hyphenated uuid at the start of `b`, if there is one.
fn uuid_at(b: &[u8]) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut i = 0;
    for (n, len) in GROUPS.iter().enumerate() {
        if b.len() < i + len || !b[i..i + len].iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        i += len;
        if n < 4 {
            if b.get(i) != Some(&b'-') {
                return None;
            }
            i += 1;
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_normalized() {
        assert_eq!(
            ids("session-0123456789abcdef0123456789abcdef:train:0"),
            "session-<id>:train:0"
        );
        assert_eq!(
            ids("stainless-python-retry-0b7f6c1e-3a5d-4c2b-9f1e-1234567890ab"),
            "stainless-python-retry-<uuid>"
        );
        assert_eq!(ids("/api/v1/asample"), "/api/v1/asample");
        assert_eq!(ids("x:3:abcdef012345"), "x:3:<id>");
    }

    fn rec(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Recorded {
        Recorded {
            method: method.to_owned(),
            path: path.to_owned(),
            query: None,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: bytes::Bytes::from(body.to_owned()),
            status: 200,
        }
    }

    #[test]
    fn a_missing_json_field_fails_and_listed_headers_pass() {
        let json = ("content-type", "application/json");
        let py = [rec(
            "POST",
            "/api/v1/asample",
            &[json, ("user-agent", "python")],
            r#"{"a":1,"record_stability_info":false}"#,
        )];
        let rs = [rec(
            "POST",
            "/api/v1/asample",
            &[json, ("user-agent", "rust")],
            r#"{"a":1}"#,
        )];
        let compat = crate::compat::parse(include_str!("../../../../../docs/compat.md")).unwrap();
        let report = compare(&py, &rs, &compat);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(report.failures[0].contains("record_stability_info"));
        assert_eq!(report.allowed.get("header-value user-agent"), Some(&1));
        let same = compare(&py, &py, &compat);
        assert!(same.failures.is_empty());
    }
}
