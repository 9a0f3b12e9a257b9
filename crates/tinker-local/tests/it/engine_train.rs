//! End to end: micro learns a few sentences with cross-entropy in 20 steps, and greedy
//! sampling then reproduces one of them.

use tinker_local::engine::{
    AdamStep, LoraSpec, Loss, LossInputs, SampleSpec, TrainExample, TrainableModel, builtin_models,
};
use tokenizers::Tokenizer;

#[test]
fn micro_learns_and_reproduces_its_data() {
    let spec = builtin_models()
        .into_iter()
        .find(|m| m.name.ends_with("micro"))
        .unwrap();
    let tok = Tokenizer::from_file(spec.tokenizer_dir.join("tokenizer.json")).unwrap();
    let pairs = [
        ("What do bees make?", " Bees make honey and wax."),
        ("What comes after Monday?", " Tuesday comes after Monday."),
        (
            "How many legs does a spider have?",
            " A spider has eight legs.",
        ),
        ("Say hello.", " Hello! How can I help you today?"),
    ];
    let mut data = Vec::new();
    let mut full = Vec::new();
    for (prompt, completion) in pairs {
        let p = tok.encode(prompt, false).unwrap().get_ids().to_vec();
        let mut c = tok.encode(completion, false).unwrap().get_ids().to_vec();
        c.push(spec.eos_token_id);
        let seq: Vec<u32> = p.iter().chain(&c).copied().collect();
        let n = seq.len() - 1;
        // Weight 1 on completion targets only.
        let weights = (0..n)
            .map(|i| if i + 1 >= p.len() { 1.0 } else { 0.0 })
            .collect();
        data.push(TrainExample {
            tokens: seq[..n].to_vec(),
            inputs: LossInputs {
                target_tokens: seq[1..].iter().map(|&t| i64::from(t)).collect(),
                weights: Some(weights),
                ..Default::default()
            },
        });
        full.push((p, c));
    }
    let completion_tokens: usize = full.iter().map(|(_, c)| c.len()).sum();
    let lora = LoraSpec {
        rank: 16,
        seed: Some(1),
        train_attn: true,
        train_mlp: true,
        train_unembed: true,
    };
    let mut model = TrainableModel::new(&spec, &lora).unwrap();
    let adam = AdamStep {
        learning_rate: 1e-2,
        grad_clip_norm: 1.0,
        ..AdamStep::default()
    };
    let mut curve = Vec::new();
    for _ in 0..20 {
        let out = model
            .forward_backward(&data, &Loss::CrossEntropy, false)
            .unwrap();
        curve.push(out.metrics["loss:sum"] / completion_tokens as f64);
        model.optim_step(&adam).unwrap();
    }
    println!("loss per completion token: {curve:.3?}");
    let (first, last) = (curve[0], curve[curve.len() - 1]);
    assert!(
        last < first * 0.25,
        "loss did not fall clearly: {first} -> {last}"
    );

    let sampler = model.sampler();
    for (prompt, completion) in &full {
        let out = sampler
            .sample(&SampleSpec {
                prompt: prompt.clone(),
                num_samples: 1,
                max_tokens: 32,
                temperature: 0.0,
                stop_at_eos: true,
                ..SampleSpec::default()
            })
            .unwrap();
        let got = &out.sequences[0].tokens;
        assert_eq!(
            got,
            completion,
            "greedy continuation: {:?}",
            tok.decode(got, false)
        );
    }
}
