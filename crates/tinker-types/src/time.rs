//! Timestamps: ISO-8601 strings on the wire, `DateTime<Utc>` in Rust.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// A point in time as the API carries it.
pub type Timestamp = DateTime<Utc>;

/// The timestamp `seconds` after the Unix epoch (as an injected clock's `unix_now` reads
/// it), to the microsecond; `None` before the epoch or out of range.
pub fn from_unix_seconds(seconds: f64) -> Option<Timestamp> {
    let since = std::time::Duration::try_from_secs_f64(seconds).ok()?;
    let micros = i64::try_from(since.as_micros()).ok()?;
    DateTime::from_timestamp_micros(micros)
}

/// Parses an ISO-8601 timestamp; one without an offset is taken as UTC (as the SDK's
/// pydantic models accept naive datetimes).
pub(crate) fn parse(text: &str) -> Option<Timestamp> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// RFC 3339 with `Z`, as pydantic writes UTC datetimes.
pub(crate) fn to_wire(value: &Timestamp) -> String {
    value.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `serialize_with`: RFC 3339 with `Z`.
pub(crate) fn serialize<S: Serializer>(
    value: &Timestamp,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&to_wire(value))
}

/// `serialize_with` for a timestamp borrowed by a wire mirror (`&&Timestamp`).
pub(crate) fn serialize_ref<S: Serializer>(
    value: &&Timestamp,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serialize(value, serializer)
}

/// `deserialize_with` for a required timestamp.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Timestamp, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("invalid ISO-8601 timestamp `{text}`")))
}

/// Helpers for `Option<Timestamp>` fields.
pub(crate) mod option {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `serialize_with` (pair it with `skip_serializing_if`).
    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Timestamp>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => super::serialize(t, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// `deserialize_with` (pair it with `default`).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        let text = Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.map(|text| {
            super::parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("invalid ISO-8601 timestamp `{text}`"))
            })
        })
        .transpose()
    }
}
