//! Label sets of the `metrics` facade mirror, made once: the `metrics::counter!` family
//! with run-time label values builds (allocates) a label list on every call, even when no
//! recorder is installed; these keys point at static label lists instead. The metric
//! identity (name and labels) is the same as the macros'.

use std::sync::OnceLock;

use metrics::{Key, Label, Level, Metadata};

use super::Operation;

/// The `status` label values: an operation's (`ok`, `error`) and an HTTP class's.
const STATUSES: [&str; 8] = ["ok", "error", "1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// What the macros would attach (target and module of the recording code).
static METADATA: Metadata<'static> = Metadata::new(
    "tinker_client::observe::registry",
    Level::INFO,
    Some("tinker_client::observe::registry"),
);

/// `[operation]` per operation, then `[operation, status]` per (operation, status).
struct Table {
    op: Vec<[Label; 1]>,
    op_status: Vec<[Label; 2]>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table {
        op: Operation::ALL
            .iter()
            .map(|op| [Label::from_static_parts("operation", op.as_str())])
            .collect(),
        op_status: Operation::ALL
            .iter()
            .flat_map(|op| {
                STATUSES.iter().map(|status| {
                    [
                        Label::from_static_parts("operation", op.as_str()),
                        Label::from_static_parts("status", status),
                    ]
                })
            })
            .collect(),
    })
}

/// `name{operation}`.
pub(super) fn op_key(name: &'static str, op: Operation) -> Key {
    Key::from_static_parts(name, &table().op[op.index()])
}

/// `name{operation, status}`; `status` is one of the labels above (another value is
/// built per call, as the macros do).
pub(super) fn op_status_key(name: &'static str, op: Operation, status: &'static str) -> Key {
    match STATUSES.iter().position(|s| *s == status) {
        Some(i) => {
            Key::from_static_parts(name, &table().op_status[op.index() * STATUSES.len() + i])
        }
        None => Key::from_parts(
            name,
            vec![
                Label::from_static_parts("operation", op.as_str()),
                Label::from_static_parts("status", status),
            ],
        ),
    }
}

/// Adds `by` to the counter `key`.
pub(super) fn count(key: &Key, by: u64) {
    metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(by));
}

/// Records `value` in the histogram `key`.
pub(super) fn record(key: &Key, value: f64) {
    metrics::with_recorder(|r| r.register_histogram(key, &METADATA).record(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static keys are the keys the `metrics` macros build from the same values.
    #[test]
    fn static_keys_equal_the_macros_keys() {
        for op in Operation::ALL {
            assert_eq!(
                op_key("m", op),
                Key::from_parts("m", vec![Label::new("operation", op.as_str())])
            );
            for status in STATUSES.iter().copied().chain(["other"]) {
                let built = Key::from_parts(
                    "m",
                    vec![
                        Label::new("operation", op.as_str()),
                        Label::new("status", status),
                    ],
                );
                assert_eq!(op_status_key("m", op, status), built, "{op} {status}");
            }
        }
    }
}
