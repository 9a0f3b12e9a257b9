//! Durations as Python's `str(timedelta)`: `H:MM:SS[.ffffff]`, with a `N day(s), ` prefix.

use chrono::TimeDelta;

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// Formats a duration exactly as Python's `str(datetime.timedelta)` does, at microsecond
/// precision: `0:00:01.500000`, `2:03:04` (no fraction when it is zero),
/// `1 day, 0:00:00`, `-1 day, 23:59:59`.
pub fn format_timedelta(duration: TimeDelta) -> String {
    // Saturates far beyond any session length (±292k years).
    let micros = duration.num_microseconds().unwrap_or(i64::MAX);
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    let secs = rest / 1_000_000;
    let frac = rest % 1_000_000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if days != 0 {
        let plural = if days.abs() == 1 { "" } else { "s" };
        out.push_str(&format!("{days} day{plural}, "));
    }
    out.push_str(&format!("{h}:{m:02}:{s:02}"));
    if frac != 0 {
        out.push_str(&format!(".{frac:06}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python() {
        let f = |micros: i64| format_timedelta(TimeDelta::microseconds(micros));
        assert_eq!(f(0), "0:00:00");
        assert_eq!(f(1_500_000), "0:00:01.500000");
        assert_eq!(f(7_384_000_001), "2:03:04.000001");
        assert_eq!(f(7_384_000_000), "2:03:04");
        assert_eq!(f(MICROS_PER_DAY), "1 day, 0:00:00");
        assert_eq!(f(2 * MICROS_PER_DAY + 61_000_000), "2 days, 0:01:01");
        assert_eq!(f(-1_000_000), "-1 day, 23:59:59");
        assert_eq!(f(-2 * MICROS_PER_DAY), "-2 days, 0:00:00");
        // Sub-microsecond parts are dropped.
        assert_eq!(
            format_timedelta(TimeDelta::nanoseconds(2_999)),
            "0:00:00.000002"
        );
    }
}
