//! A fixed, lock-free latency histogram: log-spaced buckets of atomic counters.
//!
//! Recording is one `leading_zeros`, a shift and four relaxed atomic adds, with no lock
//! and no allocation, so it can stay on in production. Buckets are powers of two split
//! into [`SUB_BUCKETS`] linear steps (HDR-style), which bounds the relative error of a
//! percentile by 1/[`SUB_BUCKETS`] (12.5 %). Values are microseconds, up to 2^40 µs
//! (about 12 days); larger values land in the last bucket. Hand-written rather than
//! `hdrhistogram`, whose histograms need `&mut` (a lock per record) to be shared.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Linear steps per power of two.
const SUB_BITS: u32 = 3;
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// Powers of two covered above the first linear range.
const MAX_BITS: u32 = 40;
const BUCKETS: usize = ((MAX_BITS - SUB_BITS + 1) as usize + 1) * SUB_BUCKETS as usize;

/// Latencies in microseconds, bucketed; shared by reference between threads.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of `v`: values below `SUB_BUCKETS` have one bucket each; above, the bucket
/// is (power of two, top `SUB_BITS` bits below the leading one).
fn bucket_of(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let bits = 64 - v.leading_zeros(); // position of the leading one, 1-based
    let shift = bits - 1 - SUB_BITS;
    let sub = (v >> shift) & (SUB_BUCKETS - 1);
    let idx = ((shift + 1) as u64 * SUB_BUCKETS + sub) as usize;
    idx.min(BUCKETS - 1)
}

/// The largest value that falls in bucket `idx`.
fn bucket_high(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < SUB_BUCKETS {
        return idx;
    }
    let shift = idx / SUB_BUCKETS - 1;
    let sub = idx % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << shift) - 1
}

impl Histogram {
    /// Records one latency.
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    /// Empties the histogram (concurrent records may land on either side).
    pub(crate) fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum_us.store(0, Relaxed);
        self.max_us.store(0, Relaxed);
    }

    /// Count, mean, percentiles and maximum of what was recorded.
    pub(crate) fn summary(&self) -> super::LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let max = self.max_us.load(Relaxed);
        if count == 0 {
            return super::LatencySummary::default();
        }
        // A percentile is the top of the bucket holding that rank, capped by the maximum
        // seen, so p50 <= p95 <= p99 <= max always holds.
        let percentile = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros(bucket_high(i).min(max));
                }
            }
            Duration::from_micros(max)
        };
        super::LatencySummary {
            count,
            mean: Duration::from_micros(self.sum_us.load(Relaxed) / count),
            p50: percentile(0.50),
            p95: percentile(0.95),
            p99: percentile(0.99),
            max: Duration::from_micros(max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut prev_high = None;
        for idx in 0..BUCKETS - 1 {
            let high = bucket_high(idx);
            if let Some(p) = prev_high {
                assert!(high > p, "bucket {idx}");
                assert_eq!(bucket_of(p + 1), idx, "low edge of bucket {idx}");
            }
            assert_eq!(bucket_of(high), idx, "high edge of bucket {idx}");
            prev_high = Some(high);
        }
    }

    proptest! {
        /// A percentile is within 12.5 % above the exact value and never below it.
        #[test]
        fn percentiles_bound_the_exact_ones(mut xs in prop::collection::vec(1u64..10_000_000, 1..300)) {
            let h = Histogram::default();
            for x in &xs {
                h.record(Duration::from_micros(*x));
            }
            xs.sort_unstable();
            let s = h.summary();
            for (q, got) in [(0.5, s.p50), (0.95, s.p95), (0.99, s.p99)] {
                let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
                let exact = xs[rank - 1] as f64;
                let got = got.as_micros() as f64;
                prop_assert!(got >= exact && got <= exact * 1.125 + 1.0, "q={q} exact={exact} got={got}");
            }
            prop_assert!(s.p50 <= s.p95 && s.p95 <= s.p99 && s.p99 <= s.max);
            prop_assert_eq!(s.count, xs.len() as u64);
        }
    }
}
