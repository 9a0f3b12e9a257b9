//! The conveniences of issue 10: `u32` token ids wherever token ids go, and the borrowed
//! forward/backward request encoding the same bytes as the owned one.

use tinker_types::{
    CrossEntropyInputs, Datum, ForwardBackwardRequest, LossConfigValue, LossFn, ModelInput,
    PolicyGradientInputs, TensorData,
};

#[test]
fn u32_token_ids_widen_into_targets_tensors_and_inputs() {
    let tokens: Vec<u32> = vec![5, 17, 4_000_000_000];
    assert_eq!(
        TensorData::from(tokens.clone()),
        TensorData::vector_i64(vec![5, 17, 4_000_000_000])
    );
    assert_eq!(
        TensorData::from(&tokens[..2]),
        TensorData::vector_i64(vec![5, 17])
    );
    assert_eq!(
        ModelInput::from(tokens.clone()),
        ModelInput::from_tokens(&tokens)
    );
    assert_eq!(
        ModelInput::from(&tokens[..]),
        ModelInput::from_tokens(&tokens)
    );
    // Targets take u32 ids as a tokenizer returns them, and i64 as before.
    let from_u32 = CrossEntropyInputs::new(tokens.iter().copied(), vec![1.0; 3]).unwrap();
    let from_i64 = CrossEntropyInputs::new(vec![5i64, 17, 4_000_000_000], vec![1.0; 3]).unwrap();
    assert_eq!(from_u32, from_i64);
    let pg = PolicyGradientInputs::new(tokens, vec![-0.5; 3], vec![1.0; 3]).unwrap();
    assert_eq!(pg.target_tokens, from_i64.target_tokens);
    // Lengths are still checked.
    assert!(CrossEntropyInputs::new([1u32, 2], vec![1.0]).is_err());
}

#[test]
fn the_borrowed_request_encodes_the_owned_requests_bytes() {
    let datum = |tokens: &[u32]| {
        Datum::new(
            ModelInput::from_tokens(&tokens[..tokens.len() - 1]),
            CrossEntropyInputs::new(tokens[1..].iter().copied(), vec![1.0; tokens.len() - 1])
                .unwrap()
                .into_inputs()
                .unwrap(),
        )
    };
    let mut owned = ForwardBackwardRequest::new(
        "s:train:0",
        7,
        vec![datum(&[1, 2, 3, 4]), datum(&[9, 8, 7])],
        LossFn::CrossEntropy,
    );
    owned.loss_fn_config = Some([("clip".to_owned(), LossConfigValue::Number(0.2))].into());
    owned.forward_only = true;
    let borrowed = owned.as_borrowed();
    assert_eq!(
        borrowed.encode_proto().unwrap(),
        owned.encode_proto().unwrap()
    );
    assert_eq!(
        ForwardBackwardRequest::decode_proto(&borrowed.encode_proto().unwrap()).unwrap(),
        owned
    );
}
