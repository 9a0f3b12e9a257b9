//! Whether telemetry is on: `TINKER_TELEMETRY`.

/// The environment variable that turns telemetry off.
pub const TINKER_TELEMETRY: &str = "TINKER_TELEMETRY";

/// Whether telemetry is enabled, given a variable lookup: on when `TINKER_TELEMETRY` is
/// unset, or set to `1`, `true`, `yes` or `on` (any case); off for any other value
/// (including the empty string), as in the official SDK.
pub fn telemetry_enabled_with(var: impl Fn(&str) -> Option<String>) -> bool {
    let value = var(TINKER_TELEMETRY).unwrap_or_else(|| "1".to_owned());
    matches!(value.to_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// Whether telemetry is enabled by the process environment
/// (see [`telemetry_enabled_with`]).
pub fn telemetry_enabled() -> bool {
    telemetry_enabled_with(|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: Option<&str>) -> bool {
        telemetry_enabled_with(|_| value.map(str::to_owned))
    }

    #[test]
    fn on_unless_set_to_something_else() {
        assert!(with(None));
        for on in ["1", "true", "YES", "On"] {
            assert!(with(Some(on)), "{on}");
        }
        for off in ["0", "false", "no", "off", "", " 1"] {
            assert!(!with(Some(off)), "{off:?}");
        }
    }
}
