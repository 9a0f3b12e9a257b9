//! AdminClient end to end against tinker-local: typed billing, storage and audit answers
//! hold exactly what the server accounted; bad queries fail before anything is sent.

use tinker_testkit::local as common;

use std::collections::BTreeMap;

use common::{MODEL, datum, start, training};
use tinker_client::{AdminClient, ErrorKind, SamplingSource};
use tinker_transport::Transport;
use tinker_types::chrono::{DurationRound, NaiveDate, TimeDelta, Utc};
use tinker_types::{
    AuditEventType, AuditLogQuery, BillingEventInfo, BillingUsageQuery,
    CurrentCheckpointStorageUsageQuery, LossFn, ModelInput, SamplingParams,
};

/// A window around now: the previous, current and next UTC hour.
fn window() -> Result<BillingUsageQuery, Box<dyn std::error::Error>> {
    #[allow(clippy::disallowed_methods)] // tinker-local stamps real wall time
    let hour = Utc::now().duration_trunc(TimeDelta::hours(1))?;
    Ok(BillingUsageQuery::new(
        hour - TimeDelta::hours(1),
        hour + TimeDelta::hours(2),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_storage_and_audit_match_the_server() {
    let env = start(None).await;
    let session = env.service.session_id().to_owned();
    let tc = training(&env).await;
    tc.forward_backward(
        vec![datum(&[1, 2, 3, 4, 5]), datum(&[6, 7, 8])],
        LossFn::CrossEntropy,
    )
    .await
    .unwrap();
    tc.save_state("bill-a").await.unwrap();
    tc.save_weights_for_sampler("bill-b").await.unwrap();
    let sampler = env
        .service
        .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
        .await
        .unwrap();
    sampler
        .sample(
            ModelInput::from_tokens(&[1, 2, 3]),
            2,
            SamplingParams::with_max_tokens(3),
        )
        .await
        .unwrap();

    // What the server accounted, by kind.
    let mut accounted: BTreeMap<String, u64> = BTreeMap::new();
    for u in env.server.usage_records() {
        assert_eq!(u.session_id, session);
        *accounted.entry(u.kind.clone()).or_default() += u.count;
    }
    assert_eq!(accounted.get("checkpoint"), Some(&2));
    assert!(accounted.get("training").is_some_and(|&n| n > 0));
    assert!(accounted.get("sampling_prefill").is_some_and(|&n| n > 0));

    let admin = env.service.create_admin_client().await.unwrap();
    let usage = admin.get_billing_usage(&window().unwrap()).await.unwrap();
    let mut billed: BTreeMap<String, u64> = BTreeMap::new();
    for event in &usage.data {
        assert_eq!(event.session_id.as_deref(), Some(session.as_str()));
        assert_eq!(event.base_model.as_deref(), Some(MODEL));
        assert_eq!(event.bucket_end - event.bucket_start, TimeDelta::hours(1));
        let (kind, n) = match &event.event_info {
            BillingEventInfo::Training(e) => ("training", e.token_count),
            BillingEventInfo::SamplingPrefill(e) => ("sampling_prefill", e.token_count),
            BillingEventInfo::SamplingSample(e) => ("sampling_sample", e.token_count),
            BillingEventInfo::Checkpoint(e) => ("checkpoint", e.count),
            // Checkpoint storage is billed by the hour, outside the usage records.
            BillingEventInfo::Storage(e) => {
                assert!(e.gigabyte_hours > 0.0 && !e.free, "{e:?}");
                continue;
            }
            other => panic!("tinker-local bills no {other:?}"),
        };
        *billed.entry(kind.to_owned()).or_default() += n;
    }
    assert_eq!(billed, accounted);
    assert!(usage.sessions.contains_key(&session));
    assert!(usage.cost_data_through.is_some());

    // A window without the work bills nothing.
    let old = BillingUsageQuery::parse("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z").unwrap();
    assert!(admin.get_billing_usage(&old).await.unwrap().data.is_empty());

    // Bad windows are typed errors before sending: misaligned, inverted, too wide.
    assert!(BillingUsageQuery::parse("2026-01-01T00:30:00Z", "2026-01-02T00:00:00Z").is_err());
    let mut bad = window().unwrap();
    bad.ending_before = bad.starting_on + TimeDelta::days(15);
    let err = admin.get_billing_usage(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // A window that starts in the future, checked against the client's clock.
    let now = window().unwrap().ending_before;
    let future =
        BillingUsageQuery::new(now + TimeDelta::days(2), now + TimeDelta::days(3)).unwrap();
    let err = admin.get_billing_usage(&future).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("future"), "{err}");

    // Storage: the run's checkpoints, counted and sized as the catalogue lists them.
    let listed = env
        .service
        .create_rest_client()
        .await
        .unwrap()
        .list_checkpoints(tc.model_id())
        .await
        .unwrap()
        .checkpoints;
    assert_eq!(listed.len(), 2);
    let storage = admin
        .get_current_checkpoint_storage_usage(&CurrentCheckpointStorageUsageQuery::all())
        .await
        .unwrap();
    let count: u64 = storage.data.iter().map(|r| r.checkpoint_count).sum();
    let bytes: u64 = storage.data.iter().map(|r| r.size_bytes).sum();
    assert_eq!(count, 2);
    assert_eq!(
        bytes,
        listed
            .iter()
            .map(|c| c.size_bytes.unwrap_or(0))
            .sum::<u64>()
    );
    assert!(bytes > 0);
    let other = admin
        .get_current_checkpoint_storage_usage(&CurrentCheckpointStorageUsageQuery::project(
            "no-such-project",
        ))
        .await
        .unwrap();
    assert!(other.data.is_empty());

    // Audit: every record of the server, typed; filters by kind and by day.
    let all = admin
        .get_audit_log(&AuditLogQuery::default())
        .await
        .unwrap()
        .entries;
    let records = env.server.audit_records();
    assert_eq!(all.len(), records.len());
    let created = all
        .iter()
        .find(|e| e.event == "session_create")
        .expect("session_create entry");
    assert_eq!(
        created
            .event_details
            .get("session_id")
            .and_then(|v| v.as_str()),
        Some(session.as_str())
    );
    let checkpoints = admin
        .get_audit_log(&AuditLogQuery::new(AuditEventType::Checkpoints))
        .await
        .unwrap()
        .entries;
    let created_ckpts: Vec<_> = checkpoints
        .iter()
        .filter(|e| e.event == "checkpoint_create")
        .collect();
    assert_eq!(created_ckpts.len(), 2);
    assert!(
        checkpoints
            .iter()
            .all(|e| e.event.starts_with("checkpoint_"))
    );
    assert!(
        created_ckpts
            .iter()
            .all(|e| e.model_id.as_deref() == Some(tc.model_id()))
    );
    #[allow(clippy::disallowed_methods)] // tinker-local stamps real wall time
    let today = AuditLogQuery::default().on_day(Utc::now().date_naive());
    let today_entries = admin.get_audit_log(&today).await.unwrap().entries;
    // (A run across midnight UTC would split the entries; the test is a second long.)
    assert_eq!(today_entries.len(), all.len());
    let long_ago = AuditLogQuery::default().on_day(NaiveDate::from_ymd_opt(2020, 1, 1).unwrap());
    assert!(
        admin
            .get_audit_log(&long_ago)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    env.server.shutdown().await;
}

/// A session-less admin client (`AdminClient::connect`) answers the same queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_less_admin_client() {
    let env = start(None).await;
    let transport = Transport::builder()
        .base_url(env.server.url())
        .api_key(tinker_transport::SecretString::from(
            "tml-test-key".to_owned(),
        ))
        .build()
        .unwrap();
    let admin = AdminClient::connect(transport).await.unwrap();
    let usage = admin.get_billing_usage(&window().unwrap()).await.unwrap();
    assert!(usage.data.is_empty());
    let log = admin
        .get_audit_log(&AuditLogQuery::default())
        .await
        .unwrap();
    assert!(log.entries.iter().any(|e| e.event == "session_create"));
    env.server.shutdown().await;
}
