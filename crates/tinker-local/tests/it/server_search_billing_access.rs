//! Session search by owner and status, storage billing, and who may read a checkpoint
//! (weights access tokens).

use crate::common;

use crate::common::{Harness, MODEL, config};
use chrono::{Timelike, Utc};
use hyper::Method;
use serde_json::{Value, json};
use tinker_types::{
    BillingEventInfo, BillingUsageResponse, CurrentCheckpointStorageUsageResponse,
    SessionFailedReason, SessionSearchResponse, SessionStatus,
};

const KEY_A: &str = "tml-alice";
const KEY_B: &str = "tml-bob";

async fn search(h: &Harness, body: Value) -> SessionSearchResponse {
    let r = h.post("sessions/search", body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    tinker_types::json::from_slice(&r.body).unwrap()
}

fn ids(r: &SessionSearchResponse) -> Vec<String> {
    let mut v: Vec<String> = r.sessions.iter().map(|s| s.session_id.clone()).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn finish(h: &Harness, session: &str, reason: &str) {
    h.ok(
        &format!("sessions/{session}/finish"),
        json!({"reason": {"type": reason}, "detail": null}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_user_and_by_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    h.key = KEY_B.to_owned();
    let bob = h.session().await;
    let bob_urn = search(&h, json!({})).await.sessions[0].owner.clone();

    h.key = KEY_A.to_owned();
    let active = h.session().await;
    let errored = h.session().await;
    let interrupted = h.session().await;
    let cancelled = h.session().await;
    let failed = h.session().await;
    finish(&h, &errored, "errored").await;
    finish(&h, &interrupted, "interrupted").await;
    assert!(
        h.server
            .cancel_session(&cancelled, Some("stopped from the console"))
    );
    assert!(
        !h.server.cancel_session(&errored, None),
        "the first end wins"
    );
    assert_eq!(h.heartbeat(&cancelled).await, 410);

    // A request failing on the server's side (its staging area is unusable) fails its session.
    let model = h.create_model(&failed, 0).await;
    let tmp = dir.path().join("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::write(&tmp, b"not a directory").unwrap();
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "w", "seq_id": 1, "type": "save_weights"}),
        )
        .await;
    let outcome = h.wait(save["request_id"].as_str().unwrap()).await.json();
    assert_eq!(outcome["category"], "server", "{outcome}");

    // Owners: own, a listed user, everything accessible. Each account is its own
    // organization: another account's sessions are never listed, even by its URN.
    let own = search(&h, json!({"owner": {"type": "own"}})).await;
    assert_eq!(own.sessions.len(), 5);
    let alice_urn = own.sessions[0].owner.clone();
    assert_ne!(alice_urn, bob_urn);
    let by_bob = search(
        &h,
        json!({"owner": {"type": "user", "owner_urns": [bob_urn]}, "limit": 50}),
    )
    .await;
    assert_eq!(ids(&by_bob), Vec::<String>::new());
    let by_user = search(
        &h,
        json!({"owner": {"type": "user", "owner_urns": [bob_urn, alice_urn]}, "limit": 50}),
    )
    .await;
    assert_eq!(ids(&by_user), ids(&own));
    let accessible = search(&h, json!({"owner": {"type": "accessible"}})).await;
    assert_eq!(ids(&accessible), ids(&own));
    assert!(!ids(&accessible).contains(&bob));
    // Another key of A's account sees A's sessions.
    h.key = format!("{KEY_A}+laptop");
    let laptop = search(&h, json!({"owner": {"type": "accessible"}})).await;
    assert_eq!(ids(&laptop), ids(&own));
    h.key = KEY_A.to_owned();
    let r = h
        .post(
            "sessions/search",
            json!({"owner": {"type": "user", "owner_urns": []}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["category"], "user");
    assert!(r.json()["detail"].as_str().unwrap().contains("owner_urns"));

    // Statuses.
    let st = |q: Value| json!({"statuses": [q]});
    let got = search(&h, st(json!({"type": "cancelled"}))).await;
    assert_eq!(ids(&got), vec![cancelled.clone()]);
    match &got.sessions[0].status {
        Some(SessionStatus::Cancelled(c)) => {
            assert_eq!(c.detail.as_deref(), Some("stopped from the console"));
        }
        other => panic!("{other:?}"),
    }
    let got = search(&h, st(json!({"type": "failed"}))).await;
    assert_eq!(ids(&got), vec![failed.clone()]);
    match &got.sessions[0].status {
        Some(SessionStatus::Failed(f)) => match &f.reason {
            SessionFailedReason::Request(r) => {
                assert_eq!(r.request_type, "SaveWeights");
                assert_eq!(r.request_id, save["request_id"].as_str().unwrap());
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    let got = search(
        &h,
        st(json!({"type": "client_finished", "reasons": ["errored", "interrupted"]})),
    )
    .await;
    assert_eq!(
        ids(&got),
        sorted(vec![errored.clone(), interrupted.clone()])
    );
    let got = search(&h, st(json!({"type": "active"}))).await;
    assert_eq!(ids(&got), vec![active.clone()]);
    let got = search(
        &h,
        json!({"statuses": [{"type": "cancelled"}, {"type": "failed"}, {"type": "active"}]}),
    )
    .await;
    assert_eq!(ids(&got), sorted(vec![active, cancelled, failed]));
    let r = h
        .post(
            "sessions/search",
            json!({"statuses": [{"type": "exploded"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["detail"].as_str().unwrap().contains("statuses"));
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_reports_storage_and_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    h.key = KEY_A.to_owned();
    let session = h.session().await;
    let model = h.create_model(&session, 0).await;
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "w", "seq_id": 1, "type": "save_weights"}),
        )
        .await;
    h.result(&save).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    #[allow(clippy::disallowed_methods)] // tinker-local stamps real wall time
    let now = Utc::now();
    let hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let q = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let r = h
        .get(&format!(
            "billing/usage/events?starting_on={}&ending_before={}",
            q(hour - chrono::Duration::hours(1)),
            q(hour + chrono::Duration::hours(1))
        ))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let usage: BillingUsageResponse = tinker_types::json::from_slice(&r.body).unwrap();
    let storage: Vec<_> = usage
        .data
        .iter()
        .filter_map(|e| match &e.event_info {
            BillingEventInfo::Storage(s) => Some((e, s)),
            _ => None,
        })
        .collect();
    assert_eq!(storage.len(), 1, "{:?}", usage.data);
    let (event, info) = storage[0];
    assert!(info.gigabyte_hours > 0.0 && !info.free);
    assert_eq!(event.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(event.bucket_start, hour);
    assert_eq!(event.base_model.as_deref(), Some(MODEL));
    // Every event names its user.
    assert!(usage.data.len() > 1);
    let name = event.user_name.clone().unwrap();
    assert!(name.starts_with("local-"), "{name}");
    assert!(
        usage
            .data
            .iter()
            .all(|e| e.user_name.as_deref() == Some(name.as_str()))
    );
    assert!(usage.sessions.contains_key(&session));

    let r = h.get("billing/usage/checkpoints/current").await;
    let current: CurrentCheckpointStorageUsageResponse =
        tinker_types::json::from_slice(&r.body).unwrap();
    assert_eq!(current.data.len(), 1);
    assert_eq!(current.data[0].user_name.as_deref(), Some(name.as_str()));
    assert_eq!(current.data[0].checkpoint_count, 1);
    h.server.shutdown().await;
}

/// `load_weights` creating a model from `path` in `session` (as `create_from` does).
fn load_body(session: &str, seq: u64, path: &str, token: Option<&str>) -> Value {
    let mut body = json!({"session_id": session, "model_seq_id": seq, "path": path,
                          "optimizer": false, "type": "load_weights"});
    if let Some(t) = token {
        body["weights_access_token"] = json!(t);
    }
    body
}

async fn copy(h: &Harness, path: &str, token: Option<&str>) -> common::Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(t) = token {
        headers.push(("x-tinker-weights-access-token", t));
    }
    h.request(
        Method::POST,
        "/api/v1/copy_weights",
        &headers,
        json!({"source_path": path}).to_string().into_bytes(),
    )
    .await
    .unwrap()
}

/// Asserts that `foreign` (naming A's run `id`) was answered exactly as `missing` (naming
/// `unknown_id`, which does not exist): 404 both, the same body once the ids are swapped,
/// and the token never repeated.
fn same_as_unknown(
    what: &str,
    token: Option<&str>,
    foreign: &common::Reply,
    missing: &common::Reply,
    id: &str,
    unknown_id: &str,
) {
    let text = |r: &common::Reply| String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(
        missing.status,
        404,
        "{what}, token {token:?}: {}",
        text(missing)
    );
    assert_eq!(
        foreign.status,
        404,
        "{what}, token {token:?}: {}",
        text(foreign)
    );
    assert_eq!(
        text(foreign).replace(id, unknown_id),
        text(missing),
        "{what}, token {token:?}: the answer tells the paths apart"
    );
    assert!(!text(foreign).contains("carol") && !text(foreign).contains("not-a-credential"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_checkpoints_need_a_weights_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(config(dir.path())).await;
    h.key = KEY_A.to_owned();
    let a_session = h.session().await;
    let model = h.create_model(&a_session, 0).await;
    let save = h
        .ok(
            "save_weights",
            json!({"model_id": model, "path": "w", "seq_id": 1, "type": "save_weights"}),
        )
        .await;
    let path = h.result(&save).await["path"].as_str().unwrap().to_owned();
    // The owner needs no token.
    let own = h
        .ok("load_weights", load_body(&a_session, 1, &path, None))
        .await;
    assert!(h.result(&own).await["model_id"].is_string());

    h.key = KEY_B.to_owned();
    let b_session = h.session().await;
    // Without a valid token of A's account, A's private checkpoint is answered exactly as
    // a checkpoint that does not exist (404, same text), so its path reveals nothing.
    let unknown_run = model.replacen("session-", "session-0000", 1);
    let unknown_path = path.replace(&model, &unknown_run);
    for token in [None, Some("tml-carol"), Some("not-a-credential")] {
        let foreign = h
            .post("load_weights", load_body(&b_session, 0, &path, token))
            .await;
        let missing = h
            .post(
                "load_weights",
                load_body(&b_session, 0, &unknown_path, token),
            )
            .await;
        same_as_unknown(
            "load_weights",
            token,
            &foreign,
            &missing,
            &model,
            &unknown_run,
        );
        let foreign = copy(&h, &path, token).await;
        let missing = copy(&h, &unknown_path, token).await;
        same_as_unknown(
            "copy_weights",
            token,
            &foreign,
            &missing,
            &model,
            &unknown_run,
        );
    }
    // A credential of the owning account grants access.
    let granted = h
        .ok("load_weights", load_body(&b_session, 0, &path, Some(KEY_A)))
        .await;
    let done = h.result(&granted).await;
    assert_eq!(done["model_id"], format!("{b_session}:train:0"));
    let copied = copy(&h, &path, Some(KEY_A)).await;
    assert_eq!(
        copied.status,
        200,
        "{}",
        String::from_utf8_lossy(&copied.body)
    );
    assert!(copied.json()["tinker_path"].is_string());

    // Once published, anyone may read it without a token.
    h.key = KEY_A.to_owned();
    let publish = format!("/api/v1/training_runs/{model}/checkpoints/weights/w/publish");
    let r = h
        .request(Method::POST, &publish, &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    h.key = KEY_B.to_owned();
    let public = h
        .ok("load_weights", load_body(&b_session, 1, &path, None))
        .await;
    assert!(h.result(&public).await["model_id"].is_string());
    assert_eq!(copy(&h, &path, None).await.status, 200);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_parse_as_the_sdk_types_with_field_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(config(dir.path())).await;
    // Lenient where the SDK is: optional fields may be left out.
    let s = h.ok("create_session", json!({})).await;
    let session = s["session_id"].as_str().unwrap().to_owned();
    let f = h
        .ok(
            "create_model",
            json!({"session_id": session, "model_seq_id": 0, "base_model": MODEL,
                   "lora_config": {"rank": 4}}),
        )
        .await;
    assert!(h.result(&f).await["model_id"].is_string());
    // Strict where it matters: a 400, category user, naming the field.
    for (path, body, field) in [
        (
            "create_model",
            json!({"session_id": session, "model_seq_id": 1}),
            "base_model",
        ),
        (
            "create_model",
            json!({"session_id": session, "model_seq_id": -1, "base_model": MODEL}),
            "model_seq_id",
        ),
        (
            "retrieve_futures",
            json!({"target": {"type": "training_run", "sampling_session_id": "x"}}),
            "target",
        ),
        ("sessions/search", json!({"limit": 0}), "limit"),
        (
            "optim_step",
            json!({"model_id": "m", "seq_id": 1, "adam_params": {"learning_rate": "fast"}}),
            // OptimParams decodes as a whole, so the path stops at its key.
            "adam_params",
        ),
    ] {
        let r = h.post(path, body).await;
        assert_eq!(
            r.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["category"], "user", "{path}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(field), "{path}: {v}");
    }
    h.server.shutdown().await;
}
