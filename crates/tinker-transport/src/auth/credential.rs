//! The underlying credential: an API key, a JWT given directly, or a command that prints one.

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use super::file::CredentialsFile;
use super::jwt;
use crate::env::Env;
use crate::error::TransportError;

/// How long `TINKER_CREDENTIAL_CMD` may run before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The message when no credential source is configured (as the SDK words it).
const MISSING: &str = "The api_key client option must be set by passing api_key to the client, \
     by setting the TINKER_API_KEY environment variable, or by storing a key with `tinker auth login`";

/// A credential sent as `X-API-Key` (or exchanged for a server JWT).
///
/// `Debug` shows only the kind of credential, never its value.
#[derive(Clone)]
pub struct Credential {
    source: Source,
}

#[derive(Clone)]
enum Source {
    /// An API key (`tml-…`) or a user-supplied JWT (`eyJ…`, with its `exp`).
    Static {
        secret: SecretString,
        expires_at: Option<f64>,
        /// `secret` as a sensitive `X-API-Key` value, made once (each request clones it
        /// instead of copying the secret); `None` if it is no valid header value.
        header: Option<HeaderValue>,
    },
    /// `TINKER_CREDENTIAL_CMD`: run for every token handed out.
    Command { command: SecretString },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Static {
                expires_at: None, ..
            } => f.write_str("Credential::ApiKey([REDACTED])"),
            Source::Static { .. } => f.write_str("Credential::Jwt([REDACTED])"),
            Source::Command { .. } => f.write_str("Credential::Command([REDACTED])"),
        }
    }
}

impl Credential {
    /// An API key (must start with `tml-`) or a JWT (starts with `eyJ`; its `exp` must be
    /// readable and is checked before every use).
    pub fn api_key(key: impl Into<String>) -> Result<Self, TransportError> {
        let key: String = key.into();
        let key = key.trim().to_owned();
        if key.starts_with("eyJ") {
            let expires_at = jwt::jwt_claims(&key).and_then(|c| c.exp).ok_or_else(|| {
                TransportError::credential("the api_key JWT has no readable exp claim")
            })?;
            return Ok(Self::fixed(key, Some(expires_at)));
        }
        if !key.starts_with("tml-") {
            return Err(TransportError::credential(
                "The api_key must start with the 'tml-' prefix",
            ));
        }
        Ok(Self::fixed(key, None))
    }

    /// A shell command whose trimmed stdout is a fresh credential, run for every token.
    pub fn command(command: impl Into<String>) -> Result<Self, TransportError> {
        let command: String = command.into();
        if command.trim().is_empty() {
            return Err(TransportError::credential(
                "Your organization requires dynamic credentials: set TINKER_CREDENTIAL_CMD \
                 to a command that prints a valid credential.",
            ));
        }
        Ok(Self {
            source: Source::Command {
                command: SecretString::from(command),
            },
        })
    }

    /// Resolves the credential as the SDK does (§1.3): the explicit key, else
    /// `TINKER_API_KEY`; a JWT is used directly; a malformed key falls back to
    /// `TINKER_CREDENTIAL_CMD` when set; then the command; then the default key of
    /// `~/.tinker/credentials.json` (only when no command is configured).
    pub fn resolve(api_key: Option<&SecretString>, env: &Env) -> Result<Self, TransportError> {
        Self::resolve_with(api_key, env, false)
    }

    /// Resolves the credential for a JWT exchange when the server's
    /// `credential_default_source` is `credential_cmd`: the command, unless the key
    /// is itself a JWT.
    pub fn resolve_for_command_source(
        api_key: Option<&SecretString>,
        env: &Env,
    ) -> Result<Self, TransportError> {
        Self::resolve_with(api_key, env, true)
    }

    fn resolve_with(
        api_key: Option<&SecretString>,
        env: &Env,
        enforce_command: bool,
    ) -> Result<Self, TransportError> {
        let command = env.get("TINKER_CREDENTIAL_CMD");
        let key = api_key
            .map(|k| k.expose_secret().to_owned())
            .filter(|k| !k.is_empty())
            .or_else(|| env.get("TINKER_API_KEY"));
        if let Some(k) = &key
            && k.starts_with("eyJ")
        {
            return Self::api_key(k.clone());
        }
        if enforce_command {
            return Self::command(command.unwrap_or_default());
        }
        if let Some(k) = key {
            return match Self::api_key(k) {
                Ok(c) => Ok(c),
                Err(e) => match command {
                    Some(cmd) => Self::command(cmd),
                    None => Err(e),
                },
            };
        }
        if let Some(cmd) = command {
            return Self::command(cmd);
        }
        if let Some(path) = CredentialsFile::default_path(env)
            && let Some(stored) = CredentialsFile::new(path).default_key()?
        {
            return Self::api_key(stored.key.expose_secret().to_owned());
        }
        Err(TransportError::credential(MISSING))
    }

    /// Whether this is a JWT given directly.
    pub fn is_jwt(&self) -> bool {
        matches!(
            self.source,
            Source::Static {
                expires_at: Some(_),
                ..
            }
        )
    }

    /// Whether this runs `TINKER_CREDENTIAL_CMD`.
    pub fn is_command(&self) -> bool {
        matches!(self.source, Source::Command { .. })
    }

    /// The static key or JWT, if this is not a command (e.g. to read `iss` for whoami).
    pub fn static_secret(&self) -> Option<&SecretString> {
        match &self.source {
            Source::Static { secret, .. } => Some(secret),
            Source::Command { .. } => None,
        }
    }

    /// A key or JWT given directly.
    fn fixed(key: String, expires_at: Option<f64>) -> Self {
        let header = HeaderValue::from_str(&key).ok().map(|mut v| {
            v.set_sensitive(true);
            // Shares the bytes from now on: later clones of a fresh value would each
            // allocate.
            let _ = v.clone();
            v
        });
        Self {
            source: Source::Static {
                secret: SecretString::from(key),
                expires_at,
                header,
            },
        }
    }

    /// The `X-API-Key` value to send now (sensitive), as [`Credential::token`] checks it.
    pub(crate) async fn header_value(&self, unix_now: f64) -> Result<HeaderValue, TransportError> {
        if let Source::Static {
            header: Some(header),
            expires_at,
            ..
        } = &self.source
        {
            check_expiry(*expires_at, unix_now)?;
            return Ok(header.clone());
        }
        sensitive_header_value(&self.token(unix_now).await?)
    }

    /// The value to send now. A directly given JWT that has expired is refused before
    /// sending; a command is run and its output checked.
    pub(crate) async fn token(&self, unix_now: f64) -> Result<SecretString, TransportError> {
        match &self.source {
            Source::Static {
                secret, expires_at, ..
            } => {
                check_expiry(*expires_at, unix_now)?;
                Ok(secret.clone())
            }
            Source::Command { command } => run_command(command.expose_secret(), unix_now).await,
        }
    }
}

/// `token` as a sensitive header value (kept out of `Debug` and HPACK tables).
pub(crate) fn sensitive_header_value(token: &SecretString) -> Result<HeaderValue, TransportError> {
    let mut v = HeaderValue::from_str(token.expose_secret())
        .map_err(|_| TransportError::credential("the credential is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Refuses a directly given JWT that has expired, before anything is sent.
fn check_expiry(expires_at: Option<f64>, unix_now: f64) -> Result<(), TransportError> {
    if expires_at.is_some_and(|exp| unix_now >= exp) {
        return Err(TransportError::credential(
            "The api_key JWT has expired. Pass a fresh one, or remove it and set \
             TINKER_CREDENTIAL_CMD to a command that prints one.",
        ));
    }
    Ok(())
}

async fn run_command(command: &str, unix_now: f64) -> Result<SecretString, TransportError> {
    let mut cmd = if cfg!(windows) {
        let mut c = tokio::process::Command::new("cmd");
        c.arg("/C").arg(command);
        c
    } else {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(command);
        c
    };
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| TransportError::credential("TINKER_CREDENTIAL_CMD timed out"))?
        .map_err(|e| {
            TransportError::credential(format!("TINKER_CREDENTIAL_CMD could not run: {e}"))
        })?;
    let credential = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if credential.is_empty() {
        return Err(TransportError::credential(
            "TINKER_CREDENTIAL_CMD returned an empty credential.",
        ));
    }
    if credential.starts_with("eyJ")
        && jwt::jwt_claims(&credential)
            .and_then(|c| c.exp)
            .is_none_or(|exp| unix_now >= exp)
    {
        return Err(TransportError::credential(
            "TINKER_CREDENTIAL_CMD printed an expired JWT.",
        ));
    }
    Ok(SecretString::from(credential))
}
