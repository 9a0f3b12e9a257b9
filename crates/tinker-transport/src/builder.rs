//! [`TransportBuilder`]: the transport's configuration (defaults, credential choice, HTTP
//! settings, user layers) and how it assembles a [`Transport`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use tower::util::BoxCloneSyncService;

use crate::auth::Credential;
use crate::circuit::{CircuitBreaker, CircuitBreakerConfig, CircuitObserver};
use crate::clock::Runtime;
use crate::env::Env;
use crate::error::TransportError;
use crate::execute::BARE_400_BUDGET;
use crate::http::connect::{ProxyConfig, TlsConfig};
use crate::http::{HttpConfig, HttpService, HttpVersion, HyperLeaf};
use crate::limit::RateLimit;
use crate::retry::BillingPause;
use crate::stack::{AttemptContext, AuthState, build_stack};
use crate::transport::{Shared, Transport};

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

/// Default bound on HTTP/1.1 connections in use at once (and idle connections kept).
// Far below the thousands of connections (and ~17 KiB of buffers each) a sampling fan-out
// opened before (docs/benchmarks.md, issue 14); with it, 2,000 samples in flight on
// HTTP/1.1 ran faster than with no bound. Other values were not compared (Python's httpx
// allows 1,000).
pub const DEFAULT_HTTP1_MAX_CONNECTIONS: usize = 256;

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
    circuit_breaker: Option<CircuitBreakerConfig>,
    circuit_observer: Option<CircuitObserver>,
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
            circuit_breaker: None,
            circuit_observer: None,
            runtime: Runtime::default(),
            http: HttpConfig {
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                pool_idle_timeout: Duration::from_secs(90),
                // As many idle connections as HTTP/1.1 may have in use: a connection that
                // finishes a request is kept for the next one instead of being closed while
                // another request opens a new one (churn; `Http1Gate` in http/mod.rs).
                pool_max_idle_per_host: DEFAULT_HTTP1_MAX_CONNECTIONS,
                http1_max_connections: DEFAULT_HTTP1_MAX_CONNECTIONS,
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
    /// between body chunks. Per-request override: [`RequestSpec::with_timeout`](crate::RequestSpec::with_timeout).
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

    /// Turns on a circuit breaker per endpoint family (off by default): after
    /// `failure_threshold` consecutive server failures of one family, its calls fail at
    /// once with [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen) until trial
    /// calls succeed again (module [`circuit`](crate::circuit)).
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.circuit_breaker = Some(config);
        self
    }

    /// Called on every circuit state change (with [`circuit_breaker`](Self::circuit_breaker)).
    pub fn circuit_observer(mut self, observer: CircuitObserver) -> Self {
        self.circuit_observer = Some(observer);
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

    /// At most this many HTTP/1.1 requests in flight at once (default
    /// [`DEFAULT_HTTP1_MAX_CONNECTIONS`]); more wait for a connection to become free.
    /// HTTP/1.1 needs one connection per request in flight, so this bounds the connections
    /// in use; it applies to `http://` URLs (and every URL with
    /// [`HttpVersion::Http1Only`]), not to HTTP/2. Also raises the idle connections kept
    /// per host to `max`, so that a finished request's connection serves the next one.
    pub fn http1_max_connections(mut self, max: usize) -> Self {
        let max = max.max(1);
        self.http.http1_max_connections = max;
        self.http.pool_max_idle_per_host = self.http.pool_max_idle_per_host.max(max);
        self
    }

    /// Idle pooled connections kept per host (default [`DEFAULT_HTTP1_MAX_CONNECTIONS`])
    /// and for how long (90 s). Fewer idle connections than
    /// [`http1_max_connections`](Self::http1_max_connections) make a busy HTTP/1.1 pool
    /// close and reopen connections.
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
        let http1_gate = leaf.http1_gate();
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
            timeout_values: Default::default(),
            http1_gate,
        });
        let breaker = self.circuit_breaker.map(|config| {
            CircuitBreaker::new(config, self.runtime.clone(), self.circuit_observer.clone())
        });
        let service = build_stack(
            http.clone(),
            ctx.clone(),
            self.runtime.clone(),
            self.rate_limit.clone(),
            self.concurrency_limit,
            breaker.clone(),
        );
        Ok(Transport::from_shared(Shared {
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
            breaker,
        }))
    }
}
