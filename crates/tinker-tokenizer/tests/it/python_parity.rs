//! The committed fixtures give the same ids, tokens and text as the official SDK's
//! tokenizer path (`AutoTokenizer.from_pretrained(dir)`, transformers 5.24.0 with
//! tokenizers 0.23.3, the versions in the SDK 0.38.0 venv). The expected values below were
//! produced by that Python code on these same files.
//!
//! `tiny-bpe` uses the byte-level GPT-2 pre-tokenizer; `tiny-bpe-split` the same vocabulary
//! behind Llama 3's `Split` regex (look-ahead, `(?i:…)`, `\p{N}{1,3}`), run by the pure-Rust
//! `fancy-regex` backend, and sets `clean_up_tokenization_spaces` (ignored for BPE).
//! `tiny-bpe` is written by `examples/make_test_tokenizer.rs`; `tiny-bpe-split` is that file
//! with its `pre_tokenizer` replaced by `Sequence[Split(<Llama 3 regex>, Isolated),
//! ByteLevel(use_regex=false)]` and the config flag set.

use std::path::Path;

use tinker_tokenizer::Tokenizer;

fn load(name: &str) -> Tokenizer {
    Tokenizer::from_path(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// `(text, tokenizer.encode(text, add_special_tokens=False))`; with special tokens the
/// SDK adds `<|begin_of_text|>` (id 0) in front.
struct Case {
    text: &'static str,
    plain: &'static [u32],
    plain_split: &'static [u32],
    skip_special: &'static str,
}

const CASES: &[Case] = &[
    Case {
        text: "Hello world! The model says hello.",
        plain: &[329, 304, 4, 394, 291, 262, 332, 388, 292, 17],
        plain_split: &[329, 304, 4, 394, 291, 262, 332, 388, 292, 17],
        skip_special: "Hello world! The model says hello.",
    },
    Case {
        text: "Numbers 12345 and 2026,\n\n  don't STOP it's fine .",
        plain: &[
            343, 373, 398, 340, 24, 289, 399, 25, 15, 202, 202, 224, 224, 71, 82, 81, 335, 224, 54,
            55, 50, 51, 317, 334, 270, 265, 72, 224, 17,
        ],
        plain_split: &[
            343, 373, 224, 338, 22, 23, 24, 289, 224, 339, 25, 15, 202, 202, 224, 224, 71, 82, 81,
            335, 224, 54, 55, 50, 51, 317, 334, 270, 265, 72, 224, 17,
        ],
        skip_special: "Numbers 12345 and 2026,\n\n  don't STOP it's fine .",
    },
    Case {
        text: "<|im_start|>user\nhi<|im_end|>",
        plain: &[2, 88, 86, 268, 202, 362, 3],
        plain_split: &[2, 88, 86, 268, 202, 362, 3],
        skip_special: "user\nhi",
    },
    Case {
        text: "héllo wörld 你好 🎉",
        plain: &[
            75, 131, 106, 292, 266, 131, 118, 85, 280, 224, 164, 125, 258, 165, 102, 125, 224, 176,
            257, 240, 235,
        ],
        plain_split: &[
            75, 131, 106, 292, 266, 131, 118, 85, 280, 224, 164, 125, 258, 165, 102, 125, 224, 176,
            257, 240, 235,
        ],
        skip_special: "héllo wörld 你好 🎉",
    },
];

fn check(tok: &Tokenizer, split: bool) {
    // len(tok), bos/eos/pad ids.
    assert_eq!(tok.vocab_size(), 400);
    assert_eq!(
        (tok.bos_token_id(), tok.eos_token_id(), tok.pad_token_id()),
        (Some(0), Some(3), Some(1))
    );
    for case in CASES {
        let plain = if split { case.plain_split } else { case.plain };
        assert_eq!(
            tok.encode(case.text, false).unwrap(),
            plain,
            "{:?}",
            case.text
        );
        let mut with_bos = vec![0];
        with_bos.extend_from_slice(plain);
        assert_eq!(tok.encode(case.text, true).unwrap(), with_bos);
        assert_eq!(
            tok.decode(&with_bos, false).unwrap(),
            format!("<|begin_of_text|>{}", case.text)
        );
        assert_eq!(tok.decode(&with_bos, true).unwrap(), case.skip_special);
    }
    // tok.convert_ids_to_tokens(...)
    let tokens = |ids: &[u32]| -> Vec<String> {
        ids.iter().map(|id| tok.id_to_token(*id).unwrap()).collect()
    };
    assert_eq!(
        tokens(&CASES[0].plain[..4]),
        ["Hello", "Ġworld", "!", "ĠThe"]
    );
    assert_eq!(tokens(&CASES[3].plain[..4]), ["h", "Ã", "©", "llo"]);
    let numbers = if split {
        CASES[1].plain_split
    } else {
        CASES[1].plain
    };
    let expected: &[&str] = if split {
        &["Nu", "mbers", "Ġ", "12"]
    } else {
        &["Nu", "mbers", "Ġ12", "34"]
    };
    assert_eq!(tokens(&numbers[..4]), expected);
}

#[test]
fn byte_level_fixture_matches_python() {
    check(&load("tiny-bpe"), false);
}

#[test]
fn llama3_split_fixture_matches_python() {
    check(&load("tiny-bpe-split"), true);
}
