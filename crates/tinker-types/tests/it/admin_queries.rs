//! Admin query inputs: checked before sending, and spelled on the URL as the SDK spells
//! them (pydantic's `model_dump(mode="json")` of `GetBillingUsageRequest`, `date.isoformat()`).

use tinker_types::chrono::{NaiveDate, TimeDelta, TimeZone, Utc};
use tinker_types::{
    AuditEventType, AuditLogQuery, BillingUsageQuery, CurrentCheckpointStorageUsageQuery, Error,
};

fn field_of(e: Error) -> String {
    match e {
        Error::InvalidValue { field, .. } => field,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn billing_windows_are_checked() {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let q = BillingUsageQuery::new(start, start + TimeDelta::days(14)).unwrap();
    assert_eq!(
        q.query_pairs(),
        vec![
            ("starting_on", "2026-01-01T00:00:00Z".to_owned()),
            ("ending_before", "2026-01-15T00:00:00Z".to_owned()),
        ]
    );
    assert_eq!(
        BillingUsageQuery::parse("2026-01-01T00:00:00+00:00", "2026-01-01T05:00:00Z").unwrap(),
        BillingUsageQuery::new(start, start + TimeDelta::hours(5)).unwrap()
    );
    let cases = [
        (
            start + TimeDelta::minutes(30),
            start + TimeDelta::days(1),
            "starting_on",
        ),
        (start, start + TimeDelta::seconds(3601), "ending_before"),
        (start, start, "ending_before"),
        (start, start - TimeDelta::hours(1), "ending_before"),
        (
            start,
            start + TimeDelta::days(14) + TimeDelta::hours(1),
            "ending_before",
        ),
    ];
    for (from, to, field) in cases {
        assert_eq!(
            field_of(BillingUsageQuery::new(from, to).unwrap_err()),
            field
        );
    }
    // The future rule needs the time: checked against the `now` given.
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let later =
        BillingUsageQuery::new(now + TimeDelta::hours(1), now + TimeDelta::hours(2)).unwrap();
    assert_eq!(field_of(later.validate_at(now).unwrap_err()), "starting_on");
    let earlier =
        BillingUsageQuery::new(now - TimeDelta::hours(2), now - TimeDelta::hours(1)).unwrap();
    earlier.validate_at(now).unwrap();
    assert_eq!(
        field_of(BillingUsageQuery::parse("2026-01-01", "2026-01-02T00:00:00Z").unwrap_err()),
        "starting_on"
    );
}

#[test]
fn audit_and_storage_queries() {
    assert_eq!(
        AuditLogQuery::default().query_pairs(),
        vec![("event_type", "all".to_owned())]
    );
    let q = AuditLogQuery::new(AuditEventType::Checkpoints)
        .on_day(NaiveDate::from_ymd_opt(2025, 1, 5).unwrap());
    assert_eq!(
        q.query_pairs(),
        vec![
            ("event_type", "checkpoints".to_owned()),
            ("day", "2025-01-05".to_owned())
        ]
    );
    assert!(
        CurrentCheckpointStorageUsageQuery::all()
            .query_pairs()
            .is_empty()
    );
    assert_eq!(
        CurrentCheckpointStorageUsageQuery::project("p 1").query_pairs(),
        vec![("project_id", "p 1".to_owned())]
    );
}
