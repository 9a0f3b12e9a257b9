//! Each built-in loss's gradient, checked end to end through the model: the directional
//! derivative of `loss:sum` along the accumulated gradient, measured by central finite
//! differences on perturbed adapters, must equal the gradient's norm.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tinker_local::engine::{
    AdamStep, LoraSpec, Loss, LossInputs, ModelSpec, TrainExample, TrainableModel, builtin_models,
};

fn micro() -> ModelSpec {
    builtin_models()
        .into_iter()
        .find(|m| m.name.ends_with("micro"))
        .unwrap()
}

fn lora() -> LoraSpec {
    LoraSpec {
        rank: 4,
        seed: Some(5),
        train_attn: true,
        train_mlp: true,
        train_unembed: true,
    }
}

fn tokens() -> (Vec<u32>, Vec<i64>) {
    (vec![7, 100, 55, 300, 12, 9], vec![100, 55, 300, 12, 9, 44])
}

/// Writes `dir/adapter_model.safetensors` = saved adapter in `src` + `scale · grads`.
fn perturbed(src: &Path, dir: &Path, grads: &[(String, Vec<f32>)], scale: f32) {
    let bytes = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, g) in grads {
        let view = st.tensor(name).unwrap();
        let data: Vec<u8> = view
            .data()
            .chunks_exact(4)
            .zip(g)
            .flat_map(|(c, g)| {
                (f32::from_le_bytes([c[0], c[1], c[2], c[3]]) + scale * g).to_le_bytes()
            })
            .collect();
        out.push((name.clone(), view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView<'_>)> = out
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("adapter_model.safetensors"),
        safetensors::tensor::serialize(views, None).unwrap(),
    )
    .unwrap();
}

fn check(loss: Loss, make_inputs: impl Fn(&[f32]) -> LossInputs) {
    let spec = micro();
    let mut m = TrainableModel::new(&spec, &lora()).unwrap();
    let (toks, targets) = tokens();
    // Non-zero B first, so gradients reach every tensor.
    let ce = LossInputs {
        target_tokens: targets.clone(),
        ..Default::default()
    };
    m.forward_backward(
        &[TrainExample {
            tokens: toks.clone(),
            inputs: ce.clone(),
        }],
        &Loss::CrossEntropy,
        false,
    )
    .unwrap();
    m.optim_step(&AdamStep {
        learning_rate: 2e-2,
        ..AdamStep::default()
    })
    .unwrap();
    let lp = m
        .forward_backward(
            &[TrainExample {
                tokens: toks.clone(),
                inputs: ce,
            }],
            &Loss::CrossEntropy,
            true,
        )
        .unwrap()
        .logprobs
        .remove(0);
    let mut inputs = make_inputs(&lp);
    inputs.target_tokens = targets;
    let ex = vec![TrainExample {
        tokens: toks,
        inputs,
    }];
    let out = m.forward_backward(&ex, &loss, false).unwrap();
    assert!(out.metrics["loss:sum"].is_finite());
    let grads = m.accumulated_gradients().unwrap();
    let norm = grads
        .iter()
        .flat_map(|(_, g)| g)
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(norm > 1e-3, "{loss:?}: gradient vanished ({norm})");

    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    m.save_adapter(&base).unwrap();
    let eps = 2e-3 / norm as f32; // a step of length 2e-3 along the gradient
    let value_at = |scale: f32, name: &str| {
        let dir = tmp.path().join(name);
        perturbed(&base, &dir, &grads, scale);
        let mut probe = TrainableModel::new(&spec, &lora()).unwrap();
        probe.load_adapter(&dir).unwrap();
        probe.forward_backward(&ex, &loss, true).unwrap().metrics["loss:sum"]
    };
    let slope = (value_at(eps, "plus") - value_at(-eps, "minus")) / (2.0 * f64::from(eps));
    // d/dε L(θ + ε·g) at 0 = |g|².
    let want = norm * norm;
    assert!(
        (slope - want).abs() < 0.05 * want,
        "{loss:?}: finite-difference slope {slope} vs |g|² {want}"
    );
}

/// Sampler logprobs offset from the learner's so ratios fall inside and outside the clip range.
fn rl_inputs(lp: &[f32]) -> LossInputs {
    let offsets = [0.0, 0.7, -0.6, 0.05, 1.0, -1.0];
    let advantages = [1.0, 1.0, -0.5, 2.0, -1.5, 0.8];
    LossInputs {
        target_tokens: vec![],
        weights: None,
        advantages: Some(advantages.to_vec()),
        logprobs: Some(lp.iter().zip(offsets).map(|(l, o)| l + o).collect()),
    }
}

#[test]
fn cross_entropy_gradient() {
    check(Loss::CrossEntropy, |_| LossInputs {
        weights: Some(vec![1.0, 0.0, 2.0, 1.0, 0.5, 1.0]),
        ..Default::default()
    });
}

#[test]
fn importance_sampling_gradient() {
    check(Loss::ImportanceSampling, rl_inputs);
}

#[test]
fn ppo_gradient() {
    check(
        Loss::Ppo {
            clip_low: 0.8,
            clip_high: 1.2,
        },
        rl_inputs,
    );
}

#[test]
fn cispo_gradient() {
    // CISPO's objective holds the clipped ratio constant (stop-gradient), so its true
    // derivative differs from the gradient by design; check it only where the ratio is
    // clipped everywhere (then the clipped ratio is a constant and the two agree).
    check(
        Loss::Cispo {
            clip_low: 0.8,
            clip_high: 1.2,
        },
        |lp| {
            let mut i = rl_inputs(lp);
            i.logprobs = Some(
                lp.iter()
                    .enumerate()
                    .map(|(k, l)| if k % 2 == 0 { l + 1.0 } else { l - 1.0 })
                    .collect(),
            );
            i
        },
    );
}

#[test]
fn dro_gradient() {
    check(Loss::Dro { beta: 0.5 }, rl_inputs);
}

#[test]
fn cross_entropy_loss_is_minus_weighted_logprob_sum() {
    let mut m = TrainableModel::new(&micro(), &lora()).unwrap();
    let (toks, targets) = tokens();
    let w = vec![1.0, 0.0, 2.0, 1.0, 0.5, 1.0];
    let ex = TrainExample {
        tokens: toks,
        inputs: LossInputs {
            target_tokens: targets,
            weights: Some(w.clone()),
            ..Default::default()
        },
    };
    let out = m
        .forward_backward(&[ex.clone(), ex], &Loss::CrossEntropy, true)
        .unwrap();
    let want: f64 = out
        .logprobs
        .iter()
        .flat_map(|lp| lp.iter().zip(&w))
        .map(|(l, w)| -f64::from(l * w))
        .sum();
    assert!((out.metrics["loss:sum"] - want).abs() < 1e-3);
    assert!(out.logprobs[0].iter().all(|&l| l < 0.0));
}
