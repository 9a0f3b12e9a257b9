//! Requests on one model run in `seq_id` order, whatever order they arrive in, and a
//! resubmitted `seq_id` returns the same future without running twice.

use crate::common;

use crate::common::{Harness, config, dataset, logprobs, loss};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_arrival_runs_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let data = dataset();

    // Reference on a second model: forward (1), step (2, 3), forward (4), executed in order.
    let reference = h.create_model(&session, 1).await;
    let before = h.fwd_bwd(&reference, 1, &data, true).await;
    let fb = h.fwd_bwd(&reference, 2, &data, false).await;
    let opt = h.optim(&reference, 3, 5e-2).await;
    let after = h.fwd_bwd(&reference, 4, &data, true).await;
    let ref_before = loss(&h.fwd_bwd_result(&before).await);
    h.fwd_bwd_result(&fb).await;
    h.result(&opt).await;
    let ref_after = loss(&h.fwd_bwd_result(&after).await);
    assert!(ref_after < ref_before);

    // Same requests sent in reverse order: 4, 3, 2, 1.
    let after = h.fwd_bwd(&model, 4, &data, true).await;
    let opt = h.optim(&model, 3, 5e-2).await;
    let fb = h.fwd_bwd(&model, 2, &data, false).await;
    // Nothing can run yet: seq 1 is missing.
    let poll = h
        .post(
            "retrieve_future",
            json!({"request_id": after["request_id"], "allow_metadata_only": true}),
        )
        .await
        .json();
    assert_eq!(poll["type"], "try_again");
    assert_eq!(poll["queue_state"], "active");
    assert!(
        poll["queue_state_reason"]
            .as_str()
            .unwrap()
            .contains("seq_id 1"),
        "{poll}"
    );
    assert!(h.server.executions().iter().all(|((m, _), _)| *m != model));

    let before = h.fwd_bwd(&model, 1, &data, true).await;
    let got_before = loss(&h.fwd_bwd_result(&before).await);
    h.fwd_bwd_result(&fb).await;
    h.result(&opt).await;
    let got_after = h.fwd_bwd_result(&after).await;
    assert!((got_before - ref_before).abs() < 1e-6);
    assert!(
        (loss(&got_after) - ref_after).abs() < 1e-4,
        "{} vs {ref_after}",
        loss(&got_after)
    );
    assert_eq!(logprobs(&got_after).len(), data.len());
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_returns_the_same_future_and_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let data = dataset();

    let first = h.fwd_bwd(&model, 1, &data, false).await;
    let again = h.fwd_bwd(&model, 1, &data, false).await;
    assert_eq!(first["request_id"], again["request_id"]);
    let opt1 = h.optim(&model, 2, 1e-2).await;
    let opt2 = h.optim(&model, 2, 1e-2).await;
    assert_eq!(opt1["request_id"], opt2["request_id"]);
    h.fwd_bwd_result(&first).await;
    h.result(&opt1).await;
    // Resubmitting after completion still returns the original future and its result.
    let late = h.optim(&model, 2, 1e-2).await;
    assert_eq!(late["request_id"], opt1["request_id"]);
    h.result(&late).await;

    // create_model is idempotent per (session, model_seq_id) as well.
    let create = json!({"session_id": session, "model_seq_id": 0, "base_model": common::MODEL,
                        "lora_config": {"rank": 4}, "type": "create_model"});
    let c1 = h.ok("create_model", create.clone()).await;
    let c2 = h.ok("create_model", create).await;
    assert_eq!(c1, c2);

    let runs: Vec<_> = h
        .server
        .executions()
        .into_iter()
        .filter(|((m, _), _)| *m == model)
        .collect();
    assert_eq!(runs, vec![((model.clone(), 1), 1), ((model.clone(), 2), 1)]);

    // Sampling: a resubmitted (session, seq_id) gives the same request and sequence ids.
    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "seq_id": 3, "sampling_session_seq_id": 0, "kind": "snapshot"}),
        )
        .await;
    let sampler = h.result(&f).await["sampling_session_id"].clone();
    let req = json!({"num_samples": 2, "prompt": {"chunks": [{"tokens": [5, 6, 7], "type": "encoded_text"}]},
                     "sampling_params": {"max_tokens": 3, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
                     "sampling_session_id": sampler, "seq_id": 0, "type": "sample"});
    let s1 = h.ok("asample", req.clone()).await;
    let s2 = h.ok("asample", req).await;
    assert_eq!(s1, s2);
    h.server.shutdown().await;
}
