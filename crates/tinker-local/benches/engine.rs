//! Engine benchmark (plain binary): per built-in model and per tiny Hugging Face folder (one
//! per architecture, written on the fly), forward_backward and forward-only on 8×128 tokens,
//! optim_step, sampling ms/token, and peak RSS. Each model runs in its own child process so
//! `VmHWM` is that model's peak. `TINKER_BENCH_HF_DIR=DIR` adds the Hugging Face folder DIR
//! (e.g. from `tinker-local tiny-model --qwen3-0-6b`), measured on 2×64 tokens, once with its
//! weights widened to f32 and once held in their stored dtype ([`WeightsDtype`]).
//!
//! `cargo bench -p tinker-local --bench engine` (set `RAYON_NUM_THREADS` to pin threads).

#![allow(clippy::print_stdout, clippy::unwrap_used)]
// A benchmark measures real time; there is no SDK clock to inject.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use tinker_local::engine::{
    AdamStep, HfArch, LoraSpec, Loss, LossInputs, ModelSpec, SampleSpec, TinyHfModel, TrainExample,
    TrainableModel, WeightsDtype, builtin_models, hf_model,
};

/// Median and minimum of `runs` timings of `f`, in milliseconds.
fn time(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0])
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn run(spec: &ModelSpec, (b, t): (usize, usize)) {
    let name = &spec.name;
    // Rank 32, or less where a tiny model has a narrower projection.
    let narrowest = [
        spec.hidden,
        spec.heads * spec.head_dim(),
        spec.kv_heads * spec.head_dim(),
        spec.intermediate,
    ]
    .into_iter()
    .min()
    .unwrap_or(32);
    let rank = 32.min(narrowest);
    let lora = LoraSpec {
        rank,
        seed: Some(0),
        train_attn: true,
        train_mlp: true,
        train_unembed: true,
    };
    let loaded = Instant::now();
    let mut model = TrainableModel::new(spec, &lora).unwrap();
    let load_s = loaded.elapsed().as_secs_f64();
    let batch: Vec<TrainExample> = (0..b)
        .map(|i| {
            let toks: Vec<u32> = (0..=t)
                .map(|j| ((i * 131 + j * 17) % spec.vocab_size) as u32)
                .collect();
            TrainExample {
                tokens: toks[..t].to_vec(),
                inputs: LossInputs {
                    target_tokens: toks[1..].iter().map(|&x| i64::from(x)).collect(),
                    weights: Some(vec![1.0; t]),
                    ..Default::default()
                },
            }
        })
        .collect();
    let runs = if spec.parameter_count() > 50_000_000 {
        3
    } else if spec.vocab_size > 2048 {
        5
    } else {
        10
    };
    let adam = AdamStep {
        learning_rate: 1e-3,
        ..AdamStep::default()
    };
    model
        .forward_backward(&batch, &Loss::CrossEntropy, false)
        .unwrap();
    model.optim_step(&adam).unwrap();
    let fb = time(runs, || {
        model
            .forward_backward(&batch, &Loss::CrossEntropy, false)
            .unwrap();
    });
    let fo = time(runs, || {
        model
            .forward_backward(&batch, &Loss::CrossEntropy, true)
            .unwrap();
    });
    let os = time(runs, || {
        model.optim_step(&adam).unwrap();
    });
    let sampler = model.sampler();
    let tokens = if spec.parameter_count() > 50_000_000 {
        16
    } else {
        64
    };
    let sample = |n: usize| {
        let spec = SampleSpec {
            prompt: vec![5, 6, 7, 8],
            num_samples: n,
            max_tokens: tokens,
            temperature: 1.0,
            seed: Some(1),
            stop_at_eos: false,
            ..SampleSpec::default()
        };
        let (med, _) = time(runs.min(5), || {
            sampler.sample(&spec).unwrap();
        });
        med / (n * tokens) as f64
    };
    let (s1, s4) = (sample(1), sample(4));
    println!(
        "{name} ({:?}): base {:.2}M / LoRA r{rank} {:.3}M params | load {load_s:.2} s | fwd_bwd {b}x{t} {:.1} ms (min {:.1}) = {:.0} tok/s | fwd only {:.1} ms | optim_step {:.2} ms | sample {:.3} ms/token (n=1) = {:.0} tok/s, {:.3} (n=4) | peak RSS {:.0} MB",
        spec.weights_dtype,
        spec.parameter_count() as f64 / 1e6,
        model.parameter_count() as f64 / 1e6,
        fb.0,
        fb.1,
        (b * t) as f64 / fb.0 * 1e3,
        fo.0,
        os.0,
        s1,
        1e3 / s1,
        s4,
        peak_rss_mb()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--model") {
        let spec = builtin_models().into_iter().find(|m| m.name == args[i + 1]);
        run(&spec.unwrap(), (8, 128));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--hf") {
        let dir = std::env::temp_dir().join(format!(
            "tinker-bench-{}-{}",
            args[i + 1],
            std::process::id()
        ));
        let arch = HfArch::from_model_type(&args[i + 1]).unwrap();
        TinyHfModel::tiny(arch).write(&dir).unwrap();
        let spec = hf_model(&format!("tiny-{}", args[i + 1]), dir.to_str().unwrap()).unwrap();
        run(&spec, (8, 128));
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--hf-dir") {
        let mut spec = hf_model("hf-dir", &args[i + 1]).unwrap();
        if args.iter().any(|a| a == "--stored") {
            spec.weights_dtype = WeightsDtype::Stored;
        }
        run(&spec, (2, 64));
        return;
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!("engine bench, RAYON_NUM_THREADS={threads}");
    let exe = std::env::current_exe().unwrap();
    let mut runs: Vec<[String; 2]> = builtin_models()
        .into_iter()
        .map(|m| ["--model".to_string(), m.name])
        .collect();
    runs.extend(HfArch::ALL.map(|a| ["--hf".to_string(), a.model_type().to_string()]));
    let mut runs: Vec<Vec<String>> = runs.into_iter().map(Vec::from).collect();
    if let Ok(dir) = std::env::var("TINKER_BENCH_HF_DIR") {
        runs.push(vec!["--hf-dir".to_string(), dir.clone()]);
        runs.push(vec!["--hf-dir".to_string(), dir, "--stored".to_string()]);
    }
    for args in runs {
        let status = std::process::Command::new(&exe)
            .args(&args)
            .status()
            .unwrap();
        assert!(status.success(), "bench {args:?} failed");
    }
}
