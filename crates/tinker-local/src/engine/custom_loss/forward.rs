//! Evaluation of one datum: every step's value in order, then the loss, the metrics and
//! (by the `backward` pass) the gradient.

use super::super::error::{EngineError, Result};
use super::ops::{Operand, Step};
use super::shape::{broadcast, index_map, reduction};
use super::{CustomGraph, Evaluation, Tensor, user};

/// A bound on any intermediate tensor's elements.
const MAX_ELEMENTS: usize = 1 << 22;

impl CustomGraph {
    /// Evaluates one datum. `inputs[0]` is the learner logprobs; the others follow the
    /// declared inputs' order.
    ///
    /// # Errors
    /// User errors for shape mismatches, a non-scalar loss or metric, or a non-finite loss
    /// or gradient.
    pub fn evaluate(&self, inputs: &[Tensor]) -> Result<Evaluation> {
        if inputs.len() != self.inputs.len() {
            return Err(EngineError::internal(format!(
                "custom loss {:?} got {} inputs for {} declared",
                self.name,
                inputs.len(),
                self.inputs.len()
            )));
        }
        let mut values: Vec<Tensor> = Vec::with_capacity(self.steps.len());
        let mut needs_grad = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let (value, grad) = self.forward(step, &values, &needs_grad, inputs)?;
            if value.data.len() > MAX_ELEMENTS {
                return Err(user(format!(
                    "custom loss {:?}: an intermediate tensor has {} elements",
                    self.name,
                    value.data.len()
                )));
            }
            values.push(value);
            needs_grad.push(grad);
        }
        let loss_value = &values[self.loss];
        if loss_value.data.len() != 1 || !loss_value.shape.is_empty() {
            return Err(user(format!(
                "custom loss {:?} must return a scalar loss, got shape {:?}",
                self.name, loss_value.shape
            )));
        }
        let loss = loss_value.data[0];
        let mut metrics = Vec::with_capacity(self.metrics.len());
        for (key, node) in &self.metrics {
            let v = &values[*node];
            if v.data.len() != 1 {
                return Err(user(format!(
                    "custom loss {:?}: metric {key:?} must be a scalar, got shape {:?}",
                    self.name, v.shape
                )));
            }
            metrics.push((key.clone(), v.data[0]));
        }
        let grad = self.backward(&values, &needs_grad)?;
        if !loss.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Err(user(format!(
                "custom loss {:?} gave a non-finite loss or gradient (loss {loss})",
                self.name
            )));
        }
        Ok(Evaluation {
            loss,
            grad,
            metrics,
        })
    }

    fn forward(
        &self,
        step: &Step,
        values: &[Tensor],
        needs: &[bool],
        inputs: &[Tensor],
    ) -> Result<(Tensor, bool)> {
        let operand = |o: &Operand| match o {
            Operand::Node(i) => (values[*i].clone(), needs[*i]),
            Operand::Const(x) => (Tensor::scalar(*x), false),
        };
        Ok(match step {
            Step::Input(k) => {
                let t = inputs[*k].clone();
                let rank = usize::from(self.inputs[*k].rank);
                if t.shape.len() != rank {
                    return Err(user(format!(
                        "custom loss {:?}: input {:?} has rank {}, declared {rank}",
                        self.name,
                        self.inputs[*k].name,
                        t.shape.len()
                    )));
                }
                (t, *k == 0)
            }
            Step::Binary(op, a, b) => {
                let ((a, na), (b, nb)) = (operand(a), operand(b));
                let shape = broadcast(&self.name, &[&a.shape, &b.shape])?;
                let (ia, ib) = (index_map(&shape, &a.shape), index_map(&shape, &b.shape));
                let data = ia
                    .iter()
                    .zip(&ib)
                    .map(|(&i, &j)| op.apply(a.data[i], b.data[j]))
                    .collect();
                (Tensor { shape, data }, (na || nb) && !op.is_comparison())
            }
            Step::Unary(op, x) => {
                let t = &values[*x];
                let data = t.data.iter().map(|&v| op.apply(v)).collect();
                (
                    Tensor {
                        shape: t.shape.clone(),
                        data,
                    },
                    needs[*x],
                )
            }
            Step::Clamp { x, min, max } => {
                let t = &values[*x];
                let data = t
                    .data
                    .iter()
                    .map(|&v| {
                        let v = min.map_or(v, |m| if v < m { m } else { v });
                        max.map_or(v, |m| if v > m { m } else { v })
                    })
                    .collect();
                (
                    Tensor {
                        shape: t.shape.clone(),
                        data,
                    },
                    needs[*x],
                )
            }
            Step::Where { cond, a, b } => {
                let c = &values[*cond];
                let ((a, na), (b, nb)) = (operand(a), operand(b));
                let shape = broadcast(&self.name, &[&c.shape, &a.shape, &b.shape])?;
                let (ic, ia, ib) = (
                    index_map(&shape, &c.shape),
                    index_map(&shape, &a.shape),
                    index_map(&shape, &b.shape),
                );
                let data = (0..ic.len())
                    .map(|k| {
                        if c.data[ic[k]] != 0.0 {
                            a.data[ia[k]]
                        } else {
                            b.data[ib[k]]
                        }
                    })
                    .collect();
                (Tensor { shape, data }, na || nb)
            }
            Step::Reduce {
                mean,
                x,
                dims,
                keepdim,
            } => {
                let t = &values[*x];
                let (shape, map, count) =
                    reduction(&self.name, &t.shape, dims.as_deref(), *keepdim)?;
                let mut data = vec![0.0; shape.iter().product()];
                for (i, &o) in map.iter().enumerate() {
                    data[o] += t.data[i];
                }
                if *mean {
                    data.iter_mut().for_each(|v| *v /= count as f64);
                }
                (Tensor { shape, data }, needs[*x])
            }
            Step::Detach(x) => (values[*x].clone(), false),
        })
    }
}
