//! The SDK headers of protocol §1.5 that are the same for every request of a transport.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::env::Env;

/// The protocol (official SDK) version this crate speaks; sent wherever the server reads
/// an SDK version.
pub const PROTOCOL_VERSION: &str = "0.38.0";

/// This crate's version.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `User-Agent`: names tinker-rs and the protocol version it speaks.
pub fn user_agent() -> String {
    format!("TinkerRs/Rust {CRATE_VERSION} (tinker {PROTOCOL_VERSION})")
}

/// `X-Stainless-OS` in the SDK's vocabulary.
fn os_name() -> String {
    match std::env::consts::OS {
        "linux" => "Linux".into(),
        "macos" => "MacOS".into(),
        "windows" => "Windows".into(),
        "freebsd" => "FreeBSD".into(),
        "openbsd" => "OpenBSD".into(),
        "ios" => "iOS".into(),
        "android" => "Android".into(),
        "" => "Unknown".into(),
        other => format!("Other:{other}"),
    }
}

/// `X-Stainless-Arch` in the SDK's vocabulary.
fn arch_name() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "x64".into(),
        "aarch64" => "arm64".into(),
        "arm" => "arm".into(),
        "x86" => "x32".into(),
        "" => "unknown".into(),
        other => format!("other:{other}"),
    }
}

pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const X_IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("x-idempotency-key");
pub(crate) const X_RETRY_COUNT: HeaderName = HeaderName::from_static("x-stainless-retry-count");
pub(crate) const X_READ_TIMEOUT: HeaderName = HeaderName::from_static("x-stainless-read-timeout");
pub(crate) const X_SDK_VERSION: HeaderName = HeaderName::from_static("x-sdk-version");
pub(crate) const X_SDK_METHOD: HeaderName = HeaderName::from_static("x-sdk-method");

/// Headers sent on every request: platform headers, the Cloudflare Access pair from the
/// environment, then the user's overrides (merged last, replacing same-named headers).
pub(crate) fn default_headers(env: &Env, overrides: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("user-agent", user_agent());
    put("x-stainless-lang", "rust".into());
    put("x-stainless-package-version", PROTOCOL_VERSION.into());
    put("x-stainless-os", os_name());
    put("x-stainless-arch", arch_name());
    put("x-stainless-runtime", "rustc".into());
    put(
        "x-stainless-runtime-version",
        env!("TINKER_RUSTC_VERSION").into(),
    );
    put("x-stainless-async", "async:tokio".into());
    put("accept-encoding", "gzip, deflate, zstd".into());
    if let Some(id) = env.get("CLOUDFLARE_ACCESS_CLIENT_ID") {
        put("cf-access-client-id", id);
    }
    if let Some(secret) = env.get("CLOUDFLARE_ACCESS_CLIENT_SECRET")
        && let Ok(mut v) = HeaderValue::from_str(&secret)
    {
        v.set_sensitive(true);
        h.insert(HeaderName::from_static("cf-access-client-secret"), v);
    }
    for name in overrides.keys() {
        h.remove(name);
    }
    for (name, value) in overrides {
        h.append(name.clone(), value.clone());
    }
    h
}

/// `x-stainless-retry-count` for `retries`: static values for the usual counts (no
/// allocation per request).
pub(crate) fn retry_count_value(retries: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(retries as usize) {
        Some(v) => HeaderValue::from_static(v),
        None => HeaderValue::from(retries),
    }
}

/// The `x-stainless-read-timeout` values a transport has sent, kept so that a request
/// clones a shared value instead of formatting and allocating a new one. Requests use a
/// handful of distinct timeouts; past [`TimeoutValues::MAX`] values nothing more is kept.
#[derive(Debug, Default)]
pub(crate) struct TimeoutValues(std::sync::RwLock<Vec<(std::time::Duration, HeaderValue)>>);

impl TimeoutValues {
    const MAX: usize = 16;

    /// The header value for `timeout` (as [`format_timeout`] writes it).
    pub(crate) fn get(&self, timeout: std::time::Duration) -> Option<HeaderValue> {
        let known = |all: &Vec<(std::time::Duration, HeaderValue)>| {
            all.iter()
                .find(|(t, _)| *t == timeout)
                .map(|(_, v)| v.clone())
        };
        if let Some(v) = known(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ) {
            return Some(v);
        }
        let value = HeaderValue::from_str(&format_timeout(timeout)).ok()?;
        let mut all = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if all.len() < Self::MAX && known(&all).is_none() {
            // Cloned once here so that later clones share the bytes (a fresh value's first
            // clone would allocate).
            all.push((timeout, value.clone()));
        }
        Some(value)
    }
}

/// Formats a timeout the way the SDK echoes it: whole seconds as an integer (`60`),
/// otherwise as a float (`0.5`).
pub(crate) fn format_timeout(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if d.subsec_nanos() == 0 {
        format!("{}", d.as_secs())
    } else {
        format!("{secs}")
    }
}

/// Header names whose values are secrets (redacted in logs, stripped on cross-origin
/// redirects).
pub(crate) fn is_secret_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-api-key"
            | "authorization"
            | "proxy-authorization"
            | "cookie"
            | "cf-access-client-secret"
            | "x-tinker-weights-access-token"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retry_count_values_are_the_numbers() {
        for n in [0, 1, 9, 10, 11, 99, u32::MAX] {
            assert_eq!(retry_count_value(n).to_str().unwrap(), n.to_string());
        }
    }

    /// Cached or not (past the cache's size), a timeout's value is what `format_timeout`
    /// writes.
    #[test]
    fn timeout_values_match_format_timeout() {
        let values = TimeoutValues::default();
        for round in 0..2 {
            for ms in (0..40).map(|i| 250 * i) {
                let d = Duration::from_millis(ms);
                let v = values.get(d).unwrap();
                assert_eq!(
                    v.to_str().unwrap(),
                    format_timeout(d),
                    "{d:?}, round {round}"
                );
            }
        }
    }
}
