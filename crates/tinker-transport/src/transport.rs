//! [`Transport`] and [`TransportBuilder`]: the public face of the stack.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tracing::Instrument;

use crate::auth::jwt::{Exchange, JwtAuth};
use crate::auth::{Credential, JwtClaims, jwt_claims};
use crate::clock::Runtime;
use crate::env::Env;
use crate::error::TransportError;
use crate::http::connect::{ProxyConfig, TlsConfig};
use crate::http::{HttpConfig, HttpService, HttpVersion, HyperLeaf, Pool};
use crate::limit::RateLimit;
use crate::request::{APPLICATION_JSON, Compression, RequestSpec};
use crate::response::Response;
use crate::retry::{BillingPause, OperationRetry, OperationRetryConfig};
use crate::stack::{AttemptContext, AuthState, AuthUse, Call, CallService, build_stack};

/// The SDK's default base URL.
pub const DEFAULT_BASE_URL: &str = "https://tinker.thinkingmachines.dev/services/tinker-prod";
/// Default HTTP-level retries.
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// Default read timeout.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit on a response body, as received and after content decoding: 256 MiB.
///
/// The largest legitimate replies are `forward_backward` results: 1024 datums of 2048
/// tokens with two float32 outputs per token are 16 MiB as protobuf and about 90 MiB as
/// JSON (Python prints a float32 in up to ~20 characters). 256 MiB leaves a margin of
/// almost 3x over that while a hostile or broken server cannot exhaust memory (a 782 KB
/// gzip body can otherwise inflate to 768 MiB). Downloads of checkpoint archives, which
/// may be far larger, must stream instead of using [`Transport::send`].
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;
/// Pool-wide budget of "bare 400" conversions (§6.1).
const BARE_400_BUDGET: u32 = 16;

/// A user layer over the HTTP service.
type LayerFn = Arc<dyn Fn(HttpService) -> HttpService + Send + Sync>;

/// Which credential the transport sends.
#[derive(Clone, Debug)]
enum CredentialChoice {
    Resolve(Option<SecretString>),
    Given(Credential),
    Nothing,
}

/// Builds a [`Transport`]. Every setting has the official SDK's default.
#[derive(Clone)]
pub struct TransportBuilder {
    base_url: Option<String>,
    env: Env,
    credential: CredentialChoice,
    default_headers: HeaderMap,
    read_timeout: Duration,
    operation_timeout: Option<Duration>,
    max_retries: u32,
    concurrency_limit: Option<usize>,
    rate_limit: Option<RateLimit>,
    runtime: Runtime,
    http: HttpConfig,
    layers: Vec<LayerFn>,
    billing_max_pause: Duration,
}

impl fmt::Debug for TransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportBuilder")
            .field("base_url", &self.base_url)
            .field("credential", &self.credential)
            .field("max_retries", &self.max_retries)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for TransportBuilder {
    fn default() -> Self {
        Self {
            base_url: None,
            env: Env::process(),
            credential: CredentialChoice::Resolve(None),
            default_headers: HeaderMap::new(),
            read_timeout: DEFAULT_READ_TIMEOUT,
            operation_timeout: None,
            max_retries: DEFAULT_MAX_RETRIES,
            concurrency_limit: None,
            rate_limit: None,
            runtime: Runtime::default(),
            http: HttpConfig {
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                pool_idle_timeout: Duration::from_secs(90),
                pool_max_idle_per_host: 20,
                version: HttpVersion::Auto,
                tls: TlsConfig::default(),
                proxy: ProxyConfig::FromEnv,
                max_redirects: 20,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            },
            layers: Vec::new(),
            billing_max_pause: Duration::from_secs(3600),
        }
    }
}

impl TransportBuilder {
    /// The base URL (default: `TINKER_BASE_URL`, else [`DEFAULT_BASE_URL`]).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The environment to read `TINKER_*`, proxy, CA and Cloudflare variables from
    /// (default: the process environment).
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// An explicit API key or JWT, resolved as the SDK does (falls back to
    /// `TINKER_CREDENTIAL_CMD` if malformed and a command is set).
    pub fn api_key(mut self, key: SecretString) -> Self {
        self.credential = CredentialChoice::Resolve(Some(key));
        self
    }

    /// A credential built by the caller.
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = CredentialChoice::Given(credential);
        self
    }

    /// Sends no `X-API-Key` (e.g. a local server without authentication).
    pub fn no_credential(mut self) -> Self {
        self.credential = CredentialChoice::Nothing;
        self
    }

    /// Adds a header sent on every request (the SDK's `default_headers_overrides`,
    /// merged over the Cloudflare headers).
    pub fn default_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.default_headers.append(name, value);
        self
    }

    /// The read timeout (default 60 s): the longest wait for the response head and
    /// between body chunks. Per-request override: [`RequestSpec::with_timeout`].
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The connect timeout (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.http.connect_timeout = timeout;
        self
    }

    /// A bound on a whole call, retries included (default none, as in the SDK).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// HTTP-level retries per call (default 10).
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// At most this many attempts in flight at once across all clones.
    pub fn concurrency_limit(mut self, limit: usize) -> Self {
        self.concurrency_limit = Some(limit.max(1));
        self
    }

    /// A request-rate limit shared by all clones (each attempt takes one cell).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Injects time and randomness (tests use a paused tokio clock and fixed jitter).
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// Which HTTP versions to speak (default: HTTP/2 via ALPN, else HTTP/1.1).
    pub fn http_version(mut self, version: HttpVersion) -> Self {
        self.http.version = version;
        self
    }

    /// TLS trust settings.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.http.tls = tls;
        self
    }

    /// Proxy settings (default: from the environment).
    pub fn proxy(mut self, proxy: ProxyConfig) -> Self {
        self.http.proxy = proxy;
        self
    }

    /// Idle pooled connections kept per host (default 20) and for how long (90 s).
    pub fn pool(mut self, max_idle_per_host: usize, idle_timeout: Duration) -> Self {
        self.http.pool_max_idle_per_host = max_idle_per_host;
        self.http.pool_idle_timeout = idle_timeout;
        self
    }

    /// The maximum number of redirects followed (default 20; 0 disables following).
    pub fn max_redirects(mut self, max: usize) -> Self {
        self.http.max_redirects = max;
        self
    }

    /// The most bytes a response body may have, both as received and after
    /// `gzip`/`deflate`/`zstd` decoding (default [`DEFAULT_MAX_RESPONSE_BYTES`], 256 MiB).
    /// A larger body fails with [`ErrorKind::ResponseTooLarge`](crate::ErrorKind) as soon as
    /// it passes the limit (a declared `Content-Length` over it fails before reading);
    /// nothing beyond the limit is buffered, and the failure is not retried.
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.http.max_response_bytes = limit;
        self
    }

    /// The initial billing-pause window (default 3600 s; the client updates it from
    /// `billing_exception_max_pause_duration_sec`).
    pub fn billing_max_pause(mut self, window: Duration) -> Self {
        self.billing_max_pause = window;
        self
    }

    /// Wraps the HTTP service (below auth and headers, above the hyper client) with a
    /// user layer; layers added later wrap earlier ones.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<HttpService> + Send + Sync + 'static,
        L::Service: tower::Service<
                crate::http::HttpRequest,
                Response = crate::http::HttpResponse,
                Error = TransportError,
            > + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<crate::http::HttpRequest>>::Future: Send + 'static,
    {
        self.layers
            .push(Arc::new(move |s| BoxCloneSyncService::new(layer.layer(s))));
        self
    }

    /// Builds the transport: resolves the base URL and credential, loads TLS roots and
    /// proxy rules. Must be called inside a tokio runtime only for use, not for building.
    pub fn build(self) -> Result<Transport, TransportError> {
        let base_url = self
            .base_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| self.env.get("TINKER_BASE_URL"))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let base_url = base_url.trim_end_matches('/').to_owned();
        let parsed: http::Uri = base_url
            .parse()
            .map_err(|_| TransportError::invalid("the base URL is not a valid URL"))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) {
            return Err(TransportError::invalid(
                "the base URL must start with http:// or https://",
            ));
        }
        let (credential, api_key) = match &self.credential {
            CredentialChoice::Resolve(key) => (
                Some(Credential::resolve(key.as_ref(), &self.env)?),
                key.clone(),
            ),
            CredentialChoice::Given(c) => (Some(c.clone()), None),
            CredentialChoice::Nothing => (None, None),
        };
        let leaf = HyperLeaf::new(&self.http, &self.env)?;
        let pool = leaf.pool();
        let mut http: HttpService = BoxCloneSyncService::new(leaf);
        for layer in &self.layers {
            http = layer(http);
        }
        let default_headers = crate::headers::default_headers(&self.env, &self.default_headers);
        let auth = Arc::new(AuthState {
            credential,
            jwt: Default::default(),
        });
        let ctx = Arc::new(AttemptContext {
            base_url: base_url.clone(),
            default_headers,
            auth: auth.clone(),
            runtime: self.runtime.clone(),
        });
        let service = build_stack(
            http.clone(),
            ctx.clone(),
            self.runtime.clone(),
            self.rate_limit.clone(),
            self.concurrency_limit,
        );
        Ok(Transport {
            inner: Arc::new(Shared {
                base_url,
                service,
                http,
                ctx,
                auth,
                pool,
                bare_400_budget: AtomicU32::new(BARE_400_BUDGET),
                max_retries: self.max_retries,
                read_timeout: self.read_timeout,
                operation_timeout: self.operation_timeout,
                runtime: self.runtime.clone(),
                env: self.env.clone(),
                api_key,
                billing: Arc::new(BillingPause::new(self.billing_max_pause)),
            }),
        })
    }
}

/// The HTTP transport of one client holder. Cheap to clone; clones share connections,
/// limits, the credential and the JWT.
///
/// See the [crate docs](crate) for the stack and an example.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Shared>,
}

struct Shared {
    base_url: String,
    service: CallService,
    http: HttpService,
    ctx: Arc<AttemptContext>,
    auth: Arc<AuthState>,
    pool: Arc<Pool>,
    bare_400_budget: AtomicU32,
    max_retries: u32,
    read_timeout: Duration,
    operation_timeout: Option<Duration>,
    runtime: Runtime,
    env: Env,
    api_key: Option<SecretString>,
    billing: Arc<BillingPause>,
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

    /// Sends one call: HTTP-level retries (§6.1) with one idempotency key, then maps a
    /// non-success status to an error (§1.7). Returns the complete, decoded response.
    pub async fn send(&self, spec: RequestSpec) -> Result<Response, TransportError> {
        execute(&self.inner, &self.inner.service, spec, AuthUse::Default).await
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
        });
        let exchange_service = build_stack(
            self.inner.http.clone(),
            exchange_ctx,
            self.inner.runtime.clone(),
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
                let resp = execute(&shared, &service, spec, AuthUse::Default).await?;
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

fn new_idempotency_key() -> String {
    format!("tinker-rs-retry-{}", uuid::Uuid::new_v4())
}

async fn execute(
    shared: &Shared,
    service: &CallService,
    spec: RequestSpec,
    auth: AuthUse,
) -> Result<Response, TransportError> {
    let clock = &shared.runtime.clock;
    let start = clock.now();
    let key = (spec.method != Method::GET).then(|| {
        spec.idempotency_key
            .clone()
            .unwrap_or_else(new_idempotency_key)
    });
    let method = spec.method.clone();
    let path = spec.path.clone();
    let fail = |e: TransportError, retries: u32| {
        e.with_request(&method, &path, key.as_deref())
            .with_attempts(retries, clock.now() - start)
    };
    let (body, compressed) = match (&spec.body, spec.compression) {
        (Some(b), Compression::Zstd) => (
            Some(crate::http::decode::zstd_compress(b).map_err(|e| fail(e, 0))?),
            true,
        ),
        (b, _) => (b.clone(), false),
    };
    let idempotency_key = match &key {
        Some(k) => Some(
            HeaderValue::from_str(k)
                .map_err(|_| fail(TransportError::invalid("invalid idempotency key"), 0))?,
        ),
        None => None,
    };
    let progress = Arc::new(AtomicU32::new(0));
    let auth = if spec.authenticate {
        auth
    } else {
        AuthUse::None
    };
    let call = Call {
        max_retries: spec.max_retries.unwrap_or(shared.max_retries),
        read_timeout: spec.timeout.unwrap_or(shared.read_timeout),
        spec: Arc::new(spec),
        body,
        compressed,
        idempotency_key,
        retries: 0,
        auth,
        progress: progress.clone(),
    };
    let span = tracing::info_span!(
        "tinker.request",
        http.method = %method,
        path = %path,
        sdk_method = call.spec.sdk_method.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
        status = tracing::field::Empty,
        retries = tracing::field::Empty,
    );
    let fut = service.clone().oneshot(call);
    let result = async {
        match shared.operation_timeout {
            Some(limit) => tokio::time::timeout(limit, fut)
                .await
                .unwrap_or_else(|_| Err(TransportError::timeout("the operation", limit))),
            None => fut.await,
        }
    }
    .instrument(span.clone())
    .await;
    let retries = progress.load(Ordering::Relaxed);
    span.record("retries", retries);
    let mut resp = result.map_err(|e| fail(e, retries))?;
    span.record("status", resp.status.as_u16());
    resp.elapsed = clock.now() - start;
    log_deprecation(&resp.headers);
    if resp.status.is_success() {
        // Each success restores one unit of the bare-400 budget.
        let _ = shared
            .bare_400_budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b < BARE_400_BUDGET).then_some(b + 1)
            });
        return Ok(resp);
    }
    if resp.status == StatusCode::BAD_REQUEST && is_bare(&resp.headers) {
        // A Cloudflare-style rejection: replace the pool and, within budget, report a
        // retryable connection error (§6.1).
        shared.pool.reset();
        let took = shared
            .bare_400_budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(1))
            .is_ok();
        if took {
            return Err(fail(
                TransportError::bare_bad_request(resp.status, resp.headers),
                retries,
            ));
        }
    }
    Err(fail(
        TransportError::from_status(resp.status, resp.headers, resp.body),
        retries,
    ))
}

/// A 400 whose `content-length` is `0` or absent.
fn is_bare(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .is_none_or(|v| v.as_bytes() == b"0")
}

fn log_deprecation(headers: &HeaderMap) {
    let Some(note) = headers
        .get("x-deprecation-note")
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let error = headers
        .get("x-deprecation-level")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|l| l.trim().eq_ignore_ascii_case("error"));
    if error {
        tracing::error!(note, "deprecation notice");
    } else {
        tracing::warn!(note, "deprecation notice");
    }
}
