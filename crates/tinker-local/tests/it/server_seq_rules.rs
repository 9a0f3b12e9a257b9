//! The `seq_id` rules of a training model: ids too far ahead are refused at once, a request
//! stuck behind a missing id fails after the gap wait (and the missing ids are given up), a
//! reused id with another payload is a 409, and a refused request still uses up its id.

use std::time::Duration;

use crate::common::{Harness, Reply, config, dataset, fwd_bwd_body, is_json};
use serde_json::{Value, json};

/// One `retrieve_future` poll (no retry loop): a future stuck behind a gap must not answer
/// `try_again` for ever.
async fn poll(h: &Harness, future: &Value) -> Value {
    let r = h
        .post(
            "retrieve_future",
            json!({"request_id": future["request_id"], "allow_metadata_only": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn optim_body(model: &str, seq: i64, lr: f64) -> Value {
    json!({"model_id": model, "seq_id": seq, "type": "optim_step",
           "adam_params": {"learning_rate": lr, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
                           "weight_decay": 0.0, "grad_clip_norm": 0.0}})
}

fn detail(r: &Reply) -> String {
    r.json()["detail"].as_str().unwrap_or_default().to_owned()
}

fn executed(h: &Harness, model: &str) -> Vec<i64> {
    h.server
        .executions()
        .into_iter()
        .filter(|((m, _), _)| m == model)
        .map(|((_, s), _)| s)
        .collect()
}

/// [`executed`] once it equals `want`, or after 5 s whatever it is then.
async fn executed_eventually(h: &Harness, model: &str, want: &[i64]) -> Vec<i64> {
    for _ in 0..100 {
        let got = executed(h, model);
        if got == want {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    executed(h, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_ids_beyond_the_gap_window_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let r = h
        .post("optim_step", optim_body(&model, 1_000_000, 1e-3))
        .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let text = detail(&r);
    assert!(
        text.contains("1000000") && text.contains("expects seq_id 1"),
        "{text}"
    );
    let r = h
        .post_proto(fwd_bwd_body(
            &model,
            1 + 1025,
            &dataset(),
            "cross_entropy",
            false,
        ))
        .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // The edge of the default window (1024 ahead) is still accepted, and the refused ids
    // took nothing: seq_id 1 runs as usual.
    let edge = h
        .post("optim_step", optim_body(&model, 1 + 1024, 1e-3))
        .await;
    assert_eq!(edge.status, 200, "{}", String::from_utf8_lossy(&edge.body));
    let first = h.optim(&model, 1, 1e-3).await;
    h.result(&first).await;
    assert_eq!(executed(&h, &model), vec![1]);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_behind_a_missing_seq_id_fails_after_the_gap_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.seq_gap_wait = Duration::from_millis(300);
    let h = Harness::start(cfg).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let data = dataset();
    // seq_id 1 is lost; 2 and 3 queue behind it.
    let fb = h.fwd_bwd(&model, 2, &data, false).await;
    let opt = h.optim(&model, 3, 1e-2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for future in [&fb, &opt] {
        let v = poll(&h, future).await;
        assert_ne!(v["type"], "try_again", "{v}");
        let error = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {v}"));
        assert!(error.contains("seq_id 1"), "{error}");
    }
    // The lost id was given up: arriving late it is a conflict; nothing ran.
    let late = h.post("optim_step", optim_body(&model, 1, 1e-2)).await;
    assert_eq!(late.status, 409, "{}", String::from_utf8_lossy(&late.body));
    assert!(detail(&late).contains("seq_id 1"), "{}", detail(&late));
    assert!(executed(&h, &model).is_empty());
    // A resubmission of a failed request returns its future (with the error), unrun.
    let again = h.fwd_bwd(&model, 2, &data, false).await;
    assert_eq!(again["request_id"], fb["request_id"]);
    // The model goes on with the next id.
    let next = h.fwd_bwd(&model, 4, &data, false).await;
    h.fwd_bwd_result(&next).await;
    assert_eq!(executed(&h, &model), vec![4]);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_seq_id_with_another_payload_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let data = dataset();

    let first = h.fwd_bwd(&model, 1, &data, false).await;
    let other = h
        .post_proto(fwd_bwd_body(&model, 1, &data[..2], "cross_entropy", false))
        .await;
    assert_eq!(
        other.status,
        409,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    assert!(detail(&other).contains("seq_id 1"), "{}", detail(&other));
    // The same protobuf, zstd-compressed, is the same request.
    let body = fwd_bwd_body(&model, 1, &data, "cross_entropy", false);
    let compressed = zstd::encode_all(body.as_slice(), 3).unwrap();
    let r = h
        .request(
            hyper::Method::POST,
            "/api/v1/forward_backward",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "zstd"),
            ],
            compressed,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["request_id"], first["request_id"]);

    // JSON: the same request in another key order and spacing dedupes; another lr is a 409.
    let opt = h.optim(&model, 2, 1e-2).await;
    let reordered = r#"{ "type": "optim_step", "seq_id": 2,
        "adam_params": {"grad_clip_norm": 0.0, "weight_decay": 0.0, "eps": 1e-8, "beta2": 0.95,
                        "beta1": 0.9, "learning_rate": 0.01},
        "model_id": "MODEL" }"#
        .replace("MODEL", &model);
    let r = h
        .request(
            hyper::Method::POST,
            "/api/v1/optim_step",
            &[("content-type", "application/json")],
            reordered.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["request_id"], opt["request_id"]);
    let r = h.post("optim_step", optim_body(&model, 2, 5.0)).await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    // A different kind of request under a used id is a conflict too.
    let r = h
        .post(
            "save_weights",
            json!({"model_id": model, "path": "x", "seq_id": 2, "type": "save_weights"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));

    // The ephemeral save_weights_for_sampler form: the SDK takes a new
    // sampling_session_seq_id for each retry of the same seq_id; it is the same request.
    let s1 = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "seq_id": 3, "sampling_session_seq_id": 0, "kind": "snapshot"}),
        )
        .await;
    let s2 = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "seq_id": 3, "sampling_session_seq_id": 1, "kind": "snapshot"}),
        )
        .await;
    assert_eq!(s1["request_id"], s2["request_id"]);
    h.fwd_bwd_result(&first).await;
    h.result(&opt).await;
    h.result(&s1).await;
    assert_eq!(executed(&h, &model), vec![1, 2, 3]);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_uses_up_its_seq_id() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let data = dataset();
    // seq_id 1: load_weights from a checkpoint that does not exist (404).
    let missing = format!("tinker://{model}/weights/nope");
    let r = h
        .post(
            "load_weights",
            json!({"model_id": model, "seq_id": 1, "path": missing, "optimizer": false,
                   "type": "load_weights"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    // seq_id 2 does not wait for it: its result comes within a few polls.
    let next = h.fwd_bwd(&model, 2, &data, false).await;
    let mut finished = false;
    for _ in 0..8 {
        let r = h
            .post(
                "retrieve_future",
                json!({"request_id": next["request_id"], "allow_metadata_only": false}),
            )
            .await;
        if !(is_json(&r) && r.json()["type"] == "try_again") {
            finished = true;
            break;
        }
    }
    assert!(finished, "seq_id 2 is stuck behind the refused seq_id 1");
    h.fwd_bwd_result(&next).await;
    assert_eq!(executed(&h, &model), vec![1, 2]);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmission_gets_its_future_back_after_the_session_ended() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let first = h.optim(&model, 1, 1e-3).await;
    h.result(&first).await;
    h.ok(
        &format!("sessions/{session}/finish"),
        json!({"reason": {"type": "success"}, "detail": null}),
    )
    .await;
    // The retry of a request whose answer was lost still finds its future ...
    let again = h.post("optim_step", optim_body(&model, 1, 1e-3)).await;
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.json()["request_id"], first["request_id"]);
    // ... while new work is refused.
    let new = h.post("optim_step", optim_body(&model, 2, 1e-3)).await;
    assert_eq!(new.status, 400, "{}", String::from_utf8_lossy(&new.body));
    // The refusal takes its seq_id in the model's worker, which records it when it gets
    // there, possibly after the 400 went out.
    assert_eq!(executed_eventually(&h, &model, &[1, 2]).await, vec![1, 2]);
    h.server.shutdown().await;
}
