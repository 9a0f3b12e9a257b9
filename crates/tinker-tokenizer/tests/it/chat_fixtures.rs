//! The chat renderer against transformers' `apply_chat_template` (fixtures generated once
//! by `scripts/fixtures/chat/generate.py` and committed), and assistant-turn masking.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use tinker_tokenizer::Tokenizer;
use tinker_tokenizer::chat::{
    BuiltinTemplate, ChatError, ChatRenderer, ChatTemplate, Message, TrainOn,
};

#[derive(Deserialize)]
struct Fixtures {
    conversations: BTreeMap<String, Vec<Message>>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    family: String,
    conversation: String,
    add_generation_prompt: bool,
    kwargs: BTreeMap<String, minijinja::Value>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    text: Option<String>,
    error: Option<String>,
    ids: Option<Vec<u32>>,
}

fn fixtures() -> Fixtures {
    let text = include_str!("../fixtures/chat_templates.json");
    serde_json::from_str(text).unwrap()
}

fn micro() -> Tokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tinker-local/models/micro");
    Tokenizer::from_path(dir).unwrap()
}

fn builtin(family: &str) -> Option<BuiltinTemplate> {
    BuiltinTemplate::ALL
        .into_iter()
        .find(|b| b.name() == family)
}

/// The template of a fixture case, set up as the generator called transformers.
fn template(case: &Case, tokenizer: &Tokenizer) -> ChatTemplate {
    let source = match builtin(&case.family) {
        Some(b) => b.source(),
        None => tokenizer.chat_template().unwrap(),
    };
    let mut t = ChatTemplate::new(&case.family, source)
        .unwrap()
        .special_tokens(case.bos_token.as_deref(), case.eos_token.as_deref());
    for (k, v) in &case.kwargs {
        t = t.with_var(k, v).unwrap();
    }
    t
}

#[test]
fn renders_like_transformers() {
    let fx = fixtures();
    let tok = micro();
    assert!(fx.cases.len() >= 50, "{} cases", fx.cases.len());
    for case in &fx.cases {
        let what = format!(
            "{} / {} / gen={} / {:?}",
            case.family,
            case.conversation,
            case.add_generation_prompt,
            case.kwargs.keys().collect::<Vec<_>>()
        );
        let messages = &fx.conversations[&case.conversation];
        let got = template(case, &tok).render(messages, case.add_generation_prompt);
        match (&case.text, &case.error) {
            (Some(want), _) => {
                assert_eq!(&got.unwrap(), want, "{what}");
                let ids = tok.encode(want, false).unwrap();
                assert_eq!(Some(&ids), case.ids.as_ref(), "{what}: token ids");
            }
            (None, Some(want)) => match got {
                Err(ChatError::Rejected { message, .. }) => assert_eq!(&message, want, "{what}"),
                other => panic!("{what}: expected the template's exception, got {other:?}"),
            },
            (None, None) => panic!("{what}: fixture has neither text nor error"),
        }
    }
}

#[test]
fn builtin_templates_match_their_fixtures() {
    // The built-ins' own special tokens are the ones the fixtures used.
    let fx = fixtures();
    for case in fx.cases.iter().filter(|c| c.kwargs.is_empty()) {
        let Some(b) = builtin(&case.family) else {
            continue;
        };
        assert_eq!(b.bos_token(), case.bos_token.as_deref());
        assert_eq!(Some(b.eos_token()), case.eos_token.as_deref());
        let got = b.template().unwrap().render(
            &fx.conversations[&case.conversation],
            case.add_generation_prompt,
        );
        match &case.text {
            Some(want) => assert_eq!(&got.unwrap(), want),
            None => assert!(matches!(got, Err(ChatError::Rejected { .. }))),
        }
    }
}

/// The pieces encoded one by one give transformers' tokens of the whole text where the
/// tokenizer knows the template's special tokens (ChatML: micro's own and Qwen3's).
#[test]
fn training_tokens_equal_whole_text_tokens() {
    let fx = fixtures();
    let tok = micro();
    let mut checked = 0;
    for case in &fx.cases {
        let (Some(text), Some(ids)) = (&case.text, &case.ids) else {
            continue;
        };
        let messages = &fx.conversations[&case.conversation];
        if case.add_generation_prompt
            || !messages
                .iter()
                .any(|m| m.role == tinker_tokenizer::chat::Role::Assistant)
        {
            continue;
        }
        let renderer = ChatRenderer::new(template(case, &tok), tok.clone());
        for train_on in [TrainOn::AllAssistantMessages, TrainOn::LastAssistantMessage] {
            let r = renderer.render_for_training(messages, train_on).unwrap();
            assert_eq!(&r.text, text);
            assert_eq!(r.tokens.len(), r.weights.len());
            if matches!(case.family.as_str(), "micro" | "qwen3") {
                assert_eq!(&r.tokens, ids, "{} / {}", case.family, case.conversation);
            } else {
                assert_eq!(&tok.decode(&r.tokens, false).unwrap(), text);
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked}");
}

fn spans(family: &str, conversation: &str, train_on: TrainOn) -> Vec<String> {
    let fx = fixtures();
    let tok = micro();
    let template = match builtin(family) {
        Some(b) => b.template().unwrap(),
        None => ChatTemplate::new("micro", tok.chat_template().unwrap())
            .unwrap()
            .special_tokens(tok.bos_token(), tok.eos_token()),
    };
    let renderer = ChatRenderer::new(template, tok.clone());
    let r = renderer
        .render_for_training(&fx.conversations[conversation], train_on)
        .unwrap();
    let texts: Vec<String> = r
        .trained_spans
        .iter()
        .map(|s| r.text[s.clone()].to_owned())
        .collect();
    // The weighted tokens decode to exactly the trained text.
    let weighted: Vec<u32> = r
        .tokens
        .iter()
        .zip(&r.weights)
        .filter(|(_, w)| **w == 1.0)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(tok.decode(&weighted, false).unwrap(), texts.concat());
    assert!(r.weights.iter().all(|w| *w == 0.0 || *w == 1.0));
    texts
}

#[test]
fn masks_every_assistant_turn() {
    let all = TrainOn::AllAssistantMessages;
    assert_eq!(
        spans("micro", "multi_turn", all),
        [
            "Paris is in France.<|im_end|>\n",
            "Rome is in Italy.<|im_end|>\n"
        ]
    );
    assert_eq!(
        spans("llama3", "multi_turn", all),
        [
            "Paris is in France.<|eot_id|>",
            "Rome is in Italy.<|eot_id|>"
        ]
    );
    assert_eq!(
        spans("gemma3", "multi_turn", all),
        [
            "Paris is in France.<end_of_turn>\n",
            "Rome is in Italy.<end_of_turn>\n"
        ]
    );
    // Qwen3 adds an empty think block to the last turn only: trained, as the model must
    // produce it.
    assert_eq!(
        spans("qwen3", "multi_turn", all),
        [
            "Paris is in France.<|im_end|>\n",
            "<think>\n\n</think>\n\nRome is in Italy.<|im_end|>\n"
        ]
    );
    // Qwen3 drops earlier turns' reasoning: located by their closing text.
    assert_eq!(
        spans("qwen3", "thinking_history", all),
        [
            "9.<|im_end|>\n",
            "<think>\nFour fours.\n</think>\n\n16.<|im_end|>\n"
        ]
    );
    // Trimmed content (Llama 3 and Gemma 3 trim).
    assert_eq!(
        spans("llama3", "whitespace_unicode", all),
        ["Ça va? 🙂<|eot_id|>"]
    );
}

#[test]
fn masks_only_the_last_assistant_turn() {
    let last = TrainOn::LastAssistantMessage;
    assert_eq!(
        spans("qwen3", "multi_turn", last),
        ["<think>\n\n</think>\n\nRome is in Italy.<|im_end|>\n"]
    );
    assert_eq!(
        spans("llama3", "multi_turn", last),
        ["Rome is in Italy.<|eot_id|>"]
    );
    // A conversation ending with a user message: the last assistant turn is mid-way.
    assert_eq!(
        spans("gemma3", "ends_with_user", last),
        ["Hello!<end_of_turn>\n"]
    );
}

#[test]
fn typed_errors_for_bad_conversations() {
    let tok = micro();
    let renderer = ChatRenderer::for_tokenizer(&tok).unwrap();
    assert!(matches!(
        renderer.render_for_training(&[], TrainOn::default()),
        Err(ChatError::EmptyConversation)
    ));
    assert!(matches!(
        renderer.render_for_training(&[Message::user("hi")], TrainOn::default()),
        Err(ChatError::NoAssistantMessage)
    ));
    assert!(matches!(
        renderer.prompt_tokens(&[]),
        Err(ChatError::EmptyConversation)
    ));
    let gemma = ChatRenderer::new(BuiltinTemplate::Gemma3.template().unwrap(), tok.clone());
    let err = gemma
        .render_for_training(
            &[
                Message::user("a"),
                Message::user("b"),
                Message::assistant("c"),
            ],
            TrainOn::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, ChatError::Rejected { message, .. } if message.contains("alternate")),
        "{err}"
    );
    assert!(matches!(
        ChatTemplate::new("bad", "{% for %}"),
        Err(ChatError::Parse { .. })
    ));
    assert!(matches!(
        ChatTemplate::new("undef", "{{ nothing_here() }}")
            .unwrap()
            .render(&[Message::user("x")], false),
        Err(ChatError::Render { .. })
    ));
}

#[test]
fn prompt_tokens_end_with_the_generation_prompt() {
    let tok = micro();
    let renderer = ChatRenderer::for_tokenizer(&tok).unwrap();
    let ids = renderer.prompt_tokens(&[Message::user("Hi")]).unwrap();
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn loop_controls_strftime_and_python_methods_work() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-07-26T10:00:00+00:00").unwrap();
    let src = "{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}\
               {{ m.content.strip().upper() }}{% endfor %}|{{ strftime_now('%d %b %Y') }}|\
               {{ messages | length }}|{{ {'k': 'v'}.items() | list | length }}";
    let t = ChatTemplate::with_fixed_now("t", src, now).unwrap();
    let out = t
        .render(&[Message::user("  a b "), Message::user("never")], false)
        .unwrap();
    assert_eq!(out, "A B|26 Jul 2026|2|1");
}

/// Qwen3 with `enable_thinking=false`: the generation prompt holds an empty think block
/// that the history does not, so the turn starts where the two part.
#[test]
fn qwen3_without_thinking_trains_on_the_answer_only() {
    let fx = fixtures();
    let tok = micro();
    let template = BuiltinTemplate::Qwen3
        .template()
        .unwrap()
        .with_var("enable_thinking", false)
        .unwrap();
    let r = ChatRenderer::new(template, tok)
        .render_for_training(&fx.conversations["ends_with_user"], TrainOn::default())
        .unwrap();
    let spans: Vec<&str> = r.trained_spans.iter().map(|s| &r.text[s.clone()]).collect();
    assert_eq!(spans, ["Hello!<|im_end|>\n"]);
}
