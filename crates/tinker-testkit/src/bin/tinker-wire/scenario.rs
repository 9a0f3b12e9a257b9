//! The wire scenario in Rust: the same calls, in the same order and with the same
//! arguments, as `scripts/wire/scenario.py` makes with the official SDK.

use tinker_client::{
    AccessScope, CloseStatus, ListOptions, SamplingSource, ServiceClient, TrainingClientOptions,
};
use tinker_types::{AdamParams, CrossEntropyInputs, Datum, LossFn, ModelInput, SamplingParams};

/// The base model both scenarios train.
const MODEL: &str = "tinker-local/micro";
/// The API key both scenarios send.
const KEY: &str = "tml-wire-test";
/// Token ids of the micro model's vocabulary (as in the Python scenario).
const TOKENS: [u32; 8] = [5, 17, 42, 99, 7, 3, 250, 11];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn datum(tokens: &[u32]) -> Result<Datum, BoxError> {
    let targets: Vec<i64> = tokens[1..].iter().map(|&t| i64::from(t)).collect();
    let weights = vec![1.0; targets.len()];
    Ok(Datum::new(
        ModelInput::from_tokens(&tokens[..tokens.len() - 1]),
        CrossEntropyInputs::new(targets, weights)?.into_inputs()?,
    ))
}

/// Runs the scenario against `url` (the recording proxy).
pub(crate) async fn run(url: &str) -> Result<(), BoxError> {
    let service = ServiceClient::builder()
        .base_url(url)
        .api_key(KEY)
        // The Python side runs with TINKER_TELEMETRY=0: uploads are timed, not ordered.
        .telemetry(false)
        .build()
        .await?;
    // Session-less, like the SDK's `tinker.RestClient`.
    let rest = service.create_rest_client().await?;
    rest.get_server_capabilities().await?;
    let mut metadata = serde_json::Map::new();
    metadata.insert("purpose".to_owned(), "wire".into());
    let options = TrainingClientOptions::rank(8)
        .seed(7)
        .train_unembed(false)
        .user_metadata(metadata);
    let training = service
        .create_lora_training_client_with(MODEL, options)
        .await?;
    let run_id = training.get_info().await?.model_id;
    let data = vec![datum(&TOKENS)?, datum(&TOKENS[2..])?];
    training
        .forward_backward(data.clone(), LossFn::CrossEntropy)
        .await?;
    training
        .optim_step(AdamParams::with_learning_rate(1e-2))
        .await?;
    training.forward(data, LossFn::CrossEntropy).await?;
    let saved = training.save_state("wire-state").await?;
    service
        .create_training_client_from_state_with_optimizer(&saved.path)
        .await?;
    let sampler_path = training
        .save_weights_for_sampler("wire-sampler")
        .await?
        .path;
    let sampler = service
        .create_sampling_client(SamplingSource::ModelPath(sampler_path.clone()))
        .await?;
    let prompt = ModelInput::from_tokens(&TOKENS[..4]);
    let mut params = SamplingParams::with_max_tokens(4);
    params.seed = Some(1);
    sampler.sample(prompt.clone(), 2, params).await?;
    sampler.compute_logprobs(prompt).await?;

    rest.list_training_runs(ListOptions::default()).await?;
    rest.get_training_run(&run_id, AccessScope::Owned).await?;
    rest.list_checkpoints(&run_id).await?;
    rest.list_user_checkpoints(ListOptions::default()).await?;
    rest.get_weights_info_by_tinker_path(&saved.path).await?;
    rest.publish_checkpoint_from_tinker_path(&saved.path)
        .await?;
    rest.unpublish_checkpoint_from_tinker_path(&saved.path)
        .await?;
    rest.set_checkpoint_ttl_from_tinker_path(&saved.path, Some(7200))
        .await?;
    rest.delete_checkpoint_from_tinker_path(&sampler_path)
        .await?;
    let sessions = rest.list_sessions(ListOptions::default()).await?;
    let session = sessions.sessions.first().ok_or("no session listed")?;
    rest.get_session(session, AccessScope::Owned).await?;
    service
        .close(CloseStatus::Success, Some("wire scenario complete"))
        .await?;
    Ok(())
}
