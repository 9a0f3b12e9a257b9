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
            "logprobs", "abs_1", "add", "add_1", "abs_2", "sum_1", "sum_2", "pow_1", "x_1", "x",
            "input_1"
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
