//! Hugging Face model folders, one tiny model per architecture (Llama, Qwen2, Qwen3, Mistral;
//! random weights, real `config.json` layouts, the micro tokenizer): forward logits against
//! an independent numpy reference, LoRA training, PEFT adapters, and serving over HTTP.
//!
//! `fixtures/hf_reference.json` comes from `scripts/reference/hf_forward.py`, run on the
//! folders `write_reference_models` writes (see `scripts/reference/README.md`).

use crate::common;

use std::path::Path;

use serde_json::{Value, json};
use tinker_local::engine::{
    AdamStep, HfArch, LoraSpec, Loss, LossInputs, ModelSpec, SampleSpec, SamplerModel, TinyHfModel,
    TrainExample, TrainableModel, WeightsDtype, hf_model,
};

const REFERENCE: &str = include_str!("../fixtures/hf_reference.json");

/// Writes the tiny model of `arch` into `dir` and registers it.
fn tiny(arch: HfArch, dir: &Path) -> ModelSpec {
    TinyHfModel::tiny(arch).write(dir).unwrap();
    hf_model(
        &format!("tiny/{}", arch.model_type()),
        dir.to_str().unwrap(),
    )
    .unwrap()
}

fn lora() -> LoraSpec {
    LoraSpec {
        rank: 4,
        seed: Some(1),
        train_attn: true,
        train_mlp: true,
        train_unembed: true,
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn close(got: f32, want: f32, what: &str) {
    assert!(
        (got - want).abs() <= 2e-3 * (1.0 + want.abs()),
        "{what}: got {got}, reference {want}"
    );
}

/// Regenerates the reference inputs: `TINKER_HF_MODELS_OUT=DIR cargo test -p tinker-local
/// --test it -- --ignored hf_models::write_reference_models`.
#[test]
#[ignore = "writes the model folders the numpy reference reads"]
fn write_reference_models() {
    let out = std::env::var("TINKER_HF_MODELS_OUT").expect("set TINKER_HF_MODELS_OUT");
    for arch in HfArch::ALL {
        TinyHfModel::tiny(arch)
            .write(&Path::new(&out).join(arch.model_type()))
            .unwrap();
    }
}

/// Writes, per architecture, a tiny model folder (`base/`), a LoRA adapter trained on it in
/// PEFT's layout (`adapter/`) and the target logprobs tinker-local computes with that adapter
/// (`expected.json`), for `scripts/reference/peft_check.py`, which loads them with
/// `transformers` + `peft` (see `scripts/reference/README.md`):
/// `TINKER_PEFT_OUT=DIR cargo test -p tinker-local --test it -- --ignored hf_models::write_peft_check`.
#[test]
#[ignore = "writes the folders the PEFT check reads"]
fn write_peft_check() {
    let out =
        std::path::PathBuf::from(std::env::var("TINKER_PEFT_OUT").expect("set TINKER_PEFT_OUT"));
    for arch in HfArch::ALL {
        let dir = out.join(arch.model_type());
        let spec = tiny(arch, &dir.join("base"));
        let mut model = TrainableModel::new(&spec, &lora()).unwrap();
        let step = AdamStep {
            learning_rate: 2e-2,
            ..AdamStep::default()
        };
        for _ in 0..3 {
            model
                .forward_backward(&pattern_batch(), &Loss::CrossEntropy, false)
                .unwrap();
            model.optim_step(&step).unwrap();
        }
        model.save_adapter(&dir.join("adapter")).unwrap();
        let batch = pattern_batch();
        let fwd = model
            .forward_backward(&batch, &Loss::CrossEntropy, true)
            .unwrap();
        let expected = json!({
            "tokens": batch.iter().map(|e| e.tokens.clone()).collect::<Vec<_>>(),
            "targets": batch.iter().map(|e| e.inputs.target_tokens.clone()).collect::<Vec<_>>(),
            "logprobs": fwd.logprobs,
        });
        std::fs::write(
            dir.join("expected.json"),
            serde_json::to_vec(&expected).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn forward_matches_the_numpy_reference() {
    let reference: Value = serde_json::from_str(REFERENCE).unwrap();
    let tokens: Vec<u32> = reference["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let stride = reference["vocab_stride"].as_u64().unwrap() as usize;
    for arch in HfArch::ALL {
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny(arch, dir.path());
        let want = &reference["models"][arch.model_type()];
        let name = arch.model_type();

        // Sampling path (fused kernels): the prompt's logprobs.
        let sampler = SamplerModel::base(&spec).unwrap();
        let out = sampler
            .sample(&SampleSpec {
                prompt: tokens.clone(),
                max_tokens: 1,
                seed: Some(1),
                prompt_logprobs: true,
                ..SampleSpec::default()
            })
            .unwrap();
        let got = out.prompt_logprobs.unwrap();
        for (j, w) in floats(&want["prompt_logprobs"]).into_iter().enumerate() {
            close(got[j + 1], w, &format!("{name} prompt logprob {}", j + 1));
        }

        // Training path (differentiable kernels): logprobs of every `stride`-th vocabulary
        // entry at every position, i.e. logits minus logsumexp.
        let lse = floats(&want["logsumexp"]);
        let logits: Vec<Vec<f32>> = want["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let columns = logits[0].len();
        let batch: Vec<TrainExample> = (0..columns)
            .map(|c| TrainExample {
                tokens: tokens.clone(),
                inputs: LossInputs {
                    target_tokens: vec![(c * stride) as i64; tokens.len()],
                    weights: Some(vec![1.0; tokens.len()]),
                    ..Default::default()
                },
            })
            .collect();
        let mut model = TrainableModel::new(&spec, &lora()).unwrap();
        let fwd = model
            .forward_backward(&batch, &Loss::CrossEntropy, true)
            .unwrap();
        for (c, row) in fwd.logprobs.iter().enumerate() {
            for (pos, &lp) in row.iter().enumerate() {
                let w = logits[pos][c] - lse[pos];
                close(lp, w, &format!("{name} logprob of {} at {pos}", c * stride));
            }
        }
    }
}

/// A batch that repeats a short pattern, so a LoRA can learn it.
fn pattern_batch() -> Vec<TrainExample> {
    [[5u32, 17, 300, 42], [911, 7, 64, 2]]
        .iter()
        .map(|p| {
            let seq: Vec<u32> = p.iter().cycle().take(17).copied().collect();
            TrainExample {
                tokens: seq[..16].to_vec(),
                inputs: LossInputs {
                    target_tokens: seq[1..].iter().map(|&t| i64::from(t)).collect(),
                    weights: Some(vec![1.0; 16]),
                    ..Default::default()
                },
            }
        })
        .collect()
}

#[test]
fn lora_training_lowers_the_loss_on_every_architecture() {
    let batch = pattern_batch();
    let step = AdamStep {
        learning_rate: 2e-2,
        ..AdamStep::default()
    };
    for arch in HfArch::ALL {
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny(arch, dir.path());
        let mut model = TrainableModel::new(&spec, &lora()).unwrap();
        let mut curve = Vec::new();
        for _ in 0..10 {
            let out = model
                .forward_backward(&batch, &Loss::CrossEntropy, false)
                .unwrap();
            curve.push(out.metrics["loss:sum"] / 32.0);
            model.optim_step(&step).unwrap();
        }
        assert!(
            curve[9] < curve[0] * 0.5,
            "{}: loss did not fall: {curve:?}",
            arch.model_type()
        );
    }
}

/// Weights held in their stored dtype (bf16 for Llama, f16 for Qwen2) and widened at each
/// use compute exactly what weights widened once at load compute: losses, gradients (through
/// the optimizer's next loss) and seeded samples.
#[test]
fn stored_dtype_weights_compute_the_same_as_f32() {
    let step = AdamStep {
        learning_rate: 2e-2,
        ..AdamStep::default()
    };
    for arch in [HfArch::Llama, HfArch::Qwen2] {
        let dir = tempfile::tempdir().unwrap();
        let widened = tiny(arch, dir.path());
        assert_eq!(widened.weights_dtype, WeightsDtype::F32);
        let stored = ModelSpec {
            weights_dtype: WeightsDtype::Stored,
            ..widened.clone()
        };
        let run = |spec: &ModelSpec| {
            let mut model = TrainableModel::new(spec, &lora()).unwrap();
            let mut losses = Vec::new();
            for _ in 0..3 {
                let out = model
                    .forward_backward(&pattern_batch(), &Loss::CrossEntropy, false)
                    .unwrap();
                losses.push(out.metrics["loss:sum"]);
                model.optim_step(&step).unwrap();
            }
            let sample = model
                .sampler()
                .sample(&SampleSpec {
                    prompt: vec![5, 17, 300, 42],
                    max_tokens: 8,
                    seed: Some(3),
                    stop_at_eos: false,
                    ..SampleSpec::default()
                })
                .unwrap();
            (losses, sample.sequences[0].tokens.clone())
        };
        // The stored copy really is half-width (bf16/f16), apart from the f32 vectors.
        let bytes = |spec: &ModelSpec| {
            TrainableModel::new(spec, &lora())
                .unwrap()
                .base_weight_bytes()
        };
        let (wide, narrow) = (bytes(&widened), bytes(&stored));
        assert!(
            narrow * 10 < wide * 6,
            "{}: stored {narrow} bytes vs f32 {wide}",
            arch.model_type()
        );
        let (want, want_tokens) = run(&widened);
        let (got, got_tokens) = run(&stored);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs(),
                "{}: stored {got:?} vs f32 {want:?}",
                arch.model_type()
            );
        }
        assert!(want[2] < want[0], "{}: {want:?}", arch.model_type());
        assert_eq!(got_tokens, want_tokens, "{}", arch.model_type());
    }
}

#[test]
fn adapters_are_saved_in_peft_layout_and_sample_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let spec = tiny(HfArch::Qwen3, dir.path());
    let mut model = TrainableModel::new(&spec, &lora()).unwrap();
    for _ in 0..2 {
        model
            .forward_backward(&pattern_batch(), &Loss::CrossEntropy, false)
            .unwrap();
        model.optim_step(&AdamStep::default()).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    model.save_adapter(out.path()).unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["target_modules"],
        json!([
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
            "lm_head"
        ])
    );
    // PEFT loads the adapter onto the folder the base weights came from.
    assert_eq!(
        config["base_model_name_or_path"],
        dir.path().canonicalize().unwrap().to_str().unwrap()
    );
    let names = model.lora_param_names();
    assert!(
        names.contains(
            &"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight".to_string()
        )
    );
    assert!(names.contains(&"base_model.model.lm_head.lora_B.weight".to_string()));

    let spec_prompt = SampleSpec {
        prompt: vec![5, 17, 300, 42],
        max_tokens: 8,
        seed: Some(3),
        stop_at_eos: false,
        ..SampleSpec::default()
    };
    let live = model.sampler().sample(&spec_prompt).unwrap();
    let reloaded = SamplerModel::from_adapter_dir(&spec, out.path())
        .unwrap()
        .sample(&spec_prompt)
        .unwrap();
    assert_eq!(live.sequences[0].tokens, reloaded.sequences[0].tokens);
    // The sampled tokens' logprobs (KV cache) agree with a full forward of the sequence.
    let full: Vec<u32> = spec_prompt
        .prompt
        .iter()
        .chain(&live.sequences[0].tokens)
        .copied()
        .collect();
    let n = full.len() - 1;
    let fwd = model
        .forward_backward(
            &[TrainExample {
                tokens: full[..n].to_vec(),
                inputs: LossInputs {
                    target_tokens: full[1..].iter().map(|&t| i64::from(t)).collect(),
                    weights: Some(vec![1.0; n]),
                    ..Default::default()
                },
            }],
            &Loss::CrossEntropy,
            true,
        )
        .unwrap();
    for (i, &s) in live.sequences[0].logprobs.iter().enumerate() {
        close(
            s,
            fwd.logprobs[0][spec_prompt.prompt.len() - 1 + i],
            "cached vs full",
        );
    }
}

fn expect_user_error(dir: &Path, needle: &str) {
    let err = hf_model("bad", dir.to_str().unwrap()).unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(err.to_string().contains(needle), "{err}");
}

#[test]
fn bad_folders_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    TinyHfModel::tiny(HfArch::Llama).write(p).unwrap();
    let config_path = p.join("config.json");
    let good: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    let with = |patch: Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        std::fs::write(&config_path, serde_json::to_vec(&c).unwrap()).unwrap();
    };
    with(json!({"model_type": "gpt2"}));
    expect_user_error(p, "model_type \"gpt2\" is not supported");
    with(json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}));
    expect_user_error(p, "RoPE scaling \"yarn\" is not supported");
    with(json!({"hidden_size": 48}));
    expect_user_error(
        p,
        "model.embed_tokens.weight has shape [1024, 32], expected [1024, 48]",
    );
    with(json!({"tie_word_embeddings": true}));
    hf_model("tied", p.to_str().unwrap()).unwrap(); // an extra lm_head is ignored
    with(json!({}));
    std::fs::remove_file(p.join("tokenizer.json")).unwrap();
    expect_user_error(p, "has no tokenizer.json");
    expect_user_error(
        &p.join("nowhere"),
        "neither a folder nor a Hugging Face repo id",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_a_folder_under_its_name() {
    let models = tempfile::tempdir().unwrap();
    TinyHfModel::tiny(HfArch::Qwen3)
        .write(models.path())
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let config =
        common::config(data.path()).with_model("tiny-qwen3", models.path().to_str().unwrap());
    let h = common::Harness::start(config).await;
    let caps = h.get("get_server_capabilities").await.json();
    let served: Vec<&str> = caps["supported_models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["model_name"].as_str())
        .collect();
    assert!(
        served.contains(&"tiny-qwen3") && served.contains(&common::MODEL),
        "{served:?}"
    );

    let session = h.session().await;
    let f = h
        .ok(
            "create_model",
            json!({"session_id": session, "model_seq_id": 0, "base_model": "tiny-qwen3",
                   "lora_config": {"rank": 4, "seed": 1}, "type": "create_model"}),
        )
        .await;
    let model = h.result(&f).await["model_id"].as_str().unwrap().to_owned();
    let info = h
        .ok("get_info", json!({"model_id": model, "type": "get_info"}))
        .await;
    assert_eq!(info["model_data"]["model_name"], "tiny-qwen3");
    let data = common::dataset();
    let fb = h.fwd_bwd(&model, 1, &data, false).await;
    let out = h.fwd_bwd_result(&fb).await;
    assert_eq!(common::logprobs(&out).len(), data.len());
    h.server.shutdown().await;
}

#[tokio::test]
async fn the_server_refuses_a_bad_model_at_start() {
    let data = tempfile::tempdir().unwrap();
    for (name, source) in [
        ("tiny", "/nonexistent/folder"),
        ("../x", "/tmp"),
        ("tinker-local/micro", "/tmp"),
    ] {
        let config = common::config(data.path()).with_model(name, source);
        let err = tinker_local::LocalServer::start(config)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, tinker_local::Error::Config { .. }), "{err}");
    }
}
