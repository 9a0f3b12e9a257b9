//! Authentication and service-level payloads: JWT exchange, API-key self description,
//! whoami, health and server capabilities.

use serde::{Deserialize, Serialize};

use crate::sensitive::Sensitive;

/// Body of `POST /api/v1/auth/token` (always `{}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuthTokenRequest {}

/// Response of `auth/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthTokenResponse {
    /// The server-minted JWT (redacted in `Debug`).
    pub jwt: Sensitive,
}

/// Organization of an API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgDetails {
    /// Organization name.
    pub name: String,
}

/// User of an API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDetails {
    /// User e-mail.
    pub email: String,
}

/// Owner details of an API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyDetails {
    /// Organization.
    pub org_details: OrgDetails,
    /// User.
    pub user_details: UserDetails,
}

/// Response of `GET /api/v1/auth/apikey/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfApiKeyResponse {
    /// Key id.
    pub key_id: i64,
    /// Key name.
    pub name: String,
    /// Key note.
    #[serde(default)]
    pub note: String,
    /// Owner.
    pub details: ApiKeyDetails,
}

/// Identity decoded from the JWT (`whoami` makes no request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoamiResponse {
    /// `sub` claim.
    pub user_urn: String,
    /// `tml:organization:<org_id>`.
    pub org_urn: String,
    /// `email` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Response of `GET /api/v1/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
}

/// One model the server offers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SupportedModel {
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Maximum context length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_context_length: Option<u64>,
    /// Can be fine-tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable: Option<bool>,
    /// Can be sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampleable: Option<bool>,
}

/// Response of `GET /api/v1/get_server_capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetServerCapabilitiesResponse {
    /// Offered models.
    pub supported_models: Vec<SupportedModel>,
}

/// The usual error body of HTTP errors (`{"detail": ...}`; a text or any JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The message.
    pub detail: serde_json::Value,
}
