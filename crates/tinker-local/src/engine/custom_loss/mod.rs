//! Server-side custom losses (protocol §6.8): a traced torch.fx graph, checked against a
//! whitelist of operations when it is created, then evaluated per datum with a small
//! reverse-mode autodiff on f64 tensors of rank ≤ 2 (numpy broadcasting), giving the loss,
//! `d loss / d logprobs` and the metrics.
//!
//! Gradient conventions follow torch: `minimum`/`maximum` split ties evenly, `clamp` passes
//! the gradient on `min <= x <= max`, `abs` has derivative 0 at 0, comparisons and `detach`
//! carry none.
//!
//! One concept per module: `tensor` (the values), `ops` (the instruction set and its
//! pointwise derivatives), `compile` (validating the wire graph into steps), `shape`
//! (broadcasting and reductions), `forward` (evaluation) and `backward` (the gradient).

mod backward;
mod compile;
mod forward;
mod ops;
mod shape;
mod tensor;
#[cfg(test)]
mod tests;

use tinker_types::custom_loss::CustomLossInput;

use super::error::EngineError;
use ops::Step;

pub use tensor::Tensor;

/// A validated custom loss, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomGraph {
    name: String,
    inputs: Vec<CustomLossInput>,
    steps: Vec<Step>,
    loss: usize,
    metrics: Vec<(String, usize)>,
}

/// What one datum's evaluation gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The scalar loss.
    pub loss: f64,
    /// `d loss / d logprobs`, one value per logprob.
    pub grad: Vec<f64>,
    /// Metric values, in the graph's order.
    pub metrics: Vec<(String, f64)>,
}

/// A user error (the caller's graph or inputs are at fault).
fn user(msg: impl Into<String>) -> EngineError {
    EngineError::user(msg.into())
}

impl CustomGraph {
    /// The loss's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared inputs, `logprobs` first.
    pub fn inputs(&self) -> &[CustomLossInput] {
        &self.inputs
    }
}
