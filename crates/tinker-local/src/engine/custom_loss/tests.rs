//! The interpreter against the built-in PPO, finite differences and torch fixtures.

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
    let builtin = crate::engine::loss::Loss::Ppo {
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
        include_str!("../../../tests/fixtures/custom_loss/neg_ll.json"),
        include_str!("../../../tests/fixtures/custom_loss/importance_sampling.json"),
        include_str!("../../../tests/fixtures/custom_loss/ppo.json"),
        include_str!("../../../tests/fixtures/custom_loss/cispo.json"),
        include_str!("../../../tests/fixtures/custom_loss/kitchen_sink.json"),
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
