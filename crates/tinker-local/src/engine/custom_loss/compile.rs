//! Validation of the wire graph: the declared inputs, the whitelist of functions and
//! methods, argument shapes of every call and the `(loss, metrics)` output, translated
//! into [`Step`]s.

use std::collections::HashMap;

use tinker_types::custom_loss::{CustomLossArg, CustomLossGraph, CustomLossInput, CustomLossOp};

use super::super::error::Result;
use super::ops::{Binary, Operand, Step, Unary};
use super::{CustomGraph, user};

/// At most this many inputs, `logprobs` included (as the SDK).
const MAX_INPUTS: usize = tinker_types::custom_loss::MAX_CUSTOM_LOSS_INPUTS;
/// A bound on graph size, so one request cannot make the server evaluate without end.
const MAX_NODES: usize = 4096;

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
