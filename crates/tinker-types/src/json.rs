//! JSON encoding and decoding with the SDK's rules.
//!
//! * Output is compact (`{"a":1}`), keys in the order the SDK emits them.
//! * NaN and ±infinity are refused with [`Error::NonFinite`] naming the JSON path
//!   (`serde_json` alone would silently write `null`).
//! * Decoding ignores unknown fields; a missing required field or a wrongly typed value is an
//!   [`Error::Decode`] naming its JSON path (e.g. `sequences[0].tokens`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

/// Marks serializer errors raised by [`finite`], so they surface as [`Error::NonFinite`].
const NON_FINITE_MARKER: &str = "tinker-types: non-finite number";

/// Encodes `value` as compact JSON bytes.
///
/// # Errors
/// [`Error::NonFinite`] if any float is NaN or infinite; [`Error::Encode`] otherwise.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::new(&mut out);
    serde_path_to_error::serialize(value, &mut serializer).map_err(encode_error)?;
    Ok(out)
}

/// Encodes `value` as a compact JSON string.
///
/// # Errors
/// As [`to_vec`].
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let bytes = to_vec(value)?;
    // serde_json only ever writes UTF-8.
    String::from_utf8(bytes).map_err(|e| Error::Encode {
        path: ".".to_owned(),
        message: e.to_string(),
    })
}

/// Encodes `value` as a [`serde_json::Value`] (same rules as [`to_vec`]).
///
/// # Errors
/// As [`to_vec`].
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<serde_json::Value> {
    serde_path_to_error::serialize(value, serde_json::value::Serializer).map_err(encode_error)
}

/// Decodes a JSON document; trailing non-whitespace is an error.
///
/// # Errors
/// [`Error::Decode`] naming the JSON path of the first problem.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // Plain serde_json first: tracking the path costs an allocation per key. Only a
    // document that fails is decoded again to name where (the same parser, the same
    // failure).
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(decode_error)?;
    deserializer.end().map_err(|e| Error::Decode {
        path: ".".to_owned(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Decodes a JSON string (see [`from_slice`]).
///
/// # Errors
/// As [`from_slice`].
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T> {
    from_slice(text.as_bytes())
}

/// Decodes an already parsed [`serde_json::Value`] (see [`from_slice`]).
///
/// # Errors
/// As [`from_slice`].
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(decode_error)
}

fn encode_error(err: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = err.path().to_string();
    let message = err.inner().to_string();
    if message.starts_with(NON_FINITE_MARKER) {
        Error::NonFinite { path }
    } else {
        Error::Encode { path, message }
    }
}

fn decode_error(err: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let mut path = err.path().to_string();
    let message = err.inner().to_string();
    // serde reports a missing field at its parent object: name the field itself.
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(field) = rest.split('`').next()
    {
        path = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
    }
    Error::Decode { path, message }
}

/// Values whose floats can be checked for finiteness before encoding.
pub(crate) trait CheckFinite {
    /// True if every float inside is finite.
    fn all_finite(&self) -> bool;
}

impl CheckFinite for f64 {
    fn all_finite(&self) -> bool {
        self.is_finite()
    }
}
impl CheckFinite for f32 {
    fn all_finite(&self) -> bool {
        self.is_finite()
    }
}
impl<T: CheckFinite + ?Sized> CheckFinite for &T {
    fn all_finite(&self) -> bool {
        (**self).all_finite()
    }
}
impl<T: CheckFinite> CheckFinite for Option<T> {
    fn all_finite(&self) -> bool {
        self.as_ref().is_none_or(CheckFinite::all_finite)
    }
}
impl<T: CheckFinite> CheckFinite for [T] {
    fn all_finite(&self) -> bool {
        self.iter().all(CheckFinite::all_finite)
    }
}
impl<T: CheckFinite> CheckFinite for Vec<T> {
    fn all_finite(&self) -> bool {
        self.as_slice().all_finite()
    }
}
impl<K, V: CheckFinite> CheckFinite for BTreeMap<K, V> {
    fn all_finite(&self) -> bool {
        self.values().all(CheckFinite::all_finite)
    }
}

/// `serialize_with` helper: serializes `value` unless it holds a non-finite float.
pub(crate) fn finite<T, S>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    T: CheckFinite + Serialize + ?Sized,
    S: Serializer,
{
    if value.all_finite() {
        value.serialize(serializer)
    } else {
        Err(serde::ser::Error::custom(NON_FINITE_MARKER))
    }
}

/// The error a hand-written `Serialize` impl returns for a non-finite float.
pub(crate) fn non_finite_error<E: serde::ser::Error>() -> E {
    E::custom(NON_FINITE_MARKER)
}

/// `skip_serializing_if` helper for fields borrowed by [`crate::macros`] wire mirrors.
pub(crate) fn is_none<T>(value: &&Option<T>) -> bool {
    value.is_none()
}

/// Reads `null` as the type's default (for fields that older clients send as `null`, e.g.
/// tinkex's `"user_metadata": null`); use with `#[serde(default, deserialize_with = …)]`.
pub fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or_default())
}
