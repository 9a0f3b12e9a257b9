//! Model-level checks of the engine: gradient flow into every LoRA tensor, KV-cached sampling
//! against a full forward, and adapter / optimizer checkpoints.

use tinker_local::engine::{
    AdamStep, LoraSpec, Loss, LossInputs, ModelSpec, SampleSpec, SamplerModel, TrainExample,
    TrainableModel, builtin_models,
};

fn micro() -> ModelSpec {
    builtin_models()
        .into_iter()
        .find(|m| m.name.ends_with("micro"))
        .unwrap()
}

fn lora(rank: usize) -> LoraSpec {
    LoraSpec {
        rank,
        seed: Some(3),
        train_attn: true,
        train_mlp: true,
        train_unembed: true,
    }
}

/// A next-token datum for `seq` (input = seq[..n-1], targets = seq[1..]).
fn datum(seq: &[u32]) -> TrainExample {
    let n = seq.len() - 1;
    TrainExample {
        tokens: seq[..n].to_vec(),
        inputs: LossInputs {
            target_tokens: seq[1..].iter().map(|&t| i64::from(t)).collect(),
            weights: Some(vec![1.0; n]),
            ..Default::default()
        },
    }
}

fn batch() -> Vec<TrainExample> {
    vec![
        datum(&[5, 17, 300, 42, 9, 17, 300, 42]),
        datum(&[900, 3, 3, 77, 12]),
    ]
}

fn step() -> AdamStep {
    AdamStep {
        learning_rate: 1e-2,
        ..AdamStep::default()
    }
}

fn sample_spec(prompt: Vec<u32>) -> SampleSpec {
    SampleSpec {
        prompt,
        num_samples: 1,
        max_tokens: 12,
        temperature: 1.0,
        seed: Some(11),
        stop_at_eos: false,
        prompt_logprobs: true,
        ..SampleSpec::default()
    }
}

/// Debug text of a result: compares outputs holding NaN (prompt logprob 0).
fn dbg_of<T: std::fmt::Debug, E: std::fmt::Debug>(r: Result<T, E>) -> String {
    format!("{:?}", r.unwrap())
}

/// A model whose adapters are non-zero (a couple of steps taken).
fn trained() -> TrainableModel {
    let mut m = TrainableModel::new(&micro(), &lora(4)).unwrap();
    for _ in 0..2 {
        m.forward_backward(&batch(), &Loss::CrossEntropy, false)
            .unwrap();
        m.optim_step(&step()).unwrap();
    }
    m
}

#[test]
fn every_lora_tensor_gets_a_gradient() {
    let mut m = trained();
    m.forward_backward(&batch(), &Loss::CrossEntropy, false)
        .unwrap();
    let grads = m.accumulated_gradients().unwrap();
    // 2 layers × 7 projections + lm_head, A and B each.
    assert_eq!(grads.len(), 2 * (2 * 7 + 1));
    for (name, g) in &grads {
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(norm > 0.0 && norm.is_finite(), "no gradient reached {name}");
    }
}

#[test]
fn gradients_accumulate_until_the_step() {
    let mut m = trained();
    m.forward_backward(&batch(), &Loss::CrossEntropy, false)
        .unwrap();
    let once = m.accumulated_gradients().unwrap();
    m.forward_backward(&batch(), &Loss::CrossEntropy, false)
        .unwrap();
    let twice = m.accumulated_gradients().unwrap();
    for ((_, a), (_, b)) in once.iter().zip(&twice) {
        for (x, y) in a.iter().zip(b) {
            assert!((2.0 * x - y).abs() <= 1e-4 * (1.0 + y.abs()));
        }
    }
    // forward_only adds nothing; optim_step clears.
    m.forward_backward(&batch(), &Loss::CrossEntropy, true)
        .unwrap();
    assert_eq!(m.accumulated_gradients().unwrap(), twice);
    m.optim_step(&step()).unwrap();
    assert!(m.accumulated_gradients().is_none());
}

#[test]
fn kv_cached_sampling_matches_a_full_forward() {
    let mut m = trained();
    let prompt = vec![5, 17, 300, 42, 9];
    let out = m.sampler().sample(&sample_spec(prompt.clone())).unwrap();
    let generated = &out.sequences[0].tokens;
    assert_eq!(generated.len(), 12);
    let full: Vec<u32> = prompt.iter().chain(generated).copied().collect();
    let fwd = m
        .forward_backward(&[datum(&full)], &Loss::CrossEntropy, true)
        .unwrap();
    let lp = &fwd.logprobs[0];
    // Sampled-token logprobs (temperature 1) come from the cache; the forward has no cache
    // and uses the differentiable (unfused) ops.
    for (i, &s) in out.sequences[0].logprobs.iter().enumerate() {
        let f = lp[prompt.len() - 1 + i];
        assert!(
            (s - f).abs() < 1e-4,
            "generated token {i}: cached {s} vs full {f}"
        );
    }
    let plp = out.prompt_logprobs.unwrap();
    assert!(plp[0].is_nan());
    for i in 1..prompt.len() {
        assert!((plp[i] - lp[i - 1]).abs() < 1e-4, "prompt token {i}");
    }
}

#[test]
fn adapter_save_zero_load_restores_identical_logprobs() {
    let m = trained();
    let dir = tempfile::tempdir().unwrap();
    let bytes = m.save_adapter(dir.path()).unwrap();
    assert!(bytes > 0);
    assert!(dir.path().join("adapter_model.safetensors").exists());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["r"], 4);
    assert_eq!(config["peft_type"], "LORA");

    let probe = batch();
    let mut m = m;
    let want = m
        .forward_backward(&probe, &Loss::CrossEntropy, true)
        .unwrap();
    let mut fresh = TrainableModel::new(&micro(), &lora(4)).unwrap();
    let before = fresh
        .forward_backward(&probe, &Loss::CrossEntropy, true)
        .unwrap();
    assert_ne!(
        before.logprobs, want.logprobs,
        "a fresh adapter should differ from the trained one"
    );
    fresh.load_adapter(dir.path()).unwrap();
    let after = fresh
        .forward_backward(&probe, &Loss::CrossEntropy, true)
        .unwrap();
    assert_eq!(after.logprobs, want.logprobs);

    // A sampler built from the directory samples exactly like the live model's snapshot.
    let spec = SampleSpec {
        temperature: 0.8,
        num_samples: 3,
        ..sample_spec(vec![5, 17])
    };
    let from_dir = SamplerModel::from_adapter_dir(&micro(), dir.path()).unwrap();
    assert_eq!(
        dbg_of(from_dir.sample(&spec)),
        dbg_of(m.sampler().sample(&spec))
    );

    // Wrong rank is a user error.
    let mut other = TrainableModel::new(&micro(), &lora(2)).unwrap();
    let err = other.load_adapter(dir.path()).unwrap_err();
    assert!(err.is_user_error(), "{err}");
    let missing = other.load_adapter(&dir.path().join("nope")).unwrap_err();
    assert!(
        missing.is_user_error() && missing.is_not_found(),
        "{missing}"
    );
}

#[test]
fn sampler_snapshot_is_frozen() {
    let mut m = trained();
    let snap = m.sampler();
    let spec = SampleSpec {
        temperature: 0.0,
        ..sample_spec(vec![5, 17, 300])
    };
    let before = snap.sample(&spec).unwrap();
    m.forward_backward(&batch(), &Loss::CrossEntropy, false)
        .unwrap();
    m.optim_step(&AdamStep {
        learning_rate: 0.5,
        ..step()
    })
    .unwrap();
    assert_eq!(dbg_of(snap.sample(&spec)), format!("{before:?}"));
    assert_ne!(
        m.sampler().sample(&spec).unwrap().sequences[0].logprobs,
        before.sequences[0].logprobs
    );
}

#[test]
fn optimizer_state_round_trips() {
    let mut a = trained();
    let dir = tempfile::tempdir().unwrap();
    a.save_adapter(dir.path()).unwrap();
    a.save_optimizer(dir.path()).unwrap();
    let mut b = TrainableModel::new(&micro(), &lora(4)).unwrap();
    b.load_adapter(dir.path()).unwrap();
    b.load_optimizer(dir.path()).unwrap();
    assert_eq!(b.optimizer_steps(), 2);
    for m in [&mut a, &mut b] {
        m.forward_backward(&batch(), &Loss::CrossEntropy, false)
            .unwrap();
        m.optim_step(&step()).unwrap();
    }
    let probe = batch();
    let la = a
        .forward_backward(&probe, &Loss::CrossEntropy, true)
        .unwrap();
    let lb = b
        .forward_backward(&probe, &Loss::CrossEntropy, true)
        .unwrap();
    assert_eq!(la.logprobs, lb.logprobs);
    // Without the optimizer state the third step differs.
    let mut c = TrainableModel::new(&micro(), &lora(4)).unwrap();
    c.load_adapter(dir.path()).unwrap();
    c.forward_backward(&batch(), &Loss::CrossEntropy, false)
        .unwrap();
    c.optim_step(&step()).unwrap();
    assert_ne!(
        c.forward_backward(&probe, &Loss::CrossEntropy, true)
            .unwrap()
            .logprobs,
        la.logprobs
    );
}

#[test]
fn base_weights_are_deterministic_and_lora_starts_neutral() {
    let mut a = TrainableModel::new(&micro(), &lora(4)).unwrap();
    let mut b = TrainableModel::new(
        &micro(),
        &LoraSpec {
            seed: Some(99),
            ..lora(8)
        },
    )
    .unwrap();
    let la = a
        .forward_backward(&batch(), &Loss::CrossEntropy, true)
        .unwrap();
    let lb = b
        .forward_backward(&batch(), &Loss::CrossEntropy, true)
        .unwrap();
    assert_eq!(
        la.logprobs, lb.logprobs,
        "B = 0 at init: every adapter starts as the base model"
    );
    let base = SamplerModel::base(&micro()).unwrap();
    let spec = SampleSpec {
        temperature: 0.0,
        ..sample_spec(vec![5, 17, 300])
    };
    assert_eq!(
        dbg_of(base.sample(&spec)),
        dbg_of(a.sampler().sample(&spec))
    );
}

#[test]
fn bad_inputs_are_user_errors() {
    let mut m = TrainableModel::new(&micro(), &lora(4)).unwrap();
    let mut bad = datum(&[1, 2, 3]);
    bad.tokens[0] = 5000;
    let err = m
        .forward_backward(&[bad], &Loss::CrossEntropy, false)
        .unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("out of range"),
        "{err}"
    );
    let mut short = datum(&[1, 2, 3]);
    short.inputs.target_tokens.pop();
    assert!(
        m.forward_backward(&[short], &Loss::CrossEntropy, false)
            .unwrap_err()
            .is_user_error()
    );
    let err = m
        .forward_backward(&[datum(&[1, 2, 3])], &Loss::ImportanceSampling, false)
        .unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("advantages"),
        "{err}"
    );
    assert!(
        m.forward_backward(&[], &Loss::CrossEntropy, false)
            .unwrap_err()
            .is_user_error()
    );
    let err = m
        .optim_step(&AdamStep {
            beta1: 1.5,
            ..step()
        })
        .unwrap_err();
    assert!(err.is_user_error());
    assert!(
        TrainableModel::new(&micro(), &lora(0))
            .unwrap_err()
            .is_user_error()
    );
    let err = m
        .sampler()
        .sample(&SampleSpec {
            prompt: vec![],
            ..sample_spec(vec![])
        })
        .unwrap_err();
    assert!(err.is_user_error());
}

#[test]
fn batching_and_padding_do_not_change_logprobs() {
    let mut m = trained();
    let all = batch();
    let together = m.forward_backward(&all, &Loss::CrossEntropy, true).unwrap();
    for (i, ex) in all.iter().enumerate() {
        let alone = m
            .forward_backward(std::slice::from_ref(ex), &Loss::CrossEntropy, true)
            .unwrap();
        for (a, b) in alone.logprobs[0].iter().zip(&together.logprobs[i]) {
            assert!((a - b).abs() < 1e-5, "datum {i}: {a} alone vs {b} batched");
        }
    }
}

#[test]
fn thread_safety_contract() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync + Clone>() {}
    send::<TrainableModel>();
    send_sync::<SamplerModel>();
}
