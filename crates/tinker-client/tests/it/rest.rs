//! RestClient and AdminClient end to end against tinker-local.

use tinker_testkit::local as common;

use std::collections::BTreeMap;

use common::{datum, start, start_with, training};
use futures_util::TryStreamExt;
use tinker_client::{AccessScope, ErrorKind, ListOptions, RestClient, SaveOptions, ServiceClient};
use tinker_transport::Transport;
use tinker_types::{
    CheckpointType, LossFn, SearchOwner, SessionSearchRequest, SessionStatus, SessionStatusQuery,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_routes() {
    let env = start(None).await;
    let tc = training(&env).await;
    tc.forward_backward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
        .await
        .unwrap();
    let state = tc.save_state("ckpt").await.unwrap().path;
    let sampler_path = tc.save_weights_for_sampler("smp").await.unwrap().path;
    let rest = env.service.create_rest_client().await.unwrap();

    let runs = rest
        .list_training_runs(ListOptions::default().limit(10))
        .await
        .unwrap();
    assert!(
        runs.training_runs
            .iter()
            .any(|r| r.training_run_id == tc.model_id())
    );
    // `Default::default()` is the SDK's first page (20 owned runs; 100 checkpoints).
    let defaults = rest.list_training_runs(Default::default()).await.unwrap();
    assert_eq!(defaults.training_runs, runs.training_runs);
    assert!(
        !rest
            .list_user_checkpoints(Default::default())
            .await
            .unwrap()
            .checkpoints
            .is_empty()
    );
    assert!(
        !rest
            .list_sessions(Default::default())
            .await
            .unwrap()
            .sessions
            .is_empty()
    );
    let streamed: Vec<_> = rest
        .training_runs(1, AccessScope::Owned)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len() as u64, runs.cursor.total_count);
    let run = rest
        .get_training_run(tc.model_id(), AccessScope::Owned)
        .await
        .unwrap();
    assert_eq!(run.training_run_id, tc.model_id());
    assert_eq!(
        rest.get_training_run_by_tinker_path(&state)
            .await
            .unwrap()
            .training_run_id,
        tc.model_id()
    );

    let ckpts = rest.list_checkpoints(tc.model_id()).await.unwrap();
    assert!(ckpts.checkpoints.iter().any(|c| c.tinker_path == state));
    assert!(
        ckpts
            .checkpoints
            .iter()
            .any(|c| c.tinker_path == sampler_path)
    );
    let mine: Vec<_> = rest.user_checkpoints(1).try_collect().await.unwrap();
    assert!(mine.len() >= 2);

    let info = rest.get_weights_info_by_tinker_path(&state).await.unwrap();
    assert_eq!(info.base_model, common::MODEL);

    // (A second publish answers 409, which the SDK's holder loop retries for 300 s like
    // any 409; not exercised here.)
    rest.publish_checkpoint_from_tinker_path(&state)
        .await
        .unwrap();
    assert!(
        rest.list_checkpoints(tc.model_id())
            .await
            .unwrap()
            .checkpoints
            .iter()
            .any(|c| c.tinker_path == state && c.public)
    );
    rest.unpublish_checkpoint_from_tinker_path(&state)
        .await
        .unwrap();
    rest.set_checkpoint_ttl_from_tinker_path(&state, Some(7200))
        .await
        .unwrap();
    rest.set_checkpoint_ttl_from_tinker_path(&state, None)
        .await
        .unwrap();

    // External weights: export, download with progress, atomic writes.
    let export = tc.save_weights_external("hf").await.unwrap();
    assert!(export.path.contains("/external_weights/hf"));
    let urls = rest.get_external_weights_urls(&export.path).await.unwrap();
    assert!(!urls.urls.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    let files = rest
        .download_external_weights(&export.path, dir.path(), |p| {
            seen += 1;
            assert!(p.file_index < p.file_count);
        })
        .await
        .unwrap();
    assert_eq!(files.len(), urls.urls.len());
    assert_eq!(seen, files.len());
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() > 0, "{}", f.display());
    }
    let err = rest.get_external_weights_urls(&state).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let copied = env.service.copy_weights(&state, None, None).await.unwrap();
    assert!(copied.starts_with("tinker://") && copied != state);

    rest.delete_checkpoint_from_tinker_path(&sampler_path)
        .await
        .unwrap();
    let ckpts = rest.list_checkpoints(tc.model_id()).await.unwrap();
    assert!(
        !ckpts
            .checkpoints
            .iter()
            .any(|c| c.tinker_path == sampler_path)
    );

    let sessions = rest
        .list_sessions(ListOptions::default().limit(50))
        .await
        .unwrap();
    assert!(
        sessions
            .sessions
            .iter()
            .any(|s| s == env.service.session_id())
    );
    let all: Vec<String> = rest
        .sessions(1, AccessScope::Owned)
        .try_collect()
        .await
        .unwrap();
    assert!(all.iter().any(|s| s == env.service.session_id()));
    let sess = rest
        .get_session(env.service.session_id(), AccessScope::Owned)
        .await
        .unwrap();
    assert!(sess.training_run_ids.iter().any(|r| r == tc.model_id()));
    rest.assign_session_project(env.service.session_id(), "proj-x")
        .await
        .unwrap();

    let snap = tc.save_weights_and_get_sampling_client().await.unwrap();
    let sampler = rest.get_sampler(snap.sampling_session_id()).await.unwrap();
    assert_eq!(sampler.base_model, common::MODEL);

    let caps = rest.get_server_capabilities().await.unwrap();
    assert!(!caps.supported_models.is_empty());

    env.server.shutdown().await;
}

/// Typed catalogue contents: checkpoint kinds, times, metadata, weights info; deleting by
/// run and checkpoint id; console URLs of results; the trace export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_catalogue() {
    let env = start(None).await;
    let tc = training(&env).await;
    let meta = BTreeMap::from([("step".to_owned(), "7".to_owned())]);
    let saved = tc
        .save_state_with(
            "typed",
            SaveOptions::default()
                .ttl_seconds(7200)
                .user_metadata(meta.clone()),
        )
        .await
        .unwrap();
    let sampler = tc.save_weights_for_sampler("typed-s").await.unwrap();
    let rest = env.service.create_rest_client().await.unwrap();

    let ckpts = rest.list_checkpoints(tc.model_id()).await.unwrap();
    let state = ckpts
        .checkpoints
        .iter()
        .find(|c| c.tinker_path == saved.path)
        .unwrap();
    assert_eq!(state.checkpoint_type, CheckpointType::Training);
    assert_eq!(state.checkpoint_id, "weights/typed");
    assert_eq!(state.user_metadata.as_ref(), Some(&meta));
    let expires = state.expires_at.expect("a TTL gives an expiry");
    let ttl = expires - state.time;
    assert!((7100..=7300).contains(&ttl.num_seconds()), "{ttl:?}");
    let run = rest
        .get_training_run(tc.model_id(), AccessScope::Owned)
        .await
        .unwrap();
    assert_eq!(run.lora_rank, Some(4));
    #[allow(clippy::disallowed_methods)] // tinker-local stamps real wall time
    let now = tinker_types::chrono::Utc::now();
    assert!(run.last_request_time <= now);
    assert_eq!(
        run.last_checkpoint.as_ref().map(|c| c.tinker_path.as_str()),
        Some(saved.path.as_str())
    );
    let info = rest
        .get_weights_info_by_tinker_path(&saved.path)
        .await
        .unwrap();
    assert!(info.is_lora);
    assert_eq!(info.lora_rank, Some(4));
    assert_eq!(info.optimizer_config, tinker_types::OptimizerConfig::AdamW);

    // Console URLs, as the SDK builds them.
    let run_id = tc.model_id().replace(':', "%3A");
    assert_eq!(
        saved.get_console_url().unwrap(),
        format!("https://tinker.thinkingmachines.ai/checkpoints/{run_id}/weights%2Ftyped")
    );
    assert_eq!(
        sampler.get_console_url().unwrap(),
        format!(
            "https://tinker.thinkingmachines.ai/checkpoints/{run_id}/sampler_weights%2Ftyped-s"
        )
    );
    assert_eq!(
        tc.get_console_url(),
        format!(
            "https://tinker.thinkingmachines.ai/training_runs/{}",
            tc.model_id()
        )
    );
    assert_eq!(
        env.service.get_console_url(),
        format!(
            "https://tinker.thinkingmachines.ai/sessions/{}",
            env.service.session_id()
        )
    );

    // Direct copy with a destination project, a TTL and an access token (sent as a header).
    let copy = rest
        .copy_weights(
            &saved.path,
            Some("proj-copy".to_owned()),
            Some(7200),
            Some("tok"),
        )
        .await
        .unwrap();
    assert!(copy.contains("/weights/"), "{copy}");
    let copied_run = rest.get_training_run_by_tinker_path(&copy).await.unwrap();
    assert_ne!(copied_run.training_run_id, tc.model_id());
    let page = rest
        .list_user_checkpoints(ListOptions::default().limit(10))
        .await
        .unwrap();
    assert!(page.checkpoints.iter().any(|c| c.tinker_path == copy));
    assert!(page.cursor.is_some_and(|c| c.total_count >= 3));

    // Delete by run id and checkpoint id; a malformed id fails before sending.
    let err = rest
        .delete_checkpoint(tc.model_id(), "typed")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    rest.delete_checkpoint(tc.model_id(), "sampler_weights/typed-s")
        .await
        .unwrap();
    let left = rest.list_checkpoints(tc.model_id()).await.unwrap();
    assert_eq!(left.checkpoints.len(), 1);
    let err = rest
        .delete_checkpoint(tc.model_id(), "sampler_weights/typed-s")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));

    let url = rest
        .export_session_trace(env.service.session_id())
        .await
        .unwrap();
    assert!(url.starts_with("http"), "{url}");
    env.server.shutdown().await;
}

/// `search_sessions` and its paging stream, over sessions with metadata, names, projects
/// and statuses; a REST-only client (`RestClient::connect`) searching and listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_search() {
    let env = start_with(None, |_| {}).await;
    let url = env.server.url();
    let connect = |name: &'static str, team: &'static str| {
        let url = url.clone();
        async move {
            let meta = serde_json::Map::from_iter([(
                "team".to_owned(),
                serde_json::Value::String(team.to_owned()),
            )]);
            let service = ServiceClient::builder()
                .base_url(url)
                .api_key("tml-test-key")
                .display_name(name)
                .user_metadata(meta)
                .project_id("proj-search")
                .build()
                .await
                .unwrap();
            service.open_session().await.unwrap();
            service
        }
    };
    let a = connect("Alpha Run one", "red").await;
    let b = connect("beta run two", "red").await;
    let c = connect("Gamma", "blue").await;
    c.close(tinker_client::CloseStatus::Success, Some("done"))
        .await
        .unwrap();

    let transport = Transport::builder()
        .base_url(url)
        .api_key(tinker_transport::SecretString::from(
            "tml-test-key".to_owned(),
        ))
        .build()
        .unwrap();
    let rest = RestClient::connect(transport).await.unwrap();

    let red = SessionSearchRequest {
        user_metadata: BTreeMap::from([("team".to_owned(), "red".to_owned())]),
        ..SessionSearchRequest::default()
    };
    let page = rest.search_sessions(&red).await.unwrap();
    let mut ids: Vec<_> = page.sessions.iter().map(|s| s.session_id.clone()).collect();
    ids.sort();
    let mut want = vec![a.session_id().to_owned(), b.session_id().to_owned()];
    want.sort();
    assert_eq!(ids, want);
    assert!(page.next_cursor.is_none());
    let alpha = page
        .sessions
        .iter()
        .find(|s| s.session_id == a.session_id())
        .unwrap();
    assert_eq!(alpha.display_name.as_deref(), Some("Alpha Run one"));
    assert_eq!(alpha.project_id, "proj-search");
    assert!(matches!(alpha.status, Some(SessionStatus::Active(_))));
    assert_eq!(
        alpha.user_metadata.as_ref().and_then(|m| m.get("team")),
        Some(&"red".to_owned())
    );

    // Words of the display name, any case; OR with the session id.
    let by_name = SessionSearchRequest {
        display_name: Some("RUN alpha".to_owned()),
        session_id: Some(c.session_id().to_owned()),
        ..SessionSearchRequest::default()
    };
    let mut found: Vec<_> = rest
        .search_sessions(&by_name)
        .await
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    found.sort();
    let mut want = vec![a.session_id().to_owned(), c.session_id().to_owned()];
    want.sort();
    assert_eq!(found, want);

    // Status filter: only the finished one, with its reason.
    let finished = SessionSearchRequest {
        statuses: Some(vec![SessionStatusQuery::ClientFinished { reasons: None }]),
        owner: SearchOwner::Own,
        ..SessionSearchRequest::default()
    };
    let done = rest.search_sessions(&finished).await.unwrap().sessions;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].session_id, c.session_id());
    let Some(SessionStatus::ClientFinished(f)) = &done[0].status else {
        panic!("{:?}", done[0].status);
    };
    assert_eq!(f.detail.as_deref(), Some("done"));

    // Paging by cursor, one session a page: every session exactly once, newest first.
    let one = SessionSearchRequest {
        limit: 1,
        ..SessionSearchRequest::default()
    };
    let first = rest.search_sessions(&one).await.unwrap();
    assert_eq!(first.sessions.len(), 1);
    assert!(first.next_cursor.is_some());
    let streamed: Vec<_> = rest
        .search_sessions_stream(one)
        .try_collect()
        .await
        .unwrap();
    let all = rest
        .search_sessions(&SessionSearchRequest::default())
        .await
        .unwrap()
        .sessions;
    assert_eq!(all.len(), 4); // a, b, c and the harness session
    assert_eq!(
        streamed.iter().map(|s| &s.session_id).collect::<Vec<_>>(),
        all.iter().map(|s| &s.session_id).collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].created_at >= w[1].created_at));

    // Requests the SDK refuses are typed errors before sending.
    let bad = SessionSearchRequest {
        limit: 500,
        ..SessionSearchRequest::default()
    };
    let err = rest.search_sessions(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // The REST-only client lists and reads sessions too.
    let listed = rest
        .list_sessions(ListOptions::default().limit(10))
        .await
        .unwrap();
    assert_eq!(listed.sessions.len(), 4);
    let got = rest
        .get_session(a.session_id(), AccessScope::Owned)
        .await
        .unwrap();
    assert_eq!(got.display_name.as_deref(), Some("Alpha Run one"));
    assert_eq!(
        got.user_metadata.as_ref().and_then(|m| m.get("team")),
        Some(&"red".to_owned())
    );
    a.close(tinker_client::CloseStatus::Success, None)
        .await
        .unwrap();
    b.close(tinker_client::CloseStatus::Success, None)
        .await
        .unwrap();
    env.server.shutdown().await;
}
