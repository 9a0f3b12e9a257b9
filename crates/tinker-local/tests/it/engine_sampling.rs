//! Sampling features: seeds, temperature, top-k, top-p, stops, max_tokens, num_samples and
//! the logprob outputs.

use tinker_local::engine::{ModelSpec, SampleSpec, SamplerModel, StopKind, builtin_models};
use tokenizers::Tokenizer;

fn micro() -> ModelSpec {
    builtin_models()
        .into_iter()
        .find(|m| m.name.ends_with("micro"))
        .unwrap()
}

fn spec() -> SampleSpec {
    SampleSpec {
        prompt: vec![40, 41, 42, 43],
        num_samples: 4,
        max_tokens: 16,
        temperature: 1.0,
        seed: Some(1234),
        stop_at_eos: false,
        ..SampleSpec::default()
    }
}

fn sampler() -> SamplerModel {
    SamplerModel::base(&micro()).unwrap()
}

#[test]
fn seeds_make_sampling_deterministic() {
    let s = sampler();
    let a = s.sample(&spec()).unwrap();
    assert_eq!(a, s.sample(&spec()).unwrap());
    assert_eq!(a.sequences.len(), 4);
    assert!(
        a.sequences
            .iter()
            .all(|q| q.tokens.len() == 16 && q.stop == StopKind::Length)
    );
    // The samples differ from each other and from another seed's.
    assert_ne!(a.sequences[0].tokens, a.sequences[1].tokens);
    assert_ne!(
        a,
        s.sample(&SampleSpec {
            seed: Some(99),
            ..spec()
        })
        .unwrap()
    );
}

#[test]
fn greedy_top_k_1_and_tiny_top_p_agree() {
    let s = sampler();
    let greedy = s
        .sample(&SampleSpec {
            temperature: 0.0,
            num_samples: 2,
            ..spec()
        })
        .unwrap();
    assert_eq!(greedy.sequences[0].tokens, greedy.sequences[1].tokens);
    let k1 = s.sample(&SampleSpec { top_k: 1, ..spec() }).unwrap();
    let p0 = s
        .sample(&SampleSpec {
            top_p: 1e-6,
            ..spec()
        })
        .unwrap();
    for seq in k1.sequences.iter().chain(&p0.sequences) {
        assert_eq!(seq.tokens, greedy.sequences[0].tokens);
    }
}

#[test]
fn top_k_restricts_to_the_k_most_likely() {
    let s = sampler();
    let out = s
        .sample(&SampleSpec {
            top_k: 3,
            topk_sample_logprobs: 3,
            num_samples: 8,
            ..spec()
        })
        .unwrap();
    for seq in &out.sequences {
        let topk = seq.topk.as_ref().unwrap();
        assert_eq!(topk.len(), seq.tokens.len());
        for ((tok, lp), top) in seq.tokens.iter().zip(&seq.logprobs).zip(topk) {
            assert_eq!(top.len(), 3);
            assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "top-k sorted");
            let hit = top
                .iter()
                .find(|(t, _)| t == tok)
                .expect("sampled token outside the top 3");
            assert_eq!(hit.1, *lp);
        }
    }
}

#[test]
fn low_temperature_raises_logprobs() {
    let s = sampler();
    let mean = |t: f32| {
        let out = s
            .sample(&SampleSpec {
                temperature: t,
                num_samples: 8,
                ..spec()
            })
            .unwrap();
        let lps: Vec<f32> = out
            .sequences
            .iter()
            .flat_map(|q| q.logprobs.clone())
            .collect();
        lps.iter().sum::<f32>() / lps.len() as f32
    };
    assert!(mean(0.3) > mean(1.5) + 0.5);
}

#[test]
fn stop_tokens_eos_and_max_tokens() {
    let s = sampler();
    let free = s
        .sample(&SampleSpec {
            temperature: 0.0,
            num_samples: 1,
            ..spec()
        })
        .unwrap();
    let toks = &free.sequences[0].tokens;
    let stop = toks[5];
    let first = toks.iter().position(|&t| t == stop).unwrap();
    let out = s
        .sample(&SampleSpec {
            temperature: 0.0,
            num_samples: 1,
            stop_tokens: vec![stop],
            ..spec()
        })
        .unwrap();
    assert_eq!(
        out.sequences[0].tokens,
        toks[..=first].to_vec(),
        "stop token kept, nothing after it"
    );
    assert_eq!(out.sequences[0].stop, StopKind::Stop);
    // EOS only stops when asked: make the EOS the greedy token's id via a custom spec.
    let mut m = micro();
    m.eos_token_id = stop;
    let eos = SamplerModel::base(&m).unwrap();
    let no = eos
        .sample(&SampleSpec {
            temperature: 0.0,
            num_samples: 1,
            ..spec()
        })
        .unwrap();
    assert_eq!(no.sequences[0].tokens.len(), 16);
    let yes = eos
        .sample(&SampleSpec {
            temperature: 0.0,
            num_samples: 1,
            stop_at_eos: true,
            ..spec()
        })
        .unwrap();
    assert_eq!(yes.sequences[0].tokens, toks[..=first].to_vec());
    let short = s
        .sample(&SampleSpec {
            max_tokens: 3,
            ..spec()
        })
        .unwrap();
    assert!(
        short
            .sequences
            .iter()
            .all(|q| q.tokens.len() == 3 && q.stop == StopKind::Length)
    );
    let none = s
        .sample(&SampleSpec {
            max_tokens: 0,
            ..spec()
        })
        .unwrap();
    assert!(none.sequences.iter().all(|q| q.tokens.is_empty()));
}

#[test]
fn stop_strings_use_the_decoded_text() {
    let s = sampler();
    let tok = Tokenizer::from_file(micro().tokenizer_dir.join("tokenizer.json")).unwrap();
    let free = s
        .sample(&SampleSpec {
            temperature: 0.0,
            num_samples: 1,
            max_tokens: 24,
            ..spec()
        })
        .unwrap();
    let toks = &free.sequences[0].tokens;
    let full = tok.decode(toks, false).unwrap();
    // A stop string made of the text of tokens 6..8 (found in the text once those are out).
    let needle = tok.decode(&toks[6..8], false).unwrap();
    assert!(!needle.is_empty());
    let out = s
        .sample(&SampleSpec {
            temperature: 0.0,
            num_samples: 1,
            max_tokens: 24,
            stop_strings: vec![needle.clone()],
            ..spec()
        })
        .unwrap();
    let got = &out.sequences[0];
    assert_eq!(got.stop, StopKind::Stop);
    let text = tok.decode(&got.tokens, false).unwrap();
    assert!(text.contains(&needle) && full.starts_with(&text));
    // It stopped at the first token that completed the string.
    let before = tok
        .decode(&got.tokens[..got.tokens.len() - 1], false)
        .unwrap();
    assert!(!before.contains(&needle));
}

#[test]
fn prompt_logprobs_and_top_k_prompt_logprobs() {
    let s = sampler();
    let out = s
        .sample(&SampleSpec {
            prompt_logprobs: true,
            topk_prompt_logprobs: 5,
            max_tokens: 1,
            ..spec()
        })
        .unwrap();
    let lp = out.prompt_logprobs.unwrap();
    let top = out.topk_prompt_logprobs.unwrap();
    assert_eq!(lp.len(), 4);
    assert_eq!(top.len(), 4);
    assert!(lp[0].is_nan() && top[0].is_empty());
    for i in 1..4 {
        assert!(lp[i] < 0.0);
        assert_eq!(top[i].len(), 5);
        // The prompt token's logprob cannot beat the best alternative.
        assert!(lp[i] <= top[i][0].1 + 1e-6);
        let total: f32 = top[i].iter().map(|(_, l)| l.exp()).sum();
        assert!(total <= 1.0 + 1e-5);
    }
}

#[test]
fn invalid_sampling_params_are_user_errors() {
    let s = sampler();
    for bad in [
        SampleSpec {
            temperature: -1.0,
            ..spec()
        },
        SampleSpec {
            top_p: 0.0,
            ..spec()
        },
        SampleSpec {
            top_k: -2,
            ..spec()
        },
        SampleSpec {
            prompt: vec![1, 5000],
            ..spec()
        },
    ] {
        assert!(s.sample(&bad).unwrap_err().is_user_error());
    }
}
