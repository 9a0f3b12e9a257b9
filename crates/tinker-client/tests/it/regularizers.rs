//! One regularizer pipeline run client-side (`forward_backward_custom_expr`: the graph
//! evaluated on the client with reverse-mode autodiff) and server-side (the same graph
//! uploaded with `create_custom_loss`) against an in-process tinker-local over HTTP: the
//! same reports, and the same weights after one optimizer step.

use tinker_testkit::local as common;

use common::{MODEL, datum, start};
use tinker_client::custom_loss::CustomLossBuilder;
use tinker_client::regularizers::{
    BaseLoss, Center, ConsistencyMetric, EntropyMode, GradientOf, KlDirection, OrthogonalityMode,
    Penalty, Pipeline, PipelineReport, Reduction, Regularizer, Target,
};
use tinker_client::{TrainingClient, TrainingClientOptions};
use tinker_types::{AdamParams, Datum, ForwardBackwardOutput, LossFn, TensorData};

fn pipeline() -> Pipeline {
    let kl = |d| Penalty::kl("reference_logprobs", d);
    let regs = [
        Regularizer::new("l1", 0.01, Penalty::l1()),
        Regularizer::new(
            "l2",
            0.005,
            Penalty::L2 {
                target: Target::Probs,
                reduction: Reduction::Mean,
                clip: Some(0.5),
                center: Center::Mean,
            },
        ),
        Regularizer::new("elastic", 0.002, Penalty::elastic_net(0.6)),
        Regularizer::new(
            "entropy",
            0.01,
            Penalty::Entropy {
                mode: EntropyMode::Maximize,
                temperature: 0.5,
                normalize: true,
            },
        ),
        Regularizer::new("kl_forward", 0.01, kl(KlDirection::Forward)),
        Regularizer::new("kl_symmetric", 0.01, kl(KlDirection::Symmetric)),
        Regularizer::new("consistency", 0.02, Penalty::consistency("pair_logprobs")),
        Regularizer::new(
            "cosine",
            0.02,
            Penalty::Consistency {
                pair: "pair_logprobs".into(),
                metric: ConsistencyMetric::Cosine,
                reduction: Reduction::Mean,
            },
        ),
        Regularizer::new(
            "orthogonality",
            0.05,
            Penalty::Orthogonality {
                mode: OrthogonalityMode::Spectral,
                rows: vec!["reference_logprobs".into()],
                center: true,
            },
        ),
        Regularizer::new(
            "gradient_penalty",
            0.01,
            Penalty::gradient_penalty(GradientOf::BaseLoss, 0.1),
        ),
    ];
    regs.into_iter().fold(
        Pipeline::new("regularized").base(BaseLoss::Custom(std::sync::Arc::new(
            |b: &mut CustomLossBuilder| {
                // Non-linear in the logprobs, so the gradient penalty has a gradient.
                let lp = b.logprobs();
                -lp.mean() + (lp.exp() * &lp).sum() * 0.1
            },
        ))),
        Pipeline::regularizer,
    )
}

async fn seeded(env: &common::Env, seed: u64) -> TrainingClient {
    let mut options = TrainingClientOptions::rank(4);
    options.lora.seed = Some(seed);
    env.service
        .create_lora_training_client_with(MODEL, options)
        .await
        .unwrap()
}

fn logprobs(out: &ForwardBackwardOutput) -> Vec<Vec<f32>> {
    out.loss_fn_outputs
        .iter()
        .map(|o| o["logprobs"].to_dense_f32(0.0).unwrap())
        .collect()
}

/// Datums with a reference (a smooth profile) and a pair (the logprobs shifted).
fn batch(base: &[Datum], lp: &[Vec<f32>]) -> Vec<Datum> {
    base.iter()
        .zip(lp)
        .map(|(d, lp)| {
            let n = lp.len();
            let reference: Vec<f32> = (0..n).map(|i| -1.0 - 0.3 * i as f32).collect();
            let pair: Vec<f32> = lp.iter().map(|x| x * 0.9 - 0.05).collect();
            let mut d = d.clone();
            d.loss_fn_inputs.insert(
                "reference_logprobs".into(),
                TensorData::vector_f32(reference),
            );
            d.loss_fn_inputs
                .insert("pair_logprobs".into(), TensorData::vector_f32(pair));
            d
        })
        .collect()
}

fn assert_close(a: &PipelineReport, b: &PipelineReport) {
    let close = |x: f64, y: f64, what: &str| {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs())),
            "{what}: server {x} vs client {y}"
        );
    };
    close(a.loss_total, b.loss_total, "loss_total");
    close(a.base.value, b.base.value, "base");
    close(
        a.total_grad_norm.unwrap(),
        b.total_grad_norm.unwrap(),
        "total grad norm",
    );
    for (x, y) in a.regularizers.iter().zip(&b.regularizers) {
        close(x.value, y.value, &x.name);
        close(x.grad_norm.unwrap(), y.grad_norm.unwrap(), &x.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_and_server_side_agree() {
    let env = start(None).await;
    let server_side = seeded(&env, 7).await;
    let client_side = seeded(&env, 7).await;
    let base: Vec<Datum> = [
        vec![5u32, 6, 7, 8, 9, 10, 11],
        vec![11, 12, 13, 14],
        vec![20, 3, 9, 30, 31, 2],
    ]
    .iter()
    .map(|s| datum(s))
    .collect();
    let lp = logprobs(
        &server_side
            .forward(base.clone(), LossFn::CrossEntropy)
            .await
            .unwrap(),
    );
    let data = batch(&base, &lp);
    let loss = pipeline().build().unwrap();
    let handle = env
        .service
        .create_custom_loss(loss.custom_loss())
        .await
        .unwrap();

    let on_server = server_side
        .forward_backward_custom_loss(data.clone(), &handle)
        .await
        .unwrap();
    let on_client = client_side
        .forward_backward_custom_expr(data.clone(), loss.custom_loss())
        .await
        .unwrap();
    let (a, b) = (
        loss.report(&on_server.metrics).unwrap(),
        loss.report(&on_client.metrics).unwrap(),
    );
    assert_close(&a, &b);
    assert!(
        (on_server.metrics["loss:sum"] - a.loss_total).abs() < 1e-6 * (1.0 + a.loss_total.abs())
    );
    assert!(
        (on_client.metrics["loss:sum"] - b.loss_total).abs() < 1e-6 * (1.0 + b.loss_total.abs())
    );
    // Every term is live: each has a value and (but orthogonality's reference row, which
    // is fixed) a gradient.
    for r in &a.regularizers {
        assert!(r.value.is_finite() && r.grad_norm.unwrap() > 0.0, "{r:?}");
    }

    // The same gradient reached the server either way: the same weights after a step.
    let step = AdamParams::with_learning_rate(5e-2);
    server_side.optim_step(step).await.unwrap();
    client_side.optim_step(step).await.unwrap();
    let after_a = logprobs(
        &server_side
            .forward(base.clone(), LossFn::CrossEntropy)
            .await
            .unwrap(),
    );
    let after_b = logprobs(
        &client_side
            .forward(base.clone(), LossFn::CrossEntropy)
            .await
            .unwrap(),
    );
    let moved = after_a
        .iter()
        .flatten()
        .zip(lp.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the step changed nothing");
    for (x, y) in after_a.iter().flatten().zip(after_b.iter().flatten()) {
        assert!(
            (x - y).abs() < 1e-4,
            "after one step: server-side {x} vs client-side {y}"
        );
    }
}

/// A datum lacking a field the pipeline reads is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_field_is_refused_before_sending() {
    let env = start(None).await;
    let training = seeded(&env, 1).await;
    let loss = pipeline().build().unwrap();
    let err = training
        .forward_backward_custom_expr(vec![datum(&[1, 2, 3])], loss.custom_loss())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), tinker_client::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("reference_logprobs"), "{err}");
}
