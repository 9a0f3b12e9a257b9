//! The tower stack behind [`Transport`](crate::Transport), outermost first:
//!
//! 0. optional circuit breaker per endpoint family (module `circuit`; one call, retries
//!    included, is one outcome);
//! 1. HTTP-layer retry (`tower::retry` with [`HttpRetryPolicy`]; idempotency key fixed
//!    per call, retry count bumped per attempt);
//! 2. optional governor rate limit (each attempt pays; shared by clones);
//! 3. optional concurrency limit (held per attempt, not across backoff sleeps);
//! 4. the attempt: credential/JWT, §1.5 headers, one replay after 401 `invalid_token`;
//! 5. user layers, then the hyper leaf (redirects, idle timeouts, decoding).
//!
//! Everything is erased to `BoxCloneSyncService` so no type parameter leaks out.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracing::Instrument;

use crate::auth::Credential;
use crate::auth::jwt::JwtAuth;
use crate::circuit::{CircuitBreaker, CircuitService};
use crate::clock::Runtime;
use crate::error::TransportError;
use crate::headers::{
    PROTOCOL_VERSION, TimeoutValues, X_API_KEY, X_IDEMPOTENCY_KEY, X_READ_TIMEOUT, X_RETRY_COUNT,
    X_SDK_METHOD, X_SDK_VERSION, retry_count_value,
};
use crate::http::{Http1Gate, Http1SlotHeld, HttpRequest, HttpService, ReadTimeout};
use crate::limit::RateLimit;
use crate::request::RequestSpec;
use crate::response::Response;
use crate::retry::http_policy::HttpRetryPolicy;

/// Which credential an attempt sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthUse {
    /// The server JWT when JWT auth is on, else the underlying credential.
    Default,
    /// No `X-API-Key`.
    None,
}

/// One call travelling through the stack; cloned for each retry (cheap: `Arc`s and
/// `Bytes`).
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub(crate) spec: Arc<RequestSpec>,
    pub(crate) body: Option<Bytes>,
    pub(crate) compressed: bool,
    pub(crate) idempotency_key: Option<HeaderValue>,
    pub(crate) retries: u32,
    pub(crate) max_retries: u32,
    pub(crate) read_timeout: Duration,
    pub(crate) auth: AuthUse,
    /// Retries taken so far, readable after the call fails.
    pub(crate) progress: Arc<AtomicU32>,
}

pub(crate) type CallService = BoxCloneSyncService<Call, Response, TransportError>;

/// The credential state of one transport (or of its token-exchange stack).
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    pub(crate) credential: Option<Credential>,
    pub(crate) jwt: OnceLock<Arc<JwtAuth>>,
}

/// What every attempt needs besides the call.
#[derive(Debug)]
pub(crate) struct AttemptContext {
    pub(crate) base_url: String,
    pub(crate) default_headers: HeaderMap,
    pub(crate) auth: Arc<AuthState>,
    pub(crate) runtime: Runtime,
    /// `x-stainless-read-timeout` values already formatted.
    pub(crate) timeout_values: TimeoutValues,
    /// The HTTP/1.1 connection bound of the leaf: waited for before a request is built.
    pub(crate) http1_gate: Http1Gate,
}

/// Step 4 of the stack.
#[derive(Clone, Debug)]
pub(crate) struct AttemptService {
    ctx: Arc<AttemptContext>,
    http: HttpService,
}

impl Service<Call> for AttemptService {
    type Response = Response;
    type Error = TransportError;
    type Future = crate::error::BoxFuture<Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let this = self.clone();
        let span = tracing::debug_span!(
            "tinker.attempt",
            attempt = call.retries,
            status = tracing::field::Empty
        );
        Box::pin(this.attempt(call, span.clone()).instrument(span))
    }
}

impl AttemptService {
    /// One attempt; its status goes on `span` (its own, disabled below `debug`: then
    /// nothing is recorded, rather than a second `status` on the `tinker.request` span
    /// that `Span::current()` would then be).
    async fn attempt(
        mut self,
        call: Call,
        span: tracing::Span,
    ) -> Result<Response, TransportError> {
        call.progress.store(call.retries, Ordering::Relaxed);
        let jwt = match call.auth {
            AuthUse::Default => self.ctx.auth.jwt.get().cloned(),
            AuthUse::None => None,
        };
        // The JWT sent (kept to name it if the server rejects it), and the `X-API-Key`.
        let (token, api_key) = match (&jwt, call.auth, &self.ctx.auth.credential) {
            (_, AuthUse::None, _) => (None, None),
            (Some(jwt), _, _) => {
                let token = jwt
                    .get_token()
                    .await
                    .map_err(TransportError::in_auth_flow)?;
                let value = api_key_value(&token)?;
                (Some(token), Some(value))
            }
            (None, _, Some(cred)) => {
                let value = cred
                    .header_value(self.ctx.runtime.clock.unix_now())
                    .await
                    .map_err(TransportError::in_auth_flow)?;
                (None, Some(value))
            }
            (None, _, None) => (None, None),
        };
        let mut resp = self.send_once(&call, api_key).await?;
        if let (Some(jwt), Some(rejected)) = (&jwt, &token)
            && resp.status() == http::StatusCode::UNAUTHORIZED
            && crate::auth::is_invalid_token_challenge(resp.headers())
        {
            tracing::debug!("JWT rejected as invalid_token; replacing it and replaying once");
            let fresh = jwt
                .replace(rejected)
                .await
                .map_err(TransportError::in_auth_flow)?;
            resp = self.send_once(&call, Some(api_key_value(&fresh)?)).await?;
        }
        span.record("status", resp.status().as_u16());
        let (head, body) = resp.into_parts();
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
            retries: call.retries,
            elapsed: Duration::ZERO,
        })
    }

    /// One request. `self` is this attempt's own copy of the service (see
    /// [`Service::call`] above), so the HTTP service is called in place, not cloned again.
    async fn send_once(
        &mut self,
        call: &Call,
        api_key: Option<HeaderValue>,
    ) -> Result<crate::http::HttpResponse, TransportError> {
        // Held until the response is read (see `Http1SlotHeld`).
        let slot = self
            .ctx
            .http1_gate
            .acquire(self.ctx.base_url.starts_with("https://"))
            .await;
        let mut req = build_request(&self.ctx, call, api_key)?;
        if slot.is_some() {
            req.extensions_mut().insert(Http1SlotHeld);
        }
        let response = self.http.ready().await?.call(req).await;
        drop(slot);
        response
    }
}

/// `X-API-Key` for a token (marked sensitive: never logged).
fn api_key_value(token: &SecretString) -> Result<HeaderValue, TransportError> {
    crate::auth::sensitive_header_value(token).map_err(TransportError::in_auth_flow)
}

/// Headers an attempt may add to the defaults (accept, content type and encoding,
/// idempotency key, retry count, read timeout, SDK version and method, API key), and the
/// two the HTTP layer adds (host, content length): reserved up front so that the map
/// never grows.
const ADDED_HEADERS: usize = 11;

fn build_request(
    ctx: &AttemptContext,
    call: &Call,
    api_key: Option<HeaderValue>,
) -> Result<HttpRequest, TransportError> {
    let spec = &call.spec;
    let mut url = String::with_capacity(ctx.base_url.len() + spec.path.len() + 16);
    url.push_str(&ctx.base_url);
    if !spec.path.starts_with('/') {
        url.push('/');
    }
    url.push_str(&spec.path);
    for (i, (k, v)) in spec.query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.extend(utf8_percent_encode(k, QUERY_COMPONENT));
        url.push('=');
        url.extend(utf8_percent_encode(v, QUERY_COMPONENT));
    }
    let mut headers =
        HeaderMap::with_capacity(ctx.default_headers.len() + spec.headers.len() + ADDED_HEADERS);
    // Same entries in the same order as cloning the defaults, without the clone's exact
    // capacity (which every insertion below would grow).
    for (name, value) in &ctx.default_headers {
        headers.append(name.clone(), value.clone());
    }
    headers.insert(ACCEPT, spec.accept.clone());
    // Set with a body, or alone on a DELETE (the SDK sends it there without one).
    if let Some(ct) = &spec.content_type {
        headers.insert(CONTENT_TYPE, ct.clone());
    }
    if call.compressed {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
    }
    if let Some(key) = &call.idempotency_key {
        headers.insert(X_IDEMPOTENCY_KEY, key.clone());
    }
    headers.insert(X_RETRY_COUNT, retry_count_value(call.retries));
    if let Some(v) = ctx.timeout_values.get(call.read_timeout) {
        headers.insert(X_READ_TIMEOUT, v);
    }
    if let Some(method) = &spec.sdk_method {
        headers.insert(X_SDK_VERSION, HeaderValue::from_static(PROTOCOL_VERSION));
        headers.insert(X_SDK_METHOD, method.clone());
    }
    for name in spec.headers.keys() {
        headers.remove(name);
    }
    for (name, value) in &spec.headers {
        headers.append(name.clone(), value.clone());
    }
    if let Some(v) = api_key {
        headers.insert(X_API_KEY, v);
    }
    let mut req = http::Request::builder()
        .method(spec.method.clone())
        .uri(url)
        .body(call.body.clone().unwrap_or_default())
        .map_err(|e| TransportError::invalid(format!("invalid request URL or method: {e}")))?;
    *req.headers_mut() = headers;
    req.extensions_mut().insert(ReadTimeout(call.read_timeout));
    Ok(req)
}

/// What a query key or value escapes: everything but RFC 3986's unreserved characters
/// (ASCII letters, digits, `-`, `_`, `.`, `~`), as `%XX` with uppercase hex per UTF-8 byte.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Steps 2 and 3: waits for the shared governor limiter, then for a concurrency slot
/// held for the attempt only (not across backoff sleeps). Hand-written because
/// `tower::limit::{RateLimit, ConcurrencyLimit}` are not `Clone`/`Sync`, which
/// `BoxCloneSyncService` needs.
#[derive(Clone, Debug)]
struct Admission<S> {
    inner: S,
    rate: Option<RateLimit>,
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl<S> Service<Call> for Admission<S>
where
    S: Service<Call, Response = Response, Error = TransportError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = TransportError;
    type Future = crate::error::BoxFuture<Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let inner = self.inner.clone();
        let rate = self.rate.clone();
        let slots = self.slots.clone();
        Box::pin(async move {
            if let Some(rate) = rate {
                rate.until_ready().await;
            }
            let _slot = match slots {
                Some(slots) => Some(slots.acquire_owned().await.map_err(|_| {
                    TransportError::invalid("the transport's concurrency limit was closed")
                })?),
                None => None,
            };
            inner.oneshot(call).await
        })
    }
}

/// Assembles steps 0–4 over an HTTP service.
pub(crate) fn build_stack(
    http: HttpService,
    ctx: Arc<AttemptContext>,
    runtime: Runtime,
    rate_limit: Option<RateLimit>,
    concurrency: Option<usize>,
    breaker: Option<CircuitBreaker>,
) -> CallService {
    let attempt = AttemptService { ctx, http };
    let admitted: CallService = if rate_limit.is_none() && concurrency.is_none() {
        BoxCloneSyncService::new(attempt)
    } else {
        BoxCloneSyncService::new(Admission {
            inner: attempt,
            rate: rate_limit,
            slots: concurrency.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        })
    };
    let retried = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(HttpRetryPolicy { runtime }))
            .service(admitted),
    );
    match breaker {
        Some(breaker) => BoxCloneSyncService::new(CircuitService {
            inner: retried,
            breaker,
        }),
        None => retried,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written encoder this module used before `percent-encoding`, kept as the
    /// oracle: the query string on the wire must not change.
    fn reference_encode(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
            }
        }
        out
    }

    fn encode(s: &str) -> String {
        utf8_percent_encode(s, QUERY_COMPONENT).collect()
    }

    #[test]
    fn query_encoding_matches_the_old_encoder_for_every_ascii_byte() {
        for b in 0u8..=127 {
            let s = char::from(b).to_string();
            assert_eq!(encode(&s), reference_encode(&s), "byte {b:#04x}");
        }
    }

    #[test]
    fn query_encoding_matches_the_old_encoder_on_text() {
        for s in [
            "",
            "tinker://run-1/weights/step 0001",
            "a+b=c&d?e#f/g%h",
            "model_id=Qwen/Qwen3-8B",
            "naïve 日本語 🚀",
            "~._-AZaz09",
            "\u{7f}\u{80}\u{ff}\u{10ffff}",
        ] {
            assert_eq!(encode(s), reference_encode(s), "{s:?}");
        }
        assert_eq!(encode("a b/c~"), "a%20b%2Fc~");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
