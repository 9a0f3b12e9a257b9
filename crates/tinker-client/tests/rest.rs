//! RestClient and AdminClient end to end against tinker-local.

mod common;

use common::{datum, start, training};
use futures_util::TryStreamExt;
use tinker_client::{AccessScope, AuditEventType, ErrorKind};
use tinker_types::LossFn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_routes() {
    let env = start(None).await;
    let tc = training(&env).await;
    tc.forward_backward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
        .await
        .unwrap();
    let state = tc.save_state("ckpt").await.unwrap().path;
    let sampler_path = tc
        .save_weights_for_sampler("smp")
        .await
        .unwrap()
        .path
        .unwrap();
    let rest = env.service.create_rest_client();

    let runs = rest
        .list_training_runs(10, 0, AccessScope::Owned, None)
        .await
        .unwrap();
    assert!(
        runs.training_runs
            .iter()
            .any(|r| r.training_run_id == tc.model_id())
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

    let copied = env.service.copy_weights(&state, None).await.unwrap();
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

    let sessions = rest.list_sessions(50, 0, AccessScope::Owned).await.unwrap();
    assert!(sessions.iter().any(|s| s == env.service.session_id()));
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

    let admin = env.service.create_admin_client();
    admin
        .get_billing_usage("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
        .await
        .unwrap();
    admin
        .get_current_checkpoint_storage_usage(None)
        .await
        .unwrap();
    admin
        .get_audit_log(AuditEventType::All, None)
        .await
        .unwrap();
    let err = admin
        .get_billing_usage("2026-01-01T00:30:00Z", "2026-01-02T00:00:00Z")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    env.server.shutdown().await;
}
