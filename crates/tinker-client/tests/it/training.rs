//! End to end over HTTP against an in-process tinker-local: training, checkpoints,
//! sampling from trained weights, session lifecycle.

use tinker_testkit::local as common;

use common::{MODEL, datum, start, training};
use tinker_client::{CloseStatus, CustomLossOutput, ErrorKind, SampleOptions, SamplingSource};
use tinker_types::{AdamParams, LossFn, ModelInput, SamplingParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_save_and_sample() {
    let env = start(None).await;
    let tc = training(&env).await;
    assert!(tc.model_id().starts_with(env.service.session_id()));
    let info = tc.get_info().await.unwrap();
    assert_eq!(info.model_id, tc.model_id());

    let tokenizer = tc.get_tokenizer().await.unwrap();
    let tokens = tokenizer
        .encode("The capital of France is Paris.", true)
        .unwrap();
    let data = vec![datum(&tokens)];

    // forward: per-datum logprobs, no training.
    let fwd = tc
        .forward(data.clone(), LossFn::CrossEntropy)
        .await
        .unwrap();
    assert_eq!(fwd.loss_fn_outputs.len(), 1);
    assert!(fwd.loss_fn_outputs[0].contains_key("logprobs"));
    let first_loss = fwd.metrics["loss:sum"];

    // Pipelined: several steps submitted before awaiting anything.
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push((
            tc.forward_backward(data.clone(), LossFn::CrossEntropy),
            tc.optim_step(AdamParams::with_learning_rate(2e-2)),
        ));
    }
    for (fb, step) in handles {
        assert!(fb.await.unwrap().metrics.contains_key("loss:sum"));
        step.await.unwrap();
    }
    let after = tc
        .forward(data.clone(), LossFn::CrossEntropy)
        .await
        .unwrap()
        .metrics["loss:sum"];
    assert!(
        after < first_loss,
        "loss should fall: {first_loss} -> {after}"
    );

    // Checkpoints.
    let state = tc.save_state("step-4").await.unwrap();
    assert!(
        state.path.starts_with("tinker://") && state.path.ends_with("/weights/step-4"),
        "{}",
        state.path
    );
    let sampler_path = tc.save_weights_for_sampler("s4").await.unwrap().path;
    assert!(sampler_path.ends_with("/sampler_weights/s4"));

    // Sampling from the named sampler weights, with logprob options.
    let sampler = env
        .service
        .create_sampling_client(SamplingSource::ModelPath(sampler_path.clone()))
        .await
        .unwrap();
    assert_eq!(sampler.base_model(), Some(MODEL));
    // The training client's shorthand opens the same weights on the same session.
    let same = tc.create_sampling_client(&sampler_path).await.unwrap();
    assert_eq!(same.model_path(), Some(sampler_path.as_str()));
    assert_ne!(same.sampling_session_id(), sampler.sampling_session_id());
    assert!(
        same.sampling_session_id()
            .starts_with(env.service.session_id())
    );
    assert!(same.get_telemetry().is_some());
    assert!(matches!(
        tc.create_sampling_client("/not/tinker")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    ));
    let prompt = ModelInput::from_tokens(&tokens[..4]);
    let out = sampler
        .sample_with(
            prompt.clone(),
            SamplingParams {
                max_tokens: Some(5),
                seed: Some(1),
                ..SamplingParams::default()
            },
            SampleOptions::samples(2)
                .prompt_logprobs(true)
                .topk_sample_logprobs(2),
        )
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 2);
    for s in &out.sequences {
        assert!(!s.sequence_id.is_empty());
        assert!(!s.tokens.is_empty() && s.tokens.len() <= 5);
    }
    let lps = out.prompt_logprobs.unwrap();
    assert_eq!(lps.len(), 4);
    assert!(lps[0].is_none() && lps[1].is_some());

    let lps = sampler.compute_logprobs(prompt.clone()).await.unwrap();
    assert_eq!(lps.len(), 4);

    // The ephemeral snapshot path.
    let snap = tc.save_weights_and_get_sampling_client().await.unwrap();
    let out = snap
        .sample(prompt.clone(), 1, SamplingParams::with_max_tokens(3))
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 1);

    // A base-model sampler.
    let base = env
        .service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.to_owned()))
        .await
        .unwrap();
    assert_eq!(
        base.sample(prompt, 1, SamplingParams::with_max_tokens(2))
            .await
            .unwrap()
            .sequences
            .len(),
        1
    );

    // Loading state: into this model (deprecated form) and into new models.
    tc.load_state(&state.path).await.unwrap();
    tc.load_state_with_optimizer(&state.path).await.unwrap();
    let resumed = env
        .service
        .create_training_client_from_state(&state.path)
        .await
        .unwrap();
    let resumed_opt = env
        .service
        .create_training_client_from_state_with_optimizer(&state.path)
        .await
        .unwrap();
    assert_ne!(resumed.model_id(), tc.model_id());
    for c in [&resumed, &resumed_opt] {
        let loss = c
            .forward(data.clone(), LossFn::CrossEntropy)
            .await
            .unwrap()
            .metrics["loss:sum"];
        assert!(
            (loss - after).abs() < 1e-3 * (1.0 + after.abs()),
            "loaded weights give {loss}, saved {after}"
        );
    }

    let caps = env.service.get_server_capabilities().await.unwrap();
    assert!(
        caps.supported_models
            .iter()
            .any(|m| m.model_name.as_deref() == Some(MODEL))
    );

    env.service.close(CloseStatus::Success, None).await.unwrap();
    let err = tc.forward(data, LossFn::CrossEntropy).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    env.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_loss_applies_the_users_gradient() {
    let env = start(None).await;
    let tc = training(&env).await;
    let data = vec![datum(&[5, 6, 7, 8, 9, 10]), datum(&[11, 12, 13])];
    let before = tc
        .forward(data.clone(), LossFn::CrossEntropy)
        .await
        .unwrap()
        .metrics["loss:sum"];
    // Negative log-likelihood: loss = -Σ logprobs, dLoss/dlogprob = -1.
    let out = tc
        .forward_backward_custom(data.clone(), |_data, logprobs| {
            let loss: f64 = logprobs.iter().flatten().map(|&x| -f64::from(x)).sum();
            let grads = logprobs.iter().map(|l| vec![-1.0; l.len()]).collect();
            Ok(CustomLossOutput::new(loss, grads).metric("nll:sum", loss))
        })
        .await
        .unwrap();
    let loss = out.metrics["loss:sum"];
    assert!(
        (loss - before).abs() < 1e-3 * (1.0 + before.abs()),
        "custom loss {loss} vs forward {before}"
    );
    assert!(out.metrics.contains_key("surrogate_loss:sum"));
    assert_eq!(out.metrics["nll:sum"], loss);
    tc.optim_step(AdamParams::with_learning_rate(2e-2))
        .await
        .unwrap();
    let after = tc
        .forward(data.clone(), LossFn::CrossEntropy)
        .await
        .unwrap()
        .metrics["loss:sum"];
    assert!(after < before, "{before} -> {after}");

    // A loss that fails loses the backward request's reserved seq_id: later training
    // calls fail at once with SequenceBroken, naming it.
    let err = tc
        .forward_backward_custom(data.clone(), |_d, _l| {
            Err(tinker_client::Error::new(ErrorKind::InvalidInput, "boom"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = tc.forward(data, LossFn::CrossEntropy).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SequenceBroken);
    assert!(err.message().contains("boom"), "{err}");
    env.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_sending() {
    let env = start(None).await;
    let tc = training(&env).await;
    let err = tc
        .forward_backward(vec![], LossFn::CrossEntropy)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let mut no_weights = datum(&[1, 2, 3]);
    no_weights.loss_fn_inputs.remove("weights");
    let err = tc
        .forward_backward(vec![no_weights], LossFn::CrossEntropy)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = tc
        .forward_backward(vec![datum(&[1, 2, 3])], LossFn::Ppo)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    assert_eq!(
        tc.save_state("a/b").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        tc.load_state("s3://x").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let err = env
        .service
        .create_sampling_client(SamplingSource::ModelPath("/tmp/x".into()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let sampler = env
        .service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    let err = sampler
        .sample(
            ModelInput::from_tokens(&[1, 2]),
            0,
            SamplingParams::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = sampler
        .sample(ModelInput::empty(), 1, SamplingParams::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = sampler
        .sample_with(
            ModelInput::from_tokens(&[1, 2, 3]),
            SamplingParams::default(),
            SampleOptions::samples(1).prompt_logprobs_last_n(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // Nothing above reached the server: the model's request order has no gap.
    let out = tc
        .forward_backward(vec![datum(&[1, 2, 3])], LossFn::CrossEntropy)
        .await
        .unwrap();
    assert_eq!(out.loss_fn_outputs.len(), 1);
    env.server.shutdown().await;
}

/// With `pjwt_auth_enabled` the client exchanges its key for server JWTs during start-up
/// and every later call authenticates with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_start_up() {
    let env = common::start_with(None, |c| c.jwt = true).await;
    assert!(env.service.client_config().await.unwrap().pjwt_auth_enabled);
    let tc = training(&env).await;
    let out = tc
        .forward_backward(vec![datum(&[1, 2, 3])], LossFn::CrossEntropy)
        .await
        .unwrap();
    assert_eq!(out.loss_fn_outputs.len(), 1);
    let who = env
        .service
        .create_rest_client()
        .await
        .unwrap()
        .whoami()
        .await
        .unwrap();
    assert!(!who.user_urn.is_empty());
    env.server.shutdown().await;
}

/// A batch over the server's chunk limit (1024 datums) is split into two requests,
/// submitted in parallel in the SDK's order, and combined: outputs concatenated in order,
/// `loss:sum` summed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_chunked_and_combined() {
    let env = start(None).await;
    let tc = training(&env).await;
    let data: Vec<_> = (0..1030u32)
        .map(|i| datum(&[1 + i % 50, 2 + i % 7, 3]))
        .collect();
    let whole = tc
        .forward(data.clone(), LossFn::CrossEntropy)
        .await
        .unwrap();
    assert_eq!(whole.loss_fn_outputs.len(), 1030);
    let head = tc
        .forward(data[..1024].to_vec(), LossFn::CrossEntropy)
        .await
        .unwrap();
    let tail = tc
        .forward(data[1024..].to_vec(), LossFn::CrossEntropy)
        .await
        .unwrap();
    let sum = head.metrics["loss:sum"] + tail.metrics["loss:sum"];
    let got = whole.metrics["loss:sum"];
    assert!(
        (got - sum).abs() < 1e-3 * (1.0 + sum.abs()),
        "{got} vs {sum}"
    );
    assert_eq!(whole.loss_fn_outputs[1024], tail.loss_fn_outputs[0]);
    // Training on the big batch works too (two chunks, one turn window).
    let fb = tc.forward_backward(data, LossFn::CrossEntropy);
    let step = tc.optim_step(AdamParams::default());
    assert_eq!(fb.await.unwrap().loss_fn_outputs.len(), 1030);
    step.await.unwrap();
    env.server.shutdown().await;
}

/// `create_training_client_from_state_with`: SDK 0.38's overrides reach the server (a
/// weights-only load with a new optimizer trains; user_metadata lands on the training run;
/// the base model override is checked by the server), and options the SDK refuses fail
/// before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_from_state_with_overrides() {
    use std::collections::BTreeMap;
    use tinker_client::{AccessScope, LoadStateOptions};
    use tinker_types::OptimizerConfig;

    let env = start(None).await;
    let tc = training(&env).await;
    tc.forward_backward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
        .await
        .unwrap();
    tc.optim_step(AdamParams::default()).await.unwrap();
    let state = tc.save_state("overrides").await.unwrap().path;
    let rest = env.service.create_rest_client().await.unwrap();

    let meta = BTreeMap::from([("origin".to_owned(), "overrides".to_owned())]);
    let loaded = env
        .service
        .create_training_client_from_state_with(
            &state,
            LoadStateOptions::weights_only()
                .optimizer(OptimizerConfig::AdamW)
                .user_metadata(meta.clone())
                .base_model(MODEL)
                .weights_access_token("not-needed-here"),
        )
        .await
        .unwrap();
    assert_ne!(loaded.model_id(), tc.model_id());
    let run = rest
        .get_training_run(loaded.model_id(), AccessScope::Owned)
        .await
        .unwrap();
    assert_eq!(run.user_metadata.as_ref(), Some(&meta));
    assert_eq!(run.base_model, MODEL);
    // It trains, starting from the loaded weights (same loss as the source model).
    let d = vec![datum(&[5, 6, 7, 8])];
    let src = tc
        .forward(d.clone(), LossFn::CrossEntropy)
        .await
        .unwrap()
        .metrics["loss:sum"];
    let fb = loaded
        .forward_backward(d.clone(), LossFn::CrossEntropy)
        .await
        .unwrap();
    assert!(
        (fb.metrics["loss:sum"] - src).abs() < 1e-4,
        "{fb:?} vs {src}"
    );
    loaded
        .optim_step(AdamParams::with_learning_rate(2e-2))
        .await
        .unwrap();
    let after = loaded
        .forward(d, LossFn::CrossEntropy)
        .await
        .unwrap()
        .metrics["loss:sum"];
    assert!(after < src, "{after} !< {src}");

    // The server refuses an optimizer it does not run and an incompatible base model.
    let err = env
        .service
        .create_training_client_from_state_with(
            &state,
            LoadStateOptions::weights_only().optimizer(OptimizerConfig::dimuon()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let err = env
        .service
        .create_training_client_from_state_with(
            &state,
            LoadStateOptions::with_optimizer_state().base_model("tinker-local/other"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // Refused before sending: an optimizer with restored state; overrides of an existing
    // model's load.
    let err = env
        .service
        .create_training_client_from_state_with(
            &state,
            LoadStateOptions::with_optimizer_state().optimizer(OptimizerConfig::AdamW),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = loaded
        .load_state_with(&state, LoadStateOptions::weights_only().base_model(MODEL))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // The access token is the one extra argument of `load_state*`.
    loaded
        .load_state_with(
            &state,
            LoadStateOptions::with_optimizer_state().weights_access_token("tok"),
        )
        .await
        .unwrap();
    env.server.shutdown().await;
}

/// A batch kept as `Arc<[Datum]>` is sent step after step without being copied (the client
/// encodes from it in place), and is the same batch as the `Vec` it came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_batch_is_sent_as_is_step_after_step() {
    let env = start(None).await;
    let tc = training(&env).await;
    let batch: Vec<tinker_types::Datum> = vec![datum(&[5, 17, 42, 99, 7]), datum(&[3, 250, 11, 4])];
    let shared: std::sync::Arc<[tinker_types::Datum]> = batch.clone().into();
    let by_value = tc.forward(batch, LossFn::CrossEntropy).await.unwrap();
    let by_arc = tc
        .forward(shared.clone(), LossFn::CrossEntropy)
        .await
        .unwrap();
    assert_eq!(by_value.loss_fn_outputs, by_arc.loss_fn_outputs);
    let mut losses = Vec::new();
    for step in 0..3 {
        // By Arc (cloning the Arc, not the batch) and by slice, alternately.
        let fb = if step % 2 == 0 {
            tc.forward_backward(shared.clone(), LossFn::CrossEntropy)
        } else {
            tc.forward_backward(&shared[..], LossFn::CrossEntropy)
        };
        losses.push(fb.await.unwrap().metrics["loss:sum"]);
        tc.optim_step(AdamParams::with_learning_rate(2e-2))
            .await
            .unwrap();
    }
    assert!(losses[2] < losses[0], "the loss should fall: {losses:?}");
    // Nothing kept a reference to the batch once the steps finished.
    assert_eq!(std::sync::Arc::strong_count(&shared), 1);
    env.server.shutdown().await;
}
