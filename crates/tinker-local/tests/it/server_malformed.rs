//! Nothing a client sends crashes the server: bad input gets the status and `{"detail"}`
//! body a client expects, and the model's sequence keeps moving.

use crate::common;

use crate::common::{Harness, config, dataset, fwd_bwd_body};
use hyper::Method;
use serde_json::json;

async fn expect(
    h: &Harness,
    method: Method,
    path: &str,
    ctype: &str,
    body: &[u8],
    status: u16,
) -> serde_json::Value {
    let r = h
        .request(method, path, &[("content-type", ctype)], body.to_vec())
        .await
        .unwrap();
    assert_eq!(
        r.status.as_u16(),
        status,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert!(v["detail"].is_string(), "{path}: no detail in {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let json_ct = "application/json";

    let v = expect(&h, Method::GET, "/api/v1/nope", json_ct, b"", 404).await;
    assert_eq!(v["detail"], "Not Found");
    expect(&h, Method::GET, "/", json_ct, b"", 404).await;
    expect(&h, Method::GET, "/api/v1/create_session", json_ct, b"", 405).await;
    expect(
        &h,
        Method::POST,
        "/api/v1/create_session",
        json_ct,
        b"{not json",
        400,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/api/v1/create_session",
        json_ct,
        b"[1,2]",
        400,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/api/v1/create_model",
        json_ct,
        b"{}",
        400,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/api/v1/retrieve_future",
        json_ct,
        br#"{"request_id":"missing"}"#,
        404,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/api/v1/forward_backward",
        "application/x-protobuf",
        b"\xff\xff\xff\xff",
        400,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/api/v1/weights_info",
        json_ct,
        br#"{"tinker_path":"tinker://x/../etc"}"#,
        400,
    )
    .await;
    expect(
        &h,
        Method::GET,
        "/api/v1/training_runs/nope/checkpoints",
        json_ct,
        b"",
        404,
    )
    .await;
    expect(
        &h,
        Method::DELETE,
        "/api/v1/training_runs/a/checkpoints/evil/..",
        json_ct,
        b"",
        400,
    )
    .await;
    expect(&h, Method::GET, "/api/v1/billing/usage/events?starting_on=2026-01-01T00:30:00Z&ending_before=2026-01-02T00:00:00Z", json_ct, b"", 400).await;
    // Extractor rejections (query strings) get the same JSON shape.
    expect(
        &h,
        Method::GET,
        "/api/v1/billing/usage/events",
        json_ct,
        b"",
        400,
    )
    .await;
    expect(
        &h,
        Method::GET,
        "/api/v1/training_runs?limit=x",
        json_ct,
        b"",
        400,
    )
    .await;
    let zstd_header = h
        .request(
            Method::POST,
            "/api/v1/forward_backward",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "zstd"),
            ],
            b"not zstd at all".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(zstd_header.status, 400);

    // Authentication.
    let mut anon = Harness {
        key: "sk-wrong".into(),
        ..h
    };
    assert_eq!(anon.get("training_runs").await.status, 401);
    anon.key = String::new();
    assert_eq!(anon.get("training_runs").await.status, 401);
    anon.key = "eyJhbGciOiJub25lIn0.e30.x".into();
    let r = anon.get("training_runs").await;
    assert_eq!(r.status, 401);
    anon.key = common::KEY.into();
    let h = anon;

    let session = h.session().await;
    let bad_rank = h
        .post("create_model", json!({"session_id": session, "model_seq_id": 0, "base_model": common::MODEL, "lora_config": {"rank": 0}}))
        .await;
    assert_eq!(bad_rank.status, 400);
    let bad_model = h
        .post("create_model", json!({"session_id": session, "model_seq_id": 0, "base_model": "Qwen/Qwen3-8B", "lora_config": {"rank": 4}}))
        .await;
    assert_eq!(bad_model.status, 400);
    assert!(
        bad_model.json()["detail"]
            .as_str()
            .unwrap()
            .contains("tinker-local/micro")
    );

    let model = h.create_model(&session, 0).await;
    // Tokens out of the vocabulary and a length mismatch: the future fails as a user
    // error, and later requests of the model still run.
    let mut data = dataset();
    data[0][3] = 999_999;
    let f = h.fwd_bwd(&model, 1, &data, false).await;
    let r = h.wait(f["request_id"].as_str().unwrap()).await.json();
    assert_eq!(r["category"], "user", "{r}");
    let body = fwd_bwd_body(&model, 2, &dataset(), "gspo", false);
    let r = h.post_proto(body).await.json();
    let r = h.wait(r["request_id"].as_str().unwrap()).await.json();
    assert!(r["error"].as_str().unwrap().contains("gspo"), "{r}");
    // A non-Adam optimizer is refused with 400 but still uses its seq_id.
    let dimuon = h
        .post(
            "optim_step",
            json!({"model_id": model, "seq_id": 3, "type": "optim_step",
                                    "optimizer_params": {"type": "dimuon", "learning_rate": 0.01}}),
        )
        .await;
    assert_eq!(dimuon.status, 400);
    assert!(dimuon.json()["detail"].as_str().unwrap().contains("dimuon"));
    let ok = h.fwd_bwd(&model, 4, &dataset(), false).await;
    let out = h.fwd_bwd_result(&ok).await;
    assert!(common::loss(&out) > 0.0);

    // Checkpoint conflicts and bad TTLs.
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "s1", "seq_id": 5}),
        )
        .await;
    let path = h.result(&save).await["path"].as_str().unwrap().to_owned();
    let again = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "s1", "seq_id": 6}),
        )
        .await;
    let r = h.wait(again["request_id"].as_str().unwrap()).await.json();
    assert_eq!(r["category"], "user");
    let publish = format!("/api/v1/training_runs/{model}/checkpoints/weights/s1/publish");
    assert_eq!(
        h.request(Method::POST, &publish, &[], vec![])
            .await
            .unwrap()
            .status,
        200
    );
    expect(&h, Method::POST, &publish, json_ct, b"", 409).await;
    expect(
        &h,
        Method::PUT,
        &format!("/api/v1/training_runs/{model}/checkpoints/weights/s1/ttl"),
        json_ct,
        br#"{"ttl_seconds": 5}"#,
        400,
    )
    .await;
    let info = h.ok("weights_info", json!({"tinker_path": path})).await;
    assert_eq!(info["lora_rank"], 4);
    // Load with optimizer from a sampler checkpoint: refused, nothing started.
    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "path": "smp", "seq_id": 7}),
        )
        .await;
    let sampler_path = h.result(&f).await["path"].as_str().unwrap().to_owned();
    let r = h
        .post("load_weights", json!({"session_id": session, "model_seq_id": 1, "path": sampler_path, "optimizer": true}))
        .await;
    assert_eq!(r.status, 400);
    // The server is still healthy.
    assert_eq!(h.get("healthz").await.json()["status"], "ok");
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mode_mints_and_checks_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.jwt = true;
    cfg.api_key = Some("tml-only-this".into());
    let mut h = Harness::start(cfg).await;
    assert_eq!(h.post("auth/token", json!({})).await.status, 401);
    h.key = "tml-only-this".into();
    let config = h
        .ok("client/config", json!({"sdk_version": "0.38.0"}))
        .await;
    assert_eq!(config["pjwt_auth_enabled"], true);
    let jwt = h.ok("auth/token", json!({})).await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(jwt.starts_with("eyJ"));
    h.key = jwt.clone();
    assert_eq!(h.get("training_runs").await.status, 200);
    let mut forged = jwt.clone();
    forged.push('x');
    h.key = forged;
    let r = h.get("training_runs").await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    h.server.shutdown().await;
}
