//! Shadow holders (§6.5 Clones): the per-session state of clients rehydrated from sampler
//! handles, shared within the process by every handle of the same session, server flags
//! and credential (as the SDK's shadow-holder cache), so they share one heartbeat, one
//! connection pool and one set of sampling budgets.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use tinker_transport::{Env, SecretString, Transport};

use super::handle::ShadowHolderConfig;
use crate::error::{Error, Result};
use crate::session::Session;

/// `(session id, the handle's holder config as JSON, fingerprint of an explicit key)`.
type ShadowKey = (String, String, Option<u64>);

fn cache() -> &'static Mutex<HashMap<ShadowKey, Weak<Session>>> {
    static CACHE: OnceLock<Mutex<HashMap<ShadowKey, Weak<Session>>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// A process-random, one-way fingerprint of an explicit API key (only compared in memory).
pub(crate) fn key_fingerprint(key: &str) -> u64 {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    SEED.get_or_init(RandomState::new).hash_one(key)
}

/// The shadow credential and environment (from [`super::SamplerHandleOptions`]).
pub(crate) struct Credentials {
    pub api_key: Option<(SecretString, u64)>,
    pub env: Option<Env>,
}

/// The live shadow holder for `session_id` and `cfg`, or a new one.
pub(crate) fn shadow_holder(
    session_id: String,
    cfg: ShadowHolderConfig,
    credentials: Credentials,
) -> Result<Arc<Session>> {
    // A caller-supplied environment may resolve another credential: never share then.
    let key = match &credentials.env {
        Some(_) => None,
        None => {
            let json = serde_json::to_string(&cfg)
                .map_err(|e| Error::protocol(format!("cannot encode the shadow config: {e}")))?;
            Some((
                session_id.clone(),
                json,
                credentials.api_key.as_ref().map(|(_, f)| *f),
            ))
        }
    };
    let mut cache = cache().lock().unwrap_or_else(PoisonError::into_inner);
    cache.retain(|_, h| h.strong_count() > 0);
    if let Some(key) = &key
        && let Some(holder) = cache.get(key).and_then(Weak::upgrade)
        && !holder.is_closed()
    {
        return Ok(holder);
    }
    let holder = build(session_id, cfg, credentials)?;
    if let Some(key) = key {
        cache.insert(key, Arc::downgrade(&holder));
    }
    Ok(holder)
}

fn build(
    session_id: String,
    cfg: ShadowHolderConfig,
    credentials: Credentials,
) -> Result<Arc<Session>> {
    let mut builder = Transport::builder()
        .env(credentials.env.unwrap_or_else(Env::process))
        .base_url(cfg.base_url);
    if let Some((key, _)) = credentials.api_key {
        builder = builder.api_key(key);
    }
    for (name, value) in &cfg.default_headers_overrides {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::invalid(format!("invalid header name `{name}`")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| Error::invalid(format!("invalid value of header `{name}`")))?;
        builder = builder.default_header(name, value);
    }
    let transport = builder.build()?;
    Session::start_shadow(
        transport,
        session_id,
        cfg.client_config,
        cfg.client_dynamic_config,
        cfg.default_headers_overrides,
    )
}
