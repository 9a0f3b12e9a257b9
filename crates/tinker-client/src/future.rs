//! The futures engine (protocol §3.2): one implementation of `retrieve_future` polling used
//! by every future-returning call, and [`ApiFuture`], the handle those calls return.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::Value;
use tinker_transport::retry::backoff::exponential_backoff;
use tinker_transport::{APPLICATION_JSON, APPLICATION_PROTOBUF, BytePermit, RequestSpec};
use tinker_types::{
    FutureOutcome, FutureRetrieveRequest, PendingStatusBody, QueueState, RequestErrorCategory,
    UntypedFuture,
};
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, FailureCategory, Result};
use crate::holder::Holder;
use crate::payload::{FromPayload, Payload, RequestType, describe_json, json_instead_of_proto};

/// Bare-400 budget per future (§3.2).
const MAX_BAD_REQUESTS: u32 = 3;
/// Sleep between polls during a billing pause.
const BILLING_SLEEP: Duration = Duration::from_secs(5);
/// Re-polls of a finished future whose result did not decode (corrupt or misshapen),
/// before that becomes the operation's error. The server keeps the result, so a re-poll
/// is safe (the Python SDK fails at once).
pub(crate) const MAX_PAYLOAD_REPOLLS: u32 = 3;
/// Pause before re-poll `k` (×2 per re-poll).
const PAYLOAD_REPOLL_PAUSE: Duration = Duration::from_millis(100);

/// Called with every queue state the server reports while a request waits.
pub type QueueStateObserver = Arc<dyn Fn(&QueueState, Option<&str>) + Send + Sync>;

/// The final error of a result that still did not decode after `repolls` re-polls.
fn undecodable(request_id: &str, repolls: u32, err: Error) -> Error {
    Error::protocol(format!(
        "the result of request {request_id} could not be decoded ({repolls} re-polls gave \
         no valid result): {err}"
    ))
    .with_source(err)
}

/// A payload together with the in-flight byte reservation it holds until decoded.
pub(crate) struct Retrieved {
    pub payload: Payload,
    pub _permit: Option<BytePermit>,
}

/// What to poll.
pub(crate) struct PollTarget {
    pub request_id: String,
    pub request_type: RequestType,
    /// Time between starting the call and receiving its untyped future.
    pub roundtrip: Duration,
    /// Bytes already reserved (e.g. from the session poller); skips the metadata step.
    pub reserved: Option<BytePermit>,
}

/// Polls a future until it finishes and decodes its result as `T`. A result that does not
/// decode (corrupt bytes, a misshapen JSON answer) is fetched again, at most
/// [`MAX_PAYLOAD_REPOLLS`] times in all, before it becomes a [`ErrorKind::Protocol`] error
/// saying what was wrong. A final failure is reported as fatal (a 410 is not).
pub(crate) async fn retrieve_decoded<T: FromPayload>(
    holder: &Holder,
    target: PollTarget,
    observer: Option<&QueueStateObserver>,
) -> Result<T> {
    let result = poll_until_decoded(holder, target, observer).await;
    if let Err(e) = &result
        && e.kind() != ErrorKind::Expired
    {
        crate::telemetry::log_fatal(holder, e).await;
    }
    result
}

/// [`retrieve_decoded`] without reporting its final error as fatal (for operations that
/// report it themselves, e.g. sampling).
pub(crate) async fn poll_until_decoded<T: FromPayload>(
    holder: &Holder,
    mut target: PollTarget,
    observer: Option<&QueueStateObserver>,
) -> Result<T> {
    let clock = holder.transport.runtime().clock.clone();
    let mut repolls = 0;
    loop {
        let request_id = target.request_id.clone();
        let request_type = target.request_type;
        let got = poll_loop(holder, target, observer, &mut repolls).await?;
        let Retrieved { payload, _permit } = got;
        match crate::telemetry::decode_reported(holder, &request_id, request_type, payload) {
            Ok(v) => return Ok(v),
            Err(e) if repolls < MAX_PAYLOAD_REPOLLS => {
                repolls += 1;
                tracing::debug!(request_id, repolls, error = %e, "result did not decode; polling again");
                clock.sleep(PAYLOAD_REPOLL_PAUSE * (1 << repolls)).await;
                // The result's size is known and reserved: fetch it directly.
                target = PollTarget {
                    request_id,
                    request_type,
                    roundtrip: Duration::ZERO,
                    reserved: _permit,
                };
            }
            Err(e) => return Err(undecodable(&request_id, repolls, e)),
        }
    }
}

/// The polling loop; `repolls` counts the re-polls of undecodable answers so far.
async fn poll_loop(
    holder: &Holder,
    target: PollTarget,
    observer: Option<&QueueStateObserver>,
    repolls: &mut u32,
) -> Result<Retrieved> {
    let clock = holder.transport.runtime().clock.clone();
    let trace =
        crate::telemetry::PollTrace::new(holder, &target.request_id, target.request_type.as_str());
    let mut permit = target.reserved;
    let mut allow_metadata_only = permit.is_none();
    let mut iteration: u64 = 0;
    let mut backoff_k: u32 = 0;
    let mut bad_requests: u32 = 0;
    let accept = if target.request_type.expects_proto() {
        APPLICATION_PROTOBUF
    } else {
        APPLICATION_JSON
    };
    loop {
        let body = FutureRetrieveRequest {
            request_id: target.request_id.clone(),
            allow_metadata_only,
        };
        let mut spec = RequestSpec::post("/api/v1/retrieve_future")
            .with_json(&body)?
            .with_accept(accept)
            .with_max_retries(0)
            .with_timeout(Duration::from_secs(45))
            .with_header(
                HeaderName::from_static("x-tinker-request-iteration"),
                HeaderValue::from(iteration),
            )
            .with_header(
                HeaderName::from_static("x-tinker-request-type"),
                HeaderValue::from_static(target.request_type.as_str()),
            );
        if iteration == 0
            && let Ok(v) = HeaderValue::from_str(&format!("{}", target.roundtrip.as_secs_f64()))
        {
            spec = spec.with_header(
                HeaderName::from_static("x-tinker-create-promise-roundtrip-time"),
                v,
            );
        }
        iteration += 1;
        note_poll(&target.request_id, iteration);
        match holder.transport.send(spec).await {
            Ok(resp) => {
                backoff_k = 0;
                if resp.is_protobuf() {
                    return Ok(Retrieved {
                        payload: Payload::Proto(resp.into_body()),
                        _permit: permit,
                    });
                }
                let outcome = serde_json::from_slice::<Value>(resp.body())
                    .map_err(|e| {
                        Error::protocol(format!(
                            "retrieve_future answered invalid JSON ({} bytes): {e}",
                            resp.body().len()
                        ))
                    })
                    .and_then(|value| {
                        let shape = describe_json(&value);
                        FutureOutcome::<Value>::from_value(value).map_err(|e| {
                            Error::protocol(format!(
                                "retrieve_future answered {shape}, not a future outcome: {e}"
                            ))
                        })
                    })
                    .inspect_err(|e| trace.validation_error(holder, e, iteration - 1));
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) if *repolls < MAX_PAYLOAD_REPOLLS => {
                        *repolls += 1;
                        tracing::debug!(request_id = %target.request_id, error = %e, "undecodable answer; polling again");
                        clock.sleep(PAYLOAD_REPOLL_PAUSE * (1 << *repolls)).await;
                        continue;
                    }
                    Err(e) => return Err(undecodable(&target.request_id, *repolls, e)),
                };
                match outcome {
                    FutureOutcome::TryAgain(t) => {
                        if let (Some(obs), Some(state)) = (observer, &t.queue_state) {
                            obs(state, t.queue_state_reason.as_deref());
                        }
                    }
                    FutureOutcome::CompleteMetadata(m) => {
                        if !allow_metadata_only {
                            return Err(Error::protocol(
                                "server sent a metadata-only answer to a request that refused it",
                            ));
                        }
                        permit = Some(
                            holder
                                .inflight_budget
                                .acquire(m.response_payload_size)
                                .await,
                        );
                        allow_metadata_only = false;
                    }
                    FutureOutcome::Failed(f) => {
                        let category = match f.category {
                            RequestErrorCategory::User => FailureCategory::User,
                            RequestErrorCategory::Server => FailureCategory::Server,
                            _ => FailureCategory::Unknown,
                        };
                        trace.application_error(holder, &f.error, category, iteration - 1);
                        return Err(Error::request_failed(
                            format!("request {} failed: {}", target.request_id, f.error),
                            category,
                        ));
                    }
                    FutureOutcome::Complete(v) => {
                        if target.request_type.expects_proto() {
                            // No decode event here, as in the SDK (nothing was decoded).
                            let e = json_instead_of_proto(target.request_type.proto_name(), &v);
                            if *repolls < MAX_PAYLOAD_REPOLLS {
                                *repolls += 1;
                                clock.sleep(PAYLOAD_REPOLL_PAUSE * (1 << *repolls)).await;
                                continue;
                            }
                            return Err(undecodable(&target.request_id, *repolls, e));
                        }
                        return Ok(Retrieved {
                            payload: Payload::Json(v),
                            _permit: permit,
                        });
                    }
                    _ => return Err(Error::protocol("unknown retrieve_future outcome")),
                }
            }
            Err(e) => {
                // 402s are reported only once the billing pause is over (below).
                if e.status().map(|s| s.as_u16()) != Some(402) {
                    trace.transport_error(holder, &e, iteration - 1, bad_requests, backoff_k);
                }
                let Some(status) = e.status().map(|s| s.as_u16()) else {
                    // A reply over the size limit would be just as large on every poll.
                    if e.kind() == tinker_transport::ErrorKind::ResponseTooLarge {
                        return Err(Error::from(e));
                    }
                    // Connection failure or timeout: exponential backoff.
                    clock.sleep(exponential_backoff(backoff_k)).await;
                    backoff_k += 1;
                    continue;
                };
                backoff_k = if status == 429 { backoff_k } else { 0 };
                match status {
                    408 => {
                        bad_requests = 0;
                        if let (Some(obs), Some(body)) = (observer, e.body())
                            && let Ok(p) = serde_json::from_slice::<PendingStatusBody>(body)
                            && let Some(state) = &p.queue_state
                        {
                            obs(state, p.queue_state_reason.as_deref());
                        }
                    }
                    s if s >= 500 => {}
                    429 => {
                        clock.sleep(exponential_backoff(backoff_k)).await;
                        backoff_k += 1;
                    }
                    400 => {
                        bad_requests += 1;
                        if bad_requests > MAX_BAD_REQUESTS {
                            return Err(Error::from(e));
                        }
                    }
                    402 if holder
                        .transport
                        .billing_pause()
                        .should_pause(clock.now(), &e.to_string()) =>
                    {
                        clock.sleep(BILLING_SLEEP).await;
                    }
                    _ => {
                        if status == 402 {
                            trace.transport_error(
                                holder,
                                &e,
                                iteration - 1,
                                bad_requests,
                                backoff_k,
                            );
                        }
                        return Err(Error::from(e));
                    }
                }
            }
        }
    }
}

tokio::task_local! {
    /// The progress of the operation behind the [`ApiFuture`] running this task.
    static PROGRESS: Arc<FutureProgress>;
}

/// How far an operation got, for the `APIFuture.result_async.timeout` event: the future
/// being polled and how many polls it took so far.
#[derive(Default)]
struct FutureProgress {
    state: std::sync::Mutex<(Option<String>, u64)>,
}

impl FutureProgress {
    fn snapshot(&self) -> (Option<String>, u64) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Records that `request_id` was polled `iteration` times so far (outside an
/// [`ApiFuture`] task: nothing to record).
fn note_poll(request_id: &str, iteration: u64) {
    let _ = PROGRESS.try_with(|p| {
        let mut state = p
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0.as_deref() != Some(request_id) {
            state.0 = Some(request_id.to_owned());
        }
        state.1 = iteration;
    });
}

/// Records the future an operation now waits for (e.g. a new sampling attempt's).
pub(crate) fn note_request(request_id: &str) {
    note_poll(request_id, 0);
}

/// Submits a future-returning request: POSTs `make()` (through the holder retry loop) and
/// returns the untyped future with the time it took.
pub(crate) async fn submit(
    holder: &Holder,
    name: &str,
    make: impl Fn() -> Result<RequestSpec>,
) -> Result<(UntypedFuture, Duration)> {
    let clock = holder.transport.runtime().clock.clone();
    let started = clock.now();
    let resp = holder.send_retrying(name, make).await?;
    let fut: UntypedFuture = crate::holder::parse_json(&resp)?;
    Ok((fut, clock.now() - started))
}

/// The handle returned by every asynchronous operation. The request is already in flight
/// (its order was fixed when the method was called); awaiting yields the result.
/// Dropping it lets training work finish in the background, but abandons a sample (see
/// [`SamplingClient::sample_with`](crate::SamplingClient::sample_with)).
/// [`ApiFuture::result_timeout`] bounds the wait.
#[must_use = "an ApiFuture does nothing useful unless awaited (the request is sent anyway)"]
pub struct ApiFuture<T> {
    inner: Inner<T>,
    /// Dropping the handle stops the work (sampling: the request is then cancelled, §3.2).
    abort_on_drop: bool,
    /// What a timed-out wait reports (absent for handles that sent nothing).
    trace: Option<ResultTrace>,
}

/// The operation behind an [`ApiFuture`], for `APIFuture.result_async.timeout`.
struct ResultTrace {
    holder: Arc<Holder>,
    request_type: RequestType,
    progress: Arc<FutureProgress>,
    started: tokio::time::Instant,
}

enum Inner<T> {
    Ready(Option<Result<T>>),
    Task(JoinHandle<Result<T>>),
}

impl<T> fmt::Debug for ApiFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Ready(_) => "ready",
            Inner::Task(t) if t.is_finished() => "finished",
            Inner::Task(_) => "in flight",
        };
        f.debug_struct("ApiFuture").field("state", &state).finish()
    }
}

impl<T: Send + 'static> ApiFuture<T> {
    /// Runs `fut` on the tokio runtime; the handle yields its result.
    pub(crate) fn spawn(fut: impl Future<Output = Result<T>> + Send + 'static) -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => Self {
                inner: Inner::Task(rt.spawn(fut)),
                abort_on_drop: false,
                trace: None,
            },
            Err(_) => Self::failed(Error::new(
                ErrorKind::Config,
                "tinker clients must be used inside a tokio runtime",
            )),
        }
    }

    /// Like [`ApiFuture::spawn`], for an operation of `holder` waiting for futures of
    /// `request_type`: a timed-out [`ApiFuture::result_timeout`] reports which future it
    /// was waiting for.
    pub(crate) fn spawn_traced(
        holder: &Arc<Holder>,
        request_type: RequestType,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Self {
        let progress = Arc::new(FutureProgress::default());
        let mut handle = Self::spawn(PROGRESS.scope(progress.clone(), fut));
        if matches!(handle.inner, Inner::Task(_)) {
            handle.trace = Some(ResultTrace {
                holder: holder.clone(),
                request_type,
                progress,
                started: holder.transport.runtime().clock.now(),
            });
        }
        handle
    }

    /// Like [`ApiFuture::spawn_traced`], but dropping the handle before it completes
    /// aborts the task (used by sampling, whose abandoned requests are cancelled
    /// server-side).
    pub(crate) fn spawn_abortable(
        holder: &Arc<Holder>,
        request_type: RequestType,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Self {
        let mut handle = Self::spawn_traced(holder, request_type, fut);
        handle.abort_on_drop = true;
        handle
    }

    /// A handle that yields `err` (nothing was sent).
    pub(crate) fn failed(err: Error) -> Self {
        Self {
            inner: Inner::Ready(Some(Err(err))),
            abort_on_drop: false,
            trace: None,
        }
    }

    /// Whether the result is available without waiting.
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::Ready(_) => true,
            Inner::Task(t) => t.is_finished(),
        }
    }

    /// Waits at most `timeout` for the result (the SDK's `result(timeout)`).
    ///
    /// When the time passes, the wait is given up and `APIFuture.result_async.timeout` is
    /// reported to telemetry. A sample is then abandoned: its polling stops and, when the
    /// server enables `sample_cancel_enabled`, it is cancelled with `cancel_future`
    /// (§3.2). Any other operation keeps running (its place in the model's request order
    /// is kept) but its result is no longer available.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`] when `timeout` passed first; else the operation's error.
    pub async fn result_timeout(mut self, timeout: Duration) -> Result<T> {
        let Ok(result) = tokio::time::timeout(timeout, &mut self).await else {
            let (request_id, iteration) = self
                .trace
                .as_ref()
                .map(|t| t.progress.snapshot())
                .unwrap_or_default();
            if let Some(trace) = &self.trace {
                let elapsed = trace.holder.transport.runtime().clock.now() - trace.started;
                crate::telemetry::result_timeout(
                    &trace.holder,
                    request_id.as_deref(),
                    trace.request_type,
                    timeout,
                    iteration,
                    elapsed,
                );
            }
            let what =
                request_id.map_or_else(|| "the operation".to_owned(), |id| format!("request {id}"));
            // Dropping `self` aborts an abortable task (a sample: cancelled, §3.2).
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "Timeout of {}s reached while waiting for the result of {what}",
                    timeout.as_secs_f64()
                ),
            ));
        };
        result
    }
}

impl<T> Unpin for ApiFuture<T> {}

impl<T> Drop for ApiFuture<T> {
    fn drop(&mut self) {
        if self.abort_on_drop
            && let Inner::Task(t) = &self.inner
        {
            t.abort();
        }
    }
}

impl<T> Future for ApiFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Ready(r) => Poll::Ready(r.take().unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Cancelled,
                    "ApiFuture polled after completion",
                ))
            })),
            Inner::Task(t) => Pin::new(t).poll(cx).map(|r| match r {
                Ok(r) => r,
                Err(e) => Err(Error::new(
                    ErrorKind::Cancelled,
                    format!("the operation's task ended: {e}"),
                )),
            }),
        }
    }
}
