//! Account isolation: with another account's API key, every route that names a model,
//! session, sampler, future or checkpoint answers exactly as it answers an id that does not
//! exist (404, same body), and nothing of the other account changes. Published checkpoints
//! and weights access tokens (tested in `server_search_billing_access.rs`) stay the only
//! ways across accounts.

use crate::common;

use crate::common::{Harness, Reply, config, dataset, fwd_bwd_body};
use hyper::{Method, StatusCode};
use prost::Message;
use serde_json::{Value, json};
use tinker_types::proto::wire;

const KEY_A: &str = "tml-alice";
const KEY_B: &str = "tml-bob";

/// Asserts that `foreign` (a request naming account A's `id`) was answered exactly like
/// `unknown` (the same request naming `unknown_id`, which does not exist): 404 both, and
/// the same body once the ids are swapped.
fn same_as_unknown(what: &str, foreign: &Reply, id: &str, unknown: &Reply, unknown_id: &str) {
    assert_eq!(
        unknown.status,
        StatusCode::NOT_FOUND,
        "{what} (unknown id): {}",
        String::from_utf8_lossy(&unknown.body)
    );
    assert_eq!(
        foreign.status,
        StatusCode::NOT_FOUND,
        "{what} (other account's id): {}",
        String::from_utf8_lossy(&foreign.body)
    );
    let foreign = String::from_utf8_lossy(&foreign.body).replace(id, unknown_id);
    assert_eq!(
        foreign,
        String::from_utf8_lossy(&unknown.body),
        "{what}: the body tells the ids apart"
    );
}

/// POSTs `make(id)` and `make(unknown)` and checks they are answered alike.
async fn post_alike(
    h: &Harness,
    path: &str,
    id: &str,
    unknown: &str,
    make: impl Fn(&str) -> Value,
) {
    let foreign = h.post(path, make(id)).await;
    let missing = h.post(path, make(unknown)).await;
    same_as_unknown(path, &foreign, id, &missing, unknown);
}

async fn request_alike(
    h: &Harness,
    method: Method,
    path: &str,
    id: &str,
    unknown: &str,
    body: Value,
) {
    let send = |p: String, b: Value| {
        let method = method.clone();
        async move {
            h.request(
                method,
                &p,
                &[("content-type", "application/json")],
                b.to_string().into_bytes(),
            )
            .await
            .unwrap()
        }
    };
    let foreign = send(path.to_owned(), body.clone()).await;
    let missing = send(path.replace(id, unknown), body).await;
    same_as_unknown(path, &foreign, id, &missing, unknown);
}

/// An unknown id shaped like `id` (same session-prefixed structure, another uuid).
fn unknown_like(id: &str) -> String {
    id.replacen("session-", "session-0000", 1)
}

/// Account A: a session with a model that has a saved checkpoint and a sampler.
struct AccountA {
    session: String,
    model: String,
    path: String,
    sampler: String,
}

async fn account_a(h: &mut Harness) -> AccountA {
    h.key = KEY_A.to_owned();
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "w", "seq_id": 1, "type": "save_weights"}),
        )
        .await;
    let path = h.result(&save).await["path"].as_str().unwrap().to_owned();
    let f = h
        .ok(
            "save_weights_for_sampler",
            json!({"model_id": model, "seq_id": 2, "sampling_session_seq_id": 0, "kind": "snapshot"}),
        )
        .await;
    let sampler = h.result(&f).await["sampling_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    AccountA {
        session,
        model,
        path,
        sampler,
    }
}

fn sample_body(sampler: &str, seq: i64) -> Value {
    json!({"num_samples": 1, "prompt": {"chunks": [{"tokens": [5, 6, 7], "type": "encoded_text"}]},
           "sampling_params": {"max_tokens": 2, "temperature": 1.0, "top_k": -1, "top_p": 1.0},
           "sampling_session_id": sampler, "seq_id": seq, "type": "sample"})
}

/// Account A's model is untouched: nothing ran on it beyond A's own requests, and A's
/// next seq_id (3) is still free.
async fn a_untouched(h: &mut Harness, a: &AccountA) {
    h.key = KEY_A.to_owned();
    let executed: Vec<i64> = h
        .server
        .executions()
        .into_iter()
        .filter(|((m, _), _)| *m == a.model)
        .map(|((_, s), _)| s)
        .collect();
    assert_eq!(
        executed,
        vec![1, 2],
        "only A's own requests ran on A's model"
    );
    let next = h.optim(&a.model, 3, 1e-3).await;
    h.result(&next).await;
    assert_eq!(h.heartbeat(&a.session).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_routes_refuse_other_accounts_models_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    h.key = KEY_B.to_owned();
    let b_session = h.session().await;
    let b_model = h.create_model(&b_session, 0).await;
    let unknown = unknown_like(&a.model);

    post_alike(
        &h,
        "get_info",
        &a.model,
        &unknown,
        |m| json!({"model_id": m, "type": "get_info"}),
    )
    .await;
    post_alike(&h, "optim_step", &a.model, &unknown, |m| {
        json!({"model_id": m, "seq_id": 3, "type": "optim_step",
               "adam_params": {"learning_rate": 5.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
                               "weight_decay": 0.0, "grad_clip_norm": 0.0}})
    })
    .await;
    post_alike(
        &h,
        "save_weights",
        &a.model,
        &unknown,
        |m| json!({"model_id": m, "path": "stolen", "seq_id": 3, "type": "save_weights"}),
    )
    .await;
    post_alike(
        &h,
        "save_weights_for_sampler",
        &a.model,
        &unknown,
        |m| json!({"model_id": m, "path": "stolen", "seq_id": 3, "kind": "snapshot"}),
    )
    .await;
    post_alike(
        &h,
        "save_weights_external",
        &a.model,
        &unknown,
        |m| json!({"model_id": m, "path": "stolen", "seq_id": 3}),
    )
    .await;
    // load_weights into A's model, from a checkpoint B may read (its own).
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": b_model, "path": "mine", "seq_id": 1, "type": "save_weights"}),
        )
        .await;
    let b_path = h.result(&save).await["path"].as_str().unwrap().to_owned();
    post_alike(&h, "load_weights", &a.model, &unknown, |m| {
        json!({"model_id": m, "seq_id": 3, "path": b_path, "optimizer": false, "type": "load_weights"})
    })
    .await;
    // Creating models in A's session (fresh or from a checkpoint).
    let unknown_session = unknown_like(&a.session);
    post_alike(&h, "create_model", &a.session, &unknown_session, |s| {
        json!({"session_id": s, "model_seq_id": 0, "base_model": common::MODEL,
               "lora_config": {"rank": 4}, "type": "create_model"})
    })
    .await;
    post_alike(&h, "load_weights", &a.session, &unknown_session, |s| {
        json!({"session_id": s, "model_seq_id": 7, "path": b_path, "optimizer": false, "type": "load_weights"})
    })
    .await;
    // forward_backward (protobuf).
    let foreign = h
        .post_proto(fwd_bwd_body(
            &a.model,
            3,
            &dataset(),
            "cross_entropy",
            false,
        ))
        .await;
    let missing = h
        .post_proto(fwd_bwd_body(
            &unknown,
            3,
            &dataset(),
            "cross_entropy",
            false,
        ))
        .await;
    same_as_unknown("forward_backward", &foreign, &a.model, &missing, &unknown);

    a_untouched(&mut h, &a).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_routes_refuse_other_accounts_samplers_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    // A samples once with seq_id 0 (B must not get A's future back by resubmitting it).
    let a_sample = h.ok("asample", sample_body(&a.sampler, 0)).await;
    let done = h.wait(a_sample["request_id"].as_str().unwrap()).await;
    assert!(done.status == 200 && !common::is_json(&done));

    h.key = KEY_B.to_owned();
    let unknown = unknown_like(&a.sampler);
    post_alike(&h, "asample", &a.sampler, &unknown, |s| sample_body(s, 0)).await;
    post_alike(&h, "asample", &a.sampler, &unknown, |s| sample_body(s, 1)).await;
    post_alike(
        &h,
        "join_sampling_session",
        &a.sampler,
        &unknown,
        |s| json!({"sampling_session_id": s, "type": "join_sampling_session"}),
    )
    .await;
    request_alike(
        &h,
        Method::GET,
        &format!("/api/v1/samplers/{}", a.sampler),
        &a.sampler,
        &unknown,
        json!(null),
    )
    .await;
    let unknown_session = unknown_like(&a.session);
    post_alike(
        &h,
        "create_sampling_session",
        &a.session,
        &unknown_session,
        |s| {
            json!({"session_id": s, "sampling_session_seq_id": 0, "base_model": common::MODEL,
               "type": "create_sampling_session"})
        },
    )
    .await;
    // Sampling from A's private checkpoint needs A's consent (publishing): unknown to B.
    let unknown_path = a.path.replace(&a.model, &unknown_like(&a.model));
    let b_session = h.session().await;
    let foreign = h
        .post(
            "create_sampling_session",
            json!({"session_id": b_session, "sampling_session_seq_id": 0, "model_path": a.path}),
        )
        .await;
    let missing = h
        .post(
            "create_sampling_session",
            json!({"session_id": b_session, "sampling_session_seq_id": 1, "model_path": unknown_path}),
        )
        .await;
    same_as_unknown(
        "create_sampling_session(model_path)",
        &foreign,
        &a.model,
        &missing,
        &unknown_like(&a.model),
    );
    a_untouched(&mut h, &a).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_of_other_accounts_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    let a_sample = h.ok("asample", sample_body(&a.sampler, 0)).await;
    let done = h.wait(a_sample["request_id"].as_str().unwrap()).await;
    assert!(done.status == 200 && !common::is_json(&done));
    let a_id = a_sample["request_id"].as_str().unwrap().to_owned();

    h.key = KEY_B.to_owned();
    let unknown = unknown_like(&a_id);
    post_alike(
        &h,
        "retrieve_future",
        &a_id,
        &unknown,
        |id| json!({"request_id": id, "allow_metadata_only": false}),
    )
    .await;
    // retrieve_futures reports nothing of A's sampler.
    let unknown_sampler = unknown_like(&a.sampler);
    post_alike(&h, "retrieve_futures", &a.sampler, &unknown_sampler, |s| {
        json!({"target": {"type": "sampling_session", "sampling_session_id": s, "cloned_sampler_id": 0},
               "prev_cursor": 0, "timeout": 0.0, "retrieved_request_ids": []})
    })
    .await;
    // cancel_future answers as for an unknown id and cancels nothing of A's.
    h.key = KEY_A.to_owned();
    let pending = h.ok("asample", sample_body(&a.sampler, 1)).await;
    let pending_id = pending["request_id"].as_str().unwrap().to_owned();
    h.key = KEY_B.to_owned();
    let foreign = h
        .ok("cancel_future", json!({"request_id": pending_id}))
        .await;
    let missing = h
        .ok(
            "cancel_future",
            json!({"request_id": unknown_like(&pending_id)}),
        )
        .await;
    assert_eq!(foreign["cancelled"], false);
    assert_eq!(missing["cancelled"], false);
    h.key = KEY_A.to_owned();
    let done = h.wait(&pending_id).await;
    assert_eq!(done.status, 200);
    assert!(
        !common::is_json(&done),
        "A's sample still delivers its result"
    );
    a_untouched(&mut h, &a).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_other_accounts_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    h.key = KEY_B.to_owned();
    let unknown = unknown_like(&a.session);
    post_alike(
        &h,
        "session_heartbeat",
        &a.session,
        &unknown,
        |s| json!({"session_id": s, "type": "session_heartbeat"}),
    )
    .await;
    request_alike(
        &h,
        Method::POST,
        &format!("/api/v1/sessions/{}/finish", a.session),
        &a.session,
        &unknown,
        json!({"reason": {"type": "success"}, "detail": null}),
    )
    .await;
    for path in [
        format!("/api/v1/sessions/{}", a.session),
        format!("/api/v1/sessions/{}/trace_export", a.session),
    ] {
        request_alike(&h, Method::GET, &path, &a.session, &unknown, json!(null)).await;
    }
    request_alike(
        &h,
        Method::PUT,
        &format!("/api/v1/sessions/{}/project", a.session),
        &a.session,
        &unknown,
        json!({"project_id": "p"}),
    )
    .await;
    post_alike(&h, "telemetry", &a.session, &unknown, |s| {
        telemetry_batch(s, 1)
    })
    .await;
    // A session-less client's batch names no session, so any account may send one.
    let sessionless = h
        .post("telemetry", telemetry_batch("sessionless-0b6f", 1))
        .await;
    assert_eq!(sessionless.status, StatusCode::OK);
    // Another key of A's account (`<key>+<label>`) reaches A's session.
    h.key = format!("{KEY_A}+laptop");
    assert_eq!(h.heartbeat(&a.session).await, 200);
    let before = h.server.telemetry_events().len();
    let own = h.post("telemetry", telemetry_batch(&a.session, 1)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(h.server.telemetry_events().len(), before + 1);
    // A's session is still active: heartbeats and new work succeed.
    a_untouched(&mut h, &a).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_routes_refuse_other_accounts_runs_and_checkpoints_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    // An export, and a published checkpoint (published ones are readable by everyone, but
    // only their owner may change or delete them).
    let export = h
        .ok(
            "save_weights_external",
            json!({"model_id": a.model, "path": "export", "seq_id": 3}),
        )
        .await;
    h.result(&export).await;
    let publish = format!(
        "/api/v1/training_runs/{}/checkpoints/weights/w/publish",
        a.model
    );
    let r = h
        .request(Method::POST, &publish, &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": a.model, "path": "private", "seq_id": 4, "type": "save_weights"}),
        )
        .await;
    h.result(&save).await;

    h.key = KEY_B.to_owned();
    let run = &a.model;
    let unknown = unknown_like(run);
    let base = format!("/api/v1/training_runs/{run}/checkpoints");
    for (method, path, body) in [
        (Method::DELETE, format!("{base}/weights/w"), json!(null)),
        (
            Method::DELETE,
            format!("{base}/weights/private"),
            json!(null),
        ),
        (
            Method::POST,
            format!("{base}/weights/private/publish"),
            json!(null),
        ),
        (
            Method::DELETE,
            format!("{base}/weights/w/publish"),
            json!(null),
        ),
        (
            Method::PUT,
            format!("{base}/weights/w/ttl"),
            json!({"ttl_seconds": 7200}),
        ),
        (
            Method::PUT,
            format!("{base}/weights/private/ttl"),
            json!({"ttl_seconds": 7200}),
        ),
        (
            Method::GET,
            format!("{base}/external_weights/export/external_weights_urls"),
            json!(null),
        ),
    ] {
        request_alike(&h, method, &path, run, &unknown, body).await;
    }
    // The private checkpoint's weights info is unknown to B; the published one is not.
    let private = a.path.replace("/weights/w", "/weights/private");
    let foreign = h
        .post("weights_info", json!({"tinker_path": private}))
        .await;
    let missing = h
        .post(
            "weights_info",
            json!({"tinker_path": private.replace(run, &unknown)}),
        )
        .await;
    same_as_unknown("weights_info", &foreign, run, &missing, &unknown);
    let public = h.post("weights_info", json!({"tinker_path": a.path})).await;
    assert_eq!(public.status, 200);
    // Only the published checkpoint is listed to B.
    let listed = h
        .get(&format!("training_runs/{run}/checkpoints"))
        .await
        .json();
    let ids: Vec<&str> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["checkpoint_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["weights/w"]);

    // Nothing of A's changed.
    h.key = KEY_A.to_owned();
    let listed = h
        .get(&format!("training_runs/{run}/checkpoints"))
        .await
        .json();
    let checkpoints = listed["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 3, "{listed}");
    for c in checkpoints {
        assert_eq!(c["public"], c["checkpoint_id"] == "weights/w", "{c}");
        assert!(c["expires_at"].is_null(), "{c}");
    }
    h.server.shutdown().await;
}

async fn copy(h: &Harness, body: Value, idempotency_key: &str) -> Reply {
    h.request(
        Method::POST,
        "/api/v1/copy_weights",
        &[
            ("content-type", "application/json"),
            ("x-idempotency-key", idempotency_key),
        ],
        body.to_string().into_bytes(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_weights_stays_inside_the_callers_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    let a_copy = copy(&h, json!({"source_path": a.path}), "shared-key").await;
    assert_eq!(a_copy.status, 200);

    h.key = KEY_B.to_owned();
    let b_session = h.session().await;
    let b_model = h.create_model(&b_session, 0).await;
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": b_model, "path": "mine", "seq_id": 1, "type": "save_weights"}),
        )
        .await;
    let b_path = h.result(&save).await["path"].as_str().unwrap().to_owned();
    // B cannot place a copy in A's session.
    let unknown = unknown_like(&a.session);
    let body = |s: &str| json!({"source_path": b_path, "session_id": s, "model_seq_id": 5});
    let foreign = copy(&h, body(&a.session), "k-foreign").await;
    let missing = copy(&h, body(&unknown), "k-missing").await;
    same_as_unknown(
        "copy_weights(session_id)",
        &foreign,
        &a.session,
        &missing,
        &unknown,
    );
    // An idempotency key A used does not hand B A's answer.
    let b_copy = copy(&h, json!({"source_path": b_path}), "shared-key").await;
    assert_eq!(
        b_copy.status,
        200,
        "{}",
        String::from_utf8_lossy(&b_copy.body)
    );
    assert_ne!(b_copy.json()["tinker_path"], a_copy.json()["tinker_path"]);
    assert!(
        b_copy.json()["tinker_path"]
            .as_str()
            .unwrap()
            .ends_with("/weights/mine")
    );

    h.key = KEY_A.to_owned();
    let runs = h.get("training_runs?limit=0").await.json();
    assert!(
        runs["training_runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["training_run_id"] != format!("{}:train:5", a.session)),
        "{runs}"
    );
    h.server.shutdown().await;
}

fn custom_loss_body(session: &str, seq: u64) -> Value {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/custom_loss/neg_ll.json"
        ))
        .unwrap(),
    )
    .unwrap();
    json!({"session_id": session, "custom_loss_seq_id": seq, "name": fixture["name"],
           "inputs": fixture["inputs"], "graph": fixture["graph"], "type": "create_custom_loss"})
}

/// A `forward_backward` body with loss `custom` and `loss_id`.
fn custom_fwd_bwd(model: &str, seq: i32, loss_id: &str) -> Vec<u8> {
    let mut req = wire::ForwardBackwardRequest::decode(
        fwd_bwd_body(model, seq, &dataset(), "custom", false).as_slice(),
    )
    .unwrap();
    req.loss_fn_config_v2.insert(
        "loss_id".to_owned(),
        wire::LossConfigValue {
            value: Some(wire::loss_config_value::Value::Text(loss_id.to_owned())),
        },
    );
    req.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_losses_of_other_accounts_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    let created = h
        .ok("create_custom_loss", custom_loss_body(&a.session, 0))
        .await;
    let a_loss = h.result(&created).await["loss_id"]
        .as_str()
        .unwrap()
        .to_owned();

    h.key = KEY_B.to_owned();
    // B cannot create losses in A's session, nor get A's creation answer back.
    let unknown = unknown_like(&a.session);
    for seq in [0, 1] {
        post_alike(&h, "create_custom_loss", &a.session, &unknown, |s| {
            custom_loss_body(s, seq)
        })
        .await;
    }
    // B's model cannot use A's loss: it fails exactly like an unknown loss id.
    let b_session = h.session().await;
    let b_model = h.create_model(&b_session, 0).await;
    let unknown_loss = unknown_like(&a_loss);
    let mut errors = Vec::new();
    for (seq, loss) in [(1, &a_loss), (2, &unknown_loss)] {
        let r = h.post_proto(custom_fwd_bwd(&b_model, seq, loss)).await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let error = if r.status == 200 {
            let done = h.wait(r.json()["request_id"].as_str().unwrap()).await;
            String::from_utf8_lossy(&done.body).into_owned()
        } else {
            format!("{}: {text}", r.status)
        };
        errors.push(error);
    }
    assert!(
        errors[1].contains("error") || errors[1].starts_with('4'),
        "{errors:?}"
    );
    assert_eq!(errors[0].replace(&a_loss, &unknown_loss), errors[1]);
    a_untouched(&mut h, &a).await;
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_shows_only_the_callers_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    let a = account_a(&mut h).await;
    h.key = KEY_B.to_owned();
    let b_session = h.session().await;
    let b_model = h.create_model(&b_session, 0).await;
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": b_model, "path": "b", "seq_id": 1, "type": "save_weights"}),
        )
        .await;
    let b_path = h.result(&save).await["path"].as_str().unwrap().to_owned();

    // Each account sees its own events and nothing that names the other's ids.
    for (key, own, other) in [
        (
            KEY_B,
            [&b_session, &b_model, &b_path],
            [&a.session, &a.model, &a.path],
        ),
        (
            KEY_A,
            [&a.session, &a.model, &a.path],
            [&b_session, &b_model, &b_path],
        ),
    ] {
        h.key = key.to_owned();
        let r = h.get("audit").await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let text = String::from_utf8_lossy(&r.body).into_owned();
        for id in other {
            assert!(!text.contains(id.as_str()), "{key} sees {id}: {text}");
        }
        for id in own {
            assert!(text.contains(id.as_str()), "{key} misses {id}: {text}");
        }
        let events: Vec<String> = r.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect();
        for event in ["session_create", "model_create", "checkpoint_create"] {
            assert!(events.iter().any(|e| e == event), "{key}: {events:?}");
        }
    }
    // Both accounts' events are still recorded on the server.
    let all = h.server.audit_records();
    assert!(
        all.iter()
            .any(|r| r.model_id.as_deref() == Some(a.model.as_str()))
    );
    assert!(
        all.iter()
            .any(|r| r.model_id.as_deref() == Some(b_model.as_str()))
    );
    h.server.shutdown().await;
}

/// A telemetry batch of `n` events for `session_id`.
fn telemetry_batch(session_id: &str, n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"event": "SESSION_START", "event_id": format!("e{i}"), "event_session_index": i,
                   "severity": "INFO", "timestamp": "2026-01-01T00:00:00Z"})
        })
        .collect();
    json!({"events": events, "platform": "Linux", "sdk_version": "0.38.0",
           "session_id": session_id, "process_uuid": "p"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telemetry_store_keeps_the_latest_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    let reply = h
        .post("telemetry", telemetry_batch("sessionless-bound", 10_005))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = h.server.telemetry_events();
    assert_eq!(events.len(), 10_000);
    assert_eq!(events[0]["event_id"], "e5");
    assert_eq!(events[9_999]["event_id"], "e10004");
    h.server.shutdown().await;
}
