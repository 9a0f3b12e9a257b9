//! Unsigned JWTs for auth tests.

use base64::Engine as _;

/// A JWT (`alg: none`, signature `sig`) with the given `exp`, `iat` and `sub` claims.
pub fn make_jwt(exp: f64, iat: f64, sub: &str) -> String {
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.sig",
        enc(r#"{"alg":"none","typ":"JWT"}"#),
        enc(&format!(r#"{{"exp":{exp},"iat":{iat},"sub":"{sub}"}}"#))
    )
}
