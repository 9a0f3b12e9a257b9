//! Server-side custom losses (protocol §6.8): a traced torch.fx graph, checked against a
//! whitelist of operations when it is created, then evaluated per datum with a small
//! reverse-mode autodiff on f64 tensors of rank ≤ 2 (numpy broadcasting), giving the loss,
//! `d loss / d logprobs` and the metrics.
//!
//! Gradient conventions follow torch: `minimum`/`maximum` split ties evenly, `clamp` passes
//! the gradient on `min <= x <= max`, `abs` has derivative 0 at 0, comparisons and `detach`
//! carry none.

use std::collections::HashMap;

use tinker_types::custom_loss::{CustomLossArg, CustomLossGraph, CustomLossInput, CustomLossOp};

use super::error::{EngineError, Result};

/// At most this many inputs, `logprobs` included (as the SDK).
pub const MAX_INPUTS: usize = tinker_types::custom_loss::MAX_CUSTOM_LOSS_INPUTS;
/// A bound on graph size, so one request cannot make the server evaluate without end.
const MAX_NODES: usize = 4096;
/// A bound on any intermediate tensor's elements.
const MAX_ELEMENTS: usize = 1 << 22;

/// A dense row-major f64 tensor; `shape` empty means a scalar.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f64>,
}

impl Tensor {
    /// A scalar.
    pub fn scalar(x: f64) -> Self {
        Self {
            shape: Vec::new(),
            data: vec![x],
        }
    }

    /// A vector.
    pub fn vector(data: Vec<f64>) -> Self {
        Self {
            shape: vec![data.len()],
            data,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operand {
    Node(usize),
    Const(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Minimum,
    Maximum,
    Gt,
    Lt,
    Ge,
    Le,
}

impl Binary {
    fn is_comparison(self) -> bool {
        matches!(self, Self::Gt | Self::Lt | Self::Ge | Self::Le)
    }

    fn apply(self, a: f64, b: f64) -> f64 {
        let flag = |c: bool| if c { 1.0 } else { 0.0 };
        match self {
            Self::Add => a + b,
            Self::Sub => a - b,
            Self::Mul => a * b,
            Self::Div => a / b,
            Self::Pow => a.powf(b),
            Self::Minimum => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.min(b)
                }
            }
            Self::Maximum => {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            }
            Self::Gt => flag(a > b),
            Self::Lt => flag(a < b),
            Self::Ge => flag(a >= b),
            Self::Le => flag(a <= b),
        }
    }

    /// `(d out / d a, d out / d b)` at `(a, b)` with output `y`.
    fn partials(self, a: f64, b: f64, y: f64) -> (f64, f64) {
        let pick = |first: bool, tie: bool| {
            if tie {
                (0.5, 0.5)
            } else if first {
                (1.0, 0.0)
            } else {
                (0.0, 1.0)
            }
        };
        match self {
            Self::Add => (1.0, 1.0),
            Self::Sub => (1.0, -1.0),
            Self::Mul => (b, a),
            Self::Div => (1.0 / b, -a / (b * b)),
            Self::Pow => {
                let da = if b == 0.0 { 0.0 } else { b * a.powf(b - 1.0) };
                let db = if a > 0.0 { y * a.ln() } else { 0.0 };
                (da, db)
            }
            Self::Minimum => pick(a < b, a == b),
            Self::Maximum => pick(a > b, a == b),
            Self::Gt | Self::Lt | Self::Ge | Self::Le => (0.0, 0.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unary {
    Neg,
    Exp,
    Log,
    Abs,
    Sqrt,
    Sigmoid,
    Tanh,
    /// `.float()`, `.contiguous()`: values unchanged.
    Identity,
}

impl Unary {
    fn apply(self, x: f64) -> f64 {
        match self {
            Self::Neg => -x,
            Self::Exp => x.exp(),
            Self::Log => x.ln(),
            Self::Abs => x.abs(),
            Self::Sqrt => x.sqrt(),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Self::Tanh => x.tanh(),
            Self::Identity => x,
        }
    }

    fn derivative(self, x: f64, y: f64) -> f64 {
        match self {
            Self::Neg => -1.0,
            Self::Exp => y,
            Self::Log => 1.0 / x,
            Self::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Self::Sqrt => 0.5 / y,
            Self::Sigmoid => y * (1.0 - y),
            Self::Tanh => 1.0 - y * y,
            Self::Identity => 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// The `k`-th declared input.
    Input(usize),
    Binary(Binary, Operand, Operand),
    Unary(Unary, usize),
    Clamp {
        x: usize,
        min: Option<f64>,
        max: Option<f64>,
    },
    Where {
        cond: usize,
        a: Operand,
        b: Operand,
    },
    Reduce {
        mean: bool,
        x: usize,
        /// `None`: every dimension.
        dims: Option<Vec<i64>>,
        keepdim: bool,
    },
    Detach(usize),
}

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

fn user(msg: impl Into<String>) -> EngineError {
    EngineError::user(msg.into())
}

/// Checks the declared inputs (the SDK's rules plus tinker-local's 1-D targets).
fn check_inputs(inputs: &[CustomLossInput]) -> Result<()> {
    if inputs.is_empty() || inputs[0].name != "logprobs" {
        return Err(user("a custom loss takes `logprobs` as its first input"));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(user(format!(
            "a custom loss takes at most {MAX_INPUTS} inputs, logprobs included (got {})",
            inputs.len()
        )));
    }
    for (i, input) in inputs.iter().enumerate() {
        if !tinker_types::custom_loss::is_custom_loss_input_name(&input.name) {
            return Err(user(format!(
                "input {:?} must be a lowercase name of letters, digits and underscores",
                input.name
            )));
        }
        if inputs[..i].iter().any(|x| x.name == input.name) {
            return Err(user(format!("input {:?} is declared twice", input.name)));
        }
        if input.rank > 2 {
            return Err(user(format!(
                "input {:?} has rank {}; ranks are 0, 1 or 2",
                input.name, input.rank
            )));
        }
    }
    match inputs[0].rank {
        1 => Ok(()),
        2 => Err(user(
            "logprobs of rank 2 ([T, K] targets) are not supported by tinker-local, whose targets are 1-D",
        )),
        _ => Err(user("logprobs has rank 1 ([T]) or 2 ([T, K])")),
    }
}

/// Parses `dim` (an int or a list/tuple of ints).
fn parse_dims(arg: &CustomLossArg) -> Result<Option<Vec<i64>>> {
    match arg {
        CustomLossArg::None => Ok(None),
        CustomLossArg::Int(d) => Ok(Some(vec![*d])),
        CustomLossArg::List(items) | CustomLossArg::Tuple(items) => items
            .iter()
            .map(|a| match a {
                CustomLossArg::Int(d) => Ok(*d),
                _ => Err(user("dim must hold integers")),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        _ => Err(user("dim must be an integer or a list of integers")),
    }
}

struct Compiler<'a> {
    loss_name: &'a str,
    names: HashMap<String, usize>,
    steps: Vec<Step>,
}

impl Compiler<'_> {
    fn node(&self, arg: &CustomLossArg, node: &str) -> Result<usize> {
        match arg {
            CustomLossArg::Ref(name) => self.names.get(name).copied().ok_or_else(|| {
                user(format!(
                    "loss {:?}: node {node:?} refers to {name:?}, which is not an earlier node",
                    self.loss_name
                ))
            }),
            other => Err(user(format!(
                "loss {:?}: node {node:?} needs a tensor argument, got {:?}",
                self.loss_name,
                other.to_value()
            ))),
        }
    }

    fn operand(&self, arg: &CustomLossArg, node: &str) -> Result<Operand> {
        match arg {
            CustomLossArg::Ref(_) => Ok(Operand::Node(self.node(arg, node)?)),
            CustomLossArg::Bool(b) => Ok(Operand::Const(if *b { 1.0 } else { 0.0 })),
            other => other.as_f64().map(Operand::Const).ok_or_else(|| {
                user(format!(
                    "loss {:?}: node {node:?} takes tensors or numbers, got {:?}",
                    self.loss_name,
                    other.to_value()
                ))
            }),
        }
    }

    fn scalar(&self, arg: &CustomLossArg, node: &str) -> Result<Option<f64>> {
        match arg {
            CustomLossArg::None => Ok(None),
            other => other.as_f64().map(Some).ok_or_else(|| {
                user(format!(
                    "loss {:?}: node {node:?}: clamp bounds must be numbers",
                    self.loss_name
                ))
            }),
        }
    }

    /// Translates one call (function or method; for methods `args[0]` is `self`).
    fn call(
        &self,
        node: &str,
        what: &str,
        args: &[CustomLossArg],
        kwargs: &[(String, CustomLossArg)],
    ) -> Result<Step> {
        let bad_arity = || {
            user(format!(
                "loss {:?}: node {node:?} calls {what} with {} positional argument(s)",
                self.loss_name,
                args.len()
            ))
        };
        let kw = |key: &str| kwargs.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let only_kwargs = |allowed: &[&str]| -> Result<()> {
            match kwargs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
                Some((k, _)) => Err(user(format!(
                    "loss {:?}: node {node:?}: {what} does not take keyword {k:?} here",
                    self.loss_name
                ))),
                None => Ok(()),
            }
        };
        let op = what.rsplit('.').next().unwrap_or(what);
        let binary = match op {
            "add" => Some(Binary::Add),
            "sub" => Some(Binary::Sub),
            "mul" => Some(Binary::Mul),
            "truediv" | "div" => Some(Binary::Div),
            "pow" => Some(Binary::Pow),
            "minimum" | "min" => Some(Binary::Minimum),
            "maximum" | "max" => Some(Binary::Maximum),
            "gt" => Some(Binary::Gt),
            "lt" => Some(Binary::Lt),
            "ge" => Some(Binary::Ge),
            "le" => Some(Binary::Le),
            _ => None,
        };
        if let Some(b) = binary {
            only_kwargs(&[])?;
            let [a, c] = args else {
                return Err(bad_arity());
            };
            let (a, c) = (self.operand(a, node)?, self.operand(c, node)?);
            if matches!((a, c), (Operand::Const(_), Operand::Const(_))) {
                return Err(user(format!(
                    "loss {:?}: node {node:?} combines two constants; at least one argument must be a tensor",
                    self.loss_name
                )));
            }
            return Ok(Step::Binary(b, a, c));
        }
        let unary = match op {
            "neg" | "negative" => Some(Unary::Neg),
            "exp" => Some(Unary::Exp),
            "log" => Some(Unary::Log),
            "abs" => Some(Unary::Abs),
            "sqrt" => Some(Unary::Sqrt),
            "sigmoid" => Some(Unary::Sigmoid),
            "tanh" => Some(Unary::Tanh),
            "float" | "contiguous" => Some(Unary::Identity),
            _ => None,
        };
        if let Some(u) = unary {
            only_kwargs(&[])?;
            let [x] = args else {
                return Err(bad_arity());
            };
            return Ok(Step::Unary(u, self.node(x, node)?));
        }
        match op {
            "detach" => {
                only_kwargs(&[])?;
                let [x] = args else {
                    return Err(bad_arity());
                };
                Ok(Step::Detach(self.node(x, node)?))
            }
            "clamp" | "clip" => {
                only_kwargs(&["min", "max"])?;
                let x = args.first().ok_or_else(bad_arity)?;
                if args.len() > 3 {
                    return Err(bad_arity());
                }
                let pos = |i: usize, key: &str| args.get(i).or_else(|| kw(key));
                let min = pos(1, "min").map_or(Ok(None), |a| self.scalar(a, node))?;
                let max = pos(2, "max").map_or(Ok(None), |a| self.scalar(a, node))?;
                if min.is_none() && max.is_none() {
                    return Err(user(format!(
                        "loss {:?}: node {node:?}: clamp needs min or max",
                        self.loss_name
                    )));
                }
                Ok(Step::Clamp {
                    x: self.node(x, node)?,
                    min,
                    max,
                })
            }
            "where" => {
                only_kwargs(&[])?;
                let [c, a, b] = args else {
                    return Err(bad_arity());
                };
                Ok(Step::Where {
                    cond: self.node(c, node)?,
                    a: self.operand(a, node)?,
                    b: self.operand(b, node)?,
                })
            }
            "sum" | "mean" => {
                only_kwargs(&["dim", "keepdim"])?;
                let x = args.first().ok_or_else(bad_arity)?;
                if args.len() > 3 {
                    return Err(bad_arity());
                }
                let dims = match args.get(1).or_else(|| kw("dim")) {
                    Some(a) => parse_dims(a)?,
                    None => None,
                };
                let keepdim = match args.get(2).or_else(|| kw("keepdim")) {
                    None => false,
                    Some(CustomLossArg::Bool(b)) => *b,
                    Some(_) => return Err(user("keepdim must be a boolean")),
                };
                Ok(Step::Reduce {
                    mean: op == "mean",
                    x: self.node(x, node)?,
                    dims,
                    keepdim,
                })
            }
            _ => Err(user(format!(
                "loss {:?}: node {node:?} calls {what}, which tinker-local does not support",
                self.loss_name
            ))),
        }
    }
}

/// Functions a graph may call (`call_function` targets).
const FUNCTIONS: &[&str] = &[
    "operator.add",
    "operator.sub",
    "operator.mul",
    "operator.truediv",
    "operator.neg",
    "operator.pow",
    "operator.gt",
    "operator.lt",
    "operator.ge",
    "operator.le",
    "torch.add",
    "torch.sub",
    "torch.mul",
    "torch.div",
    "torch.neg",
    "torch.pow",
    "torch.exp",
    "torch.log",
    "torch.abs",
    "torch.sqrt",
    "torch.sigmoid",
    "torch.tanh",
    "torch.clamp",
    "torch.clip",
    "torch.minimum",
    "torch.maximum",
    "torch.min",
    "torch.max",
    "torch.where",
    "torch.sum",
    "torch.mean",
    "torch.detach",
];

/// Tensor methods a graph may call (`call_method` targets).
const METHODS: &[&str] = &[
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "exp",
    "log",
    "abs",
    "sqrt",
    "sigmoid",
    "tanh",
    "clamp",
    "clip",
    "minimum",
    "maximum",
    "sum",
    "mean",
    "detach",
    "float",
    "contiguous",
];

impl CustomGraph {
    /// Validates a graph against its declared inputs: only whitelisted functions and
    /// methods, no modules or captured tensors, placeholders matching the inputs in order,
    /// and an output `(loss, {metric: value})` with `custom/<name>:sum|mean` keys.
    ///
    /// # Errors
    /// A user error naming the offending node.
    pub fn compile(
        name: &str,
        inputs: &[CustomLossInput],
        graph: &CustomLossGraph,
    ) -> Result<Self> {
        check_inputs(inputs)?;
        if graph.format != 1 {
            return Err(user(format!(
                "graph format {} is not supported (only 1)",
                graph.format
            )));
        }
        if graph.nodes.len() > MAX_NODES {
            return Err(user(format!(
                "loss {name:?} has {} nodes; at most {MAX_NODES}",
                graph.nodes.len()
            )));
        }
        let mut c = Compiler {
            loss_name: name,
            names: HashMap::new(),
            steps: Vec::new(),
        };
        let mut placeholders = 0;
        let mut output = None;
        for node in &graph.nodes {
            if output.is_some() {
                return Err(user(format!(
                    "loss {name:?}: node {:?} follows the output node",
                    node.name
                )));
            }
            let decode = |values: &[serde_json::Value]| -> Result<Vec<CustomLossArg>> {
                values
                    .iter()
                    .map(|v| {
                        CustomLossArg::from_value(v)
                            .map_err(|e| user(format!("loss {name:?}: node {:?}: {e}", node.name)))
                    })
                    .collect()
            };
            let args = decode(&node.args)?;
            let kwargs: Vec<(String, CustomLossArg)> = node
                .kwargs
                .iter()
                .map(|(k, v)| {
                    CustomLossArg::from_value(v)
                        .map(|a| (k.clone(), a))
                        .map_err(|e| user(format!("loss {name:?}: node {:?}: {e}", node.name)))
                })
                .collect::<Result<_>>()?;
            let step = match &node.op {
                CustomLossOp::Placeholder => {
                    let expected = inputs.get(placeholders).ok_or_else(|| {
                        user(format!(
                            "loss {name:?} has more placeholders than its {} declared inputs",
                            inputs.len()
                        ))
                    })?;
                    if node.target != expected.name || c.steps.len() != placeholders {
                        return Err(user(format!(
                            "loss {name:?}: placeholder {:?} does not match input {} ({:?}); placeholders come first, in the inputs' order",
                            node.target, placeholders, expected.name
                        )));
                    }
                    placeholders += 1;
                    Step::Input(placeholders - 1)
                }
                CustomLossOp::GetAttr => {
                    return Err(user(format!(
                        "loss {name:?} captures a tensor ({:?}); a custom loss may only read logprobs and the loss_fn_inputs it names",
                        node.target
                    )));
                }
                CustomLossOp::CallModule => {
                    return Err(user(format!(
                        "loss {name:?} calls module {:?}; custom losses cannot use torch.nn modules",
                        node.target
                    )));
                }
                CustomLossOp::CallFunction => {
                    if !FUNCTIONS.contains(&node.target.as_str()) {
                        return Err(user(format!(
                            "loss {name:?}: node {:?} calls {:?}, which tinker-local does not allow in custom losses",
                            node.name, node.target
                        )));
                    }
                    c.call(&node.name, &node.target, &args, &kwargs)?
                }
                CustomLossOp::CallMethod => {
                    if !METHODS.contains(&node.target.as_str()) {
                        return Err(user(format!(
                            "loss {name:?}: node {:?} calls method {:?}, which tinker-local does not allow in custom losses",
                            node.name, node.target
                        )));
                    }
                    c.call(&node.name, &node.target, &args, &kwargs)?
                }
                CustomLossOp::Output => {
                    output = Some(c.output(&args)?);
                    continue;
                }
                other => {
                    return Err(user(format!(
                        "loss {name:?}: unknown node op {:?}",
                        other.as_str()
                    )));
                }
            };
            if c.names.insert(node.name.clone(), c.steps.len()).is_some() {
                return Err(user(format!(
                    "loss {name:?}: node name {:?} is used twice",
                    node.name
                )));
            }
            c.steps.push(step);
        }
        if placeholders != inputs.len() {
            return Err(user(format!(
                "loss {name:?} has {placeholders} placeholders for {} declared inputs",
                inputs.len()
            )));
        }
        let (loss, metrics) =
            output.ok_or_else(|| user(format!("loss {name:?} has no output node")))?;
        Ok(Self {
            name: name.to_owned(),
            inputs: inputs.to_vec(),
            steps: c.steps,
            loss,
            metrics,
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
                let shape = self.broadcast(&[&a.shape, &b.shape])?;
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
                let shape = self.broadcast(&[&c.shape, &a.shape, &b.shape])?;
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
                let (shape, map, count) = self.reduction(&t.shape, dims.as_deref(), *keepdim)?;
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

    /// `d loss / d logprobs` by reverse accumulation over the recorded values.
    fn backward(&self, values: &[Tensor], needs: &[bool]) -> Result<Vec<f64>> {
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
                            self.reduction(&values[*x].shape, dims.as_deref(), *keepdim)?;
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

    fn broadcast(&self, shapes: &[&[usize]]) -> Result<Vec<usize>> {
        let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut out = vec![1; rank];
        for s in shapes {
            for (j, &d) in s.iter().enumerate() {
                let o = &mut out[rank - s.len() + j];
                if *o == 1 {
                    *o = d;
                } else if d != 1 && d != *o {
                    return Err(user(format!(
                        "custom loss {:?}: shapes {:?} cannot be broadcast together",
                        self.name, shapes
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The reduced shape, the output index of every input element, and the number of
    /// elements summed into each output.
    fn reduction(
        &self,
        shape: &[usize],
        dims: Option<&[i64]>,
        keepdim: bool,
    ) -> Result<(Vec<usize>, Vec<usize>, usize)> {
        let rank = shape.len();
        let mut reduced = vec![dims.is_none(); rank];
        for &d in dims.unwrap_or(&[]) {
            let r = i64::try_from(rank.max(1)).unwrap_or(i64::MAX);
            let k = if d < 0 { d + r } else { d };
            if !(0..r).contains(&k) {
                return Err(user(format!(
                    "custom loss {:?}: dim {d} is out of range for a tensor of rank {rank}",
                    self.name
                )));
            }
            if let Some(flag) = reduced.get_mut(usize::try_from(k).unwrap_or(0)) {
                *flag = true;
            }
        }
        let kept: Vec<usize> = shape
            .iter()
            .zip(&reduced)
            .map(|(&d, &r)| if r { 1 } else { d })
            .collect();
        let out_shape: Vec<usize> = if keepdim {
            kept.clone()
        } else {
            shape
                .iter()
                .zip(&reduced)
                .filter(|(_, r)| !**r)
                .map(|(&d, _)| d)
                .collect()
        };
        let count = shape
            .iter()
            .zip(&reduced)
            .filter(|(_, r)| **r)
            .map(|(&d, _)| d)
            .product::<usize>();
        // Input index → index in `kept` (same element count as the output).
        let total: usize = shape.iter().product();
        let map = (0..total)
            .map(|flat| {
                let mut rem = flat;
                let mut out = 0;
                let mut stride = 1;
                for j in (0..rank).rev() {
                    let idx = rem % shape[j];
                    rem /= shape[j];
                    if !reduced[j] {
                        out += idx * stride;
                    }
                    stride *= kept[j];
                }
                out
            })
            .collect();
        Ok((out_shape, map, count))
    }
}

fn const_of(o: &Operand) -> Option<f64> {
    match o {
        Operand::Const(x) => Some(*x),
        Operand::Node(_) => None,
    }
}

/// For each element of a tensor of shape `out`, the index of the element of `input`
/// (broadcast to `out`) it reads.
fn index_map(out: &[usize], input: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let offset = out.len() - input.len();
    // Strides of `input`, 0 on broadcast dimensions.
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for j in (0..input.len()).rev() {
        strides[offset + j] = if input[j] == 1 { 0 } else { s };
        s *= input[j];
    }
    (0..total)
        .map(|flat| {
            let mut rem = flat;
            let mut idx = 0;
            for j in (0..out.len()).rev() {
                idx += (rem % out[j]) * strides[j];
                rem /= out[j];
            }
            idx
        })
        .collect()
}

impl Compiler<'_> {
    /// Parses the output node's argument `(loss, {key: metric})`.
    fn output(&self, args: &[CustomLossArg]) -> Result<(usize, Vec<(String, usize)>)> {
        let name = self.loss_name;
        let parts = match args {
            [CustomLossArg::Tuple(parts) | CustomLossArg::List(parts)] => parts,
            _ => return Err(user(format!("loss {name:?} must return (loss, metrics)"))),
        };
        let [loss, metrics] = &parts[..] else {
            return Err(user(format!("loss {name:?} must return (loss, metrics)")));
        };
        let loss = match loss {
            CustomLossArg::Ref(_) => self.node(loss, "output")?,
            other => {
                return Err(user(format!(
                    "loss {name:?} must return its loss as a tensor, got {:?}",
                    other.to_value()
                )));
            }
        };
        let CustomLossArg::Dict(entries) = metrics else {
            return Err(user(format!(
                "loss {name:?} must return its metrics as a dict"
            )));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if !tinker_types::custom_loss::is_custom_metric_key(key) {
                return Err(user(format!(
                    "loss {name:?}: metric {key:?} must be named custom/<name>:sum or custom/<name>:mean in lowercase"
                )));
            }
            let CustomLossArg::Ref(_) = value else {
                return Err(user(format!(
                    "loss {name:?}: metric {key:?} must be a tensor"
                )));
            };
            out.push((key.clone(), self.node(value, "output")?));
        }
        Ok((loss, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tinker_types::custom_loss::CustomLossGraph;

    fn graph(value: serde_json::Value) -> CustomLossGraph {
        serde_json::from_value(value).unwrap()
    }

    fn inputs(list: &[(&str, u8)]) -> Vec<CustomLossInput> {
        list.iter()
            .map(|(n, r)| CustomLossInput {
                name: (*n).to_owned(),
                rank: *r,
            })
            .collect()
    }

    fn ph(name: &str) -> serde_json::Value {
        json!({"op": "placeholder", "name": name, "target": name, "args": [], "kwargs": {}})
    }

    fn call(op: &str, name: &str, target: &str, args: serde_json::Value) -> serde_json::Value {
        json!({"op": op, "name": name, "target": target, "args": args, "kwargs": {}})
    }

    /// The torch.fx graph of a PPO loss with a ratio metric (as the SDK's tracer emits it).
    fn ppo_graph() -> (Vec<CustomLossInput>, CustomLossGraph) {
        let g = graph(json!({"format": 1, "nodes": [
            ph("logprobs"), ph("sampling_logprobs"), ph("advantages"),
            call("call_function", "sub", "operator.sub", json!([{"ref": "logprobs"}, {"ref": "sampling_logprobs"}])),
            call("call_function", "exp", "torch.exp", json!([{"ref": "sub"}])),
            call("call_function", "clamp", "torch.clamp", json!([{"ref": "exp"}, 0.8, 1.2])),
            call("call_function", "mul", "operator.mul", json!([{"ref": "exp"}, {"ref": "advantages"}])),
            call("call_function", "mul_1", "operator.mul", json!([{"ref": "clamp"}, {"ref": "advantages"}])),
            call("call_function", "minimum", "torch.minimum", json!([{"ref": "mul"}, {"ref": "mul_1"}])),
            call("call_method", "sum_1", "sum", json!([{"ref": "minimum"}])),
            call("call_function", "neg", "operator.neg", json!([{"ref": "sum_1"}])),
            call("call_method", "mean", "mean", json!([{"ref": "exp"}])),
            {"op": "output", "name": "output", "target": "output", "args": [{"tuple": [{"ref": "neg"}, {"dict": {"custom/ratio:mean": {"ref": "mean"}}}]}], "kwargs": {}}
        ]}));
        (
            inputs(&[("logprobs", 1), ("sampling_logprobs", 1), ("advantages", 1)]),
            g,
        )
    }

    #[test]
    fn ppo_matches_the_builtin_per_token_formula() {
        let (inputs, g) = ppo_graph();
        let graph = CustomGraph::compile("ppo", &inputs, &g).unwrap();
        let lp = vec![-1.0, -2.0, -0.5, -3.0];
        let q = vec![-1.0, -1.0, -1.5, -3.1];
        let a = vec![1.5, -0.7, 2.0, -1.0];
        let e = graph
            .evaluate(&[
                Tensor::vector(lp.clone()),
                Tensor::vector(q.clone()),
                Tensor::vector(a.clone()),
            ])
            .unwrap();
        let builtin = super::super::loss::Loss::Ppo {
            clip_low: 0.8,
            clip_high: 1.2,
        };
        let mut total = 0.0;
        for i in 0..lp.len() {
            let (v, d) = builtin.token(lp[i], q[i], a[i], 1.0);
            total += v;
            assert!(
                (d - e.grad[i]).abs() < 1e-12,
                "token {i}: {d} vs {}",
                e.grad[i]
            );
        }
        // The built-in keeps its clip thresholds in f32.
        assert!((total - e.loss).abs() < 1e-6, "{total} vs {}", e.loss);
        let ratio_mean = lp.iter().zip(&q).map(|(l, q)| (l - q).exp()).sum::<f64>() / 4.0;
        assert_eq!(e.metrics[0].0, "custom/ratio:mean");
        assert!((e.metrics[0].1 - ratio_mean).abs() < 1e-12);
    }

    /// Every op, composed: the gradient matches central finite differences.
    #[test]
    fn gradients_match_finite_differences() {
        let g = graph(json!({"format": 1, "nodes": [
            ph("logprobs"), ph("w"), ph("s"), ph("m"),
            call("call_function", "abs_1", "torch.abs", json!([{"ref": "logprobs"}])),
            call("call_function", "add", "operator.add", json!([{"ref": "abs_1"}, 1.0])),
            call("call_function", "log", "torch.log", json!([{"ref": "add"}])),
            call("call_function", "pow_1", "operator.pow", json!([{"ref": "logprobs"}, 2])),
            call("call_function", "sub", "operator.sub", json!([1.0, {"ref": "log"}])),
            call("call_function", "truediv", "operator.truediv", json!([2.0, {"ref": "add"}])),
            call("call_function", "maximum", "torch.maximum", json!([{"ref": "logprobs"}, {"ref": "w"}])),
            call("call_function", "min_1", "torch.min", json!([{"ref": "logprobs"}, {"ref": "w"}])),
            {"op": "call_function", "name": "clamp", "target": "torch.clamp", "args": [{"ref": "logprobs"}], "kwargs": {"min": -1.5, "max": {"float": "inf"}}},
            call("call_function", "gt", "operator.gt", json!([{"ref": "logprobs"}, {"ref": "w"}])),
            call("call_function", "where", "torch.where", json!([{"ref": "gt"}, {"ref": "pow_1"}, {"ref": "sub"}])),
            call("call_function", "sigmoid", "torch.sigmoid", json!([{"ref": "logprobs"}])),
            call("call_function", "tanh", "torch.tanh", json!([{"ref": "truediv"}])),
            call("call_function", "sqrt", "torch.sqrt", json!([{"ref": "add"}])),
            call("call_function", "mul", "operator.mul", json!([{"ref": "s"}, {"ref": "maximum"}])),
            call("call_method", "detach", "detach", json!([{"ref": "sigmoid"}])),
            call("call_function", "mul_1", "operator.mul", json!([{"ref": "detach"}, {"ref": "min_1"}])),
            // [T] + [T, 1] * ... → a [T, 2]-shaped broadcast via the rank-2 input m ([T, 2]).
            call("call_function", "mul_2", "operator.mul", json!([{"ref": "m"}, {"ref": "clamp"}])),
            {"op": "call_method", "name": "mean", "target": "mean", "args": [{"ref": "mul_2"}], "kwargs": {"dim": 0}},
            call("call_method", "sum_1", "sum", json!([{"ref": "mean"}])),
            call("call_function", "add_1", "operator.add", json!([{"ref": "where"}, {"ref": "tanh"}])),
            call("call_function", "add_2", "operator.add", json!([{"ref": "add_1"}, {"ref": "sqrt"}])),
            call("call_function", "add_3", "operator.add", json!([{"ref": "add_2"}, {"ref": "mul"}])),
            call("call_function", "add_4", "operator.add", json!([{"ref": "add_3"}, {"ref": "mul_1"}])),
            call("call_function", "pow_2", "torch.pow", json!([{"ref": "add"}, 1.5])),
            call("call_function", "add_5", "operator.add", json!([{"ref": "add_4"}, {"ref": "pow_2"}])),
            call("call_function", "sum_2", "torch.sum", json!([{"ref": "add_5"}])),
            call("call_function", "add_6", "operator.add", json!([{"ref": "sum_2"}, {"ref": "sum_1"}])),
            {"op": "output", "name": "output", "target": "output", "args": [{"tuple": [{"ref": "add_6"}, {"dict": {}}]}], "kwargs": {}}
        ]}));
        let ins = inputs(&[("logprobs", 1), ("w", 1), ("s", 0), ("m", 2)]);
        let graph = CustomGraph::compile("everything", &ins, &g).unwrap();
        // Pointwise derivatives are discontinuous at the comparisons; keep away from them.
        let lp = vec![-0.3, -1.2, -2.7, -0.9, -1.9];
        let w = Tensor::vector(vec![-1.0, -0.5, -2.0, -1.5, -1.0]);
        let s = Tensor::scalar(0.7);
        let m = Tensor {
            shape: vec![2, 5],
            data: vec![0.5, -1.0, 2.0, 0.1, 0.3, 1.5, 0.2, -0.4, 0.9, -2.0],
        };
        let eval = |lp: &[f64]| {
            graph
                .evaluate(&[Tensor::vector(lp.to_vec()), w.clone(), s.clone(), m.clone()])
                .unwrap()
        };
        let e = eval(&lp);
        let h = 1e-6;
        for i in 0..lp.len() {
            let (mut up, mut down) = (lp.clone(), lp.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (eval(&up).loss - eval(&down).loss) / (2.0 * h);
            // `detach` hides sigmoid's gradient from autodiff but not from differences.
            let sg = 1.0 / (1.0 + (-lp[i]).exp());
            let hidden = sg * (1.0 - sg) * lp[i].min(w.data[i]);
            let fd = fd - hidden;
            assert!(
                (fd - e.grad[i]).abs() < 1e-5,
                "lp[{i}]: {} vs {fd}",
                e.grad[i]
            );
        }
    }

    #[test]
    fn refuses_what_is_not_whitelisted() {
        let (ins, g) = ppo_graph();
        let with = |i: usize, node: serde_json::Value| {
            let mut g = g.clone();
            g.nodes[i] = serde_json::from_value(node).unwrap();
            CustomGraph::compile("x", &ins, &g).unwrap_err()
        };
        let err = with(
            4,
            call("call_function", "exp", "numpy.exp", json!([{"ref": "sub"}])),
        );
        assert!(
            err.is_user_error() && err.to_string().contains("numpy.exp"),
            "{err}"
        );
        let err = with(
            4,
            call("call_module", "exp", "lin", json!([{"ref": "sub"}])),
        );
        assert!(err.to_string().contains("module"), "{err}");
        let err = with(4, call("get_attr", "exp", "weight", json!([])));
        assert!(err.to_string().contains("captures"), "{err}");
        let err = with(
            4,
            call("call_method", "exp", "item", json!([{"ref": "sub"}])),
        );
        assert!(err.to_string().contains("item"), "{err}");
        let err = with(
            4,
            call(
                "call_function",
                "exp",
                "torch.exp",
                json!([{"ref": "later"}]),
            ),
        );
        assert!(err.to_string().contains("later"), "{err}");
        // Bad metric key, bad ranks, wrong placeholder order.
        let mut bad = g.clone();
        let last = bad.nodes.len() - 1;
        bad.nodes[last].args =
            vec![json!({"tuple": [{"ref": "neg"}, {"dict": {"Ratio:mean": {"ref": "mean"}}}]})];
        assert!(CustomGraph::compile("x", &ins, &bad).is_err());
        let mut r = ins.clone();
        r[1].rank = 3;
        assert!(CustomGraph::compile("x", &r, &g).is_err());
        let mut r = ins.clone();
        r[0].rank = 0;
        assert!(CustomGraph::compile("x", &r, &g).is_err());
        let mut r = ins.clone();
        r.swap(1, 2);
        assert!(CustomGraph::compile("x", &r, &g).is_err());
        assert!(CustomGraph::compile("x", &inputs(&[("Logprobs", 1)]), &g).is_err());
    }

    #[test]
    fn runtime_shape_errors_are_user_errors() {
        let (ins, g) = ppo_graph();
        let graph = CustomGraph::compile("ppo", &ins, &g).unwrap();
        let err = graph
            .evaluate(&[
                Tensor::vector(vec![-1.0; 3]),
                Tensor::vector(vec![-1.0; 2]),
                Tensor::vector(vec![1.0; 3]),
            ])
            .unwrap_err();
        assert!(
            err.is_user_error() && err.to_string().contains("broadcast"),
            "{err}"
        );
    }

    /// Real torch.fx graphs encoded by the SDK, with torch's loss, gradient and metrics on
    /// fixed inputs (`tests/fixtures/custom_loss/generate.py`).
    #[test]
    fn evaluates_sdk_traced_graphs_like_torch() {
        let fixtures = [
            include_str!("../../tests/fixtures/custom_loss/neg_ll.json"),
            include_str!("../../tests/fixtures/custom_loss/importance_sampling.json"),
            include_str!("../../tests/fixtures/custom_loss/ppo.json"),
            include_str!("../../tests/fixtures/custom_loss/cispo.json"),
            include_str!("../../tests/fixtures/custom_loss/kitchen_sink.json"),
        ];
        for text in fixtures {
            let f: serde_json::Value = serde_json::from_str(text).unwrap();
            let name = f["name"].as_str().unwrap();
            let ins: Vec<CustomLossInput> = serde_json::from_value(f["inputs"].clone()).unwrap();
            let g: CustomLossGraph = serde_json::from_value(f["graph"].clone()).unwrap();
            let graph = CustomGraph::compile(name, &ins, &g).unwrap();
            let tensors: Vec<Tensor> = ins
                .iter()
                .map(|i| {
                    let v = &f["values"][&i.name];
                    match i.rank {
                        0 => Tensor::scalar(v.as_f64().unwrap()),
                        1 => Tensor::vector(serde_json::from_value(v.clone()).unwrap()),
                        _ => {
                            let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
                            Tensor {
                                shape: vec![rows.len(), rows[0].len()],
                                data: rows.concat(),
                            }
                        }
                    }
                })
                .collect();
            let e = graph.evaluate(&tensors).unwrap();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
            assert!(
                close(e.loss, f["loss"].as_f64().unwrap()),
                "{name}: loss {}",
                e.loss
            );
            let grad: Vec<f64> = serde_json::from_value(f["grad"].clone()).unwrap();
            for (i, (a, b)) in e.grad.iter().zip(&grad).enumerate() {
                assert!(close(*a, *b), "{name}: grad[{i}] {a} vs torch {b}");
            }
            assert_eq!(e.metrics.len(), f["metrics"].as_object().unwrap().len());
            for (key, value) in &e.metrics {
                let torch = f["metrics"][key].as_f64().unwrap();
                assert!(
                    close(*value, torch),
                    "{name}: {key} {value} vs torch {torch}"
                );
            }
        }
    }
}
