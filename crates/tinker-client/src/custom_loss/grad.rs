//! Symbolic differentiation: `d f / d logprobs` written as another expression of the same
//! builder, so a loss can use a gradient (a gradient penalty, a gradient-norm metric) and
//! still be one graph that runs on the server and in [`CustomLoss::evaluate`].
//!
//! Shapes are known only by rank, so broadcasting back to an operand is decided by rank:
//! the adjoint of a scalar operand of a vector result is summed. That is exact when every
//! expression that depends on the logprobs has rank ≤ 1 and no reduction keeps its
//! dimension — which [`CustomLossBuilder::gradient`] checks.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;

/// The adjoint of a node: the seed `1` of the differentiated scalar, or an expression.
#[derive(Clone)]
enum Adjoint {
    One,
    Of(Expr),
}

impl Adjoint {
    fn expr_or(&self, one: impl FnOnce() -> Expr) -> Expr {
        match self {
            Self::One => one(),
            Self::Of(e) => e.clone(),
        }
    }

    /// `self · e`.
    fn times(&self, e: Expr) -> Expr {
        match self {
            Self::One => e,
            Self::Of(g) => g * e,
        }
    }
}

fn unsupported(reason: impl Into<String>) -> CustomLossError {
    CustomLossError::GradientUnsupported {
        reason: reason.into(),
    }
}

fn key(e: &Expr) -> *const Node {
    Arc::as_ptr(&e.0)
}

/// Whether `e` depends on the logprobs placeholder (through anything but `detach`).
fn depends(e: &Expr, logprobs: *const Node, memo: &mut HashMap<*const Node, bool>) -> bool {
    if let Some(&d) = memo.get(&key(e)) {
        return d;
    }
    let d = match &e.0.kind {
        Kind::Input { .. } => key(e) == logprobs,
        Kind::Call { base, .. } if *base == "detach" => false,
        Kind::Call { args, .. } => args.iter().any(|a| match a {
            Arg::Expr(x) => depends(x, logprobs, memo),
            _ => false,
        }),
    };
    memo.insert(key(e), d);
    d
}

impl CustomLossBuilder {
    /// `d f / d logprobs` as an expression with the rank of the logprobs (the per-datum
    /// gradient the server's autodiff would give for `f` as the loss). Differentiating the
    /// result again (e.g. a penalty on its norm, used as a loss) is exact: every operation
    /// it uses is one the evaluators differentiate.
    ///
    /// # Errors
    /// [`CustomLossError::GradientUnsupported`] when `f` is not a scalar, the logprobs are
    /// not rank 1, an expression that depends on them has rank 2 or a reduction keeps its
    /// dimension; [`CustomLossError::ForeignExpression`] for another builder's expression.
    pub fn gradient(&self, f: &Expr) -> Result<Expr, CustomLossError> {
        let lp = self.logprobs();
        if lp.rank() != 1 {
            return Err(unsupported("the logprobs must have rank 1"));
        }
        if f.rank() != 0 {
            return Err(unsupported("only a scalar can be differentiated"));
        }
        // Every node `f` reaches through logprob-dependent paths.
        let mut memo = HashMap::new();
        let mut order: Vec<Expr> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![f.clone()];
        while let Some(e) = stack.pop() {
            if !seen.insert(key(&e)) || !depends(&e, key(&lp), &mut memo) {
                continue;
            }
            match &e.0.kind {
                Kind::Input { builder } => {
                    if *builder != self.id {
                        return Err(CustomLossError::ForeignExpression);
                    }
                }
                Kind::Call { args, kwargs, .. } => {
                    if e.rank() > 1 {
                        return Err(unsupported("an expression of rank 2 depends on logprobs"));
                    }
                    if kwargs
                        .iter()
                        .any(|(k, a)| *k == "keepdim" && matches!(a, Arg::Bool(true)))
                    {
                        return Err(unsupported("a reduction keeps its dimension"));
                    }
                    for a in args {
                        if let Arg::Expr(x) = a {
                            stack.push(x.clone());
                        }
                    }
                    order.push(e.clone());
                }
            }
        }
        // Results before their arguments: creation order, reversed.
        order.sort_by_key(|e| std::cmp::Reverse(e.0.seq));
        let mut adjoints: HashMap<*const Node, Adjoint> = HashMap::new();
        adjoints.insert(key(f), Adjoint::One);
        for y in &order {
            let Some(g) = adjoints.remove(&key(y)) else {
                continue;
            };
            let Kind::Call {
                base, args, kwargs, ..
            } = &y.0.kind
            else {
                continue;
            };
            for (operand, contribution) in partials(y, base, args, kwargs, &g)? {
                if !depends(&operand, key(&lp), &mut memo) {
                    continue;
                }
                // Broadcast back: a scalar operand of a vector result gets the sum.
                let contribution = match contribution {
                    Adjoint::Of(c) if c.rank() > operand.rank() => Adjoint::Of(c.sum()),
                    other => other,
                };
                let total = match adjoints.remove(&key(&operand)) {
                    None => contribution,
                    Some(prev) => {
                        let a = prev.expr_or(|| ones_like(&operand));
                        let b = contribution.expr_or(|| ones_like(&operand));
                        Adjoint::Of(a + b)
                    }
                };
                adjoints.insert(key(&operand), total);
            }
        }
        let zero = || lp.detach() * 0.0;
        Ok(match adjoints.remove(&key(&lp)) {
            None => zero(),
            Some(Adjoint::One) => ones_like(&lp),
            Some(Adjoint::Of(g)) if g.rank() == 0 => zero() + g,
            Some(Adjoint::Of(g)) => g,
        })
    }
}

/// `1` shaped like `x` (no gradient flows through it).
fn ones_like(x: &Expr) -> Expr {
    x.detach() * 0.0 + 1.0
}

fn expr_arg(a: &Arg) -> Option<&Expr> {
    match a {
        Arg::Expr(e) => Some(e),
        _ => None,
    }
}

fn number(a: &Arg) -> Option<f64> {
    match a {
        Arg::Float(x) => Some(*x),
        Arg::Int(i) => Some(*i as f64),
        Arg::Bool(b) => Some(f64::from(u8::from(*b))),
        Arg::Expr(_) => None,
    }
}

/// `g` as a select branch: the number 1 for the seed, else the expression.
fn branch(g: &Adjoint) -> ArgValue {
    match g {
        Adjoint::One => ArgValue(Arg::Float(1.0)),
        Adjoint::Of(e) => ArgValue(Arg::Expr(e.clone())),
    }
}

/// The contribution of `g` (the adjoint of `y`) to each tensor operand of `y`.
fn partials(
    y: &Expr,
    base: &str,
    args: &[Arg],
    kwargs: &[(&'static str, Arg)],
    g: &Adjoint,
) -> Result<Vec<(Expr, Adjoint)>, CustomLossError> {
    let of = Adjoint::Of;
    let neg_g = || match g {
        Adjoint::One => of(ones_like(y) * -1.0),
        Adjoint::Of(e) => of(-e),
    };
    let x = args.first().and_then(expr_arg).cloned();
    let unary =
        |d: Adjoint| -> Vec<(Expr, Adjoint)> { x.clone().map(|x| (x, d)).into_iter().collect() };
    Ok(match base {
        "add" | "sub" => {
            let mut out = Vec::new();
            if let Some(a) = args.first().and_then(expr_arg) {
                out.push((a.clone(), g.clone()));
            }
            if let Some(b) = args.get(1).and_then(expr_arg) {
                out.push((b.clone(), if base == "sub" { neg_g() } else { g.clone() }));
            }
            out
        }
        "mul" => {
            let mut out = Vec::new();
            if let (Some(a), Some(b)) = (args.first(), args.get(1)) {
                let with = |other: &Arg| match other {
                    Arg::Expr(o) => of(g.times(o.clone())),
                    n => of(match g {
                        Adjoint::One => ones_like(y) * number(n).unwrap_or(0.0),
                        Adjoint::Of(e) => e * number(n).unwrap_or(0.0),
                    }),
                };
                if let Arg::Expr(ea) = a {
                    out.push((ea.clone(), with(b)));
                }
                if let Arg::Expr(eb) = b {
                    out.push((eb.clone(), with(a)));
                }
            }
            out
        }
        "truediv" => {
            let mut out = Vec::new();
            if let (Some(a), Some(b)) = (args.first(), args.get(1)) {
                let gexpr = g.expr_or(|| ones_like(y));
                if let Arg::Expr(ea) = a {
                    let d = match b {
                        Arg::Expr(eb) => &gexpr / eb,
                        n => &gexpr / number(n).unwrap_or(f64::NAN),
                    };
                    out.push((ea.clone(), of(d)));
                }
                if let Arg::Expr(eb) = b {
                    out.push((eb.clone(), of(-(&gexpr * y) / eb)));
                }
            }
            out
        }
        "neg" => unary(neg_g()),
        "exp" => unary(of(g.times(y.clone()))),
        "log" => unary(match (&x, g) {
            (Some(x), Adjoint::One) => of(1.0 / x),
            (Some(x), Adjoint::Of(e)) => of(e / x),
            (None, _) => return Err(unsupported("log of a number")),
        }),
        "abs" => unary(match &x {
            Some(x) => of(g.times(x.gt(0.0).select(1.0, x.lt(0.0).select(-1.0, 0.0)))),
            None => return Err(unsupported("abs of a number")),
        }),
        "sqrt" => unary(of(g.times(0.5 / y))),
        "sigmoid" => unary(of(g.times(y * (1.0 - y)))),
        "tanh" => unary(of(g.times(1.0 - y * y))),
        "pow" => {
            let (Some(x), Some(e)) = (x.clone(), args.get(1).and_then(number)) else {
                return Err(unsupported("pow with a tensor exponent"));
            };
            let d = match args.get(1) {
                Some(Arg::Int(i)) => x.powi(i - 1) * (*i as f64),
                _ => x.pow(e - 1.0) * e,
            };
            vec![(x, of(g.times(d)))]
        }
        "clamp" => {
            let Some(x) = x.clone() else {
                return Err(unsupported("clamp of a number"));
            };
            let bound = |i: usize, k: &str| {
                args.get(i)
                    .or_else(|| kwargs.iter().find(|(n, _)| *n == k).map(|(_, a)| a))
                    .and_then(number)
            };
            let mut d = branch(g);
            if let Some(lo) = bound(1, "min") {
                d = ArgValue(Arg::Expr(x.ge(lo).select(d, 0.0)));
            }
            if let Some(hi) = bound(2, "max") {
                d = ArgValue(Arg::Expr(x.le(hi).select(d, 0.0)));
            }
            match d.0 {
                Arg::Expr(e) => vec![(x, of(e))],
                _ => vec![(x, g.clone())],
            }
        }
        "minimum" | "maximum" => {
            let (Some(a), Some(b)) = (
                args.first().and_then(expr_arg),
                args.get(1).and_then(expr_arg),
            ) else {
                return Err(unsupported("minimum/maximum of numbers"));
            };
            let half = match g {
                Adjoint::One => ArgValue(Arg::Float(0.5)),
                Adjoint::Of(e) => ArgValue(Arg::Expr(e * 0.5)),
            };
            // `first` wins where it is the smaller (minimum) or larger (maximum); ties split.
            let share = |first: &Expr, second: &Expr| {
                let (wins, loses) = if base == "minimum" {
                    (first.lt(second), first.gt(second))
                } else {
                    (first.gt(second), first.lt(second))
                };
                of(wins.select(branch(g), loses.select(0.0, half.clone())))
            };
            vec![(a.clone(), share(a, b)), (b.clone(), share(b, a))]
        }
        "where" => {
            let Some(cond) = args.first().and_then(expr_arg) else {
                return Err(unsupported("where without a mask"));
            };
            let mut out = Vec::new();
            if let Some(a) = args.get(1).and_then(expr_arg) {
                out.push((a.clone(), of(cond.select(branch(g), 0.0))));
            }
            if let Some(b) = args.get(2).and_then(expr_arg) {
                out.push((b.clone(), of(cond.select(0.0, branch(g)))));
            }
            out
        }
        "sum" | "mean" => {
            let Some(x) = x.clone() else {
                return Err(unsupported("a reduction of a number"));
            };
            if x.rank() == 0 {
                vec![(x, g.clone())]
            } else {
                let ones = ones_like(&x);
                let spread = match g {
                    Adjoint::One => ones.clone(),
                    Adjoint::Of(e) => &ones * e,
                };
                let d = if base == "mean" {
                    spread / ones.sum()
                } else {
                    spread
                };
                vec![(x, of(d))]
            }
        }
        "gt" | "lt" | "ge" | "le" | "detach" => Vec::new(),
        other => return Err(unsupported(format!("no derivative for {other}"))),
    })
}
