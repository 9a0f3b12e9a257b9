//! Splitting `forward`/`forward_backward` data into requests (protocol §6.4).
//!
//! The split is greedy and in order: a new chunk starts when the current one is non-empty
//! and either already holds `max_len` datums or would exceed `max_bytes` with the next
//! datum. A datum larger than `max_bytes` forms a chunk of its own.

use std::ops::Range;

/// Chunking limits, from the server's client config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkLimits {
    /// Maximum datums per request (`fwdbwd_max_chunk_len`, default 1024).
    pub(crate) max_len: usize,
    /// Maximum estimated bytes per request (`fwdbwd_max_chunk_bytes_count`, default 5 000 000).
    pub(crate) max_bytes: u64,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_len: 1024,
            max_bytes: 5_000_000,
        }
    }
}

/// One planned chunk: the datum index range and its estimated byte size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedChunk {
    /// Indices of the datums in this chunk.
    pub(crate) range: Range<usize>,
    /// Sum of the byte estimates of those datums.
    pub(crate) bytes: u64,
}

/// Plans the chunks for datums whose byte estimates are `costs`.
pub(crate) fn plan_chunks(costs: &[u64], limits: ChunkLimits) -> Vec<PlannedChunk> {
    let max_len = limits.max_len.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes: u64 = 0;
    for (i, &cost) in costs.iter().enumerate() {
        let len = i - start;
        if len > 0 && (len >= max_len || bytes.saturating_add(cost) > limits.max_bytes) {
            out.push(PlannedChunk {
                range: start..i,
                bytes,
            });
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(cost);
    }
    if start < costs.len() {
        out.push(PlannedChunk {
            range: start..costs.len(),
            bytes,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference algorithm, written as the SDK states it.
    fn reference(costs: &[u64], max_len: usize, max_bytes: u64) -> Vec<Vec<usize>> {
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut cur: Vec<usize> = Vec::new();
        let mut cur_bytes = 0u64;
        for (i, &c) in costs.iter().enumerate() {
            if !cur.is_empty() && (cur.len() >= max_len || cur_bytes + c > max_bytes) {
                chunks.push(std::mem::take(&mut cur));
                cur_bytes = 0;
            }
            cur.push(i);
            cur_bytes += c;
        }
        if !cur.is_empty() {
            chunks.push(cur);
        }
        chunks
    }

    #[test]
    fn oversized_datum_is_alone() {
        let limits = ChunkLimits {
            max_len: 10,
            max_bytes: 100,
        };
        let plan = plan_chunks(&[10, 500, 10], limits);
        let ranges: Vec<_> = plan.iter().map(|c| c.range.clone()).collect();
        assert_eq!(ranges, vec![0..1, 1..2, 2..3]);
        assert_eq!(plan[1].bytes, 500);
    }

    #[test]
    fn empty_plans_nothing() {
        assert!(plan_chunks(&[], ChunkLimits::default()).is_empty());
    }

    proptest! {
        #[test]
        fn matches_reference(
            costs in prop::collection::vec(0u64..2_000, 0..200),
            max_len in 1usize..20,
            max_bytes in 1u64..5_000,
        ) {
            let plan = plan_chunks(&costs, ChunkLimits { max_len, max_bytes });
            let got: Vec<Vec<usize>> = plan.iter().map(|c| c.range.clone().collect()).collect();
            prop_assert_eq!(&got, &reference(&costs, max_len, max_bytes));
            for c in &plan {
                prop_assert_eq!(c.bytes, costs[c.range.clone()].iter().sum::<u64>());
                prop_assert!(c.range.len() <= max_len);
                prop_assert!(c.range.len() == 1 || c.bytes <= max_bytes);
            }
        }
    }
}
