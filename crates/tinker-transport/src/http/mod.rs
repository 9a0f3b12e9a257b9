//! The bottom of the stack: a hyper-util legacy client (HTTP/1.1 and HTTP/2 with ALPN,
//! pooled) that sends one [`HttpRequest`], follows redirects, reads the whole body with
//! an idle timeout and decodes it.
//!
//! Users can wrap this service with their own tower layer (see
//! [`TransportBuilder::layer`](crate::TransportBuilder::layer)); it speaks plain
//! `http::Request<Bytes>` / `http::Response<Bytes>`.

pub mod connect;
pub(crate) mod decode;

/// Decodes a response body per its `Content-Encoding` header (`gzip`, `deflate`, `zstd`,
/// in reverse order of application) exactly as the transport does, refusing to produce
/// more than `limit` bytes ([`ErrorKind::ResponseTooLarge`]); removes the header. For user
/// layers that fetch bodies themselves, and for the fuzz targets.
///
/// # Errors
/// [`ErrorKind::Decode`] for a corrupt body or an unknown encoding;
/// [`ErrorKind::ResponseTooLarge`] past the limit.
pub fn decode_content(
    headers: &mut http::HeaderMap,
    body: Bytes,
    limit: u64,
) -> Result<Bytes, TransportError> {
    decode::decode_body(headers, body, limit)
}

use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use self::connect::{ProxyConfig, ProxyConnector, TlsConfig};
use crate::env::Env;
use crate::error::{Cause, ErrorKind, TransportError};

/// A request as the HTTP layer sees it: complete headers and body.
pub type HttpRequest = http::Request<Bytes>;
/// A response as the HTTP layer returns it: complete, content-decoded body.
pub type HttpResponse = http::Response<Bytes>;
/// The type-erased HTTP service that user layers wrap.
pub type HttpService = BoxCloneSyncService<HttpRequest, HttpResponse, TransportError>;

/// The read (idle) timeout of one request, carried as a request extension: the longest
/// wait for the response head and between body chunks.
#[derive(Debug, Clone, Copy)]
pub struct ReadTimeout(pub Duration);

/// Which HTTP versions to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HttpVersion {
    /// HTTP/2 when TLS ALPN negotiates it, else HTTP/1.1 (the SDK's behaviour).
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1Only,
    /// HTTP/2 without negotiation (h2c prior knowledge on `http://`).
    Http2PriorKnowledge,
}

/// Settings of the HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct HttpConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_host: usize,
    /// Most HTTP/1.1 requests (so connections) in flight at once; the rest wait for one.
    pub(crate) http1_max_connections: usize,
    pub(crate) version: HttpVersion,
    pub(crate) tls: TlsConfig,
    pub(crate) proxy: ProxyConfig,
    pub(crate) max_redirects: usize,
    /// Most bytes of a response body, both as received and after content decoding.
    pub(crate) max_response_bytes: u64,
}

type RawClient = BoxCloneSyncService<
    http::Request<Full<Bytes>>,
    http::Response<Incoming>,
    hyper_util::client::legacy::Error,
>;

/// The connection pool, replaceable as a whole (after a "bare 400", §6.1).
pub(crate) struct Pool {
    current: RwLock<RawClient>,
    factory: Box<dyn Fn() -> RawClient + Send + Sync>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    fn client(&self) -> RawClient {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops every pooled connection: later requests open new ones.
    pub(crate) fn reset(&self) {
        let fresh = (self.factory)();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }
}

/// The TLS implementation the pool is built with.
#[derive(Clone)]
enum TlsBackend {
    Rustls(Box<rustls::ClientConfig>),
    #[cfg(feature = "native-tls")]
    Native,
}

fn make_client(cfg: &HttpConfig, tls: &TlsBackend, matcher: Option<Arc<Matcher>>) -> RawClient {
    let connector = ProxyConnector::new(cfg.connect_timeout, matcher);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host);
    if cfg.version == HttpVersion::Http2PriorKnowledge {
        builder.http2_only(true);
    }
    match tls {
        TlsBackend::Rustls(config) => {
            // hyper-rustls sets the ALPN list from the enabled versions.
            let start = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((**config).clone())
                .https_or_http();
            let https = match cfg.version {
                HttpVersion::Http1Only => start.enable_http1().wrap_connector(connector),
                HttpVersion::Auto | HttpVersion::Http2PriorKnowledge => start
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(connector),
            };
            BoxCloneSyncService::new(builder.build(https))
        }
        #[cfg(feature = "native-tls")]
        TlsBackend::Native => {
            // Platform TLS (HTTP/1.1 over TLS; no ALPN). `new_with_connector` panics only
            // if the platform TLS library cannot initialise at all.
            let mut https = hyper_tls::HttpsConnector::new_with_connector(connector);
            https.https_only(false);
            BoxCloneSyncService::new(builder.build(https))
        }
    }
}

/// The bound on HTTP/1.1 connections in use: one permit per request in flight over
/// HTTP/1.1.
///
/// HTTP/1.1 holds one connection per request in flight, and the pool keeps only so
/// many idle ones: without a bound, a fan-out of thousands of requests opens thousands
/// of connections and closes most of them again as soon as they are idle (issue 14
/// measured ~3,400 TCP connections per 10,000 samples). With at most
/// `http1_max_connections` requests in flight and as many idle connections kept, the
/// pool stops growing at about that many connections and reuses them. Cleartext in
/// `Auto` is always HTTP/1.1; over TLS, ALPN picks HTTP/2 (multiplexed, no bound
/// needed) from any Tinker server, so only `Http1Only` bounds `https://`.
#[derive(Clone, Debug)]
pub(crate) struct Http1Gate {
    slots: Arc<Semaphore>,
    version: HttpVersion,
}

impl Http1Gate {
    /// Waits for a free connection slot when a request to a URL with this scheme will be
    /// sent over HTTP/1.1.
    pub(crate) async fn acquire(&self, https: bool) -> Option<OwnedSemaphorePermit> {
        let http1 = match self.version {
            HttpVersion::Http1Only => true,
            HttpVersion::Auto => !https,
            HttpVersion::Http2PriorKnowledge => false,
        };
        if !http1 {
            return None;
        }
        // The semaphore is never closed.
        self.slots.clone().acquire_owned().await.ok()
    }
}

/// Request extension: the sender holds an HTTP/1.1 connection slot for this request until
/// the leaf returns, so the leaf takes none (for any hop). The attempt waits for the slot
/// before it builds the request: a queued request is then small (its headers are built
/// only once a connection is free).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Http1SlotHeld;

/// The leaf service: hyper client + redirects + body reading + decoding.
#[derive(Clone, Debug)]
pub(crate) struct HyperLeaf {
    pool: Arc<Pool>,
    gate: Http1Gate,
    matcher: Option<Arc<Matcher>>,
    max_redirects: usize,
    max_response_bytes: u64,
}

impl HyperLeaf {
    pub(crate) fn new(cfg: &HttpConfig, env: &Env) -> Result<Self, TransportError> {
        let matcher = cfg.proxy.matcher(env).map(Arc::new);
        let tls = match cfg.tls.native_tls {
            #[cfg(feature = "native-tls")]
            true => TlsBackend::Native,
            #[cfg(not(feature = "native-tls"))]
            true => {
                return Err(TransportError::invalid(
                    "native TLS requested but the `native-tls` feature is not enabled",
                ));
            }
            false => TlsBackend::Rustls(Box::new(cfg.tls.rustls_config(env)?)),
        };
        let factory_cfg = cfg.clone();
        let factory_matcher = matcher.clone();
        let factory: Box<dyn Fn() -> RawClient + Send + Sync> =
            Box::new(move || make_client(&factory_cfg, &tls, factory_matcher.clone()));
        let pool = Arc::new(Pool {
            current: RwLock::new(factory()),
            factory,
        });
        Ok(Self {
            pool,
            gate: Http1Gate {
                slots: Arc::new(Semaphore::new(cfg.http1_max_connections.max(1))),
                version: cfg.version,
            },
            matcher,
            max_redirects: cfg.max_redirects,
            max_response_bytes: cfg.max_response_bytes,
        })
    }

    pub(crate) fn pool(&self) -> Arc<Pool> {
        self.pool.clone()
    }

    /// The HTTP/1.1 connection bound, for the attempt to wait on before it builds a
    /// request.
    pub(crate) fn http1_gate(&self) -> Http1Gate {
        self.gate.clone()
    }

    async fn execute(self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let read_timeout = req
            .extensions()
            .get::<ReadTimeout>()
            .map_or(Duration::from_secs(60), |t| t.0);
        let (mut parts, mut body) = req.into_parts();
        let held = parts.extensions.remove::<Http1SlotHeld>().is_some();
        let mut redirects = 0usize;
        loop {
            // Held until the body is read, when the connection can take the next request.
            let _slot = if held {
                None
            } else {
                self.gate
                    .acquire(parts.uri.scheme_str() == Some("https"))
                    .await
            };
            let mut out = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .version(http::Version::HTTP_11)
                .body(Full::new(body.clone()))
                .map_err(|e| TransportError::invalid(format!("cannot build request: {e}")))?;
            // Kept for a redirect; the copy has room for what hyper adds (`host`,
            // `content-length`), where a clone's exact capacity would grow twice.
            let headers = out.headers_mut();
            headers.reserve(parts.headers.len() + 2);
            for (name, value) in &parts.headers {
                headers.append(name.clone(), value.clone());
            }
            if let Some(auth) = self.forward_proxy_auth(&parts.uri) {
                out.headers_mut()
                    .insert(http::header::PROXY_AUTHORIZATION, auth);
            }
            let client = self.pool.client();
            let response = tokio::time::timeout(read_timeout, client.oneshot(out))
                .await
                .map_err(|_| TransportError::timeout("waiting for the response", read_timeout))?
                .map_err(map_client_error)?;
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            if status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
                && let Some(location) = location
            {
                if redirects >= self.max_redirects {
                    return Err(TransportError::new(
                        ErrorKind::Connection,
                        Cause::TooManyRedirects {
                            max: self.max_redirects,
                        },
                    ));
                }
                redirects += 1;
                drop(response);
                let next = resolve_location(&parts.uri, &location)?;
                tracing::debug!(%status, to = %redact_uri(&next), "following redirect");
                if !same_origin(&parts.uri, &next) {
                    // Credentials never follow a redirect to another origin (signed URLs).
                    let secret: Vec<_> = parts
                        .headers
                        .keys()
                        .filter(|n| crate::headers::is_secret_header(n))
                        .cloned()
                        .collect();
                    for name in secret {
                        parts.headers.remove(name);
                    }
                }
                parts.headers.remove(HOST);
                let to_get = status == StatusCode::SEE_OTHER && parts.method != Method::HEAD
                    || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                        && parts.method == Method::POST;
                if to_get {
                    parts.method = Method::GET;
                    body = Bytes::new();
                    for name in [CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING] {
                        parts.headers.remove(name);
                    }
                }
                parts.uri = next;
                continue;
            }
            let (mut head, incoming) = response.into_parts();
            let limit = self.max_response_bytes;
            // A declared length over the limit fails before a byte of the body is read.
            if head
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|len| len > limit)
            {
                return Err(TransportError::too_large("response body", limit));
            }
            let raw = read_body(incoming, read_timeout, limit).await?;
            let decoded = decode::decode_body(&mut head.headers, raw, limit)?;
            return Ok(http::Response::from_parts(head, decoded));
        }
    }

    fn forward_proxy_auth(&self, uri: &Uri) -> Option<http::HeaderValue> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let intercept = self.matcher.as_ref()?.intercept(uri)?;
        let mut v = intercept.basic_auth()?.clone();
        v.set_sensitive(true);
        Some(v)
    }
}

impl Service<HttpRequest> for HyperLeaf {
    type Response = HttpResponse;
    type Error = TransportError;
    type Future = crate::error::BoxFuture<HttpResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        Box::pin(self.clone().execute(req))
    }
}

fn map_client_error(e: hyper_util::client::legacy::Error) -> TransportError {
    let timed_out = {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut found = false;
        while let Some(s) = src {
            if s.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                found = true;
                break;
            }
            src = s.source();
        }
        found
    };
    if timed_out {
        let mut err = TransportError::connect(e);
        err.set_kind(ErrorKind::Timeout);
        err
    } else {
        TransportError::connect(e)
    }
}

/// Reads the body to the end, failing as soon as it passes `limit` bytes (the connection
/// is then dropped with the rest unread).
async fn read_body(
    mut body: Incoming,
    idle: Duration,
    limit: u64,
) -> Result<Bytes, TransportError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    loop {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| TransportError::timeout("reading the response body", idle))?;
        match frame {
            None => break,
            Some(Err(e)) => return Err(TransportError::broken_body(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    total = total.saturating_add(data.len() as u64);
                    if total > limit {
                        return Err(TransportError::too_large("response body", limit));
                    }
                    chunks.push(data);
                }
            }
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut all = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in &chunks {
                all.extend_from_slice(c);
            }
            Bytes::from(all)
        }
    })
}

fn resolve_location(base: &Uri, location: &http::HeaderValue) -> Result<Uri, TransportError> {
    let loc = location
        .to_str()
        .map_err(|_| TransportError::invalid("redirect Location is not valid text"))?;
    let bad = || TransportError::invalid("redirect Location is not a valid URL");
    if loc.contains("://") {
        return loc.parse().map_err(|_| bad());
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let joined = if let Some(rest) = loc.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{loc}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{loc}")
    };
    joined.parse().map_err(|_| bad())
}

fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && a.port_u16() == b.port_u16()
}

/// A URI without its query (signed URLs carry credentials there).
pub(crate) fn redact_uri(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default(),
        uri.path()
    )
}
