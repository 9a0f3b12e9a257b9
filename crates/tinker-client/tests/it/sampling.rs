//! Sampling end to end against tinker-local: the session futures poller (§3.3) with and
//! without faults, `cancel_future` for abandoned samples (§3.2), and sampler handles /
//! shadow clients (§6.5), including interop with the Python SDK when its venv is present.

use tinker_testkit::local as common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Env, MODEL, start_with};
use tinker_client::{ErrorKind, SamplerHandleOptions, SamplingClient, SamplingSource};
use tinker_types::{ModelInput, SampleResponse, SamplingParams};

const CLONE_STRIDE: u64 = 1_000_000_000;

async fn sampler(env: &Env) -> SamplingClient {
    env.service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap()
}

fn params(max_tokens: u32, seed: u64) -> SamplingParams {
    let mut p = SamplingParams::with_max_tokens(max_tokens);
    p.seed = Some(seed);
    p
}

fn prompt() -> ModelInput {
    ModelInput::from_tokens(&[3, 4, 5, 6])
}

/// The shape every sample result must have, whichever path fetched it.
fn check_shape(resp: &SampleResponse, num_samples: usize, max_tokens: usize) {
    assert_eq!(resp.sequences.len(), num_samples, "{resp:?}");
    for seq in &resp.sequences {
        assert!(!seq.tokens.is_empty() && seq.tokens.len() <= max_tokens);
        assert!(!seq.sequence_id.is_empty());
    }
}

/// `<sampling session>:<seq_id>:<suffix>` (tinker-local's request ids) → seq_id.
fn seq_of(request_id: &str) -> u64 {
    request_id.rsplit(':').nth(1).unwrap().parse().unwrap()
}

/// Waits (up to 15 s) until `cond` holds for the server's `retrieve_futures` log.
async fn wait_polls(env: &Env, cond: impl Fn(&[tinker_local::FuturesPoll]) -> bool) {
    for _ in 0..150 {
        if cond(&env.server.futures_polls()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "condition never held; polls: {:#?}",
        env.server.futures_polls()
    );
}

fn acked_ids(polls: &[tinker_local::FuturesPoll]) -> BTreeSet<String> {
    polls
        .iter()
        .flat_map(|p| p.retrieved_request_ids.iter().cloned())
        .collect()
}

fn completed_ids(polls: &[tinker_local::FuturesPoll]) -> BTreeSet<String> {
    polls
        .iter()
        .flat_map(|p| p.completed.iter().cloned())
        .collect()
}

async fn start_poller(faults: Option<&str>) -> Env {
    start_with(faults, |c| c.sample_use_retrieve_futures = true).await
}

/// Several concurrent samples through the poller: results shaped as on the normal path,
/// cursors chained poll to poll, every completed id acknowledged (sorted), an ack-only
/// poll at the end, then silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_serves_concurrent_samples_and_acknowledges_them() {
    let env = start_poller(None).await;
    let normal = start_with(None, |_| {}).await;
    let sampler = sampler(&env).await;
    let futures: Vec<_> = (0..4)
        .map(|i| sampler.sample(prompt(), 2, params(4, i)))
        .collect();
    let results = futures_util::future::join_all(futures).await;
    for r in &results {
        check_shape(r.as_ref().unwrap(), 2, 4);
    }
    let reference = sampler_for(&normal)
        .await
        .sample(prompt(), 2, params(4, 0))
        .await
        .unwrap();
    check_shape(&reference, 2, 4);

    // Every completion is acknowledged by a later poll.
    wait_polls(&env, |polls| {
        let done = completed_ids(polls);
        done.len() == 4 && acked_ids(polls) == done
    })
    .await;
    // Let the poller go idle, then check the whole conversation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let polls = env.server.futures_polls();
    assert!(polls.iter().all(
        |p| p.cloned_sampler_id == 0 && p.sampling_session_id == sampler.sampling_session_id()
    ));
    let mut cursor = 0;
    for p in &polls {
        assert_eq!(p.prev_cursor, cursor, "cursor chain broken: {polls:#?}");
        assert!(p.cursor >= p.prev_cursor);
        let mut sorted = p.retrieved_request_ids.clone();
        sorted.sort();
        assert_eq!(sorted, p.retrieved_request_ids);
        cursor = p.cursor;
    }
    let last = polls.last().unwrap();
    assert_eq!(last.timeout, Some(0.0), "the final poll is ack-only");
    assert!(last.prev_cursor >= polls.iter().map(|p| p.cursor).max().unwrap());
    // Idle: nothing is sent any more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.server.futures_polls().len(), polls.len());
    // Each acknowledged id is a sample of clone 0 (seq_ids 0..4).
    let seqs: BTreeSet<u64> = acked_ids(&polls).iter().map(|id| seq_of(id)).collect();
    assert_eq!(seqs, (0..4).collect());
}

async fn sampler_for(env: &Env) -> SamplingClient {
    sampler(env).await
}

/// 503, 429, a dropped connection and three 400s on `retrieve_futures` are retried
/// 1 s apart, a 402 (inside the billing-pause window) 5 s later; the samples complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_retries_transient_faults_and_three_bad_requests() {
    let faults = "script=retrieve_futures#1:503;retrieve_futures#2:429;retrieve_futures#3:0;\
                  retrieve_futures#4:400;retrieve_futures#5:400;retrieve_futures#6:400;\
                  retrieve_futures#7:402";
    let env = start_poller(Some(faults)).await;
    let sampler = sampler(&env).await;
    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        sampler.sample(prompt(), 1, params(3, 1)),
        sampler.sample(prompt(), 3, params(3, 2)),
    );
    check_shape(&a.unwrap(), 1, 3);
    check_shape(&b.unwrap(), 3, 3);
    wait_polls(&env, |polls| acked_ids(polls).len() == 2).await;
    assert!(
        started.elapsed() >= Duration::from_secs(11),
        "1 s after each fault, 5 s after the 402"
    );
}

/// Dropping the client right after its last sample still acknowledges that sample with a
/// final ack-only poll, after which the poller is gone (nothing more is sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_sends_a_final_ack() {
    // Slow polls: the acknowledgement is still pending when the client is dropped.
    let env = start_poller(Some("latency_ms=300,routes=retrieve_futures")).await;
    let sampler = sampler(&env).await;
    check_shape(
        &sampler.sample(prompt(), 1, params(2, 0)).await.unwrap(),
        1,
        2,
    );
    drop(sampler);
    wait_polls(&env, |polls| acked_ids(polls).len() == 1).await;
    let polls = env.server.futures_polls();
    let last = polls.last().unwrap();
    assert_eq!(last.timeout, Some(0.0));
    assert_eq!(last.retrieved_request_ids.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.server.futures_polls().len(), polls.len());
}

/// A fourth bare 400 in a row, or any other fatal status, stops the poller for good:
/// every waiting sample fails with the poller's typed error, and so do later ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_failure_fails_every_waiter() {
    for (faults, status) in [
        (
            "script=retrieve_futures#1:400;retrieve_futures#2:400;retrieve_futures#3:400;\
             retrieve_futures#4:400",
            400,
        ),
        ("script=retrieve_futures#1:403", 403),
    ] {
        let env = start_poller(Some(faults)).await;
        let sampler = sampler(&env).await;
        let results = futures_util::future::join_all(
            (0..3).map(|i| sampler.sample(prompt(), 1, params(3, i))),
        )
        .await;
        for r in results {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Api, "{e:?}");
            assert_eq!(e.status(), Some(status));
            assert!(
                e.message().contains("retrieve_futures polling failed"),
                "{e}"
            );
        }
        let later = sampler.sample(prompt(), 1, params(3, 9)).await.unwrap_err();
        assert_eq!(later.status(), Some(status));
        assert!(env.server.futures_polls().is_empty());
    }
}

/// A sample whose future is dropped (or times out) after submission is cancelled with
/// `cancel_future`, with and without the poller; a finished sample is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_samples_are_cancelled_on_the_server() {
    for poller in [false, true] {
        let route = if poller {
            "retrieve_futures"
        } else {
            "retrieve_future"
        };
        // Polls are slow, submission is not: the sample is in flight when dropped.
        let faults = format!("latency_ms=1500,routes={route}");
        let env = start_with(Some(&faults), |c| c.sample_use_retrieve_futures = poller).await;
        let sampler = sampler(&env).await;
        sampler.sample(prompt(), 1, params(2, 0)).await.unwrap();

        let dropped = sampler.sample(prompt(), 1, params(2, 1));
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(dropped);
        let timed_out = tokio::time::timeout(
            Duration::from_millis(700),
            sampler.sample(prompt(), 1, params(2, 2)),
        )
        .await;
        assert!(timed_out.is_err());

        let mut cancelled = Vec::new();
        for _ in 0..100 {
            cancelled = env.server.cancel_requests();
            if cancelled.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seqs: BTreeSet<u64> = cancelled.iter().map(|id| seq_of(id)).collect();
        assert_eq!(seqs, [1, 2].into(), "poller={poller}: {cancelled:?}");
        assert!(
            cancelled
                .iter()
                .all(|id| id.starts_with(sampler.sampling_session_id()))
        );
    }
}

/// Rust → Rust: a handle rehydrates in a shadow client that samples the same session with
/// `seq_id`s from its clone id (joined when flagged, random otherwise), never carrying
/// the key, and creates no session of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampler_handle_round_trip() {
    for join in [true, false] {
        let env = start_with(None, |c| {
            c.sample_use_retrieve_futures = true;
            c.sample_join_sampling_session = join;
        })
        .await;
        let original = sampler(&env).await;
        assert_eq!(original.clone_id(), Some(0));
        let handle = original.sampler_handle().unwrap();
        let json = decode(&handle);
        assert_eq!(json["holder"]["api_key"], serde_json::Value::Null);
        assert!(!json.to_string().contains("tml-test-key"));
        assert_eq!(json["session_id"], env.service.session_id());
        assert_eq!(
            json["holder"]["client_config"]["sample_join_sampling_session"],
            join
        );

        let shadow = SamplingClient::from_sampler_handle(
            &handle,
            SamplerHandleOptions::new().api_key("tml-test-key"),
        )
        .await
        .unwrap();
        assert_eq!(shadow.sampling_session_id(), original.sampling_session_id());
        assert_eq!(shadow.base_model(), Some(MODEL));
        if join {
            assert_eq!(
                shadow.clone_id(),
                None,
                "joins lazily, before the first sample"
            );
        }
        for seed in 0..2 {
            check_shape(
                &shadow.sample(prompt(), 2, params(3, seed)).await.unwrap(),
                2,
                3,
            );
        }
        let clone = shadow.clone_id().unwrap();
        if join {
            assert_eq!(clone, 1, "the server's first client_counter");
        } else {
            assert!((1..=CLONE_STRIDE).contains(&clone));
        }
        wait_polls(&env, |polls| acked_ids(polls).len() == 2).await;
        let polls = env.server.futures_polls();
        assert!(polls.iter().all(|p| p.cloned_sampler_id == clone as i64));
        let seqs: BTreeSet<u64> = acked_ids(&polls).iter().map(|id| seq_of(id)).collect();
        assert_eq!(
            seqs,
            [clone * CLONE_STRIDE, clone * CLONE_STRIDE + 1].into()
        );
        // A shadow reuses the session: still one session_create on the server.
        let creates = env
            .server
            .audit_records()
            .iter()
            .filter(|r| r.event == "session_create")
            .count();
        assert_eq!(creates, 1);
        // The shadow's own handle describes the same sampler.
        let again = decode(&shadow.sampler_handle().unwrap());
        assert_eq!(again["sampling_session_id"], json["sampling_session_id"]);
        assert_eq!(again["holder"]["api_key"], serde_json::Value::Null);
    }
}

/// Headers set on the service builder travel in the handle (as the SDK's
/// `default_headers_overrides`) and are applied by the shadow, which re-exports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_carry_header_overrides() {
    let env = start_with(None, |_| {}).await;
    let service = tinker_client::ServiceClient::builder()
        .base_url(env.server.url())
        .api_key("tml-test-key")
        .default_header(
            http::HeaderName::from_static("x-team"),
            http::HeaderValue::from_static("research"),
        )
        .build()
        .await
        .unwrap();
    let original = service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    let handle = original.sampler_handle().unwrap();
    let expected = serde_json::json!({"x-team": "research"});
    assert_eq!(
        decode(&handle)["holder"]["default_headers_overrides"],
        expected
    );
    let shadow = SamplingClient::from_sampler_handle(
        &handle,
        SamplerHandleOptions::new().api_key("tml-test-key"),
    )
    .await
    .unwrap();
    check_shape(
        &shadow.sample(prompt(), 1, params(2, 0)).await.unwrap(),
        1,
        2,
    );
    let again = decode(&shadow.sampler_handle().unwrap());
    assert_eq!(again["holder"]["default_headers_overrides"], expected);
}

/// With `pjwt_auth_enabled` in the handle, a shadow samples through JWT auth (that it
/// switched JWT auth on is checked by the crate's unit test of shadows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_does_its_own_jwt_exchange() {
    let env = start_with(None, |c| c.jwt = true).await;
    let handle = sampler(&env).await.sampler_handle().unwrap();
    assert_eq!(
        decode(&handle)["holder"]["client_config"]["pjwt_auth_enabled"],
        true
    );
    let shadow = SamplingClient::from_sampler_handle(
        &handle,
        SamplerHandleOptions::new().api_key("tml-test-key"),
    )
    .await
    .unwrap();
    check_shape(
        &shadow.sample(prompt(), 1, params(2, 0)).await.unwrap(),
        1,
        2,
    );
}

/// `ServiceClient::join_sampling_client` still allocates a clone id on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_sampling_client_takes_a_clone_id() {
    let env = start_poller(None).await;
    let original = sampler(&env).await;
    let joined = env
        .service
        .join_sampling_client(original.sampling_session_id())
        .await
        .unwrap();
    assert_eq!(joined.clone_id(), Some(1));
    check_shape(
        &joined.sample(prompt(), 1, params(2, 0)).await.unwrap(),
        1,
        2,
    );
    wait_polls(&env, |polls| acked_ids(polls).len() == 1).await;
    let id = acked_ids(&env.server.futures_polls()).pop_first().unwrap();
    assert_eq!(seq_of(&id), CLONE_STRIDE);
}

fn decode(handle: &str) -> serde_json::Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(handle)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn encode(json: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(json)
}

/// Malformed handles are refused with a typed error naming the problem, before anything
/// is sent.
#[tokio::test]
async fn malformed_handles_are_refused() {
    let good = r#"{"session_id":"s","sampling_session_id":"s:sample:0","holder":{"base_url":"http://127.0.0.1:9","default_headers_overrides":{},"client_config":{},"client_dynamic_config":{},"api_key":null},"base_model":"m","record_stability_info":false}"#;
    let cases = [
        (String::new(), "empty"),
        ("not a handle!".to_owned(), "base64url"),
        (encode("{not json"), "expected JSON"),
        (
            encode(&good.replace(r#""session_id":"s","#, "")),
            "session_id",
        ),
        (
            encode(&good.replace(r#""base_model":"m","#, "")),
            "base_model",
        ),
        (
            encode(&good.replace(r#""session_id":"s""#, r#""session_id":"""#)),
            "empty session_id",
        ),
        (
            encode(&good.replace("http://127.0.0.1:9", "ftp://x")),
            "base_url",
        ),
        (
            encode(&good.replace(
                r#""default_headers_overrides":{}"#,
                r#""default_headers_overrides":{"bad header":"x"}"#,
            )),
            "bad header",
        ),
        (
            encode(&good.replace(
                r#""client_config":{}"#,
                r#""client_config":{"sample_no_retries":"yes"}"#,
            )),
            "sample_no_retries",
        ),
    ];
    for (handle, needle) in cases {
        let err = SamplingClient::from_sampler_handle(
            &handle,
            SamplerHandleOptions::new().api_key("tml-test-key"),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{handle}: {err}");
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
}

/// The Python SDK's python, if its venv is installed (`cargo xtask` creates it).
fn sdk_python() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME")?;
    let python = std::path::Path::new(&home).join(".cache/tinker-rs/venv-0.38.0/bin/python");
    python.exists().then_some(python)
}

async fn run_python(python: std::path::PathBuf, script: &'static str, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .env("TINKER_API_KEY", "tml-test-key")
            .env_remove("TINKER_BASE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed ({}): stderr {:?}, stdout {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

const PY_CONSUME: &str = r#"
import os, sys, json, tinker
from tinker import types
s = tinker.SamplingClient.from_sampler_handle(sys.argv[1])
r = s.sample(prompt=types.ModelInput.from_ints([3, 4, 5, 6]), num_samples=2,
             sampling_params=types.SamplingParams(max_tokens=3, seed=1)).result()
print(json.dumps({"n": len(r.sequences), "ids": [q.sequence_id for q in r.sequences]}))
# Skip interpreter teardown: the SDK's background event-loop thread occasionally aborts
# there (SIGABRT, no stderr) under load, after the work is done.
sys.stdout.flush(); os._exit(0)
"#;

const PY_PRODUCE: &str = r#"
import os, sys, tinker
sc = tinker.ServiceClient(base_url=sys.argv[1])
s = sc.create_sampling_client(base_model=sys.argv[2]).result()
print(s.get_sampler_handle())
sys.stdout.flush(); os._exit(0)  # no teardown: see PY_CONSUME
"#;

/// Python interop: a Rust handle rehydrates in the Python SDK (which joins as clone 1 and
/// samples), and a Python handle rehydrates in Rust. Skipped without the SDK's venv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampler_handles_interoperate_with_the_python_sdk() {
    let Some(python) = sdk_python() else {
        eprintln!("skipped: no Python SDK venv");
        return;
    };
    // The Python shadow samples with the per-request poll and with the session poller.
    for poller in [true, false] {
        let env = start_with(None, |c| c.sample_use_retrieve_futures = poller).await;
        let original = sampler(&env).await;
        let out = run_python(
            python.clone(),
            PY_CONSUME,
            vec![original.sampler_handle().unwrap()],
        )
        .await;
        let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(got["n"], 2);
        // The Python clone joined (client_counter 1): its seq_ids start at 1e9.
        let id = got["ids"][0].as_str().unwrap();
        assert!(id.contains(&format!(":{CLONE_STRIDE}:")), "{id}");
        if poller {
            assert!(
                env.server
                    .futures_polls()
                    .iter()
                    .any(|p| p.cloned_sampler_id == 1)
            );
        }
    }
    let env = start_with(None, |_| {}).await;

    let handle = run_python(python, PY_PRODUCE, vec![env.server.url(), MODEL.to_owned()]).await;
    let handle = handle.trim();
    let json = decode(handle);
    assert_eq!(json["holder"]["api_key"], serde_json::Value::Null);
    let shadow = SamplingClient::from_sampler_handle(
        handle,
        SamplerHandleOptions::new().api_key("tml-test-key"),
    )
    .await
    .unwrap();
    assert_eq!(shadow.sampling_session_id(), json["sampling_session_id"]);
    let resp = shadow.sample(prompt(), 1, params(3, 0)).await.unwrap();
    check_shape(&resp, 1, 3);
    assert_eq!(shadow.clone_id(), Some(1));
    // Byte-compatible: our handle of the Python sampler decodes to the same JSON.
    assert_eq!(decode(&shadow.sampler_handle().unwrap()), json);
}
