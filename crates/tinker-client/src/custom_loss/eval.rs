//! Client-side evaluation of a [`CustomLoss`]: the same graph that is uploaded, run here on
//! the logprobs a `forward` returned, with reverse-mode autodiff for `d output / d logprobs`.
//! This is what [`TrainingClient::forward_backward_custom_expr`](crate::TrainingClient::forward_backward_custom_expr)
//! runs, so one loss definition trains either here or on the server.
//!
//! The instruction set is what [`CustomLossBuilder`] emits (plus torch's aliases of it);
//! tensors are f64 of rank ≤ 2 with numpy broadcasting. Gradient conventions follow torch:
//! `minimum`/`maximum` split ties evenly, `clamp` passes the gradient on `min <= x <= max`,
//! `abs` has derivative 0 at 0, comparisons and `detach` carry none.

use std::collections::BTreeMap;

use tinker_types::custom_loss::{CustomLossArg, CustomLossOp};
use tinker_types::{Datum, TensorData};

use super::*;

/// A bound on any intermediate tensor, so a hostile input cannot exhaust memory.
const MAX_ELEMENTS: usize = 1 << 24;

/// An operand: an earlier node's value or a number written in the graph.
#[derive(Debug, Clone, Copy)]
enum Src {
    Node(usize),
    Num(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pointwise {
    Neg,
    Exp,
    Log,
    Abs,
    Sqrt,
    Sigmoid,
    Tanh,
    Same,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairwise {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
    Gt,
    Lt,
    Ge,
    Le,
}

/// One instruction; node operands index earlier instructions.
#[derive(Debug, Clone)]
enum Instr {
    Input(usize),
    Map(Pointwise, usize),
    Zip(Pairwise, Src, Src),
    Clamp(usize, Option<f64>, Option<f64>),
    Select(usize, Src, Src),
    Reduce {
        x: usize,
        mean: bool,
        dim: Option<i64>,
        keepdim: bool,
    },
    Detach(usize),
}

/// A dense row-major value; an empty shape is a scalar.
#[derive(Debug, Clone, PartialEq)]
struct Value {
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// A graph translated into instructions, ready to run on one datum at a time.
#[derive(Debug, Clone)]
pub(super) struct Program {
    instrs: Vec<Instr>,
    loss: usize,
    metrics: Vec<(String, usize)>,
}

/// What one datum's evaluation gives.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DatumEvaluation {
    /// The scalar loss.
    pub loss: f64,
    /// `d loss / d logprobs`, one value per logprob.
    pub gradient: Vec<f64>,
    /// The metrics, keyed as in the graph.
    pub metrics: Vec<(String, f64)>,
}

fn bad(reason: impl Into<String>) -> CustomLossError {
    CustomLossError::Evaluation {
        reason: reason.into(),
    }
}

impl Program {
    /// Translates the graph of `loss` (already validated by the builder or `from_graph`).
    pub(super) fn compile(loss: &CustomLoss) -> Result<Self, CustomLossError> {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut instrs = Vec::with_capacity(loss.graph.nodes.len());
        let mut output = None;
        let mut placeholders = 0;
        for node in &loss.graph.nodes {
            let args: Vec<CustomLossArg> = node
                .args
                .iter()
                .map(CustomLossArg::from_value)
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("node {:?}: {e}", node.name)))?;
            let kwargs: Vec<(&str, CustomLossArg)> = node
                .kwargs
                .iter()
                .map(|(k, v)| CustomLossArg::from_value(v).map(|a| (k.as_str(), a)))
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("node {:?}: {e}", node.name)))?;
            let lookup = |a: &CustomLossArg| -> Result<usize, CustomLossError> {
                match a {
                    CustomLossArg::Ref(r) => names.get(r.as_str()).copied().ok_or_else(|| {
                        bad(format!("node {:?} refers to unknown {r:?}", node.name))
                    }),
                    _ => Err(bad(format!("node {:?} needs a tensor argument", node.name))),
                }
            };
            let instr = match node.op {
                CustomLossOp::Placeholder => {
                    placeholders += 1;
                    Instr::Input(placeholders - 1)
                }
                CustomLossOp::CallFunction | CustomLossOp::CallMethod => {
                    let op = node.target.rsplit('.').next().unwrap_or(&node.target);
                    translate(op, &args, &kwargs, &lookup)
                        .map_err(|e| bad(format!("node {:?} ({}): {e}", node.name, node.target)))?
                }
                CustomLossOp::Output => {
                    output = Some(parse_output(&args, &lookup)?);
                    continue;
                }
                _ => return Err(bad(format!("node {:?}: unsupported node kind", node.name))),
            };
            names.insert(node.name.as_str(), instrs.len());
            instrs.push(instr);
        }
        if placeholders != loss.inputs.len() {
            return Err(bad("placeholders do not match the declared inputs"));
        }
        let (loss_node, metrics) = output.ok_or_else(|| bad("the graph has no output"))?;
        Ok(Self {
            instrs,
            loss: loss_node,
            metrics,
        })
    }

    /// Runs the program on one datum's inputs (`logprobs` first, in declaration order).
    fn forward(&self, inputs: &[Value]) -> Result<Vec<Value>, CustomLossError> {
        let mut vals: Vec<Value> = Vec::with_capacity(self.instrs.len());
        for instr in &self.instrs {
            let v = step(instr, &vals, inputs)?;
            if v.data.len() > MAX_ELEMENTS {
                return Err(bad(format!(
                    "an intermediate tensor has {} elements",
                    v.data.len()
                )));
            }
            vals.push(v);
        }
        Ok(vals)
    }

    /// `d vals[root] / d logprobs` by reverse accumulation (`root` must be a scalar).
    fn backward(&self, vals: &[Value], root: usize) -> Vec<f64> {
        let mut adj: Vec<Option<Vec<f64>>> = vec![None; vals.len()];
        adj[root] = Some(vec![1.0; vals[root].data.len()]);
        let mut logprobs_grad = None;
        for (n, instr) in self.instrs.iter().enumerate().rev() {
            let Some(g) = adj[n].take() else { continue };
            let mut push = |target: usize, at: usize, d: f64| {
                adj[target].get_or_insert_with(|| vec![0.0; vals[target].data.len()])[at] += d;
            };
            match instr {
                Instr::Input(0) => logprobs_grad = Some(g),
                Instr::Input(_) | Instr::Detach(_) => {}
                Instr::Map(f, x) => {
                    for (k, gk) in g.iter().enumerate() {
                        push(*x, k, gk * f.slope(vals[*x].data[k], vals[n].data[k]));
                    }
                }
                Instr::Zip(f, a, b) => {
                    let out = &vals[n].shape;
                    let (ma, mb) = (operand_map(vals, out, a), operand_map(vals, out, b));
                    for (k, gk) in g.iter().enumerate() {
                        let x = operand_at(vals, a, &ma, k);
                        let y = operand_at(vals, b, &mb, k);
                        let (dx, dy) = f.slopes(x, y, vals[n].data[k]);
                        if let Src::Node(i) = a {
                            push(*i, ma[k], gk * dx);
                        }
                        if let Src::Node(i) = b {
                            push(*i, mb[k], gk * dy);
                        }
                    }
                }
                Instr::Clamp(x, lo, hi) => {
                    for (k, gk) in g.iter().enumerate() {
                        let v = vals[*x].data[k];
                        let inside = lo.is_none_or(|m| v >= m) && hi.is_none_or(|m| v <= m);
                        push(*x, k, if inside { *gk } else { 0.0 });
                    }
                }
                Instr::Select(c, a, b) => {
                    let out = &vals[n].shape;
                    let mc = broadcast_map(out, &vals[*c].shape);
                    for (src, when) in [(a, true), (b, false)] {
                        let Src::Node(i) = src else { continue };
                        let mi = broadcast_map(out, &vals[*i].shape);
                        for (k, gk) in g.iter().enumerate() {
                            if (vals[*c].data[mc[k]] != 0.0) == when {
                                push(*i, mi[k], *gk);
                            }
                        }
                    }
                }
                Instr::Reduce {
                    x,
                    mean,
                    dim,
                    keepdim,
                } => {
                    // Shapes were checked by the forward pass.
                    if let Ok((_, map, count)) = reduce_map(&vals[*x].shape, *dim, *keepdim) {
                        let scale = if *mean {
                            1.0 / count.max(1) as f64
                        } else {
                            1.0
                        };
                        for (i, &o) in map.iter().enumerate() {
                            push(*x, i, g[o] * scale);
                        }
                    }
                }
            }
        }
        logprobs_grad.unwrap_or_else(|| vec![0.0; vals.first().map_or(0, |v| v.data.len())])
    }
}

impl Pointwise {
    fn apply(self, x: f64) -> f64 {
        match self {
            Self::Neg => -x,
            Self::Exp => x.exp(),
            Self::Log => x.ln(),
            Self::Abs => x.abs(),
            Self::Sqrt => x.sqrt(),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Self::Tanh => x.tanh(),
            Self::Same => x,
        }
    }

    /// `d y / d x` at input `x` with output `y`.
    fn slope(self, x: f64, y: f64) -> f64 {
        match self {
            Self::Neg => -1.0,
            Self::Exp => y,
            Self::Log => x.recip(),
            Self::Abs if x == 0.0 => 0.0,
            Self::Abs => x.signum(),
            Self::Sqrt => 0.5 / y,
            Self::Sigmoid => y * (1.0 - y),
            Self::Tanh => 1.0 - y * y,
            Self::Same => 1.0,
        }
    }
}

impl Pairwise {
    fn apply(self, a: f64, b: f64) -> f64 {
        let truth = |t: bool| f64::from(u8::from(t));
        match self {
            Self::Add => a + b,
            Self::Sub => a - b,
            Self::Mul => a * b,
            Self::Div => a / b,
            Self::Pow => a.powf(b),
            Self::Min | Self::Max if a.is_nan() || b.is_nan() => f64::NAN,
            Self::Min => a.min(b),
            Self::Max => a.max(b),
            Self::Gt => truth(a > b),
            Self::Lt => truth(a < b),
            Self::Ge => truth(a >= b),
            Self::Le => truth(a <= b),
        }
    }

    /// `(d y / d a, d y / d b)` at `(a, b)` with output `y`.
    fn slopes(self, a: f64, b: f64, y: f64) -> (f64, f64) {
        let choose = |first: bool| {
            if a == b {
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
            Self::Div => (b.recip(), -a / (b * b)),
            Self::Pow => (
                if b == 0.0 { 0.0 } else { b * a.powf(b - 1.0) },
                if a > 0.0 { y * a.ln() } else { 0.0 },
            ),
            Self::Min => choose(a < b),
            Self::Max => choose(a > b),
            Self::Gt | Self::Lt | Self::Ge | Self::Le => (0.0, 0.0),
        }
    }
}

/// Translates one call (for methods `args[0]` is `self`).
fn translate(
    op: &str,
    args: &[CustomLossArg],
    kwargs: &[(&str, CustomLossArg)],
    lookup: &dyn Fn(&CustomLossArg) -> Result<usize, CustomLossError>,
) -> Result<Instr, String> {
    let node = |a: &CustomLossArg| lookup(a).map_err(|e| e.to_string());
    let src = |a: &CustomLossArg| match a {
        CustomLossArg::Ref(_) => node(a).map(Src::Node),
        CustomLossArg::Bool(b) => Ok(Src::Num(f64::from(u8::from(*b)))),
        other => other
            .as_f64()
            .map(Src::Num)
            .ok_or_else(|| "an argument is neither a tensor nor a number".to_owned()),
    };
    let kw = |key: &str| kwargs.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    let pairwise = match op {
        "add" => Some(Pairwise::Add),
        "sub" => Some(Pairwise::Sub),
        "mul" => Some(Pairwise::Mul),
        "truediv" | "div" => Some(Pairwise::Div),
        "pow" => Some(Pairwise::Pow),
        "minimum" => Some(Pairwise::Min),
        "maximum" => Some(Pairwise::Max),
        "gt" => Some(Pairwise::Gt),
        "lt" => Some(Pairwise::Lt),
        "ge" => Some(Pairwise::Ge),
        "le" => Some(Pairwise::Le),
        _ => None,
    };
    if let Some(f) = pairwise {
        let [a, b] = args else {
            return Err("takes two arguments".to_owned());
        };
        return Ok(Instr::Zip(f, src(a)?, src(b)?));
    }
    let pointwise = match op {
        "neg" | "negative" => Some(Pointwise::Neg),
        "exp" => Some(Pointwise::Exp),
        "log" => Some(Pointwise::Log),
        "abs" => Some(Pointwise::Abs),
        "sqrt" => Some(Pointwise::Sqrt),
        "sigmoid" => Some(Pointwise::Sigmoid),
        "tanh" => Some(Pointwise::Tanh),
        "float" | "contiguous" => Some(Pointwise::Same),
        _ => None,
    };
    if let Some(f) = pointwise {
        let [x] = args else {
            return Err("takes one argument".to_owned());
        };
        return Ok(Instr::Map(f, node(x)?));
    }
    let number = |a: Option<&CustomLossArg>| match a {
        None | Some(CustomLossArg::None) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| "a bound is not a number".to_owned()),
    };
    match (op, args) {
        ("detach", [x]) => Ok(Instr::Detach(node(x)?)),
        ("clamp" | "clip", [x, rest @ ..]) if rest.len() <= 2 => Ok(Instr::Clamp(
            node(x)?,
            number(rest.first().or_else(|| kw("min")))?,
            number(rest.get(1).or_else(|| kw("max")))?,
        )),
        ("where", [c, a, b]) => Ok(Instr::Select(node(c)?, src(a)?, src(b)?)),
        ("sum" | "mean", [x, rest @ ..]) if rest.len() <= 2 => {
            let dim = match rest.first().or_else(|| kw("dim")) {
                None | Some(CustomLossArg::None) => None,
                Some(CustomLossArg::Int(d)) => Some(*d),
                Some(_) => return Err("dim must be one integer".to_owned()),
            };
            let keepdim = match rest.get(1).or_else(|| kw("keepdim")) {
                None => false,
                Some(CustomLossArg::Bool(b)) => *b,
                Some(_) => return Err("keepdim must be a boolean".to_owned()),
            };
            Ok(Instr::Reduce {
                x: node(x)?,
                mean: op == "mean",
                dim,
                keepdim,
            })
        }
        _ => Err("not supported by the client-side evaluator".to_owned()),
    }
}

fn parse_output(
    args: &[CustomLossArg],
    lookup: &dyn Fn(&CustomLossArg) -> Result<usize, CustomLossError>,
) -> Result<(usize, Vec<(String, usize)>), CustomLossError> {
    let [CustomLossArg::Tuple(parts) | CustomLossArg::List(parts)] = args else {
        return Err(bad("the output is not (loss, metrics)"));
    };
    let [loss, CustomLossArg::Dict(metrics)] = &parts[..] else {
        return Err(bad("the output is not (loss, metrics)"));
    };
    let metrics = metrics
        .iter()
        .map(|(k, v)| lookup(v).map(|i| (k.clone(), i)))
        .collect::<Result<_, _>>()?;
    Ok((lookup(loss)?, metrics))
}

/// For each element of a value of shape `out`, the element of a value of shape `input`
/// (broadcast to `out`) it reads.
fn broadcast_map(out: &[usize], input: &[usize]) -> Vec<usize> {
    let lead = out.len().saturating_sub(input.len());
    let count: usize = out.iter().product();
    let mut map = Vec::with_capacity(count);
    for flat in 0..count {
        let (mut rest, mut at, mut stride) = (flat, 0, 1);
        for d in (0..out.len()).rev() {
            let i = rest % out[d];
            rest /= out[d];
            if d >= lead {
                let size = input[d - lead];
                if size != 1 {
                    at += i * stride;
                }
                stride *= size;
            }
        }
        map.push(at);
    }
    map
}

fn broadcast_shape(shapes: &[&[usize]]) -> Result<Vec<usize>, CustomLossError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1; rank];
    for s in shapes {
        for (d, &size) in s.iter().enumerate() {
            let slot = &mut out[rank - s.len() + d];
            match (*slot, size) {
                (_, 1) => {}
                (1, n) => *slot = n,
                (m, n) if m == n => {}
                _ => return Err(bad(format!("shapes {shapes:?} do not broadcast"))),
            }
        }
    }
    Ok(out)
}

/// The reduced shape, the output element of every input element, and how many inputs
/// each output element gathers.
fn reduce_map(
    shape: &[usize],
    dim: Option<i64>,
    keepdim: bool,
) -> Result<(Vec<usize>, Vec<usize>, usize), CustomLossError> {
    let rank = shape.len();
    let axis = match dim {
        None => None,
        Some(d) => {
            let r = i64::try_from(rank.max(1)).unwrap_or(i64::MAX);
            let k = if d < 0 { d + r } else { d };
            if !(0..r).contains(&k) {
                return Err(bad(format!("dim {d} is out of range for rank {rank}")));
            }
            Some(usize::try_from(k).unwrap_or(0))
        }
    };
    let reduced = |d: usize| axis.is_none_or(|a| a == d);
    let kept: Vec<usize> = (0..rank)
        .map(|d| if reduced(d) { 1 } else { shape[d] })
        .collect();
    let out_shape = if keepdim {
        kept.clone()
    } else {
        (0..rank)
            .filter(|&d| !reduced(d))
            .map(|d| shape[d])
            .collect()
    };
    let count = (0..rank)
        .filter(|&d| reduced(d))
        .map(|d| shape[d])
        .product();
    let total: usize = shape.iter().product();
    let map = (0..total)
        .map(|flat| {
            let (mut rest, mut at, mut stride) = (flat, 0, 1);
            for d in (0..rank).rev() {
                let i = rest % shape[d];
                rest /= shape[d];
                if !reduced(d) {
                    at += i * stride;
                }
                stride *= kept[d];
            }
            at
        })
        .collect();
    Ok((out_shape, map, count))
}

fn operand_map(vals: &[Value], out: &[usize], s: &Src) -> Vec<usize> {
    match s {
        Src::Node(i) => broadcast_map(out, &vals[*i].shape),
        Src::Num(_) => Vec::new(),
    }
}

fn operand_at(vals: &[Value], s: &Src, map: &[usize], k: usize) -> f64 {
    match s {
        Src::Node(i) => vals[*i].data[map[k]],
        Src::Num(x) => *x,
    }
}

fn shape_of<'a>(vals: &'a [Value], s: &Src) -> &'a [usize] {
    match s {
        Src::Node(i) => &vals[*i].shape,
        Src::Num(_) => &[],
    }
}

fn step(instr: &Instr, vals: &[Value], inputs: &[Value]) -> Result<Value, CustomLossError> {
    Ok(match instr {
        Instr::Input(k) => inputs
            .get(*k)
            .cloned()
            .ok_or_else(|| bad("an input is missing"))?,
        Instr::Map(f, x) => Value {
            shape: vals[*x].shape.clone(),
            data: vals[*x].data.iter().map(|&v| f.apply(v)).collect(),
        },
        Instr::Zip(f, a, b) => {
            let shape = broadcast_shape(&[shape_of(vals, a), shape_of(vals, b)])?;
            let (ma, mb) = (operand_map(vals, &shape, a), operand_map(vals, &shape, b));
            let count: usize = shape.iter().product();
            let data = (0..count)
                .map(|k| f.apply(operand_at(vals, a, &ma, k), operand_at(vals, b, &mb, k)))
                .collect();
            Value { shape, data }
        }
        Instr::Clamp(x, lo, hi) => Value {
            shape: vals[*x].shape.clone(),
            data: vals[*x]
                .data
                .iter()
                .map(|&v| {
                    let v = lo.map_or(v, |m| if v < m { m } else { v });
                    hi.map_or(v, |m| if v > m { m } else { v })
                })
                .collect(),
        },
        Instr::Select(c, a, b) => {
            let cond = &vals[*c];
            let shape = broadcast_shape(&[&cond.shape, shape_of(vals, a), shape_of(vals, b)])?;
            let mc = broadcast_map(&shape, &cond.shape);
            let (ma, mb) = (operand_map(vals, &shape, a), operand_map(vals, &shape, b));
            let data = (0..mc.len())
                .map(|k| {
                    if cond.data[mc[k]] != 0.0 {
                        operand_at(vals, a, &ma, k)
                    } else {
                        operand_at(vals, b, &mb, k)
                    }
                })
                .collect();
            Value { shape, data }
        }
        Instr::Reduce {
            x,
            mean,
            dim,
            keepdim,
        } => {
            let (shape, map, count) = reduce_map(&vals[*x].shape, *dim, *keepdim)?;
            let mut data = vec![0.0; shape.iter().product()];
            for (i, &o) in map.iter().enumerate() {
                data[o] += vals[*x].data[i];
            }
            if *mean {
                data.iter_mut().for_each(|v| *v /= count as f64);
            }
            Value { shape, data }
        }
        Instr::Detach(x) => vals[*x].clone(),
    })
}

fn value_of(t: &TensorData) -> Result<Value, String> {
    let data: Vec<f64> = match t.to_dense_f32(0.0) {
        Some(v) => v.into_iter().map(f64::from).collect(),
        None => t
            .to_dense_i64(0)
            .ok_or("it is neither float32 nor int64")?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
    };
    let shape = t.dims();
    if shape.iter().product::<usize>() != data.len() || data.len() > MAX_ELEMENTS {
        return Err("its shape does not match its values".to_owned());
    }
    Ok(Value { shape, data })
}

impl CustomLoss {
    /// Evaluates the loss on one datum: `logprobs` (the learner's logprobs of its
    /// `target_tokens`) and the datum's `loss_fn_inputs` the loss declares. Returns the
    /// loss, `d loss / d logprobs` and the metrics — what the server computes for that datum.
    ///
    /// # Errors
    /// [`CustomLossError::MissingInput`], [`CustomLossError::InputRank`], or
    /// [`CustomLossError::Evaluation`] for shapes that do not broadcast, a non-scalar result
    /// or a non-finite loss or gradient.
    pub fn evaluate(
        &self,
        datum: &Datum,
        logprobs: &[f64],
    ) -> Result<DatumEvaluation, CustomLossError> {
        let program = Program::compile(self)?;
        self.evaluate_with(&program, 0, datum, logprobs)
    }

    /// Evaluates every datum and combines them as the server does: losses summed, `:sum`
    /// metrics summed, `:mean` metrics averaged over datums. The result is what
    /// [`TrainingClient::forward_backward_custom`](crate::TrainingClient::forward_backward_custom) takes.
    ///
    /// # Errors
    /// As [`evaluate`](Self::evaluate), naming the datum.
    pub fn evaluate_batch(
        &self,
        data: &[Datum],
        logprobs: &[Vec<f32>],
    ) -> Result<crate::training::CustomLossOutput, CustomLossError> {
        if data.len() != logprobs.len() {
            return Err(bad(format!(
                "{} datums but {} logprob rows",
                data.len(),
                logprobs.len()
            )));
        }
        let program = Program::compile(self)?;
        let mut loss = 0.0;
        let mut gradients = Vec::with_capacity(data.len());
        let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
        for (i, (datum, lp)) in data.iter().zip(logprobs).enumerate() {
            let lp: Vec<f64> = lp.iter().map(|&x| f64::from(x)).collect();
            let one = self.evaluate_with(&program, i, datum, &lp)?;
            loss += one.loss;
            gradients.push(one.gradient.iter().map(|&g| g as f32).collect());
            for (key, v) in one.metrics {
                let scale = if key.ends_with(":mean") {
                    1.0 / data.len() as f64
                } else {
                    1.0
                };
                *metrics.entry(key).or_default() += v * scale;
            }
        }
        let mut out = crate::training::CustomLossOutput::new(loss, gradients);
        out.metrics = metrics;
        Ok(out)
    }

    fn evaluate_with(
        &self,
        program: &Program,
        index: usize,
        datum: &Datum,
        logprobs: &[f64],
    ) -> Result<DatumEvaluation, CustomLossError> {
        let mut inputs = Vec::with_capacity(self.inputs.len());
        inputs.push(Value {
            shape: vec![logprobs.len()],
            data: logprobs.to_vec(),
        });
        for input in &self.inputs[1..] {
            let t = datum.loss_fn_inputs.get(&input.name).ok_or_else(|| {
                CustomLossError::MissingInput {
                    datum: index,
                    key: input.name.clone(),
                }
            })?;
            let v = value_of(t)
                .map_err(|e| bad(format!("datum[{index}] input {:?}: {e}", input.name)))?;
            if v.shape.len() != usize::from(input.rank) {
                return Err(CustomLossError::InputRank {
                    datum: index,
                    key: input.name.clone(),
                    rank: v.shape.len(),
                    declared: input.rank,
                });
            }
            inputs.push(v);
        }
        if self.inputs[0].rank != 1 {
            return Err(bad("client-side evaluation takes rank-1 logprobs"));
        }
        let vals = program.forward(&inputs)?;
        let scalar = |node: usize, what: &str| -> Result<f64, CustomLossError> {
            match &vals[node].data[..] {
                [x] if vals[node].shape.is_empty() => Ok(*x),
                _ => Err(bad(format!(
                    "datum[{index}]: {what} has shape {:?}, not a scalar",
                    vals[node].shape
                ))),
            }
        };
        let loss = scalar(program.loss, "the loss")?;
        let metrics = program
            .metrics
            .iter()
            .map(|(k, n)| scalar(*n, k).map(|v| (k.clone(), v)))
            .collect::<Result<_, _>>()?;
        let gradient = program.backward(&vals, program.loss);
        if !loss.is_finite() || gradient.iter().any(|g| !g.is_finite()) {
            return Err(bad(format!(
                "datum[{index}]: the loss or its gradient is not finite (loss {loss})"
            )));
        }
        Ok(DatumEvaluation {
            loss,
            gradient,
            metrics,
        })
    }
}
