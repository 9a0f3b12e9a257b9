//! The penalties, each written as a custom-loss expression of one datum's logprobs (the
//! formulas of tinkex's `nx_penalties` 0.1.2, re-derived).

use std::collections::BTreeMap;

use crate::custom_loss::{CustomLossBuilder, Expr, Rank};

use super::RegularizerError;

/// What an L1/L2/elastic-net penalty measures.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Target {
    /// The logprobs themselves (tinkex's default).
    Logprobs,
    /// `exp(logprobs)`.
    Probs,
    /// A rank-1 `loss_fn_inputs` field (no gradient reaches the logprobs).
    Field(String),
}

/// How elements are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reduction {
    /// The sum.
    Sum,
    /// The mean.
    Mean,
}

/// What an L2 penalty centres on.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Center {
    /// `Σ x²`.
    Zero,
    /// `Σ (x − mean(x))²`.
    Mean,
    /// `Σ (x − c)²`.
    Value(f64),
}

/// Which way an entropy term pushes when its weight is positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntropyMode {
    /// The value is `−H` (tinkex's `maximize`, nx_penalties' `:penalty`): minimising the
    /// loss raises the entropy. Values are negative.
    Maximize,
    /// The value is `H` (tinkex's `minimize`, `:bonus`).
    Minimize,
}

/// The direction of a KL term against the reference logprobs `r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KlDirection {
    /// `KL(p ‖ r) = Σ exp(lp)·(lp − r)`.
    Forward,
    /// `KL(r ‖ p) = Σ exp(r)·(r − lp)`.
    Reverse,
    /// The mean of both.
    Symmetric,
}

/// The distance of a consistency term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsistencyMetric {
    /// `(lp − pair)²`, reduced.
    Mse,
    /// `|lp − pair|`, reduced.
    L1,
    /// `1 − cos(lp, pair)`.
    Cosine,
    /// The symmetric KL of both as logprob vectors, halved.
    Kl,
}

/// How an orthogonality term treats the Gram matrix `G` of the normalised rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrthogonalityMode {
    /// `Σ_{i≠j} G_ij²`.
    Soft,
    /// `Σ_ij (G_ij − δ_ij)²`.
    Hard,
    /// `(trace G − n)² + Σ_{i≠j} G_ij²`.
    Spectral,
}

/// The function whose gradient a gradient penalty constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GradientOf {
    /// `Σ logprobs` (tinkex's example). Its gradient is all ones, so the penalty is the
    /// constant `(√T − target)²` and pushes nothing.
    Sum,
    /// The pipeline's base loss. For a loss linear in the logprobs (a mean NLL) this is
    /// constant as well; it moves the logprobs only for a non-linear base loss.
    BaseLoss,
}

/// A penalty on one datum's logprobs `lp` (rank 1, `[T]`). Each is a scalar expression;
/// see the [module docs](super) for what each means on per-token logprobs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Penalty {
    /// `Σ|x|` or its mean.
    L1 {
        /// What `x` is.
        target: Target,
        /// Sum (tinkex's default) or mean.
        reduction: Reduction,
    },
    /// `Σ (clip(x − c))²` or its mean.
    L2 {
        /// What `x` is.
        target: Target,
        /// Sum (default) or mean.
        reduction: Reduction,
        /// Clip `x − c` to `[−clip, clip]` first.
        clip: Option<f64>,
        /// `c`.
        center: Center,
    },
    /// `ratio·L1 + (1 − ratio)·L2`.
    ElasticNet {
        /// What `x` is.
        target: Target,
        /// Sum (default) or mean.
        reduction: Reduction,
        /// The L1 share, in `[0, 1]` (default 0.5).
        l1_ratio: f64,
    },
    /// The entropy `H = −Σ exp(q)·q` of `q = log_softmax(lp / temperature)` (`q = lp` at
    /// temperature 1), positions with `q ≤ −50` left out.
    Entropy {
        /// The sign.
        mode: EntropyMode,
        /// Temperature (> 0; 1 leaves the logprobs as they are).
        temperature: f64,
        /// Divide by `ln T`, the entropy of a uniform distribution over the `T` positions.
        normalize: bool,
    },
    /// KL divergence between `lp` and a reference field of the same length, each
    /// pointwise log-ratio clipped to ±100 and terms with probability ≤ 1e-10 left out.
    Kl {
        /// The rank-1 `loss_fn_inputs` field with the reference logprobs.
        reference: String,
        /// Forward, reverse or symmetric.
        direction: KlDirection,
    },
    /// Distance between `lp` and a paired field (e.g. the logprobs of an augmented input).
    Consistency {
        /// The rank-1 `loss_fn_inputs` field.
        pair: String,
        /// The distance.
        metric: ConsistencyMetric,
        /// For `Mse` and `L1`: sum or mean (default).
        reduction: Reduction,
    },
    /// Orthogonality of the rows `[lp, rows…]`, each normalised to unit length (after
    /// subtracting its mean when `center`).
    Orthogonality {
        /// Soft, hard or spectral.
        mode: OrthogonalityMode,
        /// Rank-1 fields stacked under `lp` as further rows (none in tinkex).
        rows: Vec<String>,
        /// Subtract each row's mean first, so `G_ij` is a correlation.
        center: bool,
    },
    /// `(‖∇_lp f‖ − target_norm)²`, the gradient taken symbolically
    /// ([`CustomLossBuilder::gradient`]), so the penalty's own gradient (a second
    /// derivative of `f`) is exact.
    GradientPenalty {
        /// `f`.
        of: GradientOf,
        /// The norm aimed at (default 1).
        target_norm: f64,
    },
}

impl Penalty {
    /// L1 of the logprobs, summed.
    pub fn l1() -> Self {
        Self::L1 {
            target: Target::Logprobs,
            reduction: Reduction::Sum,
        }
    }

    /// L2 of the logprobs, summed, uncentred.
    pub fn l2() -> Self {
        Self::L2 {
            target: Target::Logprobs,
            reduction: Reduction::Sum,
            clip: None,
            center: Center::Zero,
        }
    }

    /// Elastic net of the logprobs, summed.
    pub fn elastic_net(l1_ratio: f64) -> Self {
        Self::ElasticNet {
            target: Target::Logprobs,
            reduction: Reduction::Sum,
            l1_ratio,
        }
    }

    /// Entropy at temperature 1, unnormalised.
    pub fn entropy(mode: EntropyMode) -> Self {
        Self::Entropy {
            mode,
            temperature: 1.0,
            normalize: false,
        }
    }

    /// KL against the field `reference`.
    pub fn kl(reference: &str, direction: KlDirection) -> Self {
        Self::Kl {
            reference: reference.to_owned(),
            direction,
        }
    }

    /// Mean squared distance to the field `pair`.
    pub fn consistency(pair: &str) -> Self {
        Self::Consistency {
            pair: pair.to_owned(),
            metric: ConsistencyMetric::Mse,
            reduction: Reduction::Mean,
        }
    }

    /// Orthogonality of the logprobs alone (tinkex's form; see the module docs).
    pub fn orthogonality(mode: OrthogonalityMode) -> Self {
        Self::Orthogonality {
            mode,
            rows: Vec::new(),
            center: false,
        }
    }

    /// Gradient penalty of `of` toward norm `target_norm`.
    pub fn gradient_penalty(of: GradientOf, target_norm: f64) -> Self {
        Self::GradientPenalty { of, target_norm }
    }

    /// The fields this penalty reads besides the logprobs.
    pub(super) fn fields(&self) -> Vec<&str> {
        match self {
            Self::L1 { target, .. } | Self::L2 { target, .. } | Self::ElasticNet { target, .. } => {
                match target {
                    Target::Field(f) => vec![f.as_str()],
                    _ => Vec::new(),
                }
            }
            Self::Kl { reference, .. } => vec![reference.as_str()],
            Self::Consistency { pair, .. } => vec![pair.as_str()],
            Self::Orthogonality { rows, .. } => rows.iter().map(String::as_str).collect(),
            Self::Entropy { .. } | Self::GradientPenalty { .. } => Vec::new(),
        }
    }

    /// Checks the options (`name` names the regularizer in errors).
    pub(super) fn check(&self, name: &str) -> Result<(), RegularizerError> {
        let bad = |reason: &str| {
            Err(RegularizerError::InvalidOption {
                name: name.to_owned(),
                reason: reason.to_owned(),
            })
        };
        match self {
            Self::ElasticNet { l1_ratio, .. } if !(0.0..=1.0).contains(l1_ratio) => {
                bad("l1_ratio must be in [0, 1]")
            }
            Self::L2 { clip: Some(c), .. } if !(c.is_finite() && *c > 0.0) => {
                bad("clip must be a positive number")
            }
            Self::Entropy { temperature, .. }
                if !(temperature.is_finite() && *temperature > 0.0) =>
            {
                bad("temperature must be a positive number")
            }
            Self::GradientPenalty { target_norm, .. }
                if !(target_norm.is_finite() && *target_norm >= 0.0) =>
            {
                bad("target_norm must be a number ≥ 0")
            }
            _ => Ok(()),
        }
    }

    /// The penalty's expression for one datum.
    pub(super) fn expr(
        &self,
        b: &CustomLossBuilder,
        fields: &BTreeMap<String, Expr>,
        base: &Expr,
    ) -> Result<Expr, RegularizerError> {
        let lp = b.logprobs();
        let field = |f: &str| fields[f].clone();
        let target = |t: &Target| match t {
            Target::Logprobs => lp.clone(),
            Target::Probs => lp.exp(),
            Target::Field(f) => field(f),
        };
        let reduce = |x: Expr, r: Reduction| match r {
            Reduction::Sum => x.sum(),
            Reduction::Mean => x.mean(),
        };
        Ok(match self {
            Self::L1 {
                target: t,
                reduction,
            } => reduce(target(t).abs(), *reduction),
            Self::L2 {
                target: t,
                reduction,
                clip,
                center,
            } => {
                let x = target(t);
                let centered = match center {
                    Center::Zero => x,
                    Center::Mean => &x - x.mean(),
                    Center::Value(c) => &x - *c,
                };
                let clipped = match clip {
                    Some(c) => centered.clamp(-c, *c),
                    None => centered,
                };
                reduce(clipped.powi(2), *reduction)
            }
            Self::ElasticNet {
                target: t,
                reduction,
                l1_ratio,
            } => {
                let x = target(t);
                reduce(x.abs(), *reduction) * *l1_ratio
                    + reduce(x.powi(2), *reduction) * (1.0 - l1_ratio)
            }
            Self::Entropy {
                mode,
                temperature,
                normalize,
            } => {
                let q = if *temperature == 1.0 {
                    lp.clone()
                } else {
                    // log_softmax over the positions. Logprobs are ≤ 0, so exp cannot
                    // overflow; it underflows only if every lp/τ is below about −700.
                    let s = &lp / *temperature;
                    &s - s.exp().sum().log()
                };
                let terms = q.gt(-50.0).select(-(q.exp() * &q), 0.0);
                let mut h = terms.sum();
                if *normalize {
                    h = h / ones(&lp).sum().log();
                }
                match mode {
                    EntropyMode::Maximize => -h,
                    EntropyMode::Minimize => h,
                }
            }
            Self::Kl {
                reference,
                direction,
            } => {
                let r = field(reference);
                let forward = || kl(&lp, &r);
                let reverse = || kl(&r, &lp);
                match direction {
                    KlDirection::Forward => forward(),
                    KlDirection::Reverse => reverse(),
                    KlDirection::Symmetric => (forward() + reverse()) * 0.5,
                }
            }
            Self::Consistency {
                pair,
                metric,
                reduction,
            } => {
                let p = field(pair);
                match metric {
                    ConsistencyMetric::Mse => reduce((&lp - &p).powi(2), *reduction),
                    ConsistencyMetric::L1 => reduce((&lp - &p).abs(), *reduction),
                    ConsistencyMetric::Cosine => 1.0 - cosine(&lp, &p),
                    ConsistencyMetric::Kl => {
                        let forward = (lp.exp() * (&lp - &p)).sum();
                        let backward = (p.exp() * (&p - &lp)).sum();
                        (forward + backward) * 0.5
                    }
                }
            }
            Self::Orthogonality { mode, rows, center } => {
                let mut all = vec![lp.clone()];
                all.extend(rows.iter().map(|r| field(r)));
                orthogonality(&all, *mode, *center)
            }
            Self::GradientPenalty { of, target_norm } => {
                let f = match of {
                    GradientOf::Sum => lp.sum(),
                    GradientOf::BaseLoss => base.clone(),
                };
                let g = b.gradient(&f).map_err(RegularizerError::Loss)?;
                // The tiny epsilon keeps the penalty differentiable at a zero gradient.
                let norm = ((&g * &g).sum() + 1e-12).sqrt();
                (norm - *target_norm).powi(2)
            }
        })
    }
}

/// `1` at every position of `x`, carrying no gradient.
pub(super) fn ones(x: &Expr) -> Expr {
    x.detach() * 0.0 + 1.0
}

/// `Σ exp(a)·clip(a − b, ±100)` over positions where `exp(a) > 1e-10`.
fn kl(a: &Expr, b: &Expr) -> Expr {
    let p = a.exp();
    let terms = &p * (a - b).clamp(-100.0, 100.0);
    p.gt(1e-10).select(terms, 0.0).sum()
}

fn norm(x: &Expr) -> Expr {
    (x * x).sum().sqrt()
}

fn cosine(a: &Expr, b: &Expr) -> Expr {
    (a * b).sum() / (norm(a).clamp_min(1e-8) * norm(b).clamp_min(1e-8))
}

fn orthogonality(rows: &[Expr], mode: OrthogonalityMode, center: bool) -> Expr {
    let unit: Vec<Expr> = rows
        .iter()
        .map(|r| {
            let r = if center { r - r.mean() } else { r.clone() };
            &r / norm(&r).clamp_min(1e-8)
        })
        .collect();
    // Σ_{i≠j} G_ij² = 2 Σ_{i<j} (x̂_i · x̂_j)²; with one row the sum is empty.
    let mut off = (&rows[0] * 0.0).sum().detach();
    for i in 0..unit.len() {
        for j in i + 1..unit.len() {
            off = off + (&unit[i] * &unit[j]).sum().powi(2) * 2.0;
        }
    }
    let diagonal: Vec<Expr> = unit.iter().map(|u| (u * u).sum()).collect();
    match mode {
        OrthogonalityMode::Soft => off,
        OrthogonalityMode::Hard => diagonal.iter().fold(off, |acc, d| acc + (d - 1.0).powi(2)),
        OrthogonalityMode::Spectral => {
            let n = diagonal.len() as f64;
            let trace = diagonal
                .iter()
                .skip(1)
                .fold(diagonal[0].clone(), |acc, d| acc + d);
            off + (trace - n).powi(2)
        }
    }
}

/// Declares every field the penalties read, once each, as a rank-1 input.
pub(super) fn declare_fields<'a>(
    b: &mut CustomLossBuilder,
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Expr> {
    let mut fields = BTreeMap::new();
    for name in names {
        if !fields.contains_key(name) {
            let e = b.input(name, Rank::R1);
            fields.insert(name.to_owned(), e);
        }
    }
    fields
}
