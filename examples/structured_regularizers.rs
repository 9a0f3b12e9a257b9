//! The structured regularizer pipeline on mock logprobs, with no server (port of tinkex's
//! `structured_regularizers.exs`): eleven regularizers composed over a base loss, each
//! reported with its value, weight, contribution (weight·value) and gradient norm.
//!
//! The pipeline is one custom-loss graph: here it is evaluated on the client (reverse-mode
//! autodiff over the graph); `structured_regularizers_live` runs the same definition on a
//! server too. The numbers are tinkex's golden ones; the example fails if they differ.
//!
//! ```sh
//! cargo run --release --example structured_regularizers
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Instant;

use tinker::custom_loss::CustomLossBuilder;
use tinker::prelude::*;
use tinker::regularizers::{
    BaseLoss, Center, EntropyMode, GradientOf, KlDirection, OrthogonalityMode, Penalty, Pipeline,
    Reduction, Regularizer, Target,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const LOGPROBS: [f32; 10] = [-0.5, -1.2, -0.8, -2.1, -0.3, -1.5, -0.9, -1.8, -0.6, -1.1];
const REFERENCE_PROBS: [f32; 10] = [0.22, 0.18, 0.12, 0.10, 0.08, 0.07, 0.06, 0.06, 0.06, 0.05];
const PAIR: [f32; 10] = [
    -0.45, -1.05, -0.75, -2.05, -0.25, -1.35, -0.85, -1.65, -0.55, -1.05,
];

/// tinkex's golden values (value per regularizer, section 5 of its example).
const GOLDEN: [(&str, f64); 11] = [
    ("l1_sparsity", 10.8),
    ("entropy", -3.1972),
    ("entropy_sharp", -1.9354),
    ("l2_weight_decay", 3.036),
    ("elastic_net", 12.36),
    ("kl_forward", 6.087),
    ("kl_reverse", -1.1569),
    ("kl_symmetric", 2.465),
    ("consistency", 0.0085),
    ("orthogonality", 0.0),
    ("gradient_penalty", 4.6754),
];

fn regularizers() -> Vec<Regularizer> {
    let kl = |direction| Penalty::kl("reference_logprobs", direction);
    vec![
        Regularizer::new("l1_sparsity", 0.01, Penalty::l1()),
        Regularizer::new("entropy", 0.001, Penalty::entropy(EntropyMode::Maximize)),
        Regularizer::new(
            "entropy_sharp",
            0.001,
            Penalty::Entropy {
                mode: EntropyMode::Maximize,
                temperature: 0.5,
                normalize: false,
            },
        ),
        Regularizer::new(
            "l2_weight_decay",
            0.005,
            Penalty::L2 {
                target: Target::Logprobs,
                reduction: Reduction::Sum,
                clip: None,
                center: Center::Mean,
            },
        ),
        Regularizer::new("elastic_net", 0.002, Penalty::elastic_net(0.6)),
        Regularizer::new("kl_forward", 0.01, kl(KlDirection::Forward)),
        Regularizer::new("kl_reverse", 0.01, kl(KlDirection::Reverse)),
        Regularizer::new("kl_symmetric", 0.01, kl(KlDirection::Symmetric)),
        Regularizer::new(
            "consistency",
            0.02,
            Penalty::consistency("original_logprobs"),
        ),
        Regularizer::new(
            "orthogonality",
            0.003,
            Penalty::orthogonality(OrthogonalityMode::Soft),
        ),
        Regularizer::new(
            "gradient_penalty",
            0.001,
            Penalty::gradient_penalty(GradientOf::Sum, 1.0),
        ),
    ]
}

/// The one datum: its targets, the reference logprobs and the paired logprobs.
fn mock_datum() -> Result<Datum, BoxError> {
    let mut d = Datum::new(ModelInput::from_tokens(&[1; 10]), Default::default());
    let fields = [
        ("target_tokens", TensorData::vector_i64(vec![2; 10])),
        (
            "reference_logprobs",
            TensorData::vector_f32(REFERENCE_PROBS.iter().map(|p| p.ln()).collect()),
        ),
        ("original_logprobs", TensorData::vector_f32(PAIR.to_vec())),
    ];
    for (k, v) in fields {
        d.loss_fn_inputs.insert(k.to_owned(), v);
    }
    Ok(d)
}

fn main() -> Result<(), BoxError> {
    println!("=== Structured regularizers (offline, client-side evaluation) ===\n");
    let regs = regularizers();
    for r in &regs {
        println!("Created {} (weight={})", r.name(), r.weight());
    }
    println!("\nBase loss: negated mean of the logprobs (BaseLoss::NegMeanLogprob)");
    println!("Mock logprobs, shape [{}]: {LOGPROBS:?}\n", LOGPROBS.len());
    let data = [mock_datum()?];
    let logprobs = vec![LOGPROBS.to_vec()];

    // 1. The base loss alone.
    let baseline = Pipeline::new("baseline")
        .build()?
        .evaluate(&data, &logprobs)?;
    println!(
        "Baseline: loss_total {:.4}, perplexity {:.4}\n",
        baseline.loss_total,
        baseline.loss_total.exp()
    );

    // 2. All eleven, composed into one graph, gradient norms tracked.
    let pipeline = regs
        .iter()
        .cloned()
        .fold(Pipeline::new("structured"), Pipeline::regularizer);
    let loss = pipeline.build()?;
    let graph = loss.custom_loss().graph();
    println!(
        "One custom-loss graph: {} nodes, inputs {:?}",
        graph.nodes.len(),
        loss.custom_loss()
            .inputs()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
    );
    let started = Instant::now();
    let report = loss.evaluate(&data, &logprobs)?;
    println!(
        "Evaluated with reverse-mode autodiff in {} µs\n",
        started.elapsed().as_micros()
    );
    println!("{report}\n");

    // 3. Check against tinkex.
    let mut worst: f64 = 0.0;
    for (name, golden) in GOLDEN {
        let r = report
            .regularizer(name)
            .ok_or_else(|| format!("no regularizer {name}"))?;
        worst = worst.max((r.value - golden).abs() / (1.0 + golden.abs()));
    }
    let totals_match = (report.loss_total - 1.3016).abs() < 1e-3
        && (report.regularizer_total - 0.2216).abs() < 1e-3;
    println!(
        "Matches tinkex's golden values: {} (largest relative difference {worst:.1e})",
        worst < 1e-3 && totals_match
    );
    if worst >= 1e-3 || !totals_match {
        return Err("the values differ from tinkex's".into());
    }
    println!(
        "Gradient norms: base {:.4}, total {:.4}; KL and consistency are differentiated \
         (tinkex reports 0 for them), gradient_penalty of Σ lp and one-row orthogonality \
         are constant (0)\n",
        report.base.grad_norm.unwrap_or(f64::NAN),
        report.total_grad_norm.unwrap_or(f64::NAN)
    );

    // 4. A gradient penalty that moves the logprobs: of a non-linear base loss.
    let nonlinear = Pipeline::new("gp_nonlinear")
        .base(BaseLoss::Custom(Arc::new(|b: &mut CustomLossBuilder| {
            (b.logprobs().exp() * b.logprobs()).sum() - b.logprobs().mean()
        })))
        .regularizer(Regularizer::new(
            "gradient_penalty",
            0.1,
            Penalty::gradient_penalty(GradientOf::BaseLoss, 1.0),
        ))
        .build()?;
    let gp = nonlinear.evaluate(&data, &logprobs)?;
    println!("Gradient penalty of a non-linear base loss (Σ p·lp − mean lp):\n{gp}\n");

    // 5. Refusals, before anything is built or sent.
    let dup = Pipeline::new("dup")
        .regularizer(Regularizer::new("dup", 0.1, Penalty::l1()))
        .regularizer(Regularizer::new("dup", 0.2, Penalty::l2()))
        .build();
    println!("Duplicate names: {:?}", dup.err().map(|e| e.to_string()));
    let bad = Pipeline::new("bad")
        .regularizer(Regularizer::new("neg", -1.0, Penalty::l1()))
        .build();
    println!("Negative weight: {:?}", bad.err().map(|e| e.to_string()));
    Ok(())
}
