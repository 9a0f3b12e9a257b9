//! The `retrieve_future` polling engine (protocol §3.2): one implementation used by every
//! future-returning call, from submitting the request to the decoded result.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::Value;
use tinker_transport::retry::backoff::exponential_backoff;
use tinker_transport::{APPLICATION_JSON, APPLICATION_PROTOBUF, BytePermit, RequestSpec};
use tinker_types::{
    FutureOutcome, PendingStatusBody, QueueState, RequestErrorCategory, UntypedFuture,
};

use super::api_future::note_poll;
use crate::error::{Error, ErrorKind, FailureCategory, Result};
use crate::payload::{FromPayload, Payload, RequestType, describe_json, json_instead_of_proto};
use crate::session::Session;

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

/// The body of `retrieve_future`: [`tinker_types::FutureRetrieveRequest`] borrowing the request id (the
/// same JSON, without a copy of the id per poll).
#[derive(serde::Serialize)]
struct RetrieveBody<'a> {
    request_id: &'a str,
    allow_metadata_only: bool,
}

/// `x-tinker-request-iteration`: static values for the first polls (no allocation).
fn iteration_value(iteration: u64) -> HeaderValue {
    const FIRST: [&str; 4] = ["0", "1", "2", "3"];
    match usize::try_from(iteration).ok().and_then(|i| FIRST.get(i)) {
        Some(v) => HeaderValue::from_static(v),
        None => HeaderValue::from(iteration),
    }
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
    /// The public method that started the request: its polls carry it in `x-sdk-method`,
    /// as the SDK's do.
    pub sdk_method: &'static str,
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
    holder: &Session,
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
    holder: &Session,
    mut target: PollTarget,
    observer: Option<&QueueStateObserver>,
) -> Result<T> {
    let clock = holder.transport.runtime().clock.clone();
    let mut repolls = 0;
    loop {
        let request_id = target.request_id.clone();
        let request_type = target.request_type;
        let sdk_method = target.sdk_method;
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
                    sdk_method,
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
    holder: &Session,
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
    let mut changes = crate::observe::ChangeTracker::new(holder);
    let accept = if target.request_type.expects_proto() {
        APPLICATION_PROTOBUF
    } else {
        APPLICATION_JSON
    };
    loop {
        let body = RetrieveBody {
            request_id: &target.request_id,
            allow_metadata_only,
        };
        let mut spec = RequestSpec::post("/api/v1/retrieve_future")
            .with_json(&body)?
            .with_accept(accept)
            .with_max_retries(0)
            .with_timeout(Duration::from_secs(45))
            .with_static_sdk_method(target.sdk_method)
            // The SDK reads the raw response (for its content type) and says so.
            .with_header(
                HeaderName::from_static("x-stainless-raw-response"),
                HeaderValue::from_static("raw"),
            )
            .with_header(
                HeaderName::from_static("x-tinker-request-iteration"),
                iteration_value(iteration),
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
                        if let Some(state) = &t.queue_state {
                            let reason = t.queue_state_reason.as_deref();
                            holder.metrics.queue_state(state, reason);
                            changes.report(&target.request_id, state, reason);
                            if let Some(obs) = observer {
                                obs(state, reason);
                            }
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
                        if let Some(p) = e
                            .body()
                            .and_then(|b| serde_json::from_slice::<PendingStatusBody>(b).ok())
                            && let Some(state) = &p.queue_state
                        {
                            let reason = p.queue_state_reason.as_deref();
                            holder.metrics.queue_state(state, reason);
                            changes.report(&target.request_id, state, reason);
                            if let Some(obs) = observer {
                                obs(state, reason);
                            }
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

/// Submits a future-returning request: POSTs `make()` (through the holder retry loop) and
/// returns the untyped future with the time it took.
pub(crate) async fn submit(
    holder: &Session,
    name: &str,
    make: impl Fn() -> Result<RequestSpec>,
) -> Result<(UntypedFuture, Duration)> {
    let clock = holder.transport.runtime().clock.clone();
    let started = clock.now();
    let resp = holder.send_retrying(name, make).await?;
    let fut: UntypedFuture = crate::session::parse_json(&resp)?;
    crate::observe::spans::record_request_id(&fut.request_id);
    Ok((fut, clock.now() - started))
}
