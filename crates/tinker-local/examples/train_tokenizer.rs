//! Trains the byte-level BPE tokenizers shipped in `models/<name>/` from the text in `corpus/`.
//!
//! Run once (the results are committed): `cargo run -p tinker-local --example train_tokenizer`.
//! Qwen-style: the Qwen2 split regex, ByteLevel pre-tokenizer/decoder, specials
//! `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` as ids 0, 1, 2, and a ChatML template.

#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::path::Path;

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior, TokenizerBuilder,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Qwen2's pre-tokenization regex.
const QWEN_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn train(
    name: &str,
    vocab: usize,
    max_len: usize,
    corpus: &[String],
    out: &Path,
) -> Result<(), Error> {
    let split = Split::new(
        SplitPattern::Regex(QWEN_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )?;
    let pre = Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ]);
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(pre.into()))
    .with_post_processor(Some(ByteLevel::new(false, false, false).into()))
    .with_decoder(Some(ByteLevel::default().into()))
    .build()?;
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect::<HashSet<char>>())
        .build();
    // Registered first so the ChatML markers in the corpus are not split during training.
    tokenizer.add_special_tokens(specials.clone())?;
    tokenizer.train_from_files(&mut trainer, corpus.to_vec())?;
    std::fs::create_dir_all(out)?;
    tokenizer.save(out.join("tokenizer.json"), false)?;
    let added: serde_json::Map<String, serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let entry = serde_json::json!({"content": s, "lstrip": false, "normalized": false,
                "rstrip": false, "single_word": false, "special": true});
            (i.to_string(), entry)
        })
        .collect();
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": false,
        "chat_template": CHAT_TEMPLATE,
    });
    std::fs::write(
        out.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&config)? + "\n",
    )?;
    println!(
        "{name}: vocabulary {} → {}",
        tokenizer.get_vocab_size(true),
        out.display()
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus_dir = root.join("corpus");
    let mut corpus: Vec<String> = std::fs::read_dir(&corpus_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    corpus.sort();
    train("micro", 1024, 1024, &corpus, &root.join("models/micro"))?;
    train("small", 4096, 2048, &corpus, &root.join("models/small"))?;
    Ok(())
}
