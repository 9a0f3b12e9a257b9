//! Trains the tiny byte-level BPE tokenizer used as a test fixture and writes it to
//! `tests/fixtures/tiny-bpe/tokenizer.json` (run from anywhere:
//! `cargo run -p tinker-tokenizer --example make_test_tokenizer`).

use std::path::PathBuf;

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

/// The special tokens, in id order (0, 1, 2, 3).
const SPECIALS: [&str; 4] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|im_start|>",
    "<|im_end|>",
];

/// A small English corpus written for this fixture.
const CORPUS: &str = "\
The training loop reads a batch of examples, computes the loss, and updates the weights.
Hello world! Hello there, world. The world says hello back to the model.
A tokenizer splits text into tokens; the model sees only token ids, never raw text.
Low-rank adapters change a few parameters while the base model stays frozen.
We sample from the fine-tuned model and decode the tokens back into text.
Numbers such as 12345 and 2026 are split into small groups of digits.
Don't forget: it's the loss that should fall, and we're watching it every step.
";

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(400)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<NormalizerWrapper>)
        .with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, true, true,
        ))))
        .with_post_processor(None::<PostProcessorWrapper>)
        .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())))
        .build()?;
    tokenizer.train(&mut trainer, CORPUS.lines().map(str::to_owned))?;
    let bos = tokenizer
        .token_to_id(SPECIALS[0])
        .ok_or("the trainer lost the BOS token")?;
    let template = TemplateProcessing::builder()
        .try_single(format!("{} $A", SPECIALS[0]))?
        .special_tokens(vec![(SPECIALS[0].to_owned(), bos)])
        .build()?;
    tokenizer.with_post_processor(Some(PostProcessorWrapper::Template(template)));
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bpe");
    std::fs::create_dir_all(&out)?;
    tokenizer.save(out.join("tokenizer.json"), true)?;
    Ok(())
}
