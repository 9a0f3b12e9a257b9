//! Sampling limits end to end against tinker-local: the outer retry handler shared per
//! (holder, sampling session) (§6.5), and the session futures poller's ack-only timeout
//! and up-front in-flight reservation (§3.3).

use tinker_testkit::local as common;

use std::time::{Duration, Instant};

use common::{Env, MODEL, start_with};
use tinker_client::{SamplerHandleOptions, SamplingClient, SamplingSource};
use tinker_types::{ModelInput, SamplingParams};

async fn sampler(env: &Env) -> Result<SamplingClient, tinker_client::Error> {
    env.service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
}

fn prompt() -> ModelInput {
    ModelInput::from_tokens(&[3, 4, 5, 6])
}

fn params() -> SamplingParams {
    SamplingParams::with_max_tokens(2)
}

/// The JSON inside a sampler handle, and back.
fn decode(handle: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(handle)?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn encode(json: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

/// Samples on `client` and returns when it finished, counted from `t0`.
fn timed_sample(
    client: SamplingClient,
    t0: Instant,
) -> tokio::task::JoinHandle<Result<Duration, tinker_client::Error>> {
    tokio::spawn(async move {
        client.sample(prompt(), 1, params()).await?;
        Ok(t0.elapsed())
    })
}

/// Two shadow clients rehydrated from one handle (one shadow holder) share one outer
/// retry handler: with `sample_max_concurrent_requests = 1`, the second waits while the
/// first holds the slot through a retried 503. A client of another holder (another key)
/// for the same session has its own handler and does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_clients_of_one_holder_share_the_concurrency_limit() {
    // The first asample fails; the holder retry loop retries it after 1 s.
    let env = start_with(Some("script=asample#1:503"), |_| {}).await;
    let original = sampler(&env).await.unwrap();
    let mut json = decode(&original.sampler_handle().unwrap()).unwrap();
    json["holder"]["client_config"]["sample_max_concurrent_requests"] = 1.into();
    json["holder"]["client_config"]["sample_use_retrieve_futures"] = false.into();
    let handle = encode(&json);
    let shadow = |key: &str| {
        SamplingClient::from_sampler_handle(&handle, SamplerHandleOptions::new().api_key(key))
    };
    let a = shadow("tml-test-key").await.unwrap();
    let b = shadow("tml-test-key").await.unwrap();
    let other = shadow("tml-test-key+other").await.unwrap();

    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let t0 = Instant::now();
    let first = timed_sample(a, t0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = timed_sample(b, t0);
    let elsewhere = timed_sample(other, t0);
    let (first, second, elsewhere) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
        elsewhere.await.unwrap().unwrap(),
    );
    assert!(first >= Duration::from_millis(900), "{first:?}");
    assert!(
        second > first,
        "the second client waited for the shared slot: {second:?} vs {first:?}"
    );
    assert!(
        elsewhere < first,
        "another holder's client has its own limit: {elsewhere:?} vs {first:?}"
    );
}

/// Ack-only polls give up after 5 s: with every `retrieve_futures` answer stalled for
/// 8 s mid-body, the long poll (45 s) still delivers the completion, while the ack-only
/// poll that follows times out and is resent after 1 s with the same cursor.
#[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_only_polls_time_out_after_five_seconds() {
    let env = start_with(
        Some("pstall=1.0,stall_ms=8000,routes=retrieve_futures"),
        |c| c.sample_use_retrieve_futures = true,
    )
    .await;
    let sampler = sampler(&env).await.unwrap();
    let t0 = Instant::now();
    sampler.sample(prompt(), 1, params()).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(8), "{:?}", t0.elapsed());
    let stats = sampler.futures_poller_stats().unwrap();
    assert!(stats.long_polls >= 1, "{stats:?}");
    assert_eq!(stats.timed_out_polls, 0, "the long poll outlived the stall");

    let ack_polls = || {
        env.server
            .futures_polls()
            .into_iter()
            .filter(|p| p.timeout == Some(0.0))
            .collect::<Vec<_>>()
    };
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            env.server.futures_polls()
        );
        let polls = ack_polls();
        if polls.len() > seen.len() {
            seen.push((Instant::now(), polls[seen.len()].clone()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gap = seen[1].0 - seen[0].0;
    // 5 s of HTTP timeout, then 1 s of sleep; waiting out the stall would take 9 s.
    assert!(
        gap >= Duration::from_millis(5500) && gap < Duration::from_millis(7500),
        "{gap:?}"
    );
    let (first, again) = (&seen[0].1, &seen[1].1);
    assert_eq!(first.prev_cursor, again.prev_cursor);
    assert!(first.prev_cursor > 0);
    // What the timed-out poll carried is sent again (it was never acknowledged).
    assert!(
        first
            .retrieved_request_ids
            .iter()
            .all(|id| again.retrieved_request_ids.contains(id)),
        "{first:?} then {again:?}"
    );
    let stats = sampler.futures_poller_stats().unwrap();
    assert!(stats.timed_out_polls >= 1, "{stats:?}");
    assert!(stats.ack_polls >= 2, "{stats:?}");
    assert_eq!(stats.failed_polls, 0, "{stats:?}");
}

/// A `finished` completion with a size makes the sample reserve that many in-flight bytes
/// and fetch with `allow_metadata_only: false`: one `retrieve_future` call even when the
/// result exceeds the server's inline limit. The control without the poller takes the
/// metadata-only detour, so its second call meets the scripted 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sized_completion_is_fetched_in_one_round_trip() {
    let faults = Some("script=retrieve_future#2:404");
    let env = start_with(faults, |c| {
        c.sample_use_retrieve_futures = true;
        c.inline_result_limit = 1;
    })
    .await;
    let sampler = sampler(&env).await.unwrap();
    let resp = sampler.sample(prompt(), 1, params()).await.unwrap();
    assert_eq!(resp.sequences.len(), 1);
    let stats = sampler.futures_poller_stats().unwrap();
    assert_eq!(stats.reserved_fetches, 1, "{stats:?}");
    assert!(
        stats.reserved_bytes > 1,
        "above the inline limit: {stats:?}"
    );

    let control = start_with(faults, |c| c.inline_result_limit = 1).await;
    let sampler = self::sampler(&control).await.unwrap();
    let err = sampler.sample(prompt(), 1, params()).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    assert!(sampler.futures_poller_stats().is_none());
}
