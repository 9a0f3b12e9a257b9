//! The pipeline: a base loss and named, weighted regularizers, built into one
//! [`CustomLoss`] whose metrics carry every term's value and gradient norm.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use tinker_types::Datum;

use crate::custom_loss::{CustomLoss, CustomLossBuilder, Expr};

use super::penalty::declare_fields;
use super::report::{PipelineReport, RegularizerReport, TermReport};
use super::{Penalty, RegularizerError};

/// The metric holding the base loss.
const BASE_KEY: &str = "custom/base:sum";
/// Longest regularizer name: `custom/grad_sq/<name>:sum` must stay within 64 characters.
const MAX_NAME: usize = 48;

fn value_key(name: &str) -> String {
    format!("custom/reg/{name}:sum")
}

fn grad_key(name: &str) -> String {
    format!("custom/grad_sq/{name}:sum")
}

/// A user-written base loss: given the builder (whose `logprobs()` is the datum's
/// logprobs; declare the inputs it needs), the per-datum scalar loss.
pub type BaseLossFn = dyn Fn(&mut CustomLossBuilder) -> Expr + Send + Sync;

/// The loss the regularizers are added to.
#[derive(Clone)]
#[non_exhaustive]
pub enum BaseLoss {
    /// `−mean(lp)` per datum (tinkex's examples).
    NegMeanLogprob,
    /// `−Σ lp·weights` per datum: cross-entropy with the datum's `weights` field.
    WeightedNll,
    /// Your own expression.
    Custom(Arc<BaseLossFn>),
}

impl fmt::Debug for BaseLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NegMeanLogprob => f.write_str("NegMeanLogprob"),
            Self::WeightedNll => f.write_str("WeightedNll"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl BaseLoss {
    fn expr(&self, b: &mut CustomLossBuilder) -> Expr {
        match self {
            Self::NegMeanLogprob => -b.logprobs().mean(),
            Self::WeightedNll => {
                let w = b.input("weights", crate::custom_loss::Rank::R1);
                -(b.logprobs() * w).sum()
            }
            Self::Custom(f) => f(b),
        }
    }
}

/// One named, weighted penalty.
#[derive(Debug, Clone, PartialEq)]
pub struct Regularizer {
    name: String,
    weight: f64,
    penalty: Penalty,
}

impl Regularizer {
    /// `weight · penalty`, reported as `name` (1–48 characters of `[a-z0-9_]`, unique in
    /// its pipeline; checked by [`Pipeline::build`]).
    pub fn new(name: impl Into<String>, weight: f64, penalty: Penalty) -> Self {
        Self {
            name: name.into(),
            weight,
            penalty,
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// The penalty.
    pub fn penalty(&self) -> &Penalty {
        &self.penalty
    }
}

/// A base loss plus weighted regularizers; [`build`](Self::build) makes the loss.
#[derive(Debug, Clone)]
pub struct Pipeline {
    name: String,
    base: BaseLoss,
    pub(super) regularizers: Vec<Regularizer>,
    track_grad_norms: bool,
}

impl Pipeline {
    /// A pipeline named `name` (the custom loss's name) with base loss
    /// [`BaseLoss::NegMeanLogprob`], no regularizers, gradient norms tracked.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base: BaseLoss::NegMeanLogprob,
            regularizers: Vec::new(),
            track_grad_norms: true,
        }
    }

    /// Sets the base loss.
    pub fn base(mut self, base: BaseLoss) -> Self {
        self.base = base;
        self
    }

    /// Adds a regularizer.
    pub fn regularizer(mut self, r: Regularizer) -> Self {
        self.regularizers.push(r);
        self
    }

    /// Whether the graph also computes every term's gradient norm (on by default; off
    /// makes the graph smaller and the report's norms `None`).
    pub fn track_grad_norms(mut self, on: bool) -> Self {
        self.track_grad_norms = on;
        self
    }

    /// Checks the names, weights and options and builds the loss: per datum,
    /// `base + Σ weight·penalty`, with every term's value (and gradient norm) as metrics.
    ///
    /// # Errors
    /// [`RegularizerError`] for duplicate or invalid names, negative weights, options out
    /// of range, or a loss the custom-loss builder refuses (too many input fields, a base
    /// loss that cannot be differentiated symbolically while gradient norms are tracked).
    pub fn build(&self) -> Result<RegularizedLoss, RegularizerError> {
        let mut seen = BTreeSet::new();
        let mut repeated = BTreeSet::new();
        for r in &self.regularizers {
            let ok_name = !r.name.is_empty()
                && r.name.len() <= MAX_NAME
                && r.name
                    .chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
            if !ok_name {
                return Err(RegularizerError::InvalidName {
                    name: r.name.clone(),
                });
            }
            if !(r.weight.is_finite() && r.weight >= 0.0) {
                return Err(RegularizerError::InvalidWeight {
                    name: r.name.clone(),
                    weight: r.weight,
                });
            }
            r.penalty.check(&r.name)?;
            if !seen.insert(r.name.as_str()) {
                repeated.insert(r.name.clone());
            }
        }
        if !repeated.is_empty() {
            return Err(RegularizerError::DuplicateNames {
                names: repeated.into_iter().collect(),
            });
        }

        let mut b = CustomLoss::builder(&self.name);
        let base = self.base.expr(&mut b);
        let fields = declare_fields(
            &mut b,
            self.regularizers.iter().flat_map(|r| r.penalty.fields()),
        );
        let mut metrics: Vec<(String, Expr)> = vec![(BASE_KEY.to_owned(), base.clone())];
        let mut total = base.clone();
        let mut terms = Vec::with_capacity(self.regularizers.len());
        for r in &self.regularizers {
            let value = r.penalty.expr(&b, &fields, &base)?;
            total = total + &value * r.weight;
            metrics.push((value_key(&r.name), value.clone()));
            terms.push((r.name.clone(), value));
        }
        if self.track_grad_norms {
            let sq = |e: &Expr| -> Result<Expr, RegularizerError> {
                let g = b.gradient(e)?;
                Ok((&g * &g).sum())
            };
            metrics.push((grad_key("base"), sq(&base)?));
            for (name, value) in &terms {
                metrics.push((grad_key(name), sq(value)?));
            }
            metrics.push((grad_key("total"), sq(&total)?));
        }
        let loss = b.build(total, metrics)?;
        Ok(RegularizedLoss {
            loss,
            regularizers: self
                .regularizers
                .iter()
                .map(|r| (r.name.clone(), r.weight))
                .collect(),
            track_grad_norms: self.track_grad_norms,
        })
    }
}

/// A built pipeline: the [`CustomLoss`] to train with (client- or server-side) and what
/// is needed to read its metrics back as a [`PipelineReport`].
#[derive(Debug, Clone)]
pub struct RegularizedLoss {
    loss: CustomLoss,
    regularizers: Vec<(String, f64)>,
    track_grad_norms: bool,
}

impl RegularizedLoss {
    /// The custom loss: pass it to
    /// [`TrainingClient::forward_backward_custom_expr`](crate::TrainingClient::forward_backward_custom_expr)
    /// or upload it with [`ServiceClient::create_custom_loss`](crate::ServiceClient::create_custom_loss).
    pub fn custom_loss(&self) -> &CustomLoss {
        &self.loss
    }

    /// The regularizers' names, in pipeline order.
    pub fn regularizer_names(&self) -> Vec<&str> {
        self.regularizers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The rank-1 `loss_fn_inputs` fields every datum must carry (besides
    /// `target_tokens`).
    pub fn fields(&self) -> Vec<&str> {
        self.loss.inputs()[1..]
            .iter()
            .map(|i| i.name.as_str())
            .collect()
    }

    /// Reads the report from a training result's metrics (either path's).
    ///
    /// # Errors
    /// [`RegularizerError::MissingMetric`] when a metric this pipeline writes is absent.
    pub fn report(
        &self,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<PipelineReport, RegularizerError> {
        let get = |key: &str| {
            metrics
                .get(key)
                .copied()
                .ok_or_else(|| RegularizerError::MissingMetric {
                    key: key.to_owned(),
                })
        };
        let norm = |name: &str| -> Result<Option<f64>, RegularizerError> {
            if self.track_grad_norms {
                Ok(Some(get(&grad_key(name))?.max(0.0).sqrt()))
            } else {
                Ok(None)
            }
        };
        let base = TermReport {
            value: get(BASE_KEY)?,
            grad_norm: norm("base")?,
        };
        let mut regularizers = Vec::with_capacity(self.regularizers.len());
        for (name, weight) in &self.regularizers {
            let value = get(&value_key(name))?;
            let grad_norm = norm(name)?;
            regularizers.push(RegularizerReport {
                name: name.clone(),
                value,
                weight: *weight,
                contribution: weight * value,
                grad_norm,
                grad_norm_weighted: grad_norm.map(|g| g * weight),
            });
        }
        let regularizer_total = regularizers.iter().map(|r| r.contribution).sum();
        Ok(PipelineReport {
            loss_total: base.value + regularizer_total,
            base,
            regularizers,
            regularizer_total,
            total_grad_norm: norm("total")?,
        })
    }

    /// Evaluates the pipeline on the client for a batch (`logprobs[i]` are datum `i`'s)
    /// and reports it, with no server involved.
    ///
    /// # Errors
    /// [`RegularizerError::Loss`] as [`CustomLoss::evaluate_batch`].
    pub fn evaluate(
        &self,
        data: &[Datum],
        logprobs: &[Vec<f32>],
    ) -> Result<PipelineReport, RegularizerError> {
        let out = self.loss.evaluate_batch(data, logprobs)?;
        self.report(&out.metrics)
    }
}
