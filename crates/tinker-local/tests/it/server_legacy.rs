//! What older clients (official SDK ≤ 0.25, tinkex) send: JSON `forward_backward` and
//! `forward`, JSON results without `Accept: application/x-protobuf`, `unload_model`, the
//! checkpoint `archive` route; refusals that still take their `seq_id`; portable tokenizer
//! ids served hub-style.

use crate::common;

use std::io::Read as _;
use std::time::Duration;

use crate::common::{Harness, MODEL, config, dataset};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// A datum as SDK 0.15 serialises it (TensorData JSON, `encoded_text` chunks).
fn legacy_datum(tokens: &[u32]) -> Value {
    let (input, target) = (&tokens[..tokens.len() - 1], &tokens[1..]);
    json!({
        "loss_fn_inputs": {
            "target_tokens": {"data": target, "dtype": "int64", "shape": [target.len()]},
            "weights": {"data": vec![1.0; target.len()], "dtype": "float32", "shape": [target.len()]},
        },
        "model_input": {"chunks": [{"tokens": input, "type": "encoded_text"}]},
    })
}

fn legacy_body(model: &str, seq: i64, wrapper: &str, loss_fn: &str) -> Value {
    let data: Vec<Value> = dataset().iter().map(|t| legacy_datum(t)).collect();
    json!({ wrapper: {"data": data, "loss_fn": loss_fn}, "model_id": model, "seq_id": seq })
}

/// Polls a future the way SDK 0.15 does (no `Accept: application/x-protobuf`).
async fn wait_json(h: &Harness, future: &Value) -> Value {
    let id = future["request_id"].as_str().unwrap();
    for _ in 0..200 {
        let r = h
            .request(
                Method::POST,
                "/api/v1/retrieve_future",
                &[("content-type", "application/json")],
                json!({"request_id": id, "allow_metadata_only": false})
                    .to_string()
                    .into_bytes(),
            )
            .await
            .expect("request succeeds");
        let v = r.json();
        if r.status == StatusCode::OK && v["type"] != "try_again" {
            assert!(common::is_json(&r), "an older client gets JSON results");
            return v;
        }
    }
    panic!("future {id} never finished");
}

fn optim_body(model: &str, seq: i64) -> Value {
    json!({"model_id": model, "seq_id": seq, "type": "optim_step",
           "adam_params": {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8}})
}

#[tokio::test]
async fn json_forward_backward_and_forward_match_the_protobuf_wire() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;

    // `POST /api/v1/forward` (JSON `forward_input`) and the protobuf forward-only request
    // see the same weights and give the same loss.
    let f = h
        .ok(
            "forward",
            legacy_body(&model, 1, "forward_input", "cross_entropy"),
        )
        .await;
    let json_fwd = wait_json(&h, &f).await;
    let proto = h.fwd_bwd(&model, 2, &dataset(), true).await;
    let proto_fwd = h.fwd_bwd_result(&proto).await;
    let json_loss = json_fwd["metrics"]["loss:sum"].as_f64().unwrap();
    assert!((json_loss - common::loss(&proto_fwd)).abs() < 1e-4);
    assert_eq!(json_fwd["loss_fn_outputs"].as_array().unwrap().len(), 4);
    assert_eq!(
        json_fwd["loss_fn_outputs"][0]["logprobs"]["dtype"],
        "float32"
    );

    // JSON `forward_backward` + `optim_step` train: the loss falls.
    let mut losses = Vec::new();
    for step in 0..3 {
        let seq = 3 + 2 * step;
        let f = h
            .ok(
                "forward_backward",
                legacy_body(&model, seq, "forward_backward_input", "cross_entropy"),
            )
            .await;
        let out = wait_json(&h, &f).await;
        losses.push(out["metrics"]["loss:sum"].as_f64().unwrap());
        let o = h.ok("optim_step", optim_body(&model, seq + 1)).await;
        wait_json(&h, &o).await;
    }
    assert!(losses[2] < losses[0], "loss did not fall: {losses:?}");
    assert!((losses[0] - json_loss).abs() < 1e-4);
}

#[tokio::test]
async fn a_refused_request_takes_its_seq_id_so_the_next_one_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;

    // Malformed beyond their address: a datum without `model_input`, then an optim_step
    // without its parameters.
    let r = h
        .post(
            "forward_backward",
            json!({"forward_backward_input": {"data": [{"loss_fn_inputs": {}}],
                                              "loss_fn": "cross_entropy"},
                   "model_id": model, "seq_id": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .post(
            "optim_step",
            json!({"model_id": model, "seq_id": 2, "type": "optim_step"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The next request runs at once (the gap wait would otherwise hold it).
    let o = h.ok("optim_step", optim_body(&model, 3)).await;
    let done = tokio::time::timeout(Duration::from_secs(10), wait_json(&h, &o))
        .await
        .expect("the optim_step after refused requests does not wait for them");
    assert!(done.get("error").is_none(), "{done}");
}

#[tokio::test]
async fn unload_model_drops_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let f = h
        .ok(
            "unload_model",
            json!({"model_id": model, "type": "unload_model"}),
        )
        .await;
    let done = wait_json(&h, &f).await;
    assert_eq!(done["model_id"], model.as_str());
    assert_eq!(done["type"], "unload_model");
    let r = h
        .post(
            "forward_backward",
            legacy_body(&model, 1, "forward_backward_input", "cross_entropy"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Another account cannot unload (or learn about) this model.
    h.key = "tml-someone-else".to_owned();
    let r = h
        .post(
            "unload_model",
            json!({"model_id": model, "type": "unload_model"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tokenizer_ids_are_model_names_served_like_hub_repos() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let info = h
        .ok("get_info", json!({"model_id": model, "type": "get_info"}))
        .await;
    assert_eq!(info["model_data"]["tokenizer_id"], MODEL);

    let file = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/micro/tokenizer.json"),
    )
    .unwrap();
    let url = format!("/{MODEL}/resolve/main/tokenizer.json");
    let head = h
        .request(Method::HEAD, &url, &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    let commit = head.headers["x-repo-commit"].to_str().unwrap().to_owned();
    assert_eq!(commit.len(), 40);
    assert!(head.headers.contains_key("etag"));
    assert_eq!(
        head.headers["content-length"].to_str().unwrap(),
        file.len().to_string()
    );
    // No credentials needed, like a public hub repository; pinned to the commit too.
    h.key = String::new();
    let get = h
        .request(
            Method::GET,
            &format!("/{MODEL}/resolve/{commit}/tokenizer.json"),
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body.as_ref(), file.as_slice());
    let info = h
        .request(
            Method::GET,
            &format!("/api/models/{MODEL}/revision/main"),
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(info["sha"], commit.as_str());
    assert!(
        info["siblings"]
            .as_array()
            .unwrap()
            .contains(&json!({"rfilename": "tokenizer_config.json"}))
    );
    // Only tokenizer files of served models; hub-style error codes otherwise.
    for (path, code) in [
        (format!("/{MODEL}/resolve/main/README.md"), "EntryNotFound"),
        (
            format!("/{MODEL}/resolve/main/..%2F..%2FCargo.toml"),
            "EntryNotFound",
        ),
        (
            "/someone/else/resolve/main/tokenizer.json".to_owned(),
            "RepoNotFound",
        ),
        (
            format!("/{MODEL}/resolve/v2/tokenizer.json"),
            "RevisionNotFound",
        ),
    ] {
        let r = h
            .request(Method::GET, &path, &[], Vec::new())
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.headers["x-error-code"], code, "{path}");
    }
}

#[tokio::test]
async fn checkpoint_archive_redirects_to_a_signed_tar() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let f = h
        .ok(
            "save_weights",
            json!({"model_id": model, "seq_id": 1, "path": "arch", "type": "save_weights"}),
        )
        .await;
    h.result(&f).await;
    let r = h
        .get(&format!(
            "training_runs/{model}/checkpoints/weights/arch/archive"
        ))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{:?}", r.body);
    let location = r.headers["location"].to_str().unwrap().to_owned();
    assert!(r.headers.contains_key("expires"));
    assert_eq!(r.json()["url"], location.as_str());
    // SDK 0.25 and later (this project's client states 0.38) get 200 with the URL; 0.15,
    // which reads only the 302, gets the 302.
    let archive_route = format!("/api/v1/training_runs/{model}/checkpoints/weights/arch/archive");
    for (version, status) in [
        ("0.38.0", StatusCode::OK),
        ("0.25.0", StatusCode::OK),
        ("0.15.0", StatusCode::FOUND),
    ] {
        let r = h
            .request(
                Method::GET,
                &archive_route,
                &[
                    ("accept", "application/json"),
                    ("x-stainless-package-version", version),
                ],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, status, "{version}");
        assert!(r.json()["url"].as_str().unwrap().contains("sig="));
        assert!(r.json()["expires"].is_string());
    }
    let path = location.strip_prefix(&h.base).unwrap();

    // The signed URL needs no API key; its tar holds the checkpoint's files.
    h.key = String::new();
    let tar_reply = h.request(Method::GET, path, &[], Vec::new()).await.unwrap();
    assert_eq!(tar_reply.status, StatusCode::OK);
    let mut archive = tar::Archive::new(tar_reply.body.as_ref());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert!(entry.header().entry_type().is_file());
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert!(!bytes.is_empty(), "{name} is empty");
        names.push(name);
    }
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with('/') && !n.contains(".."))
    );

    // A tampered signature is refused; another account cannot get the URL.
    let tampered = path.replace("sig=", "sig=0");
    let r = h
        .request(Method::GET, &tampered, &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    h.key = "tml-someone-else".to_owned();
    let r = h
        .get(&format!(
            "training_runs/{model}/checkpoints/weights/arch/archive"
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
