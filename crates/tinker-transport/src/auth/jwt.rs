//! JWT claims and the server-minted JWT lifecycle (protocol §1.4): lazy exchange,
//! background refresh at half-life with jitter, on-demand refresh under a lock, and the
//! replacement of a token the server rejected.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::clock::Runtime;
use crate::error::TransportError;

/// `get_token` refreshes when the cached JWT has at most this long left.
const REFRESH_ON_DEMAND: f64 = 60.0;
/// Delay after a failed refresh, or when the lifetime cannot be read.
const RETRY_DELAY: f64 = 60.0;

/// The claims the SDK reads from a JWT (decoded without verifying the signature; the
/// token came from the server over TLS).
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct JwtClaims {
    /// Expiry, Unix seconds.
    pub exp: Option<f64>,
    /// Issued-at, Unix seconds.
    pub iat: Option<f64>,
    /// Subject (user id).
    pub sub: Option<String>,
    /// Organisation id.
    pub org_id: Option<String>,
    /// User e-mail.
    pub email: Option<String>,
    /// Issuer.
    pub iss: Option<String>,
}

/// Decodes the payload claims of a JWT, or `None` if it is not one.
pub fn jwt_claims(token: &str) -> Option<JwtClaims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    // Numbers may arrive as ints or floats; ids as strings or numbers.
    let num = |k: &str| value.get(k).and_then(serde_json::Value::as_f64);
    let text = |k: &str| {
        value.get(k).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    Some(JwtClaims {
        exp: num("exp"),
        iat: num("iat"),
        sub: text("sub"),
        org_id: text("org_id"),
        email: text("email"),
        iss: text("iss"),
    })
}

fn seconds_left(token: &str, unix_now: f64) -> f64 {
    jwt_claims(token)
        .and_then(|c| c.exp)
        .map_or(0.0, |exp| exp - unix_now)
}

/// Half the token's lifetime (`exp − iat`) × U(0.9, 1.1), i.e. `lifetime × U(0.45, 0.55)`.
pub(crate) fn refresh_delay(token: &str, unit_jitter: f64) -> Duration {
    let lifetime = jwt_claims(token).and_then(|c| Some(c.exp? - c.iat?));
    match lifetime {
        Some(l) if l > 0.0 && l.is_finite() => {
            Duration::from_secs_f64(l * (0.45 + 0.1 * unit_jitter.clamp(0.0, 1.0)))
        }
        _ => Duration::from_secs_f64(RETRY_DELAY),
    }
}

/// Exchanges the underlying credential for a JWT (`POST /api/v1/auth/token`).
pub(crate) type Exchange = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<SecretString, TransportError>> + Send>>
        + Send
        + Sync,
>;

/// The cached server JWT of one holder.
pub(crate) struct JwtAuth {
    token: Mutex<Option<SecretString>>,
    refresh_lock: tokio::sync::Mutex<()>,
    exchange: Exchange,
    runtime: Runtime,
    refresh_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("has_token", &self.current().is_some())
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    pub(crate) fn new(exchange: Exchange, runtime: Runtime) -> Arc<Self> {
        Arc::new(Self {
            token: Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            exchange,
            runtime,
            refresh_task: Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn current(&self) -> Option<SecretString> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fresh(&self) -> Option<SecretString> {
        let now = self.runtime.clock.unix_now();
        self.current()
            .filter(|t| seconds_left(t.expose_secret(), now) > REFRESH_ON_DEMAND)
    }

    async fn fetch(&self) -> Result<SecretString, TransportError> {
        let token = (self.exchange)().await?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    /// The token to send now: the cached one if it has more than 60 s left, else a new
    /// one exchanged under the lock. If that exchange fails (other than with a 401) and
    /// the cached token is still alive, the cached token is used.
    pub(crate) async fn get_token(self: &Arc<Self>) -> Result<SecretString, TransportError> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _guard = self.refresh_lock.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        match self.fetch().await {
            Ok(token) => {
                self.start_refresh_loop(&token);
                Ok(token)
            }
            Err(e) if e.status() == Some(http::StatusCode::UNAUTHORIZED) => Err(e),
            Err(e) => {
                let now = self.runtime.clock.unix_now();
                match self.current() {
                    Some(old) if seconds_left(old.expose_secret(), now) > 0.0 => {
                        tracing::warn!(error = %e, "on-demand JWT refresh failed; using the cached token");
                        Ok(old)
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// A token other than `rejected`: exchanges for one only if no concurrent request has
    /// already replaced it, so concurrent rejections of one token cost one exchange.
    pub(crate) async fn replace(
        self: &Arc<Self>,
        rejected: &SecretString,
    ) -> Result<SecretString, TransportError> {
        let differs = |t: &Option<SecretString>| {
            t.as_ref()
                .is_some_and(|t| t.expose_secret() != rejected.expose_secret())
        };
        let current = self.current();
        if differs(&current) {
            return current.ok_or_else(|| TransportError::credential("no JWT"));
        }
        let _guard = self.refresh_lock.lock().await;
        let current = self.current();
        if differs(&current) {
            return current.ok_or_else(|| TransportError::credential("no JWT"));
        }
        self.fetch().await
    }

    fn start_refresh_loop(self: &Arc<Self>, token: &SecretString) {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut task = self
            .refresh_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let delay = refresh_delay(token.expose_secret(), self.runtime.jitter.unit());
        let weak = Arc::downgrade(self);
        *task = Some(tokio::spawn(refresh_loop(weak, delay)));
    }

    /// Stops the background refresh. Tokens are still served (on demand) afterwards.
    pub(crate) fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(task) = self
            .refresh_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for JwtAuth {
    fn drop(&mut self) {
        self.close();
    }
}

async fn refresh_loop(weak: Weak<JwtAuth>, mut delay: Duration) {
    let mut failing = false;
    loop {
        let sleep = match weak.upgrade() {
            Some(auth) => auth.runtime.clock.sleep(delay),
            None => return,
        };
        sleep.await;
        // Hold the state only while refreshing, so dropping the transport ends the loop.
        let Some(auth) = weak.upgrade() else { return };
        let result = {
            let _guard = auth.refresh_lock.lock().await;
            auth.fetch().await
        };
        match result {
            Ok(token) => {
                delay = refresh_delay(token.expose_secret(), auth.runtime.jitter.unit());
                failing = false;
                tracing::debug!(?delay, "JWT refreshed");
            }
            Err(e) => {
                let left = auth.current().map_or(0.0, |t| {
                    seconds_left(t.expose_secret(), auth.runtime.clock.unix_now())
                });
                if e.status() == Some(http::StatusCode::UNAUTHORIZED)
                    && left - RETRY_DELAY <= REFRESH_ON_DEMAND
                {
                    // On-demand refresh takes over near expiry; it restarts this loop.
                    tracing::warn!(error = %e, "JWT refresh rejected; stopping background refresh");
                    return;
                }
                if failing {
                    tracing::debug!(error = %e, "JWT refresh failed again; retrying in 60 s");
                } else {
                    tracing::warn!(error = %e, "JWT refresh failed; retrying in 60 s");
                }
                delay = Duration::from_secs_f64(RETRY_DELAY);
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(exp: f64, iat: f64) -> String {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"exp":{exp},"iat":{iat},"sub":"u1","org_id":7}}"#
        ));
        format!("eyJhbGciOiJub25lIn0.{payload}.sig")
    }

    #[test]
    fn claims_and_refresh_delay() {
        let t = token(2000.0, 1000.0);
        let c = jwt_claims(&t).unwrap();
        assert_eq!(c.exp, Some(2000.0));
        assert_eq!(c.org_id.as_deref(), Some("7"));
        assert_eq!(refresh_delay(&t, 0.0), Duration::from_secs(450));
        assert_eq!(refresh_delay(&t, 1.0), Duration::from_secs(550));
        assert_eq!(refresh_delay("not-a-jwt", 0.5), Duration::from_secs(60));
        assert_eq!(seconds_left(&t, 1990.0), 10.0);
    }
}
