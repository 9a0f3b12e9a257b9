//! The builder: declared inputs, expressions, and the validated graph they encode.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value};
use tinker_types::custom_loss::CustomLossArg;
use tinker_types::{CustomLossGraph, CustomLossInput, CustomLossNode, CustomLossOp};

use super::*;

/// Builds a [`CustomLoss`]: declare inputs, combine them into expressions, then
/// [`build`](Self::build) with the loss and its metrics.
#[derive(Debug)]
pub struct CustomLossBuilder {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) inputs: Vec<CustomLossInput>,
    pub(super) placeholders: Vec<Expr>,
}

/// A validated custom loss: its name, declared inputs and graph, ready for
/// [`ServiceClient::create_custom_loss`](crate::ServiceClient::create_custom_loss).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomLoss {
    pub(super) name: String,
    pub(super) inputs: Vec<CustomLossInput>,
    pub(super) graph: CustomLossGraph,
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
    pub(super) fn key(&self) -> String {
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

pub(super) fn check_inputs(inputs: &[CustomLossInput]) -> std::result::Result<(), CustomLossError> {
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
