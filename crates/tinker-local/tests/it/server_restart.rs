//! Runs and checkpoints survive a restart on the same data directory, and load_state works.

use crate::common::{Harness, config, dataset, loss};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset();

    // First life: train a little, save the state (weights + optimizer) and a sampler copy.
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    for seq in [1, 3, 5] {
        let fb = h.fwd_bwd(&model, seq, &data, false).await;
        h.optim(&model, i64::from(seq) + 1, 2e-2).await;
        h.fwd_bwd_result(&fb).await;
    }
    let saved = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "keep", "seq_id": 7, "ttl_seconds": 86400}),
        )
        .await;
    let path = h.result(&saved).await["path"].as_str().unwrap().to_owned();
    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "path": "smp", "seq_id": 8}),
        )
        .await;
    h.result(&f).await;
    // One more identical step after saving: the reference for "optimizer state restored".
    let fb = h.fwd_bwd(&model, 9, &data, false).await;
    h.optim(&model, 10, 2e-2).await;
    h.fwd_bwd_result(&fb).await;
    let probe = h.fwd_bwd(&model, 11, &data, true).await;
    let reference = loss(&h.fwd_bwd_result(&probe).await);
    let addr = h.server.addr();
    h.server.shutdown().await;

    let ckpt_dir = dir.path().join("runs").join(&model).join("weights/keep");
    assert!(ckpt_dir.join("adapter_model.safetensors").is_file());
    let adapter_config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt_dir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(adapter_config["r"], 4);
    assert!(ckpt_dir.join("optimizer").is_dir());

    // Second life on the same directory (and port, as a restarted service would be).
    let mut cfg = config(dir.path());
    cfg.addr = addr;
    let h = Harness::start(cfg).await;
    let runs = h.get("training_runs").await.json();
    assert_eq!(runs["training_runs"][0]["training_run_id"], model.as_str());
    assert_eq!(
        runs["training_runs"][0]["last_checkpoint"]["checkpoint_id"],
        "weights/keep"
    );
    let ckpts = h
        .get(&format!("training_runs/{model}/checkpoints"))
        .await
        .json();
    let ids: Vec<_> = ckpts["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["checkpoint_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.contains(&"weights/keep".to_owned()) && ids.contains(&"sampler_weights/smp".to_owned())
    );
    let keep = ckpts["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["checkpoint_id"] == "weights/keep")
        .unwrap();
    assert!(keep["expires_at"].is_string(), "TTL survives the restart");

    // The old model is not live any more, with a helpful message.
    let r = h.post("get_info", json!({"model_id": model})).await;
    assert_eq!(r.status, 404);

    // load_state with optimizer (create-via-load), then the same step as before.
    let session = h.session().await;
    let f = h
        .ok("load_weights", json!({"session_id": session, "model_seq_id": 0, "path": path, "optimizer": true, "type": "load_weights"}))
        .await;
    let loaded = h.result(&f).await;
    let restored = format!("{session}:train:0");
    assert_eq!(loaded["model_id"], restored.as_str());
    let info = h.ok("get_info", json!({"model_id": restored})).await;
    assert_eq!(info["lora_rank"], 4);
    let fb = h.fwd_bwd(&restored, 1, &data, false).await;
    h.optim(&restored, 2, 2e-2).await;
    h.fwd_bwd_result(&fb).await;
    let probe = h.fwd_bwd(&restored, 3, &data, true).await;
    let after = loss(&h.fwd_bwd_result(&probe).await);
    assert!(
        (after - reference).abs() < 1e-3 * reference.max(1.0),
        "{after} vs {reference}"
    );

    // Sampling from the persisted sampler checkpoint works too.
    let s = h
        .ok("create_sampling_session", json!({"session_id": session, "sampling_session_seq_id": 0,
                                               "model_path": format!("tinker://{model}/sampler_weights/smp")}))
        .await;
    let sampler = s["sampling_session_id"].as_str().unwrap();
    let req = h
        .ok("asample", json!({"num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2, 3], "type": "encoded_text"}]},
                              "sampling_params": {"max_tokens": 2, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
                              "sampling_session_id": sampler, "seq_id": 0}))
        .await;
    assert_eq!(
        h.wait(req["request_id"].as_str().unwrap()).await.status,
        200
    );
    h.server.shutdown().await;
}
