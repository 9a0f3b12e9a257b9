//! Sampler handles (§6.5 Clones): the SDK's `get_sampler_handle` string, base64url
//! (padded, as Python's `urlsafe_b64encode`) of compact JSON, so a sampling client can be
//! rehydrated in another process (Rust or Python) as a *shadow* client.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use tinker_types::{ClientConfig, DynamicConfig};

use crate::error::{Error, Result};

/// Decodes with or without `=` padding (Python always pads; hand-made handles may not).
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The JSON inside a handle: the fields of the SDK's `_SamplingClientPickleState`, in its
/// order.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct HandleState {
    pub session_id: String,
    pub sampling_session_id: String,
    pub holder: ShadowHolderConfig,
    pub base_model: String,
    #[serde(default)]
    pub record_stability_info: bool,
}

/// What a shadow holder is built from (the SDK's `_ShadowHolderConfig`).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct ShadowHolderConfig {
    pub base_url: String,
    #[serde(default)]
    pub default_headers_overrides: BTreeMap<String, String>,
    pub client_config: ClientConfig,
    pub client_dynamic_config: DynamicConfig,
    /// Always `null` in a handle: a handle never carries credentials. A value found in a
    /// handle is ignored (never used, logged or kept).
    #[serde(default, serialize_with = "always_null")]
    pub api_key: Option<serde::de::IgnoredAny>,
}

fn always_null<S: serde::Serializer, T>(_: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_none()
}

impl HandleState {
    /// The handle string.
    pub(crate) fn encode(&self) -> Result<String> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::protocol(format!("cannot encode the sampler handle: {e}")))?;
        Ok(base64::engine::general_purpose::URL_SAFE.encode(json))
    }

    /// Parses and checks a handle string.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming what is wrong.
    pub(crate) fn decode(handle: &str) -> Result<Self> {
        let handle = handle.trim();
        if handle.is_empty() {
            return Err(Error::invalid("the sampler handle is empty"));
        }
        let bytes = LENIENT_URL_SAFE
            .decode(handle)
            .map_err(|e| Error::invalid(format!("the sampler handle is not base64url: {e}")))?;
        let mut json = serde_json::Deserializer::from_slice(&bytes);
        let state: Self = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            // The path names the offending field, e.g. `holder.client_config.sample_no_retries`.
            Error::invalid(format!(
                "the sampler handle does not hold the expected JSON: at `{}`: {}",
                e.path(),
                e.inner()
            ))
        })?;
        json.end().map_err(|e| {
            Error::invalid(format!("the sampler handle has data after its JSON: {e}"))
        })?;
        state.check()?;
        Ok(state)
    }

    fn check(&self) -> Result<()> {
        for (name, value) in [
            ("session_id", &self.session_id),
            ("sampling_session_id", &self.sampling_session_id),
            ("base_model", &self.base_model),
        ] {
            if value.trim().is_empty() {
                return Err(Error::invalid(format!(
                    "the sampler handle has an empty {name}"
                )));
            }
        }
        let url = &self.holder.base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::invalid(
                "the sampler handle's holder.base_url is not an http(s) URL",
            ));
        }
        for (name, value) in &self.holder.default_headers_overrides {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Err(Error::invalid(format!(
                    "the sampler handle's header override `{name}` is not a valid HTTP header"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn state() -> HandleState {
        HandleState {
            session_id: "s".into(),
            sampling_session_id: "s:sample:0".into(),
            holder: ShadowHolderConfig {
                base_url: "http://127.0.0.1:1".into(),
                default_headers_overrides: BTreeMap::new(),
                client_config: ClientConfig::default(),
                client_dynamic_config: DynamicConfig::default(),
                api_key: None,
            },
            base_model: "m".into(),
            record_stability_info: false,
        }
    }

    #[test]
    fn encodes_padded_compact_json_in_sdk_field_order() {
        let handle = state().encode().unwrap();
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(&handle)
            .unwrap();
        let text = String::from_utf8(json).unwrap();
        assert!(text.starts_with(
            r#"{"session_id":"s","sampling_session_id":"s:sample:0","holder":{"base_url":"http://127.0.0.1:1","default_headers_overrides":{},"client_config":{"pjwt_auth_enabled":false,"#
        ));
        assert!(
            text.ends_with(r#""api_key":null},"base_model":"m","record_stability_info":false}"#)
        );
        assert_eq!(handle.len() % 4, 0, "padded like urlsafe_b64encode");
    }

    #[test]
    fn an_api_key_in_a_handle_is_dropped() {
        let text = base64::engine::general_purpose::URL_SAFE
            .decode(state().encode().unwrap())
            .unwrap();
        let with_key = String::from_utf8(text)
            .unwrap()
            .replace(r#""api_key":null"#, r#""api_key":"tml-secret""#);
        let handle = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(with_key);
        let decoded = HandleState::decode(&handle).unwrap();
        assert!(!decoded.encode().unwrap().is_empty());
        let again = base64::engine::general_purpose::URL_SAFE
            .decode(decoded.encode().unwrap())
            .unwrap();
        assert!(!String::from_utf8(again).unwrap().contains("tml-secret"));
    }
}
