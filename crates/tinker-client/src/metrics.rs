//! Combining the results of a chunked `forward`/`forward_backward` call (protocol §6.4).
//!
//! Every chunk of one call answers with its own metrics map. The maps are reduced key by
//! key following the suffix after the single `:` of each key (`loss:sum`, `acc:mean`, …),
//! exactly as the official SDK does, so results are identical whatever the chunking.

use std::collections::BTreeMap;

use crate::error::{Error, ErrorKind};

/// Metrics of one chunk result: the map from metric key to value, and the chunk's weight
/// (its number of `loss_fn_outputs`, i.e. of datums).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkMetrics<'a> {
    /// The chunk's metrics map.
    pub(crate) metrics: &'a BTreeMap<String, f64>,
    /// The number of outputs the chunk produced (the weight of `:mean` and `:slack`).
    pub(crate) weight: usize,
}

/// The reductions the combiner understands; keys with any other reduction are dropped
/// (a newer server may add reductions an older client cannot fold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduction {
    Mean,
    Sum,
    Min,
    Max,
    Slack,
    Hash2,
    Unique,
}

impl Reduction {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mean" => Self::Mean,
            "sum" => Self::Sum,
            "min" => Self::Min,
            "max" => Self::Max,
            "slack" => Self::Slack,
            "hash2" => Self::Hash2,
            "unique" => Self::Unique,
            _ => return None,
        })
    }
}

/// Splits a metric key into `(name, reduction)`; anything but exactly one `:` is an error.
pub(crate) fn split_metric_key(key: &str) -> Result<(&str, &str), Error> {
    let mut parts = key.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(reduction), None) => Ok((name, reduction)),
        _ => Err(Error::new(
            ErrorKind::BadMetricKey,
            format!(
                "metric key {key:?} must have the form \"<name>:<reduction>\" with exactly one ':'"
            ),
        )),
    }
}

/// Combines the metrics of the chunks of one call (§6.4):
/// keys come from the first chunk, a key missing from any chunk is skipped, unknown
/// reductions are skipped, a key without exactly one `:` is an error.
pub(crate) fn combine_metrics(chunks: &[ChunkMetrics<'_>]) -> Result<BTreeMap<String, f64>, Error> {
    let mut out = BTreeMap::new();
    let Some(first) = chunks.first() else {
        return Ok(out);
    };
    let weights: Vec<f64> = chunks.iter().map(|c| c.weight as f64).collect();
    for key in first.metrics.keys() {
        let (_, reduction) = split_metric_key(key)?;
        let Some(reduction) = Reduction::parse(reduction) else {
            tracing::debug!(key = %key, "unknown metric reduction; metric dropped");
            continue;
        };
        let Some(values) = chunks
            .iter()
            .map(|c| c.metrics.get(key).copied())
            .collect::<Option<Vec<f64>>>()
        else {
            continue;
        };
        match reduction {
            Reduction::Mean => {
                out.insert(key.clone(), weighted_mean(key, &values, &weights)?);
            }
            Reduction::Slack => {
                let mean = weighted_mean(key, &values, &weights)?;
                out.insert(key.clone(), max(&values) - mean);
            }
            Reduction::Sum => {
                out.insert(key.clone(), values.iter().sum());
            }
            Reduction::Min => {
                out.insert(
                    key.clone(),
                    values.iter().copied().fold(f64::INFINITY, f64::min),
                );
            }
            Reduction::Max => {
                out.insert(key.clone(), max(&values));
            }
            Reduction::Hash2 => {
                let mut acc: u64 = 0;
                for v in &values {
                    acc = acc.wrapping_add(truncate_to_u64(key, *v)?);
                }
                out.insert(key.clone(), acc as f64);
            }
            Reduction::Unique => {
                out.insert(key.clone(), values[0]);
                for (i, v) in values.iter().enumerate().skip(1) {
                    out.insert(format!("{key}_{i}"), *v);
                }
            }
        }
    }
    Ok(out)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn weighted_mean(key: &str, values: &[f64], weights: &[f64]) -> Result<f64, Error> {
    let total: f64 = weights.iter().sum();
    if total == 0.0 {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("cannot average metric {key:?}: every chunk returned zero loss_fn_outputs"),
        ));
    }
    let weighted: f64 = values.iter().zip(weights).map(|(v, w)| v * w).sum();
    Ok(weighted / total)
}

/// `int(v) & 0xFFFF_FFFF_FFFF_FFFF` in Python terms: truncation toward zero, then the low
/// 64 bits of the two's-complement value.
fn truncate_to_u64(key: &str, v: f64) -> Result<u64, Error> {
    if !v.is_finite() {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("metric {key:?} is a hash2 metric but has the non-finite value {v}"),
        ));
    }
    let t = v.trunc();
    // A float of magnitude ≥ 2^117 is a multiple of 2^64: its low 64 bits are zero.
    if t.abs() >= 2f64.powi(117) {
        return Ok(0);
    }
    Ok((t as i128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn reference_rules_on_two_chunks() {
        let a = m(&[
            ("loss:sum", 3.0),
            ("acc:mean", 1.0),
            ("lat:max", 2.0),
            ("lat2:min", 2.0),
            ("s:slack", 4.0),
            ("h:hash2", -1.0),
            ("c:unique", 7.0),
            ("only_a:sum", 1.0),
            ("x:weird", 1.0),
        ]);
        let b = m(&[
            ("loss:sum", 5.0),
            ("acc:mean", 0.0),
            ("lat:max", 9.0),
            ("lat2:min", 1.0),
            ("s:slack", 1.0),
            ("h:hash2", 3.7),
            ("c:unique", 8.0),
            ("x:weird", 1.0),
        ]);
        let out = combine_metrics(&[
            ChunkMetrics {
                metrics: &a,
                weight: 3,
            },
            ChunkMetrics {
                metrics: &b,
                weight: 1,
            },
        ])
        .unwrap();
        assert_eq!(out["loss:sum"], 8.0);
        assert_eq!(out["acc:mean"], 0.75);
        assert_eq!(out["lat:max"], 9.0);
        assert_eq!(out["lat2:min"], 1.0);
        assert_eq!(out["s:slack"], 4.0 - (4.0 * 3.0 + 1.0) / 4.0);
        // (-1 & mask) + 3 wraps to 2.
        assert_eq!(out["h:hash2"], 2.0);
        assert_eq!(out["c:unique"], 7.0);
        assert_eq!(out["c:unique_1"], 8.0);
        assert!(!out.contains_key("only_a:sum"));
        assert!(!out.contains_key("x:weird"));
    }

    #[test]
    fn bad_keys_are_typed_errors() {
        for key in ["loss", "a:b:c"] {
            let a = m(&[(key, 1.0)]);
            let err = combine_metrics(&[ChunkMetrics {
                metrics: &a,
                weight: 1,
            }])
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadMetricKey, "{key}");
        }
    }

    #[test]
    fn mean_over_zero_outputs_is_an_error() {
        let a = m(&[("acc:mean", 1.0)]);
        let err = combine_metrics(&[ChunkMetrics {
            metrics: &a,
            weight: 0,
        }])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    proptest! {
        /// Against the reference rules written out directly over per-chunk columns.
        #[test]
        fn combiner_matches_reference(
            chunks in prop::collection::vec(
                (1usize..50, prop::collection::vec(-1e6f64..1e6, 6)), 1..8)
        ) {
            let keys = ["a:mean", "b:sum", "c:min", "d:max", "e:slack", "f:hash2"];
            let maps: Vec<BTreeMap<String, f64>> = chunks.iter().map(|(_, vals)| {
                keys.iter().zip(vals).map(|(k, v)| ((*k).to_owned(), *v)).collect()
            }).collect();
            let input: Vec<ChunkMetrics<'_>> = maps.iter().zip(&chunks)
                .map(|(metrics, (w, _))| ChunkMetrics { metrics, weight: *w }).collect();
            let out = combine_metrics(&input).unwrap();
            let col = |i: usize| chunks.iter().map(|(_, v)| v[i]).collect::<Vec<_>>();
            let ws: Vec<f64> = chunks.iter().map(|(w, _)| *w as f64).collect();
            let wmean = |xs: &[f64]| xs.iter().zip(&ws).map(|(x, w)| x * w).sum::<f64>()
                / ws.iter().sum::<f64>();
            prop_assert!(close(out["a:mean"], wmean(&col(0))));
            prop_assert!(close(out["b:sum"], col(1).iter().sum()));
            prop_assert_eq!(out["c:min"], col(2).iter().copied().fold(f64::INFINITY, f64::min));
            prop_assert_eq!(out["d:max"], col(3).iter().copied().fold(f64::NEG_INFINITY, f64::max));
            let e = col(4);
            prop_assert!(close(out["e:slack"],
                e.iter().copied().fold(f64::NEG_INFINITY, f64::max) - wmean(&e)));
            let h = col(5).iter().fold(0u64, |acc, v| acc.wrapping_add((v.trunc() as i64) as u64));
            prop_assert_eq!(out["f:hash2"], h as f64);
            prop_assert_eq!(out.len(), keys.len());
        }

        /// A unique metric keeps every chunk's value, under suffixed keys.
        #[test]
        fn unique_keeps_every_value(vals in prop::collection::vec(-1e3f64..1e3, 1..10)) {
            let maps: Vec<BTreeMap<String, f64>> =
                vals.iter().map(|v| m(&[("u:unique", *v)])).collect();
            let input: Vec<ChunkMetrics<'_>> =
                maps.iter().map(|metrics| ChunkMetrics { metrics, weight: 1 }).collect();
            let out = combine_metrics(&input).unwrap();
            prop_assert_eq!(out.len(), vals.len());
            prop_assert_eq!(out["u:unique"], vals[0]);
            for (i, v) in vals.iter().enumerate().skip(1) {
                prop_assert_eq!(out[&format!("u:unique_{i}")], *v);
            }
        }
    }
}
