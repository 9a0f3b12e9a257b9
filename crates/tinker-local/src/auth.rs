//! Authentication: `X-API-Key` with a `tml-` key (or the configured one), or a JWT this
//! server minted (JWT mode).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde_json::json;

use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// Stable owner label derived from the credential.
    pub(crate) owner: String,
}

/// Why a credential was refused.
#[derive(Debug)]
pub(crate) enum AuthFailure {
    /// No or malformed credential.
    Missing(String),
    /// A JWT that is expired, forged or otherwise unusable (clients re-exchange on this).
    InvalidToken(String),
}

/// Checks a raw API key (not a JWT).
pub(crate) fn check_api_key(state: &AppState, key: &str) -> Result<Caller, AuthFailure> {
    if state.is_revoked(key) {
        return Err(AuthFailure::Missing(
            "invalid API key: it was revoked (log in with another key)".to_owned(),
        ));
    }
    match &state.config.api_key {
        Some(required) if key != required => {
            Err(AuthFailure::Missing("invalid API key".to_owned()))
        }
        Some(_) => Ok(Caller {
            owner: state.owner_of(key),
        }),
        None if key.starts_with("tml-") && key.len() > 4 => Ok(Caller {
            owner: state.owner_of(key),
        }),
        None => Err(AuthFailure::Missing(
            "invalid API key: keys start with `tml-`".to_owned(),
        )),
    }
}

/// Checks any credential: an API key, or (in JWT mode) a token minted by this server.
pub(crate) fn check(state: &AppState, credential: Option<&str>) -> Result<Caller, AuthFailure> {
    let Some(credential) = credential.map(str::trim).filter(|c| !c.is_empty()) else {
        return Err(AuthFailure::Missing(
            "missing credentials: send your API key in the X-API-Key header".to_owned(),
        ));
    };
    if credential.starts_with("eyJ") {
        if !state.config.jwt {
            return Err(AuthFailure::InvalidToken(
                "this server does not accept JWTs (JWT mode is off)".to_owned(),
            ));
        }
        return verify_jwt(state, credential);
    }
    check_api_key(state, credential)
}

/// Mints a JWT for `caller` (JWT mode).
pub(crate) fn mint_jwt(state: &AppState, caller: &Caller) -> String {
    let now = Utc::now().timestamp();
    let lifetime = i64::try_from(state.config.jwt_lifetime.as_secs()).unwrap_or(3600);
    let header =
        URL_SAFE_NO_PAD.encode(json!({ "alg": "tinker-local-siphash", "typ": "JWT" }).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({
            "sub": caller.owner,
            "org_id": "tinker-local",
            "email": "local-user@tinker-local.invalid",
            "iss": "tinker-local",
            "iat": now,
            "exp": now + lifetime,
        })
        .to_string(),
    );
    let signing_input = format!("{header}.{claims}");
    let sig = URL_SAFE_NO_PAD.encode(state.sign(&format!("jwt:{signing_input}")));
    format!("{signing_input}.{sig}")
}

fn verify_jwt(state: &AppState, token: &str) -> Result<Caller, AuthFailure> {
    let invalid = |why: &str| AuthFailure::InvalidToken(format!("invalid token: {why}"));
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed"));
    };
    let expected = URL_SAFE_NO_PAD.encode(state.sign(&format!("jwt:{header}.{claims}")));
    if sig != expected {
        return Err(invalid("bad signature"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| invalid("bad encoding"))?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid("bad claims"))?;
    let exp = claims.get("exp").and_then(serde_json::Value::as_i64);
    if exp.is_none_or(|e| e <= Utc::now().timestamp()) {
        return Err(invalid("expired"));
    }
    let owner = claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| invalid("no subject"))?;
    Ok(Caller {
        owner: owner.to_owned(),
    })
}
