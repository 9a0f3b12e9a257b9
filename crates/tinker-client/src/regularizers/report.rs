//! What a pipeline reports (tinkex's `CustomLossOutput` and `RegularizerOutput`), and its
//! table.

use std::fmt;

/// The base loss's part of a report.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TermReport {
    /// The base loss, summed over datums.
    pub value: f64,
    /// `‖d base / d logprobs‖` over the batch, when tracked.
    pub grad_norm: Option<f64>,
}

/// One regularizer's part of a report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RegularizerReport {
    /// Its name.
    pub name: String,
    /// The penalty, summed over datums.
    pub value: f64,
    /// Its weight.
    pub weight: f64,
    /// `weight · value`, its share of the loss.
    pub contribution: f64,
    /// `‖d value / d logprobs‖` over the batch, when tracked.
    pub grad_norm: Option<f64>,
    /// `weight · grad_norm`.
    pub grad_norm_weighted: Option<f64>,
}

/// A pipeline's loss, term by term.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PipelineReport {
    /// `base + regularizer_total` (the training result's `loss:sum`).
    pub loss_total: f64,
    /// The base loss.
    pub base: TermReport,
    /// The regularizers, in pipeline order.
    pub regularizers: Vec<RegularizerReport>,
    /// `Σ contribution`.
    pub regularizer_total: f64,
    /// `‖d loss_total / d logprobs‖`, when tracked.
    pub total_grad_norm: Option<f64>,
}

impl PipelineReport {
    /// The regularizer named `name`.
    pub fn regularizer(&self, name: &str) -> Option<&RegularizerReport> {
        self.regularizers.iter().find(|r| r.name == name)
    }
}

fn cell(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.6}"))
}

impl fmt::Display for PipelineReport {
    /// A table: one row per regularizer, then the base, the regularizer total and the
    /// total loss.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<20} {:>9} {:>14} {:>14} {:>12} {:>12}",
            "term", "weight", "value", "contribution", "grad_norm", "weighted"
        )?;
        for r in &self.regularizers {
            writeln!(
                f,
                "{:<20} {:>9} {:>14.6} {:>14.6} {:>12} {:>12}",
                r.name,
                r.weight,
                r.value,
                r.contribution,
                cell(r.grad_norm),
                cell(r.grad_norm_weighted)
            )?;
        }
        writeln!(
            f,
            "{:<20} {:>9} {:>14.6} {:>14.6} {:>12} {:>12}",
            "base",
            1,
            self.base.value,
            self.base.value,
            cell(self.base.grad_norm),
            cell(self.base.grad_norm)
        )?;
        writeln!(
            f,
            "{:<20} {:>9} {:>14} {:>14.6}",
            "regularizer_total", "", "", self.regularizer_total
        )?;
        write!(
            f,
            "{:<20} {:>9} {:>14} {:>14.6} {:>12}",
            "loss_total",
            "",
            "",
            self.loss_total,
            cell(self.total_grad_norm)
        )
    }
}
