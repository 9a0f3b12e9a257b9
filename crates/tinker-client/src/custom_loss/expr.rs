//! Tensor expressions: each operation records one torch.fx graph node.

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// Identifies builders, so expressions of two builders are not mixed.
pub(super) static NEXT_BUILDER: AtomicU64 = AtomicU64::new(1);
/// Orders expressions by creation, which is the order torch.fx records calls in.
pub(super) static NEXT_EXPR: AtomicU64 = AtomicU64::new(1);

/// How a call is recorded: a free function or a tensor method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    Function,
    Method,
}

#[derive(Debug, Clone)]
pub(super) enum Arg {
    Expr(Expr),
    Float(f64),
    Int(i64),
    Bool(bool),
}

#[derive(Debug)]
pub(super) enum Kind {
    Input {
        builder: u64,
    },
    Call {
        kind: CallKind,
        /// `torch.exp`, `operator.mul`, or a method name.
        target: &'static str,
        /// The node's base name (fx: the function's `__name__`).
        base: &'static str,
        args: Vec<Arg>,
        kwargs: Vec<(&'static str, Arg)>,
    },
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) seq: u64,
    pub(super) rank: u8,
    pub(super) kind: Kind,
    /// A mistake found when the expression was made, reported by `build`.
    pub(super) problem: Option<CustomLossError>,
}

/// A tensor expression of a custom loss. Combine expressions with `+ - * /`, unary `-`,
/// numbers on either side, and the methods below; each operation records one graph node.
#[derive(Debug, Clone)]
pub struct Expr(pub(super) Arc<Node>);

/// Something usable as a tensor argument: an expression or a number.
pub trait IntoArg {
    #[doc(hidden)]
    fn into_arg(self) -> ArgValue;
}

/// An argument value (see [`IntoArg`]).
#[derive(Debug, Clone)]
pub struct ArgValue(pub(super) Arg);

impl IntoArg for Expr {
    fn into_arg(self) -> ArgValue {
        ArgValue(Arg::Expr(self))
    }
}
impl IntoArg for &Expr {
    fn into_arg(self) -> ArgValue {
        ArgValue(Arg::Expr(self.clone()))
    }
}
impl IntoArg for ArgValue {
    fn into_arg(self) -> ArgValue {
        self
    }
}
impl IntoArg for f64 {
    fn into_arg(self) -> ArgValue {
        ArgValue(Arg::Float(self))
    }
}

pub(super) fn rank_of(arg: &Arg) -> u8 {
    match arg {
        Arg::Expr(e) => e.0.rank,
        _ => 0,
    }
}

impl Expr {
    fn call(
        kind: CallKind,
        target: &'static str,
        base: &'static str,
        args: Vec<Arg>,
        kwargs: Vec<(&'static str, Arg)>,
        rank: u8,
    ) -> Self {
        Self(Arc::new(Node {
            seq: NEXT_EXPR.fetch_add(1, Ordering::Relaxed),
            rank,
            kind: Kind::Call {
                kind,
                target,
                base,
                args,
                kwargs,
            },
            problem: None,
        }))
    }

    fn with_problem(self, problem: Option<CustomLossError>) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut node) => {
                node.problem = problem;
                Self(Arc::new(node))
            }
            Err(shared) => Self(shared),
        }
    }

    /// The rank this expression has, given the declared input ranks.
    pub fn rank(&self) -> u8 {
        self.0.rank
    }

    fn function(&self, target: &'static str, base: &'static str) -> Self {
        let args = vec![Arg::Expr(self.clone())];
        Self::call(
            CallKind::Function,
            target,
            base,
            args,
            Vec::new(),
            self.0.rank,
        )
    }

    fn binary(target: &'static str, base: &'static str, a: Arg, b: Arg) -> Self {
        let rank = rank_of(&a).max(rank_of(&b));
        Self::call(
            CallKind::Function,
            target,
            base,
            vec![a, b],
            Vec::new(),
            rank,
        )
    }

    /// `torch.exp(x)`.
    pub fn exp(&self) -> Self {
        self.function("torch.exp", "exp")
    }

    /// `torch.log(x)`.
    pub fn log(&self) -> Self {
        self.function("torch.log", "log")
    }

    /// `torch.abs(x)`.
    pub fn abs(&self) -> Self {
        self.function("torch.abs", "abs")
    }

    /// `torch.sqrt(x)`.
    pub fn sqrt(&self) -> Self {
        self.function("torch.sqrt", "sqrt")
    }

    /// `torch.sigmoid(x)`.
    pub fn sigmoid(&self) -> Self {
        self.function("torch.sigmoid", "sigmoid")
    }

    /// `torch.tanh(x)`.
    pub fn tanh(&self) -> Self {
        self.function("torch.tanh", "tanh")
    }

    /// `x.pow(exponent)`.
    pub fn pow(&self, exponent: f64) -> Self {
        Self::call(
            CallKind::Method,
            "pow",
            "pow",
            vec![Arg::Expr(self.clone()), Arg::Float(exponent)],
            Vec::new(),
            self.0.rank,
        )
    }

    /// `x ** exponent` with an integer exponent (`operator.pow`).
    pub fn powi(&self, exponent: i64) -> Self {
        Self::binary(
            "operator.pow",
            "pow",
            Arg::Expr(self.clone()),
            Arg::Int(exponent),
        )
    }

    /// `torch.clamp(x, min, max)`.
    pub fn clamp(&self, min: f64, max: f64) -> Self {
        let args = vec![Arg::Expr(self.clone()), Arg::Float(min), Arg::Float(max)];
        Self::call(
            CallKind::Function,
            "torch.clamp",
            "clamp",
            args,
            Vec::new(),
            self.0.rank,
        )
    }

    /// `torch.clamp(x, min=min)`.
    pub fn clamp_min(&self, min: f64) -> Self {
        self.clamp_kw("min", min)
    }

    /// `torch.clamp(x, max=max)`.
    pub fn clamp_max(&self, max: f64) -> Self {
        self.clamp_kw("max", max)
    }

    fn clamp_kw(&self, key: &'static str, bound: f64) -> Self {
        Self::call(
            CallKind::Function,
            "torch.clamp",
            "clamp",
            vec![Arg::Expr(self.clone())],
            vec![(key, Arg::Float(bound))],
            self.0.rank,
        )
    }

    /// `torch.minimum(x, other)` (elementwise; ties split the gradient).
    pub fn minimum(&self, other: &Expr) -> Self {
        Self::binary(
            "torch.minimum",
            "minimum",
            Arg::Expr(self.clone()),
            Arg::Expr(other.clone()),
        )
    }

    /// `torch.maximum(x, other)`.
    pub fn maximum(&self, other: &Expr) -> Self {
        Self::binary(
            "torch.maximum",
            "maximum",
            Arg::Expr(self.clone()),
            Arg::Expr(other.clone()),
        )
    }

    /// `x > other`, a mask for [`Expr::select`].
    pub fn gt(&self, other: impl IntoArg) -> Self {
        Self::binary(
            "operator.gt",
            "gt",
            Arg::Expr(self.clone()),
            other.into_arg().0,
        )
    }

    /// `x < other`.
    pub fn lt(&self, other: impl IntoArg) -> Self {
        Self::binary(
            "operator.lt",
            "lt",
            Arg::Expr(self.clone()),
            other.into_arg().0,
        )
    }

    /// `x >= other`.
    pub fn ge(&self, other: impl IntoArg) -> Self {
        Self::binary(
            "operator.ge",
            "ge",
            Arg::Expr(self.clone()),
            other.into_arg().0,
        )
    }

    /// `x <= other`.
    pub fn le(&self, other: impl IntoArg) -> Self {
        Self::binary(
            "operator.le",
            "le",
            Arg::Expr(self.clone()),
            other.into_arg().0,
        )
    }

    /// `torch.where(self, if_true, if_false)`: `self` is a mask from a comparison.
    pub fn select(&self, if_true: impl IntoArg, if_false: impl IntoArg) -> Self {
        let (a, b) = (if_true.into_arg().0, if_false.into_arg().0);
        let rank = self.0.rank.max(rank_of(&a)).max(rank_of(&b));
        Self::call(
            CallKind::Function,
            "torch.where",
            "where",
            vec![Arg::Expr(self.clone()), a, b],
            Vec::new(),
            rank,
        )
    }

    /// `x.detach()`: the value without gradient (e.g. CISPO's clipped ratio).
    pub fn detach(&self) -> Self {
        self.method("detach", self.0.rank, Vec::new())
    }

    /// `x.sum()`: the sum of every element.
    pub fn sum(&self) -> Self {
        self.method("sum", 0, Vec::new())
    }

    /// `x.mean()`: the mean of every element.
    pub fn mean(&self) -> Self {
        self.method("mean", 0, Vec::new())
    }

    /// `x.sum(dim=dim, keepdim=keepdim)`.
    pub fn sum_dim(&self, dim: i64, keepdim: bool) -> Self {
        self.reduce_dim("sum", dim, keepdim)
    }

    /// `x.mean(dim=dim, keepdim=keepdim)`.
    pub fn mean_dim(&self, dim: i64, keepdim: bool) -> Self {
        self.reduce_dim("mean", dim, keepdim)
    }

    fn reduce_dim(&self, name: &'static str, dim: i64, keepdim: bool) -> Self {
        let rank = self.0.rank;
        let span = i64::from(rank.max(1));
        let problem =
            (!(-span..span).contains(&dim)).then_some(CustomLossError::InvalidDim { dim, rank });
        let mut kwargs = vec![("dim", Arg::Int(dim))];
        if keepdim {
            kwargs.push(("keepdim", Arg::Bool(true)));
        }
        let out = if keepdim {
            rank
        } else {
            rank.saturating_sub(1)
        };
        self.method(name, out, kwargs).with_problem(problem)
    }

    fn method(&self, name: &'static str, rank: u8, kwargs: Vec<(&'static str, Arg)>) -> Self {
        Self::call(
            CallKind::Method,
            name,
            name,
            vec![Arg::Expr(self.clone())],
            kwargs,
            rank,
        )
    }
}

macro_rules! binary_ops {
    ($($trait:ident $method:ident $target:literal $base:literal),* $(,)?) => {$(
        impl $trait<Expr> for Expr {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::binary($target, $base, Arg::Expr(self), Arg::Expr(rhs))
            }
        }
        impl $trait<&Expr> for Expr {
            type Output = Expr;
            fn $method(self, rhs: &Expr) -> Expr {
                Expr::binary($target, $base, Arg::Expr(self), Arg::Expr(rhs.clone()))
            }
        }
        impl $trait<Expr> for &Expr {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::binary($target, $base, Arg::Expr(self.clone()), Arg::Expr(rhs))
            }
        }
        impl $trait<&Expr> for &Expr {
            type Output = Expr;
            fn $method(self, rhs: &Expr) -> Expr {
                Expr::binary($target, $base, Arg::Expr(self.clone()), Arg::Expr(rhs.clone()))
            }
        }
        impl $trait<f64> for Expr {
            type Output = Expr;
            fn $method(self, rhs: f64) -> Expr {
                Expr::binary($target, $base, Arg::Expr(self), Arg::Float(rhs))
            }
        }
        impl $trait<f64> for &Expr {
            type Output = Expr;
            fn $method(self, rhs: f64) -> Expr {
                Expr::binary($target, $base, Arg::Expr(self.clone()), Arg::Float(rhs))
            }
        }
        impl $trait<Expr> for f64 {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::binary($target, $base, Arg::Float(self), Arg::Expr(rhs))
            }
        }
        impl $trait<&Expr> for f64 {
            type Output = Expr;
            fn $method(self, rhs: &Expr) -> Expr {
                Expr::binary($target, $base, Arg::Float(self), Arg::Expr(rhs.clone()))
            }
        }
    )*};
}

binary_ops!(
    Add add "operator.add" "add",
    Sub sub "operator.sub" "sub",
    Mul mul "operator.mul" "mul",
    Div div "operator.truediv" "truediv",
);

impl Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        self.function("operator.neg", "neg")
    }
}

impl Neg for &Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        self.function("operator.neg", "neg")
    }
}
