//! Engine benchmark (plain binary): per built-in model, forward_backward and forward-only on
//! 8×128 tokens, optim_step, sampling ms/token, and peak RSS. Each model runs in its own child
//! process so `VmHWM` is that model's peak.
//!
//! `cargo bench -p tinker-local --bench engine` (set `RAYON_NUM_THREADS` to pin threads).

#![allow(clippy::print_stdout, clippy::unwrap_used)]
// A benchmark measures real time; there is no SDK clock to inject.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use tinker_local::engine::{
    AdamStep, LoraSpec, Loss, LossInputs, SampleSpec, TrainExample, TrainableModel, builtin_models,
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

fn run(name: &str) {
    let spec = builtin_models()
        .into_iter()
        .find(|m| m.name == name)
        .unwrap();
    let lora = LoraSpec {
        rank: 32,
        seed: Some(0),
        train_attn: true,
        train_mlp: true,
        train_unembed: true,
    };
    let mut model = TrainableModel::new(&spec, &lora).unwrap();
    let (b, t) = (8, 128);
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
    let runs = if spec.vocab_size > 2048 { 5 } else { 10 };
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
    let tokens = 64;
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
        let (med, _) = time(5, || {
            sampler.sample(&spec).unwrap();
        });
        med / (n * tokens) as f64
    };
    let (s1, s4) = (sample(1), sample(4));
    println!(
        "{name}: base {:.2}M / LoRA r32 {:.3}M params | fwd_bwd 8x128 {:.1} ms (min {:.1}) | fwd only {:.1} ms | optim_step {:.2} ms | sample {:.3} ms/token (n=1), {:.3} (n=4) | peak RSS {:.0} MB",
        spec.parameter_count() as f64 / 1e6,
        model.parameter_count() as f64 / 1e6,
        fb.0,
        fb.1,
        fo.0,
        os.0,
        s1,
        s4,
        peak_rss_mb()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--model") {
        run(&args[i + 1]);
        return;
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!("engine bench, RAYON_NUM_THREADS={threads}");
    let exe = std::env::current_exe().unwrap();
    for spec in builtin_models() {
        let status = std::process::Command::new(&exe)
            .args(["--model", &spec.name])
            .status()
            .unwrap();
        assert!(status.success(), "bench for {} failed", spec.name);
    }
}
