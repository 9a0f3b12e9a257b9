//! Fault injection is off by default, seeded and reproducible.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{Harness, config};
use hyper::Method;
use serde_json::json;
use tinker_local::FaultConfig;

/// Status of each of `n` health checks (0 = the connection failed).
async fn statuses(h: &Harness, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = h
            .request(Method::GET, "/api/v1/healthz", &[], Vec::new())
            .await;
        out.push(r.map_or(0, |r| r.status.as_u16()));
    }
    out
}

async fn run_with(spec: &str, n: usize) -> Vec<u16> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.faults = FaultConfig::parse(spec).unwrap();
    let h = Harness::start(cfg).await;
    let got = statuses(&h, n).await;
    h.server.shutdown().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_are_reproducible() {
    let spec = "seed=11,p5xx=0.2,p429=0.15,routes=healthz";
    let a = run_with(spec, 60).await;
    let b = run_with(spec, 60).await;
    let c = run_with("seed=12,p5xx=0.2,p429=0.15,routes=healthz", 60).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_ne!(a, c, "another seed, other faults");
    let faults = a.iter().filter(|s| **s != 200).count();
    assert!((8..=40).contains(&faults), "{faults} faults in 60: {a:?}");
    assert!(
        a.iter().all(|s| matches!(s, 200 | 429 | 500 | 502 | 503)),
        "{a:?}"
    );
    // Off by default.
    assert!(run_with("", 20).await.iter().all(|s| *s == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_faults_drops_stalls_and_retry_after() {
    let got = run_with("script=healthz#2:429;healthz#3:0;healthz#4:503", 5).await;
    assert_eq!(got, vec![200, 429, 0, 503, 200]);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.faults = FaultConfig::parse("p429=1,routes=healthz").unwrap();
    let h = Harness::start(cfg).await;
    let r = h
        .request(Method::GET, "/api/v1/healthz", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after-ms"], "100");
    h.server.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.faults = FaultConfig::parse("pstall=1,stall_ms=300,latency_ms=50,routes=healthz").unwrap();
    let h = Harness::start(cfg).await;
    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let started = Instant::now();
    let r = h
        .request(Method::GET, "/api/v1/healthz", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["status"],
        "ok",
        "a stalled body still arrives whole"
    );
    assert!(started.elapsed() >= Duration::from_millis(350));
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_faults_408_and_410() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.faults = FaultConfig::parse("p410=1").unwrap();
    let h = Harness::start(cfg).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "seq_id": 1, "sampling_session_seq_id": 0}),
        )
        .await;
    let sampler = h.result(&f).await["sampling_session_id"].clone();
    let s = h
        .ok("asample", json!({"num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2], "type": "encoded_text"}]},
                              "sampling_params": {"max_tokens": 2, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
                              "sampling_session_id": sampler, "seq_id": 0}))
        .await;
    let r = h
        .post("retrieve_future", json!({"request_id": s["request_id"]}))
        .await;
    assert_eq!(r.status, 410, "sampling futures expire");
    h.server.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.faults = FaultConfig::parse("p408=1").unwrap();
    let h = Harness::start(cfg).await;
    let session = h.session().await;
    let f = h
        .ok("create_model", json!({"session_id": session, "model_seq_id": 0, "base_model": common::MODEL, "lora_config": {"rank": 4}}))
        .await;
    let r = h
        .post("retrieve_future", json!({"request_id": f["request_id"]}))
        .await;
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["queue_state"], "active");
    h.server.shutdown().await;
}

/// Polls `request_id` once (long poll) and returns the reply.
async fn poll_once(h: &Harness, request_id: &str) -> common::Reply {
    h.request(
        Method::POST,
        "/api/v1/retrieve_future",
        &[
            ("content-type", "application/json"),
            ("accept", "application/x-protobuf"),
        ],
        json!({"request_id": request_id, "allow_metadata_only": false})
            .to_string()
            .into_bytes(),
    )
    .await
    .unwrap()
}

/// Polls until an answer that is not `try_again`.
async fn poll_result(h: &Harness, request_id: &str) -> common::Reply {
    loop {
        let r = poll_once(h, request_id).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let pending = common::is_json(&r)
            && serde_json::from_slice::<serde_json::Value>(&r.body)
                .is_ok_and(|v| v["type"] == "try_again");
        if !pending {
            return r;
        }
    }
}

fn content_type(r: &common::Reply) -> &str {
    r.headers["content-type"].to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_corrupt_protobuf_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.faults = FaultConfig::parse("script=retrieve_future#1:corrupt").unwrap();
    let h = Harness::start(cfg).await;
    let session = h.session().await;
    // The untyped future names the model, so no poll is spent on create_model.
    let created = h
        .ok(
            "create_model",
            json!({"session_id": session, "model_seq_id": 0,
                                   "base_model": common::MODEL, "lora_config": {"rank": 4}}),
        )
        .await;
    let model = created["model_id"].as_str().unwrap().to_owned();
    let f = h.fwd_bwd(&model, 1, &common::dataset(), true).await;
    let id = f["request_id"].as_str().unwrap();

    let bad = poll_result(&h, id).await;
    assert_eq!(content_type(&bad), "application/x-protobuf");
    let err = tinker_types::ForwardBackwardOutput::decode_proto(&bad.body).unwrap_err();
    assert!(!err.to_string().is_empty());

    // The fault fires once: the same future then delivers its real result.
    let good = poll_result(&h, id).await;
    assert_eq!(content_type(&good), "application/x-protobuf");
    let out = tinker_types::ForwardBackwardOutput::decode_proto(&good.body).unwrap();
    assert_eq!(out.loss_fn_outputs.len(), common::dataset().len());
    assert!(good.body.len() > bad.body.len() / 2);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_badjson_then_corrupt_json_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.faults =
        FaultConfig::parse("script=retrieve_future#1:badjson;retrieve_future#2:corrupt").unwrap();
    let h = Harness::start(cfg).await;
    let session = h.session().await;
    let created = h
        .ok(
            "create_model",
            json!({"session_id": session, "model_seq_id": 0,
                                   "base_model": common::MODEL, "lora_config": {"rank": 4}}),
        )
        .await;
    let model = created["model_id"].as_str().unwrap().to_owned();
    let f = h
        .ok(
            "save_weights",
            json!({"model_id": model, "seq_id": 1, "path": "ckpt", "type": "save_weights"}),
        )
        .await;
    let id = f["request_id"].as_str().unwrap();

    // First result: well-formed JSON of the wrong shape (a number where `path` is a string).
    let bad = poll_result(&h, id).await;
    assert_eq!(content_type(&bad), "application/json");
    let value: serde_json::Value = serde_json::from_slice(&bad.body).unwrap();
    assert!(value["path"].is_number(), "{value}");
    let err = tinker_types::FutureOutcome::<tinker_types::SaveWeightsResponse>::from_value(value)
        .unwrap_err();
    assert!(err.to_string().contains("path"), "{err}");

    // Second result: JSON that does not parse.
    let broken = poll_result(&h, id).await;
    assert_eq!(content_type(&broken), "application/json");
    assert!(serde_json::from_slice::<serde_json::Value>(&broken.body).is_err());

    // Then the real one.
    let good = poll_result(&h, id).await;
    let value: serde_json::Value = serde_json::from_slice(&good.body).unwrap();
    match tinker_types::FutureOutcome::<tinker_types::SaveWeightsResponse>::from_value(value)
        .unwrap()
    {
        tinker_types::FutureOutcome::Complete(r) => assert!(r.path.ends_with("ckpt")),
        other => panic!("{other:?}"),
    }
    h.server.shutdown().await;
}
