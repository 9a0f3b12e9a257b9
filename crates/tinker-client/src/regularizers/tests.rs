//! The pipeline against tinkex's golden numbers, its gradients against finite differences
//! and the symbolic gradient norms against reverse-mode autodiff.

use std::collections::BTreeMap;

use tinker_types::{Datum, ModelInput, TensorData};

use super::*;

/// tinkex `structured_regularizers.exs`'s mock logprobs.
const LOGPROBS: [f64; 10] = [-0.5, -1.2, -0.8, -2.1, -0.3, -1.5, -0.9, -1.8, -0.6, -1.1];
const REFERENCE_PROBS: [f64; 10] = [0.22, 0.18, 0.12, 0.10, 0.08, 0.07, 0.06, 0.06, 0.06, 0.05];
const PAIR: [f64; 10] = [
    -0.45, -1.05, -0.75, -2.05, -0.25, -1.35, -0.85, -1.65, -0.55, -1.05,
];

fn datum(n: usize, fields: &[(&str, Vec<f64>)]) -> Datum {
    let tokens: Vec<u32> = (0..n as u32).collect();
    let mut d = Datum::new(ModelInput::from_tokens(&tokens), Default::default());
    d.loss_fn_inputs.insert(
        "target_tokens".to_owned(),
        TensorData::vector_i64((1..=n as i64).collect()),
    );
    for (name, v) in fields {
        d.loss_fn_inputs.insert(
            (*name).to_owned(),
            TensorData::vector_f32(v.iter().map(|&x| x as f32).collect()),
        );
    }
    d
}

fn mock_datum() -> Datum {
    let reference: Vec<f64> = REFERENCE_PROBS.iter().map(|p| p.ln()).collect();
    datum(
        10,
        &[
            ("reference_logprobs", reference),
            ("original_logprobs", PAIR.to_vec()),
        ],
    )
}

/// tinkex's eleven regularizers with its weights and options.
fn tinkex_pipeline() -> Pipeline {
    let reg = Regularizer::new;
    Pipeline::new("structured")
        .regularizer(reg("l1_sparsity", 0.01, Penalty::l1()))
        .regularizer(reg(
            "entropy",
            0.001,
            Penalty::entropy(EntropyMode::Maximize),
        ))
        .regularizer(reg(
            "entropy_sharp",
            0.001,
            Penalty::Entropy {
                mode: EntropyMode::Maximize,
                temperature: 0.5,
                normalize: false,
            },
        ))
        .regularizer(reg(
            "l2_weight_decay",
            0.005,
            Penalty::L2 {
                target: Target::Logprobs,
                reduction: Reduction::Sum,
                clip: None,
                center: Center::Mean,
            },
        ))
        .regularizer(reg("elastic_net", 0.002, Penalty::elastic_net(0.6)))
        .regularizer(reg(
            "kl_forward",
            0.01,
            Penalty::kl("reference_logprobs", KlDirection::Forward),
        ))
        .regularizer(reg(
            "kl_reverse",
            0.01,
            Penalty::kl("reference_logprobs", KlDirection::Reverse),
        ))
        .regularizer(reg(
            "kl_symmetric",
            0.01,
            Penalty::kl("reference_logprobs", KlDirection::Symmetric),
        ))
        .regularizer(reg(
            "consistency",
            0.02,
            Penalty::consistency("original_logprobs"),
        ))
        .regularizer(reg(
            "orthogonality",
            0.003,
            Penalty::orthogonality(OrthogonalityMode::Soft),
        ))
        .regularizer(reg(
            "gradient_penalty",
            0.001,
            Penalty::gradient_penalty(GradientOf::Sum, 1.0),
        ))
}

fn lp32(v: &[f64]) -> Vec<Vec<f32>> {
    vec![v.iter().map(|&x| x as f32).collect()]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// Every value of tinkex's golden run (section 5 of the example) and its gradient norms
/// (section 6) where tinkex differentiates the term.
#[test]
fn tinkex_golden_values() {
    let loss = tinkex_pipeline().build().unwrap();
    let report = loss.evaluate(&[mock_datum()], &lp32(&LOGPROBS)).unwrap();
    let golden = [
        ("consistency", 0.0085),
        ("elastic_net", 12.36),
        ("entropy", -3.1972),
        ("entropy_sharp", -1.9354),
        ("gradient_penalty", 4.6754),
        ("kl_forward", 6.087),
        ("kl_reverse", -1.1569),
        ("kl_symmetric", 2.465),
        ("l1_sparsity", 10.8),
        ("l2_weight_decay", 3.036),
        ("orthogonality", 0.0),
    ];
    for (name, value) in golden {
        let r = report.regularizer(name).unwrap();
        assert!(
            close(r.value, value, 2e-4),
            "{name}: {} vs {value}",
            r.value
        );
        assert!((r.contribution - r.weight * r.value).abs() < 1e-12);
    }
    assert!(close(report.base.value, 1.08, 1e-6));
    assert!(close(report.regularizer_total, 0.2216, 2e-4));
    assert!(close(report.loss_total, 1.3016, 1e-4));
    let norm = |name: &str| report.regularizer(name).unwrap().grad_norm.unwrap();
    assert!(close(report.base.grad_norm.unwrap(), 0.3162, 1e-4));
    assert!(close(norm("l1_sparsity"), 3.1623, 1e-4));
    assert!(close(norm("l2_weight_decay"), 3.4848, 1e-4));
    assert!(close(norm("elastic_net"), 4.8349, 1e-4));
    assert!(close(norm("entropy"), 0.6867, 2e-4));
    assert!(close(norm("entropy_sharp"), 0.4833, 2e-4));
    // A gradient penalty of a linear function is constant; one row is trivially orthogonal.
    assert!(norm("gradient_penalty") < 1e-9);
    assert!(norm("orthogonality") < 1e-9);
    // Unlike tinkex (0 under tracing), KL and consistency carry a gradient.
    assert!(norm("kl_forward") > 0.1 && norm("consistency") > 0.01);
}

/// `d f / d lp` by central differences, `f` the evaluated loss of one datum.
fn numeric_gradient(loss: &crate::custom_loss::CustomLoss, d: &Datum, lp: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    (0..lp.len())
        .map(|i| {
            let at = |delta: f64| {
                let mut x = lp.to_vec();
                x[i] += delta;
                loss.evaluate(d, &x).unwrap().loss
            };
            (at(h) - at(-h)) / (2.0 * h)
        })
        .collect()
}

/// Each regularizer alone as a loss, and the whole pipeline: reverse-mode autodiff over
/// the graph equals finite differences, and the symbolic gradient norm in the metrics
/// equals the autodiff gradient's norm.
#[test]
fn gradients_match_finite_differences() {
    let d = mock_datum();
    // Inputs away from kinks (abs at 0, clamps, masks) so differences are smooth.
    let lp: Vec<f64> = LOGPROBS.iter().map(|x| x * 1.1 + 0.03).collect();
    let pipeline = tinkex_pipeline()
        .base(BaseLoss::Custom(std::sync::Arc::new(
            |b: &mut crate::custom_loss::CustomLossBuilder| {
                // Non-linear, so the gradient penalty of the base loss moves the logprobs.
                (b.logprobs().exp() * b.logprobs()).sum() - b.logprobs().mean()
            },
        )))
        .regularizer(Regularizer::new(
            "gp_base",
            0.01,
            Penalty::gradient_penalty(GradientOf::BaseLoss, 0.5),
        ))
        .regularizer(Regularizer::new(
            "ortho_ref",
            0.1,
            Penalty::Orthogonality {
                mode: OrthogonalityMode::Hard,
                rows: vec!["reference_logprobs".into(), "original_logprobs".into()],
                center: true,
            },
        ))
        .regularizer(Regularizer::new(
            "cosine",
            0.1,
            Penalty::Consistency {
                pair: "original_logprobs".into(),
                metric: ConsistencyMetric::Cosine,
                reduction: Reduction::Mean,
            },
        ))
        .regularizer(Regularizer::new(
            "l2_clip",
            0.1,
            Penalty::L2 {
                target: Target::Probs,
                reduction: Reduction::Mean,
                clip: Some(0.4),
                center: Center::Value(0.1),
            },
        ));
    let full = pipeline.build().unwrap();
    let eval = full.custom_loss().evaluate(&d, &lp).unwrap();
    let numeric = numeric_gradient(full.custom_loss(), &d, &lp);
    for (a, n) in eval.gradient.iter().zip(&numeric) {
        assert!(close(*a, *n, 1e-5), "autodiff {a} vs numeric {n}");
    }
    let metrics: BTreeMap<String, f64> = eval.metrics.iter().cloned().collect();
    let report = full.report(&metrics).unwrap();
    let total_norm = eval.gradient.iter().map(|g| g * g).sum::<f64>().sqrt();
    assert!(close(report.total_grad_norm.unwrap(), total_norm, 1e-9));

    // Each term alone: the gradient against finite differences, and its reported
    // (symbolic) norm against the autodiff norm of `(d(base + w·term) − d base) / w`.
    let custom_base = || {
        BaseLoss::Custom(std::sync::Arc::new(
            |b: &mut crate::custom_loss::CustomLossBuilder| {
                (b.logprobs().exp() * b.logprobs()).sum() - b.logprobs().mean()
            },
        ))
    };
    let base_only = Pipeline::new("base").base(custom_base()).build().unwrap();
    let eb = base_only.custom_loss().evaluate(&d, &lp).unwrap();
    for r in &pipeline.regularizers {
        let alone = Pipeline::new("alone")
            .base(custom_base())
            .regularizer(r.clone())
            .build()
            .unwrap();
        let e = alone.custom_loss().evaluate(&d, &lp).unwrap();
        let numeric = numeric_gradient(alone.custom_loss(), &d, &lp);
        for (a, n) in e.gradient.iter().zip(&numeric) {
            assert!(
                close(*a, *n, 1e-5),
                "{}: autodiff {a} vs numeric {n}",
                r.name()
            );
        }
        let term_norm = e
            .gradient
            .iter()
            .zip(&eb.gradient)
            .map(|(t, b)| ((t - b) / r.weight()).powi(2))
            .sum::<f64>()
            .sqrt();
        let metrics: BTreeMap<String, f64> = e.metrics.iter().cloned().collect();
        let reported = alone.report(&metrics).unwrap();
        let symbolic = reported.regularizer(r.name()).unwrap().grad_norm.unwrap();
        assert!(
            close(symbolic, term_norm, 1e-6),
            "{}: symbolic {symbolic} vs autodiff {term_norm}",
            r.name()
        );
    }
}

/// Two datums combine as the server combines them: values and squared gradient norms
/// summed, so the report is of the batch.
#[test]
fn batches_sum_terms_and_gradient_norms() {
    let loss = tinkex_pipeline().build().unwrap();
    let shifted: Vec<f64> = LOGPROBS.iter().map(|x| x - 0.2).collect();
    let one = loss.evaluate(&[mock_datum()], &lp32(&LOGPROBS)).unwrap();
    let other = loss.evaluate(&[mock_datum()], &lp32(&shifted)).unwrap();
    let mut rows = lp32(&LOGPROBS);
    rows.extend(lp32(&shifted));
    let both = loss.evaluate(&[mock_datum(), mock_datum()], &rows).unwrap();
    assert!(close(
        both.loss_total,
        one.loss_total + other.loss_total,
        1e-9
    ));
    let l2 = |r: &PipelineReport| r.regularizer("l2_weight_decay").unwrap().grad_norm.unwrap();
    assert!(close(
        l2(&both),
        (l2(&one).powi(2) + l2(&other).powi(2)).sqrt(),
        1e-9
    ));
}

#[test]
fn refusals() {
    let dup = Pipeline::new("p")
        .regularizer(Regularizer::new("dup", 0.1, Penalty::l1()))
        .regularizer(Regularizer::new("dup", 0.2, Penalty::l2()))
        .build()
        .unwrap_err();
    assert_eq!(
        dup,
        RegularizerError::DuplicateNames {
            names: vec!["dup".to_owned()]
        }
    );
    assert_eq!(dup.to_string(), "duplicate regularizer names: [\"dup\"]");
    let cases = [
        Regularizer::new("Bad Name", 0.1, Penalty::l1()),
        Regularizer::new("", 0.1, Penalty::l1()),
        Regularizer::new("neg", -0.1, Penalty::l1()),
        Regularizer::new("nan", f64::NAN, Penalty::l1()),
        Regularizer::new("ratio", 0.1, Penalty::elastic_net(1.5)),
        Regularizer::new(
            "temp",
            0.1,
            Penalty::Entropy {
                mode: EntropyMode::Minimize,
                temperature: 0.0,
                normalize: false,
            },
        ),
    ];
    for r in cases {
        let name = r.name().to_owned();
        let err = Pipeline::new("p").regularizer(r).build().unwrap_err();
        assert!(
            matches!(
                err,
                RegularizerError::InvalidName { .. }
                    | RegularizerError::InvalidWeight { .. }
                    | RegularizerError::InvalidOption { .. }
            ),
            "{name}: {err:?}"
        );
    }
    // A datum without the reference field is refused before evaluation.
    let loss = tinkex_pipeline().build().unwrap();
    let err = loss
        .evaluate(&[datum(10, &[])], &lp32(&LOGPROBS))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegularizerError::Loss(crate::custom_loss::CustomLossError::MissingInput { .. })
        ),
        "{err:?}"
    );
    // A result of another loss lacks the pipeline's metrics.
    assert!(matches!(
        loss.report(&BTreeMap::new()),
        Err(RegularizerError::MissingMetric { .. })
    ));
}
