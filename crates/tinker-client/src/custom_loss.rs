//! Server-side custom losses (protocol §2.3, §6.8): a typed expression builder that emits
//! the same graph encoding the Python SDK gets from torch.fx, the upload
//! ([`ServiceClient::create_custom_loss`]) and the training call
//! ([`TrainingClient::forward_backward_custom_loss`]).
//!
//! A custom loss runs once per datum on the server: it takes the datum's `logprobs` (the
//! learner's logprobs of `target_tokens`) and the `loss_fn_inputs` it declares, and returns
//! a scalar loss plus scalar metrics keyed `custom/<name>:sum` or `custom/<name>:mean`.
//! The per-datum losses are summed; `:sum` metrics are summed and `:mean` metrics averaged
//! over datums.
//!
//! ```
//! use tinker_client::custom_loss::{CustomLoss, Rank};
//!
//! // PPO with clipping, as a custom loss.
//! let mut b = CustomLoss::builder("ppo");
//! let lp = b.logprobs();
//! let old = b.input("sampling_logprobs", Rank::R1);
//! let adv = b.input("advantages", Rank::R1);
//! let ratio = (&lp - &old).exp();
//! let clipped = ratio.clamp(0.8, 1.2);
//! let loss = -(&ratio * &adv).minimum(&(&clipped * &adv)).sum();
//! let ppo = b.build(loss, [("custom/ratio:mean", ratio.mean())]).unwrap();
//! assert_eq!(ppo.graph().nodes.len(), 13);
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tinker_transport::RequestSpec;
use tinker_types::custom_loss::CustomLossArg;
use tinker_types::{
    CreateCustomLossRequest, CreateCustomLossResponse, CustomLossGraph, CustomLossInput,
    CustomLossNode, CustomLossOp, Datum, ForwardBackwardOutput, LossConfigValue, LossFn,
    LossFnConfig,
};

use crate::error::{Error, ErrorKind, Result};
use crate::future::{ApiFuture, FromPayload, Payload, PollTarget, RequestType, retrieve, submit};
use crate::service::ServiceClient;
use crate::training::TrainingClient;

/// At most this many inputs, `logprobs` included (as the SDK).
pub const MAX_INPUTS: usize = tinker_types::custom_loss::MAX_CUSTOM_LOSS_INPUTS;

/// The rank every datum's value of an input has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rank {
    /// A scalar.
    R0,
    /// A vector `[T]`.
    R1,
    /// A matrix `[T, K]`.
    R2,
}

impl Rank {
    /// 0, 1 or 2.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::R0 => 0,
            Self::R1 => 1,
            Self::R2 => 2,
        }
    }
}

/// Why a custom loss was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CustomLossError {
    /// More than [`MAX_INPUTS`] inputs, `logprobs` included.
    TooManyInputs {
        /// How many were declared.
        count: usize,
    },
    /// An input name is not `[a-z_][a-z0-9_]{0,63}`.
    InvalidInputName {
        /// The name.
        name: String,
    },
    /// Two inputs share a name (`logprobs` is always the first).
    DuplicateInput {
        /// The name.
        name: String,
    },
    /// `logprobs` must have rank 1 (`[T]`) or 2 (`[T, K]`).
    LogprobsRank,
    /// A metric key is not `custom/[a-z0-9_./-]{1,64}:(sum|mean)`.
    InvalidMetricKey {
        /// The key.
        key: String,
    },
    /// A metric key appears twice.
    DuplicateMetric {
        /// The key.
        key: String,
    },
    /// The loss is not a scalar.
    NonScalarLoss {
        /// Its rank.
        rank: u8,
    },
    /// A metric is not a scalar.
    NonScalarMetric {
        /// The key.
        key: String,
        /// Its rank.
        rank: u8,
    },
    /// An expression uses an input of another builder.
    ForeignExpression,
    /// A traced graph ([`CustomLoss::from_graph`]) the SDK would not send.
    InvalidGraph {
        /// Why.
        reason: String,
    },
    /// A reduction names a dimension the tensor does not have.
    InvalidDim {
        /// The dimension.
        dim: i64,
        /// The tensor's rank.
        rank: u8,
    },
    /// The server does not run custom losses (`custom_loss_server_side` is off).
    ServerSideDisabled,
    /// The loss was created in another session; only that session's clients can use it.
    WrongSession {
        /// The loss's name.
        loss: String,
    },
    /// A datum lacks an input the loss takes.
    MissingInput {
        /// The datum's index.
        datum: usize,
        /// The missing `loss_fn_inputs` key.
        key: String,
    },
    /// A datum's input has another rank than declared (`logprobs` is checked against
    /// `target_tokens`).
    InputRank {
        /// The datum's index.
        datum: usize,
        /// The `loss_fn_inputs` key.
        key: String,
        /// Its rank in the datum.
        rank: usize,
        /// The declared rank.
        declared: u8,
    },
}

impl fmt::Display for CustomLossError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyInputs { count } => write!(
                f,
                "a custom loss takes at most {MAX_INPUTS} inputs, logprobs included (got {count})"
            ),
            Self::InvalidInputName { name } => write!(
                f,
                "input {name:?} must be a lowercase name of letters, digits and underscores"
            ),
            Self::DuplicateInput { name } => write!(f, "input {name:?} is declared twice"),
            Self::LogprobsRank => f.write_str("logprobs has rank 1 ([T]) or 2 ([T, K])"),
            Self::InvalidMetricKey { key } => write!(
                f,
                "metric {key:?} must be named custom/<name>:sum or custom/<name>:mean in lowercase"
            ),
            Self::DuplicateMetric { key } => write!(f, "metric {key:?} is given twice"),
            Self::NonScalarLoss { rank } => {
                write!(f, "the loss must be a scalar, got a tensor of rank {rank}")
            }
            Self::NonScalarMetric { key, rank } => {
                write!(
                    f,
                    "metric {key:?} must be a scalar, got a tensor of rank {rank}"
                )
            }
            Self::ForeignExpression => {
                f.write_str("an expression uses an input of another custom-loss builder")
            }
            Self::InvalidGraph { reason } => write!(f, "the traced graph is refused: {reason}"),
            Self::InvalidDim { dim, rank } => {
                write!(f, "dim {dim} is out of range for a tensor of rank {rank}")
            }
            Self::ServerSideDisabled => f.write_str(
                "the server does not run custom losses (custom_loss_server_side is off); \
                 use forward_backward_custom with a closure instead",
            ),
            Self::WrongSession { loss } => write!(
                f,
                "custom loss {loss:?} was created in another session; only that session's \
                 clients can use it"
            ),
            Self::MissingInput { datum, key } => {
                write!(
                    f,
                    "datum[{datum}] has no loss_fn_inputs[{key:?}], which the loss takes"
                )
            }
            Self::InputRank {
                datum,
                key,
                rank,
                declared,
            } => write!(
                f,
                "datum[{datum}] loss_fn_inputs[{key:?}] has rank {rank}, but the loss declared rank {declared}"
            ),
        }
    }
}

impl std::error::Error for CustomLossError {}

impl From<CustomLossError> for Error {
    fn from(e: CustomLossError) -> Self {
        let kind = match e {
            CustomLossError::ServerSideDisabled => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidInput,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

/// Identifies builders, so expressions of two builders are not mixed.
static NEXT_BUILDER: AtomicU64 = AtomicU64::new(1);
/// Orders expressions by creation, which is the order torch.fx records calls in.
static NEXT_EXPR: AtomicU64 = AtomicU64::new(1);

/// How a call is recorded: a free function or a tensor method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Function,
    Method,
}

#[derive(Debug, Clone)]
enum Arg {
    Expr(Expr),
    Float(f64),
    Int(i64),
    Bool(bool),
}

#[derive(Debug)]
enum Kind {
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
struct Node {
    seq: u64,
    rank: u8,
    kind: Kind,
    /// A mistake found when the expression was made, reported by `build`.
    problem: Option<CustomLossError>,
}

/// A tensor expression of a custom loss. Combine expressions with `+ - * /`, unary `-`,
/// numbers on either side, and the methods below; each operation records one graph node.
#[derive(Debug, Clone)]
pub struct Expr(Arc<Node>);

/// Something usable as a tensor argument: an expression or a number.
pub trait IntoArg {
    #[doc(hidden)]
    fn into_arg(self) -> ArgValue;
}

/// An argument value (see [`IntoArg`]).
#[derive(Debug, Clone)]
pub struct ArgValue(Arg);

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
impl IntoArg for f64 {
    fn into_arg(self) -> ArgValue {
        ArgValue(Arg::Float(self))
    }
}

fn rank_of(arg: &Arg) -> u8 {
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

/// Builds a [`CustomLoss`]: declare inputs, combine them into expressions, then
/// [`build`](Self::build) with the loss and its metrics.
#[derive(Debug)]
pub struct CustomLossBuilder {
    id: u64,
    name: String,
    inputs: Vec<CustomLossInput>,
    placeholders: Vec<Expr>,
}

/// A validated custom loss: its name, declared inputs and graph, ready for
/// [`ServiceClient::create_custom_loss`].
#[derive(Debug, Clone, PartialEq)]
pub struct CustomLoss {
    name: String,
    inputs: Vec<CustomLossInput>,
    graph: CustomLossGraph,
}

impl CustomLoss {
    /// A builder whose `logprobs` have rank 1 (`[T]`, one target per position).
    pub fn builder(name: impl Into<String>) -> CustomLossBuilder {
        Self::builder_with_logprobs(name, Rank::R1)
    }

    /// A builder whose `logprobs` have the given rank (2 for `[T, K]` targets; rank 0 is
    /// refused by [`CustomLossBuilder::build`]).
    pub fn builder_with_logprobs(name: impl Into<String>, rank: Rank) -> CustomLossBuilder {
        let mut b = CustomLossBuilder {
            id: NEXT_BUILDER.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            inputs: Vec::new(),
            placeholders: Vec::new(),
        };
        b.declare("logprobs", rank);
        b
    }

    /// A loss from an already traced graph (e.g. one exported from Python with torch.fx and
    /// the SDK's encoder). Checks what the SDK checks on the client: the inputs, that the
    /// graph has no module calls or captured tensors, and the output's metric keys; the
    /// server checks the operations.
    ///
    /// # Errors
    /// [`CustomLossError`] as [`CustomLossBuilder::build`]; [`CustomLossError::InvalidGraph`]
    /// for a graph the SDK would not send.
    pub fn from_graph(
        name: impl Into<String>,
        inputs: Vec<CustomLossInput>,
        graph: CustomLossGraph,
    ) -> std::result::Result<Self, CustomLossError> {
        check_inputs(&inputs)?;
        if inputs.iter().any(|i| i.rank > 2) {
            return Err(CustomLossError::InvalidGraph {
                reason: "input ranks are 0, 1 or 2".to_owned(),
            });
        }
        let invalid = |reason: &str| CustomLossError::InvalidGraph {
            reason: reason.to_owned(),
        };
        let mut output = None;
        for node in &graph.nodes {
            match node.op {
                CustomLossOp::CallModule => return Err(invalid("it calls a torch.nn module")),
                CustomLossOp::GetAttr => return Err(invalid("it captures a tensor (get_attr)")),
                CustomLossOp::CallMethod
                    if matches!(
                        node.target.as_str(),
                        "item" | "numpy" | "tolist" | "backward"
                    ) =>
                {
                    return Err(invalid("it calls a method that leaves torch"));
                }
                CustomLossOp::Output => output = node.args.first(),
                _ => {}
            }
        }
        let parts = output
            .map(CustomLossArg::from_value)
            .and_then(std::result::Result::ok);
        let Some(CustomLossArg::Tuple(parts) | CustomLossArg::List(parts)) = parts else {
            return Err(invalid("its output is not (loss, metrics)"));
        };
        let [CustomLossArg::Ref(_), CustomLossArg::Dict(metrics)] = &parts[..] else {
            return Err(invalid("its output is not (loss tensor, {metric: tensor})"));
        };
        for (key, value) in metrics {
            if !tinker_types::custom_loss::is_custom_metric_key(key) {
                return Err(CustomLossError::InvalidMetricKey { key: key.clone() });
            }
            if !matches!(value, CustomLossArg::Ref(_)) {
                return Err(invalid("a metric is not a tensor"));
            }
        }
        Ok(Self {
            name: name.into(),
            inputs,
            graph,
        })
    }

    /// The loss's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared inputs, `logprobs` first.
    pub fn inputs(&self) -> &[CustomLossInput] {
        &self.inputs
    }

    /// The graph, as sent to the server.
    pub fn graph(&self) -> &CustomLossGraph {
        &self.graph
    }

    /// Identifies the loss within a session (graph and inputs, as the SDK's key).
    fn key(&self) -> String {
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|i| Value::from(format!("{}:{}", i.name, i.rank)))
            .collect();
        serde_json::to_string(&(inputs, &self.graph)).unwrap_or_default()
    }
}

impl CustomLossBuilder {
    fn declare(&mut self, name: &str, rank: Rank) -> Expr {
        let expr = Expr(Arc::new(Node {
            seq: 0,
            rank: rank.as_u8(),
            kind: Kind::Input { builder: self.id },
            problem: None,
        }));
        self.inputs.push(CustomLossInput {
            name: name.to_owned(),
            rank: rank.as_u8(),
        });
        self.placeholders.push(expr.clone());
        expr
    }

    /// The learner's logprobs of the datum's `target_tokens`.
    pub fn logprobs(&self) -> Expr {
        self.placeholders[0].clone()
    }

    /// Declares the `loss_fn_inputs` key `name`, which every datum must have with `rank`.
    /// Names are checked by [`build`](Self::build).
    pub fn input(&mut self, name: &str, rank: Rank) -> Expr {
        self.declare(name, rank)
    }

    /// Validates and encodes the loss. `loss` must be a scalar; each metric a scalar keyed
    /// `custom/<name>:sum` or `custom/<name>:mean`.
    ///
    /// # Errors
    /// [`CustomLossError`] for the SDK's rules (at most 16 inputs, lowercase unique names,
    /// ranks, metric keys) and for non-scalar results, mixed builders or bad dims.
    pub fn build<K: Into<String>>(
        self,
        loss: Expr,
        metrics: impl IntoIterator<Item = (K, Expr)>,
    ) -> std::result::Result<CustomLoss, CustomLossError> {
        let metrics: Vec<(String, Expr)> =
            metrics.into_iter().map(|(k, v)| (k.into(), v)).collect();
        check_inputs(&self.inputs)?;
        let mut seen = HashSet::new();
        for (key, _) in &metrics {
            if !tinker_types::custom_loss::is_custom_metric_key(key) {
                return Err(CustomLossError::InvalidMetricKey { key: key.clone() });
            }
            if !seen.insert(key.as_str()) {
                return Err(CustomLossError::DuplicateMetric { key: key.clone() });
            }
        }
        // Every reachable call, checked, in creation order (= torch.fx's order).
        let mut calls: Vec<Expr> = Vec::new();
        let mut visited = HashSet::new();
        let mut stack: Vec<Expr> = std::iter::once(loss.clone())
            .chain(metrics.iter().map(|(_, e)| e.clone()))
            .collect();
        while let Some(e) = stack.pop() {
            if !visited.insert(Arc::as_ptr(&e.0)) {
                continue;
            }
            if let Some(p) = &e.0.problem {
                return Err(p.clone());
            }
            match &e.0.kind {
                Kind::Input { builder, .. } => {
                    if *builder != self.id {
                        return Err(CustomLossError::ForeignExpression);
                    }
                }
                Kind::Call { args, kwargs, .. } => {
                    for a in args.iter().chain(kwargs.iter().map(|(_, a)| a)) {
                        if let Arg::Expr(x) = a {
                            stack.push(x.clone());
                        }
                    }
                    calls.push(e.clone());
                }
            }
        }
        calls.sort_by_key(|e| e.0.seq);
        if loss.0.rank != 0 {
            return Err(CustomLossError::NonScalarLoss { rank: loss.0.rank });
        }
        for (key, e) in &metrics {
            if e.0.rank != 0 {
                return Err(CustomLossError::NonScalarMetric {
                    key: key.clone(),
                    rank: e.0.rank,
                });
            }
        }
        // Name nodes as torch.fx does: placeholders first, then calls, then the output.
        let mut names = Namespace::default();
        let mut node_names: HashMap<*const Node, String> = HashMap::new();
        let mut nodes = Vec::with_capacity(self.inputs.len() + calls.len() + 1);
        for (input, p) in self.inputs.iter().zip(&self.placeholders) {
            let name = names.create(&input.name);
            node_names.insert(Arc::as_ptr(&p.0), name.clone());
            nodes.push(CustomLossNode {
                op: CustomLossOp::Placeholder,
                name,
                target: input.name.clone(),
                args: Vec::new(),
                kwargs: Map::new(),
            });
        }
        let encode = |a: &Arg, names: &HashMap<*const Node, String>| -> CustomLossArg {
            match a {
                Arg::Expr(e) => {
                    CustomLossArg::Ref(names.get(&Arc::as_ptr(&e.0)).cloned().unwrap_or_default())
                }
                Arg::Float(x) => CustomLossArg::Float(*x),
                Arg::Int(i) => CustomLossArg::Int(*i),
                Arg::Bool(b) => CustomLossArg::Bool(*b),
            }
        };
        for e in &calls {
            let Kind::Call {
                kind,
                target,
                base,
                args,
                kwargs,
            } = &e.0.kind
            else {
                continue;
            };
            let name = names.create(base);
            let node = CustomLossNode {
                op: match kind {
                    CallKind::Function => CustomLossOp::CallFunction,
                    CallKind::Method => CustomLossOp::CallMethod,
                },
                name: name.clone(),
                target: (*target).to_owned(),
                args: args
                    .iter()
                    .map(|a| encode(a, &node_names).to_value())
                    .collect(),
                kwargs: kwargs
                    .iter()
                    .map(|(k, a)| ((*k).to_owned(), encode(a, &node_names).to_value()))
                    .collect(),
            };
            node_names.insert(Arc::as_ptr(&e.0), name);
            nodes.push(node);
        }
        let output = CustomLossArg::Tuple(vec![
            encode(&Arg::Expr(loss), &node_names),
            CustomLossArg::Dict(
                metrics
                    .iter()
                    .map(|(k, e)| (k.clone(), encode(&Arg::Expr(e.clone()), &node_names)))
                    .collect(),
            ),
        ]);
        nodes.push(CustomLossNode {
            op: CustomLossOp::Output,
            name: names.create("output"),
            target: "output".to_owned(),
            args: vec![output.to_value()],
            kwargs: Map::new(),
        });
        Ok(CustomLoss {
            name: self.name,
            inputs: self.inputs,
            graph: CustomLossGraph { format: 1, nodes },
        })
    }
}

fn check_inputs(inputs: &[CustomLossInput]) -> std::result::Result<(), CustomLossError> {
    if inputs.len() > MAX_INPUTS {
        return Err(CustomLossError::TooManyInputs {
            count: inputs.len(),
        });
    }
    for (i, input) in inputs.iter().enumerate() {
        if !tinker_types::custom_loss::is_custom_loss_input_name(&input.name) {
            return Err(CustomLossError::InvalidInputName {
                name: input.name.clone(),
            });
        }
        if inputs[..i].iter().any(|x| x.name == input.name) {
            return Err(CustomLossError::DuplicateInput {
                name: input.name.clone(),
            });
        }
    }
    if inputs.first().is_none_or(|lp| lp.rank == 0) {
        return Err(CustomLossError::LogprobsRank);
    }
    Ok(())
}

/// Python keywords, builtins and torch.fx's reserved names: torch.fx never names a node
/// after one of these (`sum` becomes `sum_1`).
const ILLEGAL_NAMES: &[&str] = &[
    "False",
    "None",
    "True",
    "__build_class__",
    "__debug__",
    "__doc__",
    "__import__",
    "__loader__",
    "__name__",
    "__package__",
    "__spec__",
    "abs",
    "aiter",
    "all",
    "and",
    "anext",
    "any",
    "as",
    "ascii",
    "assert",
    "async",
    "await",
    "bin",
    "bool",
    "break",
    "breakpoint",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "class",
    "classmethod",
    "compile",
    "complex",
    "continue",
    "copyright",
    "credits",
    "def",
    "del",
    "delattr",
    "device",
    "dict",
    "dir",
    "divmod",
    "elif",
    "else",
    "enumerate",
    "eval",
    "except",
    "exec",
    "exit",
    "filter",
    "finally",
    "float",
    "for",
    "format",
    "from",
    "frozenset",
    "fx_pytree",
    "getattr",
    "global",
    "globals",
    "hasattr",
    "hash",
    "help",
    "hex",
    "id",
    "if",
    "import",
    "in",
    "inf",
    "input",
    "int",
    "is",
    "isinstance",
    "issubclass",
    "iter",
    "lambda",
    "len",
    "license",
    "list",
    "locals",
    "map",
    "max",
    "memoryview",
    "min",
    "nan",
    "next",
    "nonlocal",
    "not",
    "object",
    "oct",
    "open",
    "or",
    "ord",
    "pass",
    "pow",
    "print",
    "property",
    "pytree",
    "quit",
    "raise",
    "range",
    "repr",
    "return",
    "reversed",
    "round",
    "set",
    "setattr",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "torch",
    "try",
    "tuple",
    "type",
    "vars",
    "while",
    "with",
    "yield",
    "zip",
];

/// torch.fx's unique-name allocation (`_Namespace.create_name`).
#[derive(Debug, Default)]
struct Namespace {
    used: HashSet<String>,
    base_count: HashMap<String, u64>,
}

impl Namespace {
    fn create(&mut self, candidate: &str) -> String {
        // `^([a-zA-Z_][0-9a-zA-Z_]*?)(?:_(\d+))?$`
        let (base, num) = match candidate.rsplit_once('_') {
            Some((b, n))
                if !b.is_empty() && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) =>
            {
                (b.to_owned(), n.parse::<u64>().ok())
            }
            _ => (candidate.to_owned(), None),
        };
        let mut candidate = candidate.to_owned();
        let mut num = match num {
            Some(n) if !self.used.contains(&candidate) => n,
            _ => {
                let mut n = self.base_count.get(&base).copied().unwrap_or(0);
                if ILLEGAL_NAMES.contains(&candidate.as_str()) {
                    n += 1;
                    candidate = format!("{base}_{n}");
                }
                n
            }
        };
        while self.used.contains(&candidate) {
            num += 1;
            candidate = format!("{base}_{num}");
        }
        self.used.insert(candidate.clone());
        self.base_count.insert(base, num);
        candidate
    }
}

/// A custom loss the server holds (see [`ServiceClient::create_custom_loss`]). Pass it to
/// [`TrainingClient::forward_backward_custom_loss`]; it only works with clients of the
/// session that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomLossHandle {
    name: String,
    inputs: Vec<CustomLossInput>,
    session_id: String,
    loss_id: String,
}

impl CustomLossHandle {
    /// The loss's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's id for the loss (`loss_fn_config = {"loss_id": ...}`).
    pub fn loss_id(&self) -> &str {
        &self.loss_id
    }

    /// The session that created it.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The declared inputs, `logprobs` first.
    pub fn inputs(&self) -> &[CustomLossInput] {
        &self.inputs
    }

    /// Checks that every datum has each input at its declared rank (`logprobs` against
    /// `target_tokens`), as the SDK does before sending.
    ///
    /// # Errors
    /// [`CustomLossError::MissingInput`] or [`CustomLossError::InputRank`].
    pub fn check_data(&self, data: &[Datum]) -> std::result::Result<(), CustomLossError> {
        for (i, datum) in data.iter().enumerate() {
            for (n, input) in self.inputs.iter().enumerate() {
                let key = if n == 0 { "target_tokens" } else { &input.name };
                let tensor =
                    datum
                        .loss_fn_inputs
                        .get(key)
                        .ok_or_else(|| CustomLossError::MissingInput {
                            datum: i,
                            key: key.to_owned(),
                        })?;
                let rank = tensor.shape().map_or(1, <[usize]>::len);
                if rank != usize::from(input.rank) {
                    return Err(CustomLossError::InputRank {
                        datum: i,
                        key: key.to_owned(),
                        rank,
                        declared: input.rank,
                    });
                }
            }
        }
        Ok(())
    }
}

impl FromPayload for CreateCustomLossResponse {
    fn from_payload(payload: Payload) -> Result<Self> {
        match payload {
            Payload::Json(v) => tinker_types::json::from_value(v)
                .map_err(|e| Error::protocol(format!("invalid create_custom_loss result: {e}"))),
            Payload::Proto(_) => Err(Error::protocol("unexpected protobuf result")),
        }
    }
}

impl ServiceClient {
    /// Uploads a custom loss (`create_custom_loss`, a future) and returns its handle. Each
    /// distinct loss (graph and inputs) is created once per session: asking again returns
    /// the same handle without a request.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] (source [`CustomLossError::ServerSideDisabled`]) when the
    /// server's `custom_loss_server_side` flag is off; [`ErrorKind::RequestFailed`] with a
    /// user category when the server refuses the graph; API or connection errors.
    pub async fn create_custom_loss(&self, loss: &CustomLoss) -> Result<CustomLossHandle> {
        if !self.client_config().custom_loss_server_side {
            return Err(CustomLossError::ServerSideDisabled.into());
        }
        let holder = self.holder();
        let session_id = holder.session_id()?.to_owned();
        let mut created = holder.custom_losses.lock().await;
        let key = loss.key();
        if let Some(handle) = created.get(&key) {
            return Ok(handle.clone());
        }
        let req = CreateCustomLossRequest {
            session_id: session_id.clone(),
            custom_loss_seq_id: holder.next_custom_loss_seq(),
            name: loss.name.clone(),
            inputs: loss.inputs.clone(),
            graph: loss.graph.clone(),
        };
        let body = bytes::Bytes::from(tinker_types::json::to_vec(&req)?);
        let (fut, roundtrip) = submit(holder, "create_custom_loss", || {
            Ok(RequestSpec::post("/api/v1/create_custom_loss")
                .with_body(body.clone(), tinker_transport::APPLICATION_JSON)
                .with_sdk_method("ServiceClient.create_custom_loss"))
        })
        .await?;
        let got = retrieve(
            holder,
            PollTarget {
                request_id: fut.request_id.clone(),
                request_type: RequestType::CreateCustomLoss,
                roundtrip,
                reserved: None,
            },
            self.observer(),
        )
        .await?;
        let response: CreateCustomLossResponse = crate::telemetry::decode(
            holder,
            &fut.request_id,
            RequestType::CreateCustomLoss,
            got.payload,
        )
        .await?;
        let handle = CustomLossHandle {
            name: loss.name.clone(),
            inputs: loss.inputs.clone(),
            session_id,
            loss_id: response.loss_id,
        };
        created.insert(key, handle.clone());
        Ok(handle)
    }
}

impl TrainingClient {
    /// Forward and backward pass with a server-side custom loss: one ordinary
    /// `forward_backward(data, "custom", {"loss_id": ...})`, ordered and chunked like any
    /// other. The result's `loss:sum` is the summed loss; the loss's metrics are reduced
    /// over datums (`:sum` summed, `:mean` averaged).
    ///
    /// Before anything is sent, the handle must belong to this client's session and every
    /// datum must hold each declared input at its declared rank
    /// ([`CustomLossHandle::check_data`]).
    pub fn forward_backward_custom_loss(
        &self,
        data: Vec<Datum>,
        loss: &CustomLossHandle,
    ) -> ApiFuture<ForwardBackwardOutput> {
        match self.custom_loss_config(&data, loss) {
            Ok(config) => self.forward_backward_with_config(data, LossFn::Custom, config),
            Err(e) => ApiFuture::failed(e.into()),
        }
    }

    /// A forward pass only with a server-side custom loss: its loss and metrics (e.g. on
    /// held-out data), no gradients. Checked as
    /// [`forward_backward_custom_loss`](Self::forward_backward_custom_loss).
    pub fn forward_custom_loss(
        &self,
        data: Vec<Datum>,
        loss: &CustomLossHandle,
    ) -> ApiFuture<ForwardBackwardOutput> {
        match self.custom_loss_config(&data, loss) {
            Ok(config) => self.forward_with_config(data, LossFn::Custom, config),
            Err(e) => ApiFuture::failed(e.into()),
        }
    }

    /// Checks the handle's session and the data; the `loss_fn_config` naming the loss.
    fn custom_loss_config(
        &self,
        data: &[Datum],
        loss: &CustomLossHandle,
    ) -> std::result::Result<LossFnConfig, CustomLossError> {
        if self.holder().session_id.as_deref() != Some(loss.session_id.as_str()) {
            return Err(CustomLossError::WrongSession {
                loss: loss.name.clone(),
            });
        }
        loss.check_data(data)?;
        Ok(LossFnConfig::from([(
            "loss_id".to_owned(),
            LossConfigValue::Text(loss.loss_id.clone()),
        )]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ppo() -> CustomLoss {
        let mut b = CustomLoss::builder("ppo");
        let lp = b.logprobs();
        let old = b.input("sampling_logprobs", Rank::R1);
        let adv = b.input("advantages", Rank::R1);
        let ratio = (&lp - &old).exp();
        let clipped = ratio.clamp(0.8, 1.2);
        let loss = -(&ratio * &adv).minimum(&(&clipped * &adv)).sum();
        b.build(
            loss,
            [
                ("custom/ratio:mean", ratio.mean()),
                ("custom/x:sum", (&ratio * 2.0).sum_dim(0, false)),
            ],
        )
        .unwrap()
    }

    /// The encoding torch.fx + the SDK's encoder give for the same Python loss (captured
    /// from tinker 0.38 with torch 2.15):
    /// ```python
    /// def ppo(logprobs, sampling_logprobs, advantages):
    ///     ratio = torch.exp(logprobs - sampling_logprobs)
    ///     clipped = torch.clamp(ratio, 0.8, 1.2)
    ///     loss = -torch.minimum(ratio * advantages, clipped * advantages).sum()
    ///     return loss, {"custom/ratio:mean": ratio.mean(), "custom/x:sum": (ratio*2.0).sum(dim=0)}
    /// ```
    #[test]
    fn ppo_encodes_like_torch_fx() {
        let expected = json!({"format": 1, "nodes": [
            {"op": "placeholder", "name": "logprobs", "target": "logprobs", "args": [], "kwargs": {}},
            {"op": "placeholder", "name": "sampling_logprobs", "target": "sampling_logprobs", "args": [], "kwargs": {}},
            {"op": "placeholder", "name": "advantages", "target": "advantages", "args": [], "kwargs": {}},
            {"op": "call_function", "name": "sub", "target": "operator.sub", "args": [{"ref": "logprobs"}, {"ref": "sampling_logprobs"}], "kwargs": {}},
            {"op": "call_function", "name": "exp", "target": "torch.exp", "args": [{"ref": "sub"}], "kwargs": {}},
            {"op": "call_function", "name": "clamp", "target": "torch.clamp", "args": [{"ref": "exp"}, 0.8, 1.2], "kwargs": {}},
            {"op": "call_function", "name": "mul", "target": "operator.mul", "args": [{"ref": "exp"}, {"ref": "advantages"}], "kwargs": {}},
            {"op": "call_function", "name": "mul_1", "target": "operator.mul", "args": [{"ref": "clamp"}, {"ref": "advantages"}], "kwargs": {}},
            {"op": "call_function", "name": "minimum", "target": "torch.minimum", "args": [{"ref": "mul"}, {"ref": "mul_1"}], "kwargs": {}},
            {"op": "call_method", "name": "sum_1", "target": "sum", "args": [{"ref": "minimum"}], "kwargs": {}},
            {"op": "call_function", "name": "neg", "target": "operator.neg", "args": [{"ref": "sum_1"}], "kwargs": {}},
            {"op": "call_method", "name": "mean", "target": "mean", "args": [{"ref": "exp"}], "kwargs": {}},
            {"op": "call_function", "name": "mul_2", "target": "operator.mul", "args": [{"ref": "exp"}, 2.0], "kwargs": {}},
            {"op": "call_method", "name": "sum_2", "target": "sum", "args": [{"ref": "mul_2"}], "kwargs": {"dim": 0}},
            {"op": "output", "name": "output", "target": "output", "args": [{"tuple": [{"ref": "neg"}, {"dict": {"custom/ratio:mean": {"ref": "mean"}, "custom/x:sum": {"ref": "sum_2"}}}]}], "kwargs": {}}
        ]});
        assert_eq!(serde_json::to_value(ppo().graph()).unwrap(), expected);
    }

    #[test]
    fn names_follow_torch_fx() {
        let mut ns = Namespace::default();
        let got: Vec<String> = [
            "logprobs", "abs", "add", "add", "abs", "sum", "sum", "pow", "x_1", "x", "input",
        ]
        .iter()
        .map(|c| ns.create(c))
        .collect();
        assert_eq!(
            got,
            [
                "logprobs", "abs_1", "add", "add_1", "abs_2", "sum_1", "sum_2", "pow_1", "x_1",
                "x", "input_1"
            ]
        );
    }

    #[test]
    fn builder_validation_is_typed() {
        let mut b = CustomLoss::builder("l");
        let lp = b.logprobs();
        let bad = b.input("Advantages", Rank::R1);
        assert_eq!(
            b.build((&lp * &bad).sum(), Vec::<(String, Expr)>::new()),
            Err(CustomLossError::InvalidInputName {
                name: "Advantages".into()
            })
        );
        let mut b = CustomLoss::builder("l");
        for i in 0..16 {
            b.input(&format!("x{i}"), Rank::R0);
        }
        let lp = b.logprobs();
        assert_eq!(
            b.build(lp.sum(), Vec::<(String, Expr)>::new()),
            Err(CustomLossError::TooManyInputs { count: 17 })
        );
        let mut b = CustomLoss::builder("l");
        let lp = b.logprobs();
        b.input("logprobs", Rank::R1);
        assert!(matches!(
            b.build(lp.sum(), Vec::<(String, Expr)>::new()),
            Err(CustomLossError::DuplicateInput { .. })
        ));
        let b = CustomLoss::builder_with_logprobs("l", Rank::R0);
        let lp = b.logprobs();
        assert_eq!(
            b.build(lp.clone(), Vec::<(String, Expr)>::new()),
            Err(CustomLossError::LogprobsRank)
        );
        let b = CustomLoss::builder("l");
        let lp = b.logprobs();
        assert_eq!(
            b.build(lp.sum(), [("custom/Ratio:mean", lp.mean())]),
            Err(CustomLossError::InvalidMetricKey {
                key: "custom/Ratio:mean".into()
            })
        );
        for key in [
            "ratio:mean",
            "custom/r:max",
            "custom/:sum",
            "custom/r:sum:sum",
        ] {
            let b = CustomLoss::builder("l");
            let lp = b.logprobs();
            assert!(matches!(
                b.build(lp.sum(), [(key, lp.mean())]),
                Err(CustomLossError::InvalidMetricKey { .. })
            ));
        }
        let b = CustomLoss::builder("l");
        let lp = b.logprobs();
        assert_eq!(
            b.build(lp.exp(), Vec::<(String, Expr)>::new()),
            Err(CustomLossError::NonScalarLoss { rank: 1 })
        );
        let b = CustomLoss::builder("l");
        let lp = b.logprobs();
        assert_eq!(
            b.build(lp.sum(), [("custom/v:sum", lp.clone())]),
            Err(CustomLossError::NonScalarMetric {
                key: "custom/v:sum".into(),
                rank: 1
            })
        );
        let other = CustomLoss::builder("o");
        let b = CustomLoss::builder("l");
        let lp = b.logprobs();
        assert_eq!(
            b.build(
                (&lp * &other.logprobs()).sum(),
                Vec::<(String, Expr)>::new()
            ),
            Err(CustomLossError::ForeignExpression)
        );
        let b = CustomLoss::builder("l");
        let lp = b.logprobs();
        assert_eq!(
            b.build(lp.sum_dim(2, false), Vec::<(String, Expr)>::new()),
            Err(CustomLossError::InvalidDim { dim: 2, rank: 1 })
        );
    }

    #[test]
    fn non_finite_and_scalar_arguments() {
        let mut b = CustomLoss::builder("l");
        let lp = b.logprobs();
        let s = b.input("scale", Rank::R0);
        let loss = (1.0 - lp.clamp_max(f64::INFINITY) / &s).powi(2).sum();
        let l = b.build(loss, Vec::<(String, Expr)>::new()).unwrap();
        let nodes = serde_json::to_value(&l.graph().nodes).unwrap();
        assert_eq!(nodes[2]["name"], "clamp");
        assert_eq!(nodes[2]["kwargs"], json!({"max": {"float": "inf"}}));
        assert_eq!(
            nodes[3]["args"],
            json!([{"ref": "clamp"}, {"ref": "scale"}])
        );
        assert_eq!(nodes[4]["args"], json!([1.0, {"ref": "truediv"}]));
        assert_eq!(nodes[5]["name"], "pow_1");
        assert_eq!(nodes[5]["args"], json!([{"ref": "sub"}, 2]));
        assert_eq!(nodes[6]["name"], "sum_1");
    }
}
