//! Authentication (protocol §1.3, §1.4): where the credential comes from, and the JWT
//! exchange that replaces it when the server enables `pjwt_auth_enabled`.
//!
//! The only credential header is `X-API-Key`. Credentials live in
//! [`secrecy::SecretString`] and never appear in `Debug`, `Display`, logs or errors.

mod credential;
mod file;
pub(crate) mod jwt;

pub use credential::Credential;
pub(crate) use credential::sensitive_header_value;
pub use file::{CredentialsFile, StoredKey};
pub use jwt::{JwtClaims, jwt_claims};

use http::HeaderMap;

/// Whether a 401's `WWW-Authenticate` says the token itself was rejected
/// (`error="invalid_token"`, RFC 6750).
pub(crate) fn is_invalid_token_challenge(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("error=\"invalid_token\""))
}
