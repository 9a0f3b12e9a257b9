use std::path::PathBuf;

use super::*;
use tinker_tokenizer::chat::{ChatError, ChatRenderer, Message, TrainOn};

fn micro() -> Tokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tinker-local/models/micro");
    Tokenizer::from_path(dir).unwrap()
}

/// (input tokens, targets, weights) of a cross-entropy datum.
fn parts(datum: &Datum) -> (Vec<u32>, Vec<i64>, Vec<f32>) {
    let input = datum.model_input.to_tokens().unwrap();
    let targets = datum.loss_fn_inputs["target_tokens"]
        .values()
        .as_i64()
        .unwrap()
        .to_vec();
    let weights = datum.loss_fn_inputs["weights"]
        .values()
        .as_f32()
        .unwrap()
        .to_vec();
    (input, targets, weights)
}

#[test]
fn shifts_tokens_and_keeps_each_targets_weight() {
    let w = WeightedTokens::new(vec![10, 11, 12, 13], vec![0.0, 0.0, 1.0, 1.0]).unwrap();
    let (input, targets, weights) = parts(&w.into_datum(None).unwrap());
    assert_eq!(input, [10, 11, 12]);
    assert_eq!(targets, [11, 12, 13]);
    assert_eq!(weights, [0.0, 1.0, 1.0]);
}

#[test]
fn truncates_before_the_shift() {
    let w = WeightedTokens::new(vec![1, 2, 3, 4, 5], vec![0.0, 1.0, 1.0, 1.0, 1.0]).unwrap();
    let (input, targets, weights) = parts(&w.clone().into_datum(Some(3)).unwrap());
    assert_eq!(
        (input, targets, weights),
        (vec![1, 2], vec![2, 3], vec![1.0, 1.0])
    );
    // Only the first (untrained) target survives a cut to 2... which is weight 1 here.
    assert!(w.into_datum(Some(2)).is_ok());
    let late = WeightedTokens::new(vec![1, 2, 3, 4], vec![0.0, 0.0, 0.0, 1.0]).unwrap();
    assert!(matches!(
        late.into_datum(Some(3)),
        Err(DataError::NothingToTrain {
            max_length: Some(3)
        })
    ));
}

#[test]
fn rejects_bad_input_with_typed_errors() {
    assert!(matches!(
        WeightedTokens::new(vec![1, 2], vec![1.0]),
        Err(DataError::LengthMismatch {
            tokens: 2,
            weights: 1
        })
    ));
    assert!(matches!(
        WeightedTokens::new(vec![1, 2], vec![0.0, f32::NAN]),
        Err(DataError::InvalidWeight { index: 1, .. })
    ));
    assert!(matches!(
        WeightedTokens::new(vec![1, 2], vec![-1.0, 1.0]),
        Err(DataError::InvalidWeight { index: 0, .. })
    ));
    let one = WeightedTokens::new(vec![1], vec![1.0]).unwrap();
    assert!(matches!(
        one.into_datum(None),
        Err(DataError::TooShort { tokens: 1 })
    ));
    let ok = WeightedTokens::new(vec![1, 2], vec![0.0, 1.0]).unwrap();
    assert!(matches!(
        ok.into_datum(Some(1)),
        Err(DataError::MaxLengthTooSmall { max_length: 1 })
    ));
    let context = WeightedTokens::new(vec![1, 2], vec![1.0, 0.0]).unwrap();
    assert!(matches!(
        context.into_datum(None),
        Err(DataError::NothingToTrain { max_length: None })
    ));
}

#[test]
fn prompt_completion_weights_only_the_completion() {
    let tok = micro();
    let prompt = tok.encode("What is two plus two?", true).unwrap();
    let completion = tok.encode(" Four.", false).unwrap();
    let options = DatumOptions::new().append_eos(true);
    let datum =
        datum_from_prompt_completion(&tok, "What is two plus two?", " Four.", &options).unwrap();
    let (input, targets, weights) = parts(&datum);
    let eos = tok.eos_token_id().unwrap();
    let all: Vec<u32> = prompt
        .iter()
        .chain(&completion)
        .copied()
        .chain([eos])
        .collect();
    assert_eq!(input, all[..all.len() - 1]);
    assert_eq!(
        targets,
        all[1..].iter().map(|&t| i64::from(t)).collect::<Vec<_>>()
    );
    // Targets 0..prompt-1 predict prompt tokens (weight 0); the rest are the completion.
    let trained = weights.iter().filter(|w| **w == 1.0).count();
    assert_eq!(trained, completion.len() + 1);
    assert!(weights[..prompt.len() - 1].iter().all(|w| *w == 0.0));
    assert!(weights[prompt.len() - 1..].iter().all(|w| *w == 1.0));

    assert!(matches!(
        datum_from_prompt_completion(&tok, "Prompt", "", &DatumOptions::new()),
        Err(DataError::EmptyCompletion)
    ));
    // A cut inside the prompt leaves nothing to train on.
    assert!(matches!(
        datum_from_prompt_completion(
            &tok,
            "a long prompt of words",
            " x",
            &DatumOptions::new().max_length(2)
        ),
        Err(DataError::NothingToTrain { .. })
    ));
}

#[test]
fn conversation_datum_trains_on_assistant_turns() {
    let tok = micro();
    let renderer = ChatRenderer::for_tokenizer(&tok).unwrap();
    let chat = [
        Message::system("Be brief."),
        Message::user("Hi"),
        Message::assistant("Hello!"),
        Message::user("Bye"),
        Message::assistant("Goodbye!"),
    ];
    let all = conversation_tokens(&renderer, &chat, TrainOn::AllAssistantMessages).unwrap();
    let last = conversation_tokens(&renderer, &chat, TrainOn::LastAssistantMessage).unwrap();
    assert_eq!(all.tokens, last.tokens);
    let trained = |w: &WeightedTokens| -> String {
        let ids: Vec<u32> = w
            .tokens
            .iter()
            .zip(&w.weights)
            .filter(|(_, x)| **x > 0.0)
            .map(|(t, _)| *t)
            .collect();
        tok.decode(&ids, false).unwrap()
    };
    assert_eq!(trained(&all), "Hello!<|im_end|>\nGoodbye!<|im_end|>\n");
    assert_eq!(trained(&last), "Goodbye!<|im_end|>\n");

    let datum = datum_from_conversation(&renderer, &chat, TrainOn::default(), &DatumOptions::new())
        .unwrap();
    let (input, targets, weights) = parts(&datum);
    assert_eq!(input.len(), all.tokens.len() - 1);
    assert_eq!(targets.len(), input.len());
    assert_eq!(weights, all.weights[1..]);

    assert!(matches!(
        datum_from_conversation(
            &renderer,
            &[Message::user("x")],
            TrainOn::default(),
            &DatumOptions::new()
        ),
        Err(DataError::Chat {
            source: ChatError::NoAssistantMessage
        })
    ));
}
