//! [`Transport`]: the built, cloneable handle callers send requests through, and the JWT
//! switch-over it owns.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::jwt::{Exchange, JwtAuth};
use crate::auth::{Credential, JwtClaims, jwt_claims};
use crate::builder::TransportBuilder;
use crate::circuit::{CircuitBreaker, CircuitState, EndpointFamily};
use crate::clock::Runtime;
use crate::env::Env;
use crate::error::TransportError;
use crate::execute::execute;
use crate::http::{HttpService, Pool};
use crate::observe::RequestObserver;
use crate::request::{APPLICATION_JSON, RequestSpec};
use crate::response::Response;
use crate::retry::{BillingPause, OperationRetry, OperationRetryConfig};
use crate::stack::{AttemptContext, AuthState, AuthUse, CallService, build_stack};

/// The HTTP transport of one client holder. Cheap to clone; clones share connections,
/// limits, the credential and the JWT.
///
/// See the [crate docs](crate) for the stack and an example.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Shared>,
    /// Sees every call of this handle and its clones (not of the handle it came from).
    observer: Option<RequestObserver>,
}

/// What every clone of a [`Transport`] shares; built by [`TransportBuilder::build`].
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) service: CallService,
    pub(crate) http: HttpService,
    pub(crate) ctx: Arc<AttemptContext>,
    pub(crate) auth: Arc<AuthState>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) bare_400_budget: AtomicU32,
    pub(crate) max_retries: u32,
    pub(crate) read_timeout: Duration,
    pub(crate) operation_timeout: Option<Duration>,
    pub(crate) runtime: Runtime,
    pub(crate) env: Env,
    pub(crate) api_key: Option<SecretString>,
    pub(crate) billing: Arc<BillingPause>,
    /// The circuit breaker, when turned on (used by the stack; kept for its states).
    pub(crate) breaker: Option<CircuitBreaker>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("base_url", &self.inner.base_url)
            .field("credential", &self.inner.auth.credential)
            .field("jwt_auth", &self.inner.auth.jwt.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            inner: Arc::new(shared),
            observer: None,
        }
    }

    /// A builder with the SDK's defaults.
    pub fn builder() -> TransportBuilder {
        TransportBuilder::default()
    }

    /// The base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The environment the transport was built from.
    pub fn env(&self) -> &Env {
        &self.inner.env
    }

    /// The injected clock and jitter.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The underlying credential, if any.
    pub fn credential(&self) -> Option<&Credential> {
        self.inner.auth.credential.as_ref()
    }

    /// A handle sharing this one's connections, limits and credential whose calls (and
    /// its clones' calls) are also reported to `observer`, once per call.
    pub fn with_request_observer(&self, observer: RequestObserver) -> Self {
        Self {
            inner: self.inner.clone(),
            observer: Some(observer),
        }
    }

    /// Sends one call: HTTP-level retries (§6.1) with one idempotency key, then maps a
    /// non-success status to an error (§1.7). Returns the complete, decoded response.
    pub async fn send(&self, spec: RequestSpec) -> Result<Response, TransportError> {
        execute(
            &self.inner,
            &self.inner.service,
            spec,
            AuthUse::Default,
            self.observer.as_ref(),
        )
        .await
    }

    /// Sends `body` as compact JSON and parses a JSON answer.
    pub async fn send_json<Req, Resp>(
        &self,
        spec: RequestSpec,
        body: &Req,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.send(spec.with_json(body)?).await?.json()
    }

    /// Sends a request without a body and parses a JSON answer.
    pub async fn get_json<Resp: DeserializeOwned>(
        &self,
        spec: RequestSpec,
    ) -> Result<Resp, TransportError> {
        self.send(spec).await?.json()
    }

    /// The operation-level retry loop (§6.2) of this transport; its billing window is
    /// shared by every clone.
    pub fn operation_retry(&self) -> OperationRetry {
        OperationRetry::new(
            OperationRetryConfig::default(),
            self.inner.runtime.clone(),
            self.inner.billing.clone(),
        )
    }

    /// The billing-pause window (to apply `billing_exception_max_pause_duration_sec`).
    pub fn billing_pause(&self) -> &Arc<BillingPause> {
        &self.inner.billing
    }

    /// Switches to server-minted JWTs (client config `pjwt_auth_enabled: true`). The
    /// exchange (`POST /api/v1/auth/token`) happens lazily on the next request; tokens are
    /// refreshed in the background at half-life with jitter, on demand when ≤ 60 s remain,
    /// and once after a 401 `invalid_token`. With `command_source` (config
    /// `credential_default_source == "credential_cmd"`), the exchange authenticates with
    /// `TINKER_CREDENTIAL_CMD` unless the key is a JWT. Calling it again does nothing.
    pub fn enable_jwt_auth(&self, command_source: bool) -> Result<(), TransportError> {
        if self.inner.auth.jwt.get().is_some() {
            return Ok(());
        }
        let credential = if command_source {
            Some(Credential::resolve_for_command_source(
                self.inner.api_key.as_ref(),
                &self.inner.env,
            )?)
        } else {
            self.inner.auth.credential.clone()
        };
        let Some(credential) = credential else {
            return Err(TransportError::credential(
                "JWT authentication needs a credential to exchange",
            ));
        };
        let exchange_ctx = Arc::new(AttemptContext {
            base_url: self.inner.ctx.base_url.clone(),
            default_headers: self.inner.ctx.default_headers.clone(),
            auth: Arc::new(AuthState {
                credential: Some(credential),
                jwt: Default::default(),
            }),
            runtime: self.inner.runtime.clone(),
            timeout_values: Default::default(),
            http1_gate: self.inner.ctx.http1_gate.clone(),
        });
        let exchange_service = build_stack(
            self.inner.http.clone(),
            exchange_ctx,
            self.inner.runtime.clone(),
            None,
            None,
            None,
        );
        // The exchange shares the pool and budgets but not this transport's JWT state.
        let weak = Arc::downgrade(&self.inner);
        let exchange: Exchange = Arc::new(move || {
            let service = exchange_service.clone();
            let weak = weak.clone();
            Box::pin(async move {
                let shared = weak
                    .upgrade()
                    .ok_or_else(|| TransportError::credential("the transport was dropped"))?;
                let spec =
                    RequestSpec::post("/api/v1/auth/token").with_body(&b"{}"[..], APPLICATION_JSON);
                let resp = execute(&shared, &service, spec, AuthUse::Default, None).await?;
                #[derive(serde::Deserialize)]
                struct Token {
                    jwt: String,
                }
                let token: Token = resp.json()?;
                Ok(SecretString::from(token.jwt))
            })
        });
        let jwt = JwtAuth::new(exchange, self.inner.runtime.clone());
        // A concurrent call may have won; either JWT state is equivalent.
        let _ = self.inner.auth.jwt.set(jwt);
        Ok(())
    }

    /// The state of each endpoint family's circuit that has seen a call, in family order
    /// (empty without [`TransportBuilder::circuit_breaker`](crate::TransportBuilder::circuit_breaker)).
    pub fn circuit_states(&self) -> Vec<(EndpointFamily, CircuitState)> {
        self.inner
            .breaker
            .as_ref()
            .map(CircuitBreaker::states)
            .unwrap_or_default()
    }

    /// Whether JWT auth is on.
    pub fn jwt_auth_enabled(&self) -> bool {
        self.inner.auth.jwt.get().is_some()
    }

    /// The claims of the token this transport authenticates with: the server JWT when
    /// JWT auth is on (exchanging if needed), else the credential if it is a JWT.
    pub async fn token_claims(&self) -> Result<Option<JwtClaims>, TransportError> {
        use secrecy::ExposeSecret;
        if let Some(jwt) = self.inner.auth.jwt.get() {
            let token = jwt.get_token().await?;
            return Ok(jwt_claims(token.expose_secret()));
        }
        Ok(self
            .inner
            .auth
            .credential
            .as_ref()
            .and_then(Credential::static_secret)
            .and_then(|s| jwt_claims(s.expose_secret())))
    }

    /// Stops background work (the JWT refresh loop). Requests still work afterwards.
    pub fn close(&self) {
        if let Some(jwt) = self.inner.auth.jwt.get() {
            jwt.close();
        }
    }
}
