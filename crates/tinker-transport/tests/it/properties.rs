//! Property tests: `Retry-After` parsing, backoff bounds, the byte budget's invariants.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use tinker_transport::ByteBudget;
use tinker_transport::retry::backoff::{
    http_backoff, http_retry_delay, operation_backoff, parse_retry_after, retry_after_secs,
};

proptest! {
    #[test]
    fn retry_after_seconds_round_trip(secs in 0.0f64..1e6) {
        let text = format!("{secs}");
        prop_assert_eq!(parse_retry_after(&text, 0.0), Some(secs));
        let padded = format!("  {secs} ");
        prop_assert_eq!(parse_retry_after(&padded, 0.0), Some(secs));
    }

    #[test]
    fn retry_after_http_dates_are_relative_to_now(now in 0i64..4_000_000_000, ahead in -3600i64..3600) {
        let at = chrono::DateTime::from_timestamp(now + ahead, 0).unwrap();
        let text = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        prop_assert_eq!(parse_retry_after(&text, now as f64), Some(ahead as f64));
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after(ms in 1u32..100_000, secs in 1u32..100) {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from(secs));
        h.insert("retry-after-ms", HeaderValue::from(ms));
        prop_assert_eq!(retry_after_secs(&h, 0.0), Some(f64::from(ms) / 1000.0));
    }

    #[test]
    fn garbage_retry_after_is_ignored(s in "[a-zA-Z ,:]{0,40}") {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&s) {
            h.insert("retry-after", v);
        }
        // Not parseable → the jittered schedule applies.
        prop_assume!(retry_after_secs(&h, 0.0).is_none());
        prop_assert_eq!(http_retry_delay(2, Some(&h), 0.0, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn server_hints_apply_only_within_sixty_seconds(secs in -100.0f64..200.0, r in 0u32..20) {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_str(&format!("{secs}")).unwrap());
        let d = http_retry_delay(r, Some(&h), 0.0, 0.5).as_secs_f64();
        if secs > 0.0 && secs <= 60.0 {
            prop_assert!((d - secs).abs() < 1e-9);
        } else {
            prop_assert_eq!(d, http_backoff(r, 0.5).as_secs_f64());
        }
    }

    #[test]
    fn http_backoff_stays_within_the_jitter_band(r in 0u32..2000, u in 0.0f64..1.0) {
        let d = http_backoff(r, u).as_secs_f64();
        let base = (0.5 * 2f64.powi(r.min(1000) as i32)).min(10.0);
        prop_assert!(d <= base + 1e-9);
        prop_assert!(d >= base * 0.75 - 1e-9);
        prop_assert!(d <= 10.0);
    }

    #[test]
    fn operation_backoff_is_capped_and_truncated(a in 0u32..100, remaining_ms in 0u64..400_000) {
        let remaining = Duration::from_millis(remaining_ms);
        let d = operation_backoff(a, remaining);
        prop_assert!(d <= Duration::from_secs(30));
        prop_assert!(d <= remaining);
        let full = Duration::from_secs(2u64.saturating_pow(a.min(62)).min(30));
        prop_assert_eq!(d, full.min(remaining));
    }

    /// Against a model: `try_acquire` succeeds iff the remaining amount is not negative,
    /// then subtracts the whole cost; releases add it back.
    #[test]
    fn byte_budget_matches_the_model(
        capacity in 0u64..1000,
        ops in proptest::collection::vec((any::<bool>(), 0u64..1500), 0..60),
    ) {
        let budget = ByteBudget::new(capacity);
        let mut model: i64 = capacity as i64;
        let mut held = Vec::new();
        for (acquire, size) in ops {
            if acquire || held.is_empty() {
                let got = budget.try_acquire(size);
                prop_assert_eq!(got.is_some(), model >= 0);
                if let Some(p) = got {
                    model -= size as i64;
                    held.push(p);
                }
            } else {
                let p = held.remove(size as usize % held.len());
                model += p.bytes() as i64;
                drop(p);
            }
            prop_assert_eq!(budget.remaining(), model);
        }
        drop(held);
        prop_assert_eq!(budget.remaining(), capacity as i64);
    }
}
