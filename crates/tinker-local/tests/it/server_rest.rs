//! The REST catalogue and the less common future-protocol paths.

use crate::common::{Harness, MODEL, config, dataset};
use hyper::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_copies_audit_and_storage() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h
        .ok(
            "create_session",
            json!({"tags": ["t"], "user_metadata": {"team": "a"}, "sdk_version": "x",
                   "display_name": "Nightly Sweep", "type": "create_session"}),
        )
        .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = h.session().await;
    let model = h.create_model(&session, 0).await;
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "w", "seq_id": 1, "user_metadata": {"k": "v"}}),
        )
        .await;
    let path = h.result(&save).await["path"].as_str().unwrap().to_owned();

    let listed = h.get("sessions").await.json();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 2);
    let got = h.get(&format!("sessions/{session}")).await.json();
    assert_eq!(got["training_run_ids"], json!([model]));
    assert_eq!(got["display_name"], "Nightly Sweep");
    let put = h
        .request(
            Method::PUT,
            &format!("/api/v1/sessions/{session}/project"),
            &[("content-type", "application/json")],
            json!({"project_id": "p1"}).to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(put.status, 200);
    let found = h
        .ok(
            "sessions/search",
            json!({"display_name": "sweep nightly", "user_metadata": {}, "owner": {"type": "own"}, "limit": 50}),
        )
        .await;
    let found = found["sessions"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["session_id"], session.as_str());
    assert_eq!(found[0]["project_id"], "p1");
    assert_eq!(found[0]["checkpoints_count"], 1);
    h.ok(
        &format!("sessions/{other}/finish"),
        json!({"reason": {"type": "errored"}, "detail": "x"}),
    )
    .await;
    let finished = h
        .ok(
            "sessions/search",
            json!({"user_metadata": {}, "statuses": [{"type": "client_finished", "reasons": ["errored"]}], "limit": 10}),
        )
        .await;
    assert_eq!(finished["sessions"][0]["session_id"], other.as_str());
    assert_eq!(finished["sessions"].as_array().unwrap().len(), 1);

    // Trace export: a signed, key-less download.
    let trace = h
        .get(&format!("sessions/{session}/trace_export"))
        .await
        .json();
    assert_eq!(trace["status"], "ready");
    let url = trace["url"].as_str().unwrap();
    let r = h
        .request(
            Method::GET,
            url.strip_prefix(&h.base).unwrap(),
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json()["traceEvents"].is_array());

    // Copy: a new run holding the checkpoint; idempotent per X-Idempotency-Key.
    let copy = |key: &'static str| {
        let body = json!({"source_path": path, "destination_project_id": "p2"})
            .to_string()
            .into_bytes();
        let h = &h;
        async move {
            h.request(
                Method::POST,
                "/api/v1/copy_weights",
                &[
                    ("content-type", "application/json"),
                    ("x-idempotency-key", key),
                ],
                body,
            )
            .await
            .unwrap()
            .json()
        }
    };
    let c1 = copy("k1").await;
    let c2 = copy("k1").await;
    assert_eq!(c1, c2);
    let copied = c1["tinker_path"].as_str().unwrap();
    assert!(copied.ends_with("/weights/w") && copied != path);
    let info = h.ok("weights_info", json!({"tinker_path": copied})).await;
    assert_eq!(info["base_model"], MODEL);
    let storage = h.get("billing/usage/checkpoints/current").await.json();
    let count: u64 = storage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["checkpoint_count"].as_u64().unwrap())
        .sum();
    assert_eq!(count, 2);

    // Audit trail.
    let audit = h.get("audit?event_type=checkpoints").await.json();
    let events: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(events.contains(&"checkpoint_create".to_owned()));
    assert!(events.contains(&"checkpoint_copy".to_owned()));
    assert!(events.iter().all(|e| e.starts_with("checkpoint_")));

    // Listing newest first with a cursor.
    let all = h.get("checkpoints?limit=1&offset=0").await.json();
    assert_eq!(all["checkpoints"].as_array().unwrap().len(), 1);
    assert_eq!(all["cursor"]["total_count"], 2);
    assert_eq!(all["checkpoints"][0]["tinker_path"], copied);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_first_results_poller_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.inline_result_limit = 16;
    let h = Harness::start(cfg).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let f = h.fwd_bwd(&model, 1, &dataset(), true).await;
    let id = f["request_id"].as_str().unwrap();
    h.fwd_bwd_result(&f).await;
    let meta = h
        .post(
            "retrieve_future",
            json!({"request_id": id, "allow_metadata_only": true}),
        )
        .await
        .json();
    assert_eq!(meta["status"], "complete_metadata");
    let size = meta["response_payload_size"].as_u64().unwrap();
    let full = h
        .post(
            "retrieve_future",
            json!({"request_id": id, "allow_metadata_only": false}),
        )
        .await;
    assert_eq!(full.body.len() as u64, size);

    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "seq_id": 2, "sampling_session_seq_id": 3}),
        )
        .await;
    let sampler = h.result(&f).await["sampling_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sampler, format!("{session}:sample:3"));
    let joined = h
        .ok(
            "join_sampling_session",
            json!({"sampling_session_id": sampler}),
        )
        .await;
    assert_eq!(joined["client_counter"], 1);
    let sample = |seq: i64, max_tokens: i64| {
        json!({"num_samples": 1, "prompt": {"chunks": [{"tokens": [3, 4], "type": "encoded_text"}]},
               "sampling_params": {"max_tokens": max_tokens, "temperature": 1.0, "top_k": -1, "top_p": 1.0, "stop": []},
               "sampling_session_id": sampler, "seq_id": seq})
    };
    let s = h.ok("asample", sample(0, 4)).await;
    let polled = h
        .ok(
            "retrieve_futures",
            json!({"target": {"type": "sampling_session", "sampling_session_id": sampler, "cloned_sampler_id": 0},
                   "prev_cursor": 0, "retrieved_request_ids": []}),
        )
        .await;
    let done = &polled["completions"][0];
    assert_eq!(done["request_id"], s["request_id"]);
    assert_eq!(done["state"], "finished");
    assert!(done["response_payload_uncompressed_size"].as_u64().unwrap() > 0);
    let cursor = polled["cursor"].as_u64().unwrap();
    let empty = h
        .ok(
            "retrieve_futures",
            json!({"target": {"type": "sampling_session", "sampling_session_id": sampler, "cloned_sampler_id": 0},
                   "prev_cursor": cursor, "timeout": 0.0, "retrieved_request_ids": []}),
        )
        .await;
    assert_eq!(empty["completions"], json!([]));
    assert_eq!(empty["cursor"].as_u64().unwrap(), cursor);

    // A queued sample can be cancelled; training futures cannot.
    let slow: Vec<_> = (1..4).map(|i| sample(i, 300)).collect();
    let mut ids = Vec::new();
    for body in slow {
        ids.push(h.ok("asample", body).await["request_id"].clone());
    }
    let last = ids.last().unwrap().clone();
    let c = h.ok("cancel_future", json!({"request_id": last})).await;
    assert_eq!(c["cancelled"], true);
    let r = h
        .post(
            "retrieve_future",
            json!({"request_id": last, "allow_metadata_only": false}),
        )
        .await
        .json();
    assert_eq!(r["category"], "user");
    let t = h.ok("cancel_future", json!({"request_id": id})).await;
    assert_eq!(t["cancelled"], false);
    h.server.shutdown().await;
}
