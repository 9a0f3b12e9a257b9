//! Reverse-mode accumulation of `d loss / d logprobs` over the values of a forward pass.

use super::super::error::{EngineError, Result};
use super::ops::{Operand, Step};
use super::shape::{index_map, reduction};
use super::{CustomGraph, Tensor};

impl CustomGraph {
    /// `d loss / d logprobs` by reverse accumulation over the recorded values.
    pub(super) fn backward(&self, values: &[Tensor], needs: &[bool]) -> Result<Vec<f64>> {
        let mut grads: Vec<Option<Vec<f64>>> = vec![None; values.len()];
        let add = |grads: &mut Vec<Option<Vec<f64>>>, node: usize, at: usize, g: f64| {
            let len = values[node].data.len();
            grads[node].get_or_insert_with(|| vec![0.0; len])[at] += g;
        };
        if needs[self.loss] {
            grads[self.loss] = Some(vec![1.0]);
        }
        for (n, step) in self.steps.iter().enumerate().rev() {
            let Some(g) = grads[n].take() else { continue };
            let wants = |o: &Operand| matches!(o, Operand::Node(i) if needs[*i]);
            match step {
                Step::Input(k) => {
                    if *k == 0 {
                        grads[n] = Some(g);
                    }
                }
                Step::Binary(op, a, b) => {
                    let shape = &values[n].shape;
                    let get = |o: &Operand| match o {
                        Operand::Node(i) => (&values[*i].data[..], &values[*i].shape[..]),
                        Operand::Const(_) => (&[][..], &[][..]),
                    };
                    let (ca, cb) = (const_of(a), const_of(b));
                    let ((da, sa), (db, sb)) = (get(a), get(b));
                    let (ia, ib) = (index_map(shape, sa), index_map(shape, sb));
                    for k in 0..g.len() {
                        let x = ca.unwrap_or_else(|| da[ia[k]]);
                        let y = cb.unwrap_or_else(|| db[ib[k]]);
                        let (pa, pb) = op.partials(x, y, values[n].data[k]);
                        if let (true, Operand::Node(i)) = (wants(a), a) {
                            add(&mut grads, *i, ia[k], g[k] * pa);
                        }
                        if let (true, Operand::Node(i)) = (wants(b), b) {
                            add(&mut grads, *i, ib[k], g[k] * pb);
                        }
                    }
                }
                Step::Unary(op, x) => {
                    if needs[*x] {
                        for (k, gk) in g.iter().enumerate() {
                            let d = op.derivative(values[*x].data[k], values[n].data[k]);
                            add(&mut grads, *x, k, gk * d);
                        }
                    }
                }
                Step::Clamp { x, min, max } => {
                    if needs[*x] {
                        for (k, gk) in g.iter().enumerate() {
                            let v = values[*x].data[k];
                            let inside = min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m);
                            add(&mut grads, *x, k, if inside { *gk } else { 0.0 });
                        }
                    }
                }
                Step::Where { cond, a, b } => {
                    let shape = &values[n].shape;
                    let ic = index_map(shape, &values[*cond].shape);
                    for (o, on_true) in [(a, true), (b, false)] {
                        let Operand::Node(i) = o else { continue };
                        if !needs[*i] {
                            continue;
                        }
                        let io = index_map(shape, &values[*i].shape);
                        for k in 0..g.len() {
                            if (values[*cond].data[ic[k]] != 0.0) == on_true {
                                add(&mut grads, *i, io[k], g[k]);
                            }
                        }
                    }
                }
                Step::Reduce {
                    mean,
                    x,
                    dims,
                    keepdim,
                } => {
                    if needs[*x] {
                        let (_, map, count) =
                            reduction(&self.name, &values[*x].shape, dims.as_deref(), *keepdim)?;
                        let scale = if *mean { 1.0 / count as f64 } else { 1.0 };
                        for (i, &o) in map.iter().enumerate() {
                            add(&mut grads, *x, i, g[o] * scale);
                        }
                    }
                }
                Step::Detach(_) => {}
            }
        }
        let input = self
            .steps
            .iter()
            .position(|s| *s == Step::Input(0))
            .ok_or_else(|| EngineError::internal("custom loss has no logprobs placeholder"))?;
        Ok(grads[input]
            .take()
            .unwrap_or_else(|| vec![0.0; values[input].data.len()]))
    }
}

fn const_of(o: &Operand) -> Option<f64> {
    match o {
        Operand::Const(x) => Some(*x),
        Operand::Node(_) => None,
    }
}
