//! End-to-end tests of server-side custom losses against an in-process tinker-local: the
//! builder's graphs equal real torch.fx graphs, a custom PPO equals the built-in one, a
//! custom loss trains, and the typed refusals.

use tinker_testkit::local as common;

use std::error::Error as _;

use common::{MODEL, datum, start, start_with, training};
use tinker_client::custom_loss::{CustomLoss, CustomLossError, CustomLossHandle, Expr, Rank};
use tinker_client::{ErrorKind, FailureCategory, TrainingClient, TrainingClientOptions};
use tinker_types::custom_loss::{CustomLossGraph, CustomLossInput};
use tinker_types::{AdamParams, Datum, LossFn, ModelInput, SamplingParams, TensorData};

/// A fixture written by `tinker-local/tests/fixtures/custom_loss/generate.py`: a Python loss
/// traced by torch.fx and encoded by the tinker 0.38 SDK.
fn fixture(name: &str) -> (Vec<CustomLossInput>, CustomLossGraph) {
    let path = format!(
        "{}/../tinker-local/tests/fixtures/custom_loss/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (
        serde_json::from_value(f["inputs"].clone()).unwrap(),
        serde_json::from_value(f["graph"].clone()).unwrap(),
    )
}

fn no_metrics() -> Vec<(String, Expr)> {
    Vec::new()
}

fn ppo_loss() -> CustomLoss {
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

fn neg_ll_loss() -> CustomLoss {
    let mut b = CustomLoss::builder("neg_ll");
    let lp = b.logprobs();
    let w = b.input("weights", Rank::R1);
    let loss = -(&lp * &w).sum();
    b.build(loss.clone(), [("custom/neg_ll:sum", loss)])
        .unwrap()
}

/// The builder emits, node for node, what torch.fx + the SDK's encoder emit for the same
/// Python loss (see the fixtures' generator for the Python source).
#[test]
fn builder_graphs_equal_sdk_traced_graphs() {
    let is = {
        let mut b = CustomLoss::builder("importance_sampling");
        let lp = b.logprobs();
        let old = b.input("sampling_logprobs", Rank::R1);
        let adv = b.input("advantages", Rank::R1);
        let ratio = (&lp - &old).exp();
        let loss = -(&ratio * &adv).sum();
        b.build(loss, [("custom/ratio:mean", ratio.mean())])
            .unwrap()
    };
    let cispo = {
        let mut b = CustomLoss::builder("cispo");
        let lp = b.logprobs();
        let old = b.input("sampling_logprobs", Rank::R1);
        let adv = b.input("advantages", Rank::R1);
        let ratio = (&lp - &old).exp();
        let weight = ratio.clamp(0.8, 1.2).detach();
        let loss = -(&weight * &lp * &adv).sum();
        b.build(loss, [("custom/clip_weight:mean", weight.mean())])
            .unwrap()
    };
    let kitchen_sink = {
        let mut b = CustomLoss::builder("kitchen_sink");
        let lp = b.logprobs();
        let w = b.input("w", Rank::R1);
        let scale = b.input("scale", Rank::R0);
        let m = b.input("m", Rank::R2);
        let a = lp.abs();
        let bb = (&a + 1.0).log();
        let c = lp.gt(&w).select(&bb, 1.0 - &bb);
        let d = (&a + 1.0).sqrt() / &scale + lp.sigmoid() * w.tanh();
        let e = lp.maximum(&w).pow(2.0) + lp.clamp_max(f64::INFINITY);
        let f = (&m * &lp).mean_dim(0, false);
        let loss = (&c + &d + &e + &f).sum() + a.powi(2).mean();
        b.build(
            loss,
            [("custom/f:mean", f.mean()), ("custom/c/sum:sum", c.sum())],
        )
        .unwrap()
    };
    for (loss, name) in [
        (neg_ll_loss(), "neg_ll"),
        (is, "importance_sampling"),
        (ppo_loss(), "ppo"),
        (cispo, "cispo"),
        (kitchen_sink, "kitchen_sink"),
    ] {
        let (inputs, graph) = fixture(name);
        assert_eq!(loss.inputs(), &inputs[..], "{name}");
        assert_eq!(
            serde_json::to_value(loss.graph()).unwrap(),
            serde_json::to_value(&graph).unwrap(),
            "{name}"
        );
        // The traced graph passes the client-side checks as it is.
        assert_eq!(
            CustomLoss::from_graph(name, inputs, graph).unwrap().graph(),
            loss.graph()
        );
    }
}

async fn seeded_training(env: &common::Env, seed: u64) -> TrainingClient {
    let mut options = TrainingClientOptions::rank(4);
    options.lora.seed = Some(seed);
    env.service
        .create_lora_training_client_with(MODEL, options)
        .await
        .unwrap()
}

fn sequences() -> Vec<Vec<u32>> {
    vec![
        vec![5, 6, 7, 8, 9, 10, 11],
        vec![11, 12, 13, 14],
        vec![20, 3, 9, 30, 31, 2],
    ]
}

/// Sampler logprobs shifted from the learner's so the ratio `exp(lp − q)` lands below, inside
/// and above the clip range; advantages of both signs.
fn rl_inputs(lp: &[f32], datum_index: usize) -> (Vec<f32>, Vec<f32>) {
    const SHIFT: [f32; 5] = [-0.4, 0.3, 0.05, -0.1, 0.5];
    let q = lp
        .iter()
        .enumerate()
        .map(|(i, l)| l + SHIFT[(i + datum_index) % SHIFT.len()])
        .collect();
    let adv = (0..lp.len())
        .map(|i| {
            if (i + datum_index).is_multiple_of(3) {
                -0.8
            } else {
                1.3
            }
        })
        .collect();
    (q, adv)
}

fn with_inputs(base: &Datum, inputs: &[(&str, Vec<f32>)]) -> Datum {
    let mut d = base.clone();
    for (name, values) in inputs {
        d.loss_fn_inputs
            .insert((*name).to_owned(), TensorData::vector_f32(values.clone()));
    }
    d
}

fn logprobs(out: &tinker_types::ForwardBackwardOutput) -> Vec<Vec<f32>> {
    out.loss_fn_outputs
        .iter()
        .map(|o| o["logprobs"].to_dense_f32(0.0).unwrap())
        .collect()
}

/// A custom PPO (uploaded from the real torch.fx graph) equals the built-in `ppo` on the
/// same data: loss, metrics, and the weights after one optimizer step (same logprobs, same
/// samples).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_ppo_equals_builtin_ppo() {
    let env = start(None).await;
    assert!(
        env.service
            .client_config()
            .await
            .unwrap()
            .custom_loss_server_side
    );
    let builtin = seeded_training(&env, 11).await;
    let custom = seeded_training(&env, 11).await;
    let base: Vec<Datum> = sequences().iter().map(|s| datum(s)).collect();
    let lp = logprobs(
        &builtin
            .forward(base.clone(), LossFn::CrossEntropy)
            .await
            .unwrap(),
    );
    let mut builtin_data = Vec::new();
    let mut custom_data = Vec::new();
    for (i, (d, lp)) in base.iter().zip(&lp).enumerate() {
        let (q, adv) = rl_inputs(lp, i);
        builtin_data.push(with_inputs(
            d,
            &[("logprobs", q.clone()), ("advantages", adv.clone())],
        ));
        custom_data.push(with_inputs(
            d,
            &[("sampling_logprobs", q), ("advantages", adv)],
        ));
    }
    let (inputs, graph) = fixture("ppo");
    let traced = CustomLoss::from_graph("ppo", inputs, graph).unwrap();
    assert_eq!(traced.graph(), ppo_loss().graph());
    let handle = env.service.create_custom_loss(&traced).await.unwrap();

    let a = builtin
        .forward_backward(builtin_data.clone(), LossFn::Ppo)
        .await
        .unwrap();
    let b = custom
        .forward_backward_custom_loss(custom_data.clone(), &handle)
        .await
        .unwrap();
    let (la, lb) = (a.metrics["loss:sum"], b.metrics["loss:sum"]);
    assert!((la - lb).abs() < 1e-5, "built-in {la} vs custom {lb}");
    assert_eq!(logprobs(&a), logprobs(&b));
    // The custom metrics, recomputed from the returned logprobs: `:mean` averaged over
    // datums, `:sum` summed.
    let (mut ratio_mean, mut x_sum) = (0.0, 0.0);
    for (i, row) in logprobs(&b).iter().enumerate() {
        let q = custom_data[i].loss_fn_inputs["sampling_logprobs"]
            .to_dense_f32(0.0)
            .unwrap();
        let ratios: Vec<f64> = row
            .iter()
            .zip(&q)
            .map(|(l, q)| f64::from(l - q).exp())
            .collect();
        ratio_mean += ratios.iter().sum::<f64>() / ratios.len() as f64 / 3.0;
        x_sum += ratios.iter().map(|r| 2.0 * r).sum::<f64>();
    }
    assert!((b.metrics["custom/ratio:mean"] - ratio_mean).abs() < 1e-4);
    assert!((b.metrics["custom/x:sum"] - x_sum).abs() < 1e-3);
    assert!(
        b.metrics
            .keys()
            .all(|k| k == "loss:sum" || k.starts_with("custom/"))
    );

    // Same gradients ⇒ same weights after one step.
    let step = AdamParams::with_learning_rate(5e-2);
    builtin.optim_step(step).await.unwrap();
    custom.optim_step(step).await.unwrap();
    let after_a = logprobs(
        &builtin
            .forward(base.clone(), LossFn::CrossEntropy)
            .await
            .unwrap(),
    );
    let after_b = logprobs(
        &custom
            .forward(base.clone(), LossFn::CrossEntropy)
            .await
            .unwrap(),
    );
    let mut moved = 0.0f32;
    for ((ra, rb), r0) in after_a.iter().zip(&after_b).zip(&lp) {
        for ((x, y), z) in ra.iter().zip(rb).zip(r0) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            moved = moved.max((x - z).abs());
        }
    }
    assert!(moved > 1e-3, "the step changed nothing ({moved})");
    let mut params = SamplingParams::with_max_tokens(12);
    params.seed = Some(5);
    let prompt = ModelInput::from_tokens(&[5, 6, 7]);
    let mut samples = Vec::new();
    for tc in [&builtin, &custom] {
        let sampler = tc.save_weights_and_get_sampling_client().await.unwrap();
        let out = sampler
            .sample(prompt.clone(), 2, params.clone())
            .await
            .unwrap();
        samples.push(
            out.sequences
                .into_iter()
                .map(|s| s.tokens)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(samples[0], samples[1]);
    env.server.shutdown().await;
}

/// A custom loss trains: negative log-likelihood written with the builder falls over a few
/// steps, and its `:sum` metric equals the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_loss_trains() {
    let env = start(None).await;
    let tc = training(&env).await;
    let handle = env
        .service
        .create_custom_loss(&neg_ll_loss())
        .await
        .unwrap();
    assert_eq!(handle.name(), "neg_ll");
    let data: Vec<Datum> = sequences().iter().map(|s| datum(s)).collect();
    let mut losses = Vec::new();
    for _ in 0..4 {
        let out = tc
            .forward_backward_custom_loss(data.clone(), &handle)
            .await
            .unwrap();
        let loss = out.metrics["loss:sum"];
        assert!((out.metrics["custom/neg_ll:sum"] - loss).abs() < 1e-6 * (1.0 + loss.abs()));
        losses.push(loss);
        tc.optim_step(AdamParams::with_learning_rate(3e-2))
            .await
            .unwrap();
    }
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "loss did not fall: {losses:?}"
    );
    // Same data under the built-in cross entropy gives the same loss (weights are all 1).
    let ce = tc
        .forward(data.clone(), LossFn::CrossEntropy)
        .await
        .unwrap();
    let custom = tc.forward_custom_loss(data, &handle).await.unwrap();
    let (x, y) = (ce.metrics["loss:sum"], custom.metrics["loss:sum"]);
    assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
    env.server.shutdown().await;
}

/// With the flag off the server advertises it and the client refuses with a typed error,
/// without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refused_when_the_server_flag_is_off() {
    let env = start_with(None, |c| c.custom_loss_server_side = false).await;
    assert!(
        !env.service
            .client_config()
            .await
            .unwrap()
            .custom_loss_server_side
    );
    let err = env
        .service
        .create_custom_loss(&neg_ll_loss())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let source = err
        .source()
        .and_then(|s| s.downcast_ref::<CustomLossError>());
    assert_eq!(source, Some(&CustomLossError::ServerSideDisabled));
    assert!(
        env.server
            .audit_records()
            .iter()
            .all(|r| !r.event.contains("custom"))
    );
    env.server.shutdown().await;
}

fn custom_loss_error(err: &tinker_client::Error) -> CustomLossError {
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    err.source()
        .and_then(|s| s.downcast_ref::<CustomLossError>())
        .cloned()
        .expect("a CustomLossError source")
}

/// Data that does not fit the loss, and handles of another session, are refused before
/// anything is sent; the training client stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_is_refused_before_sending() {
    let env = start(None).await;
    let tc = training(&env).await;
    let handle = env.service.create_custom_loss(&ppo_loss()).await.unwrap();
    let d = datum(&[1, 2, 3, 4]);
    let err = tc
        .forward_backward_custom_loss(
            vec![with_inputs(&d, &[("advantages", vec![1.0; 3])])],
            &handle,
        )
        .await
        .unwrap_err();
    assert_eq!(
        custom_loss_error(&err),
        CustomLossError::MissingInput {
            datum: 0,
            key: "sampling_logprobs".into()
        }
    );
    let good = with_inputs(
        &d,
        &[
            ("advantages", vec![1.0; 3]),
            ("sampling_logprobs", vec![-1.0; 3]),
        ],
    );
    let mut bad_rank = good.clone();
    bad_rank.loss_fn_inputs.insert(
        "advantages".into(),
        TensorData::from_f32(vec![1.0; 3], vec![3, 1]).unwrap(),
    );
    let err = tc
        .forward_backward_custom_loss(vec![good.clone(), bad_rank], &handle)
        .await
        .unwrap_err();
    assert_eq!(
        custom_loss_error(&err),
        CustomLossError::InputRank {
            datum: 1,
            key: "advantages".into(),
            rank: 2,
            declared: 1
        }
    );

    // A handle of another session.
    let other = start(None).await;
    let other_handle: CustomLossHandle =
        other.service.create_custom_loss(&ppo_loss()).await.unwrap();
    let err = tc
        .forward_backward_custom_loss(vec![good.clone()], &other_handle)
        .await
        .unwrap_err();
    assert!(matches!(
        custom_loss_error(&err),
        CustomLossError::WrongSession { .. }
    ));
    // Nothing was sent for the refused calls: the next request is the model's seq_id 1.
    let out = tc
        .forward_backward_custom_loss(vec![good], &handle)
        .await
        .unwrap();
    assert!(out.metrics["loss:sum"].is_finite());
    let executed: Vec<i64> = env
        .server
        .executions()
        .into_iter()
        .filter(|((m, _), _)| m == tc.model_id())
        .map(|((_, s), _)| s)
        .collect();
    assert_eq!(executed, vec![1]);
    other.server.shutdown().await;
    env.server.shutdown().await;
}

/// Each distinct loss is created once per session (same handle, no second request); a new
/// loss takes the next `custom_loss_seq_id`; a graph tinker-local cannot run is refused
/// through the future as a user error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_once_per_session_and_refusals_are_user_errors() {
    let env = start(None).await;
    let a = env.service.create_custom_loss(&ppo_loss()).await.unwrap();
    let again = env.service.create_custom_loss(&ppo_loss()).await.unwrap();
    assert_eq!(a, again);
    let b = env
        .service
        .create_custom_loss(&neg_ll_loss())
        .await
        .unwrap();
    assert_ne!(a.loss_id(), b.loss_id());
    assert!(a.loss_id().ends_with(":loss:0"), "{}", a.loss_id());
    assert!(b.loss_id().ends_with(":loss:1"), "{}", b.loss_id());
    assert_eq!(a.session_id(), env.service.session_id());

    // [T, K] logprobs pass the SDK's checks, but tinker-local's targets are 1-D.
    let b2 = CustomLoss::builder_with_logprobs("wide", Rank::R2);
    let lp = b2.logprobs();
    let wide = b2.build(lp.sum(), no_metrics()).unwrap();
    let err = env.service.create_custom_loss(&wide).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RequestFailed, "{err}");
    assert_eq!(err.category(), Some(FailureCategory::User));
    assert!(err.to_string().contains("rank 2"), "{err}");
    // The refused loss was not cached: asking again asks the server again (seq 3).
    let err = env.service.create_custom_loss(&wide).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RequestFailed);
    env.server.shutdown().await;
}

/// Transient failures of the upload are retried with the same `custom_loss_seq_id`: the
/// loss is created once, as seq 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_survives_transient_failures() {
    let env = start(Some(
        "script=create_custom_loss#1:503;create_custom_loss#2:0",
    ))
    .await;
    let handle = env.service.create_custom_loss(&ppo_loss()).await.unwrap();
    assert!(
        handle.loss_id().ends_with(":loss:0"),
        "{}",
        handle.loss_id()
    );
    let tc = training(&env).await;
    let d = with_inputs(
        &datum(&[3, 4, 5]),
        &[
            ("advantages", vec![1.0; 2]),
            ("sampling_logprobs", vec![-1.0; 2]),
        ],
    );
    let out = tc
        .forward_backward_custom_loss(vec![d], &handle)
        .await
        .unwrap();
    assert!(out.metrics.contains_key("custom/ratio:mean"));
    env.server.shutdown().await;
}
