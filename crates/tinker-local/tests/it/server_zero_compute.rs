//! Zero-compute mode over HTTP: the same protocol (`seq_id` order, futures, typed errors,
//! checkpoints, sampling) with instant results of the right shapes.

use crate::common;
use crate::common::{Harness, config, dataset, fwd_bwd_body, logprobs, loss};
use prost::Message;
use serde_json::json;
use tinker_types::proto::wire;

fn zero_config(dir: &std::path::Path) -> tinker_local::LocalServerConfig {
    let mut c = config(dir);
    c.zero_compute = true;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_answers_with_the_right_shapes_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(zero_config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;

    // Submitted out of order: the optimizer step (seq 2) waits for forward_backward (seq 1).
    let data = dataset();
    let opt = h.optim(&model, 2, 1e-2).await;
    let fb = h.fwd_bwd(&model, 1, &data, false).await;
    let out = h.fwd_bwd_result(&fb).await;
    let opt = h.result(&opt).await;
    for key in ["grad_norm:mean", "update_norm:mean", "param_norm:mean"] {
        assert_eq!(opt["metrics"][key], 0.0, "{opt}");
    }
    let lps = logprobs(&out);
    assert_eq!(lps.len(), data.len());
    let mut tokens = 0usize;
    for (row, datum) in lps.iter().zip(&data) {
        assert_eq!(row.len(), datum.len() - 1);
        assert!(row.iter().all(|&lp| lp < 0.0 && lp == row[0]), "{row:?}");
        tokens += row.len();
    }
    // Cross-entropy with weight 1 on every token: the sum of −logprob.
    let expected = -f64::from(lps[0][0]) * tokens as f64;
    assert!(
        (loss(&out) - expected).abs() < 1e-3 * expected,
        "{}",
        loss(&out)
    );

    // Training is accounted as with the engine.
    let trained: u64 = h
        .server
        .usage_records()
        .iter()
        .filter(|u| u.kind == "training")
        .map(|u| u.count)
        .sum();
    assert_eq!(trained, tokens as u64);

    // Bad input gets the engine's typed user error.
    let bad = fwd_bwd_body(&model, 3, &[vec![5, 1_000_000]], "cross_entropy", false);
    let r = h.post_proto(bad).await;
    let failed = if r.status.is_success() {
        let id = r.json()["request_id"].as_str().unwrap().to_owned();
        h.wait(&id).await.json()
    } else {
        r.json()
    };
    assert!(
        failed.to_string().contains("out of range") || failed.to_string().contains("vocab"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_samples_have_the_requested_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(zero_config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let opt = h.optim(&model, 1, 1e-2).await;
    h.result(&opt).await;

    // A named checkpoint with optimizer state, loaded back into the model.
    let saved = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "ckpt", "seq_id": 2, "type": "save_weights"}),
        )
        .await;
    let path = h.result(&saved).await["path"].as_str().unwrap().to_owned();
    let loaded = h
        .ok(
            "load_weights",
            json!({"model_id": model, "path": path, "seq_id": 3, "optimizer": true,
                   "type": "load_weights"}),
        )
        .await;
    h.result(&loaded).await;

    // Sampler weights under a name: a sampling session opens from the path.
    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "path": "s1", "seq_id": 4,
                   "type": "save_weights_for_sampler"}),
        )
        .await;
    let sampler_path = h.result(&f).await["path"].as_str().unwrap().to_owned();
    let created = h
        .ok(
            "create_sampling_session",
            json!({"session_id": session, "sampling_session_seq_id": 0,
                   "model_path": sampler_path, "type": "create_sampling_session"}),
        )
        .await;
    let sampler = created["sampling_session_id"].as_str().unwrap().to_owned();

    let prompt: Vec<u32> = vec![11, 12, 13, 14, 15];
    let sample = h
        .ok(
            "asample",
            json!({"num_samples": 3, "prompt": {"chunks": [{"tokens": prompt, "type": "encoded_text"}]},
                   "sampling_params": {"max_tokens": 9, "seed": 5, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
                   "sampling_session_id": sampler, "seq_id": 0, "prompt_logprobs": true,
                   "topk_prompt_logprobs": 2, "type": "sample"}),
        )
        .await;
    let r = h.wait(sample["request_id"].as_str().unwrap()).await;
    let resp = wire::SampleResponse::decode(r.body).unwrap();
    assert_eq!(resp.sequences.len(), 3);
    for s in &resp.sequences {
        assert_eq!(s.tokens.len() / 4, 9, "exactly max_tokens tokens");
        assert_eq!(s.logprobs.as_ref().unwrap().len() / 4, 9);
    }
    assert_eq!(resp.prompt_logprobs.unwrap().len() / 4, prompt.len());
    let topk = resp.topk_prompt_logprobs.unwrap();
    assert_eq!((topk.k, topk.length as usize), (2, prompt.len()));

    // An empty prompt is refused as by the engine.
    let bad = h
        .post(
            "asample",
            json!({"num_samples": 1, "prompt": {"chunks": [{"tokens": [], "type": "encoded_text"}]},
                   "sampling_params": {"max_tokens": 2}, "sampling_session_id": sampler,
                   "seq_id": 1, "type": "sample"}),
        )
        .await;
    let text = if bad.status.is_success() {
        let id = bad.json()["request_id"].as_str().unwrap().to_owned();
        String::from_utf8_lossy(&h.wait(&id).await.body).into_owned()
    } else {
        String::from_utf8_lossy(&bad.body).into_owned()
    };
    assert!(text.contains("empty"), "{text}");
}

/// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port; many requests over one
/// HTTP/2 connection open one TCP connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_h2c_and_http1_on_one_port() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(zero_config(dir.path())).await;
    let url = format!("{}/api/v1/get_server_capabilities", h.server.url());
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let before = h.server.connections_accepted();
    let replies = futures_util::future::join_all((0..50).map(|_| {
        let req = hyper::Request::get(&url)
            .header("x-api-key", common::KEY)
            .body(Empty::new())
            .unwrap();
        h2.request(req)
    }))
    .await;
    for r in replies {
        let r = r.unwrap();
        assert_eq!(r.version(), hyper::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
    }
    assert_eq!(h.server.connections_accepted() - before, 1);
    // HTTP/1.1 still works on the same port.
    let caps = h.get("get_server_capabilities").await;
    assert_eq!(caps.status, 200);
}
