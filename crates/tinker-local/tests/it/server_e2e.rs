//! End to end over HTTP: session → model → training → sampler → sample → checkpoints.

use crate::common;

use crate::common::{Harness, MODEL, config, dataset, logprobs, loss};
use prost::Message;
use serde_json::json;
use tinker_types::proto::wire;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_then_sample() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;

    let cfg = h
        .ok("client/config", json!({"sdk_version": "0.38.0"}))
        .await;
    assert_eq!(cfg["proto_compress_fwdbwd"], true);
    let caps = h.get("get_server_capabilities").await.json();
    assert!(
        caps["supported_models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["model_name"] == MODEL)
    );

    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    assert_eq!(model, format!("{session}:train:0"));
    let info = h
        .ok("get_info", json!({"model_id": model, "type": "get_info"}))
        .await;
    // A portable id (served hub-style, see server_legacy.rs), never a path on the server.
    assert_eq!(info["model_data"]["tokenizer_id"], MODEL);

    let data = dataset();
    let tokens: f64 = data.iter().map(|d| (d.len() - 1) as f64).sum();
    let mut curve = Vec::new();
    let mut seq = 1;
    for _ in 0..12 {
        let fb = h.fwd_bwd(&model, seq, &data, false).await;
        let opt = h.optim(&model, i64::from(seq) + 1, 2e-2).await;
        let out = h.fwd_bwd_result(&fb).await;
        let opt = h.result(&opt).await;
        assert!(opt["metrics"].is_object());
        assert_eq!(logprobs(&out).len(), data.len());
        curve.push(loss(&out) / tokens);
        seq += 2;
    }
    assert!(curve[11] < curve[0] * 0.7, "loss did not fall: {curve:?}");

    // Ephemeral sampler from the current weights.
    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "seq_id": seq, "sampling_session_seq_id": 0, "kind": "snapshot", "type": "save_weights_for_sampler"}),
        )
        .await;
    let sampler = h.result(&f).await["sampling_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sampler, format!("{session}:sample:0"));
    let got = h.get(&format!("samplers/{sampler}")).await.json();
    assert_eq!(got["base_model"], MODEL);

    let prompt: Vec<u32> = data[0][..6].to_vec();
    let sample = h
        .ok(
            "asample",
            json!({"num_samples": 3, "prompt": {"chunks": [{"tokens": prompt, "type": "encoded_text"}]},
                   "sampling_params": {"max_tokens": 8, "seed": 5, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
                   "sampling_session_id": sampler, "seq_id": 0, "prompt_logprobs": true,
                   "topk_prompt_logprobs": 2, "topk_sample_logprobs": 0, "prompt_alt_tokens_k": 0,
                   "record_stability_info": false, "type": "sample"}),
        )
        .await;
    assert_eq!(sample["sample_sequence_ids"].as_array().unwrap().len(), 3);
    let r = h.wait(sample["request_id"].as_str().unwrap()).await;
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    let resp = wire::SampleResponse::decode(r.body).unwrap();
    assert_eq!(resp.sequences.len(), 3);
    for s in &resp.sequences {
        assert_eq!(s.tokens.len() / 4, s.logprobs.as_ref().unwrap().len() / 4);
        assert!(!s.tokens.is_empty() && s.tokens.len() / 4 <= 8);
    }
    let prompt_lps = resp.prompt_logprobs.unwrap();
    assert_eq!(prompt_lps.len() / 4, prompt.len());
    assert!(f32::from_le_bytes(prompt_lps[..4].try_into().unwrap()).is_nan());
    let topk = resp.topk_prompt_logprobs.unwrap();
    assert_eq!((topk.k, topk.length as usize), (2, prompt.len()));

    // The trained model continues its training data greedily.
    let greedy = h
        .ok(
            "asample",
            json!({"num_samples": 1, "prompt": {"chunks": [{"tokens": prompt, "type": "encoded_text"}]},
                   "sampling_params": {"max_tokens": 4, "temperature": 0.0, "top_k": -1, "top_p": 1.0, "stop": []},
                   "sampling_session_id": sampler, "seq_id": 1, "type": "sample"}),
        )
        .await;
    let r = h.wait(greedy["request_id"].as_str().unwrap()).await;
    let resp = wire::SampleResponse::decode(r.body).unwrap();
    let toks: Vec<u32> = resp.sequences[0]
        .tokens
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(toks, data[0][6..10].to_vec());

    // Accounting reflects the work done.
    let usage = h.server.usage_records();
    let trained: u64 = usage
        .iter()
        .filter(|u| u.kind == "training")
        .map(|u| u.count)
        .sum();
    assert_eq!(trained, 12 * tokens as u64);
    assert!(
        usage
            .iter()
            .any(|u| u.kind == "sampling_sample" && u.count > 0)
    );
    #[allow(clippy::disallowed_methods)] // tinker-local stamps real wall time
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::hours(2)).format("%Y-%m-%dT%H:00:00Z");
    let end = (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:00:00Z");
    let billing = h
        .get(&format!(
            "billing/usage/events?starting_on={start}&ending_before={end}"
        ))
        .await
        .json();
    let billed: u64 = billing["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_info"]["type"] == "training")
        .map(|e| e["event_info"]["token_count"].as_u64().unwrap())
        .sum();
    assert_eq!(billed, trained);

    // Telemetry is stored and visible through the handle.
    h.ok(
        "telemetry",
        json!({"events": [{"event": "SESSION_START", "event_id": "e1", "event_session_index": 0, "severity": "INFO", "timestamp": "2026-01-01T00:00:00Z"}],
               "platform": "Linux", "sdk_version": "0.38.0", "session_id": session, "process_uuid": "p"}),
    )
    .await;
    let events = h.server.telemetry_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["session_id"], session.as_str());

    // Finishing the session ends heartbeats with 410 and refuses new work.
    assert_eq!(h.heartbeat(&session).await, 200);
    h.ok(
        &format!("sessions/{session}/finish"),
        json!({"reason": {"type": "success"}, "detail": null}),
    )
    .await;
    assert_eq!(h.heartbeat(&session).await, 410);
    let refused = h
        .post(
            "optim_step",
            json!({"model_id": model, "seq_id": seq + 1, "adam_params": {"learning_rate": 1e-3}}),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("finished")
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_weights_are_served_through_signed_urls() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let f = h
        .ok(
            "save_weights_external",
            json!({"model_id": model, "path": "export", "seq_id": 1, "type": "save_weights_external"}),
        )
        .await;
    let done = h.result(&f).await;
    assert_eq!(
        done["path"],
        format!("tinker://{model}/external_weights/export")
    );
    assert!(done["size_bytes"].as_u64().unwrap() > 0);
    let urls = h
        .get(&format!(
            "training_runs/{model}/checkpoints/external_weights/export/external_weights_urls"
        ))
        .await
        .json();
    let files = urls["urls"].as_object().unwrap();
    assert!(
        files.contains_key("adapter_model.safetensors")
            && files.contains_key("adapter_config.json")
    );
    let on_disk = dir
        .path()
        .join("runs")
        .join(&model)
        .join("external_weights/export/adapter_model.safetensors");
    let url = files["adapter_model.safetensors"].as_str().unwrap();
    let path = url.strip_prefix(&h.base).unwrap();
    // Signed URLs need no API key.
    let mut anonymous = Harness {
        key: String::new(),
        ..h
    };
    let r = anonymous
        .request(hyper::Method::GET, path, &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), std::fs::read(on_disk).unwrap().as_slice());
    let forged = path.replace("sig=", "sig=0");
    let r = anonymous
        .request(hyper::Method::GET, &forged, &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // Without a key, the API itself refuses.
    assert_eq!(anonymous.get("training_runs").await.status, 401);
    anonymous.key = common::KEY.to_owned();
    anonymous.server.shutdown().await;
}
