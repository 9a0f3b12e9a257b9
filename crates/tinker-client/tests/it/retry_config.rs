//! The public `RetryConfig` of sampling clients against tinker-local's fault injection.

use tinker_client::{ErrorKind, RetryConfig, SamplingSource};
use tinker_testkit::local::{MODEL, fast_retry_service, start};
use tinker_types::{ModelInput, SamplingParams};

/// A 410 while polling is retried by the outer handler only (the default resubmits: see
/// `faults.rs`); with `no_retries` it is the call's error, and the client keeps its
/// session and `seq_id` counter (the next sample works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retries_surfaces_what_the_default_handler_retries() {
    let env = start(Some("script=retrieve_future#1:410")).await;
    let service = fast_retry_service(&env).await;
    let sampler = service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    assert_eq!(sampler.retry_config(), RetryConfig::default());
    let strict = sampler.with_retry_config(RetryConfig::no_retries());
    assert!(!strict.retry_config().enable_retry_logic);
    assert_eq!(
        sampler.retry_config(),
        RetryConfig::default(),
        "the original is unchanged"
    );

    let prompt = ModelInput::from_tokens(&[1, 2, 3]);
    let params = SamplingParams::with_max_tokens(2);
    let err = strict
        .sample(prompt.clone(), 1, params.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Expired, "{err:?}");

    let out = strict
        .sample(prompt.clone(), 1, params.clone())
        .await
        .unwrap();
    assert_eq!(out.sequences.len(), 1);
    let out = sampler.sample(prompt, 1, params).await.unwrap();
    assert_eq!(out.sequences.len(), 1);
    env.server.shutdown().await;
}
