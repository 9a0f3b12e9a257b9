//! Executes one call through the stack: idempotency key, zstd body, request span,
//! operation timeout, then status to error, including the bare-400 pool reset and budget
//! (§6.1) and deprecation notices.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tower::ServiceExt;
use tracing::Instrument;

use crate::error::TransportError;
use crate::observe::{RequestObserver, RequestRecord};
use crate::request::{Compression, RequestSpec};
use crate::response::Response;
use crate::stack::{AuthUse, Call, CallService};
use crate::transport::Shared;

/// Pool-wide budget of "bare 400" conversions (§6.1).
pub(crate) const BARE_400_BUDGET: u32 = 16;

/// Length of a generated idempotency key: `tinker-rs-retry-` and a hyphenated UUID.
const KEY_LEN: usize = KEY_PREFIX.len() + uuid::fmt::Hyphenated::LENGTH;
const KEY_PREFIX: &str = "tinker-rs-retry-";

/// Writes a fresh `tinker-rs-retry-<uuid4>` key into `buf` (no allocation).
fn new_idempotency_key(buf: &mut [u8; KEY_LEN]) -> &str {
    let (prefix, id) = buf.split_at_mut(KEY_PREFIX.len());
    prefix.copy_from_slice(KEY_PREFIX.as_bytes());
    uuid::Uuid::new_v4().hyphenated().encode_lower(id);
    // ASCII only.
    std::str::from_utf8(buf).unwrap_or(KEY_PREFIX)
}

/// Executes one call and, when there is an observer, reports it once.
pub(crate) async fn execute(
    shared: &Shared,
    service: &CallService,
    spec: RequestSpec,
    auth: AuthUse,
    observer: Option<&RequestObserver>,
) -> Result<Response, TransportError> {
    let mut body_len = 0;
    // Shared with the call (and its retries), and read back for the report below.
    let spec = Arc::new(spec);
    let Some(observer) = observer else {
        return execute_call(shared, service, spec, auth, &mut body_len).await;
    };
    let result = execute_call(shared, service, spec.clone(), auth, &mut body_len).await;
    let (status, retries, received, elapsed) = match &result {
        Ok(r) => (Some(r.status), r.retries, r.body.len(), r.elapsed),
        Err(e) => (
            e.status(),
            e.retries(),
            e.body().map_or(0, |b| b.len()),
            e.elapsed().unwrap_or_default(),
        ),
    };
    observer(&RequestRecord {
        method: &spec.method,
        path: &spec.path,
        sdk_method: spec.sdk_method.as_ref().and_then(|v| v.to_str().ok()),
        status,
        ok: result.is_ok(),
        retries,
        bytes_sent: body_len * (u64::from(retries) + 1),
        bytes_received: received as u64,
        elapsed,
    });
    result
}

/// The call itself; `body_len` receives the size of the body as sent (after compression).
async fn execute_call(
    shared: &Shared,
    service: &CallService,
    spec: Arc<RequestSpec>,
    auth: AuthUse,
    body_len: &mut u64,
) -> Result<Response, TransportError> {
    let clock = &shared.runtime.clock;
    let start = clock.now();
    let mut generated = [0u8; KEY_LEN];
    let key = match (&spec.idempotency_key, spec.method == Method::GET) {
        (_, true) => None,
        (Some(k), false) => Some(k.as_str()),
        (None, false) => Some(new_idempotency_key(&mut generated)),
    };
    let fail = |e: TransportError, retries: u32| {
        e.with_request(&spec.method, &spec.path, key)
            .with_attempts(retries, clock.now() - start)
    };
    let (body, compressed) = match (&spec.body, spec.compression) {
        (Some(b), Compression::Zstd) => (
            Some(crate::http::decode::zstd_compress(b).map_err(|e| fail(e, 0))?),
            true,
        ),
        (b, Compression::ZstdEncoded) => (b.clone(), true),
        (b, _) => (b.clone(), false),
    };
    *body_len = body.as_ref().map_or(0, |b| b.len() as u64);
    let idempotency_key = match key {
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
        spec: spec.clone(),
        body,
        compressed,
        idempotency_key,
        retries: 0,
        auth,
        progress: progress.clone(),
    };
    let span = tracing::info_span!(
        "tinker.request",
        http.method = %spec.method,
        path = %spec.path,
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
