//! The session-wide `retrieve_futures` poller (protocol §3.3, flag
//! `sample_use_retrieve_futures`): one background task per (sampling session, clone id)
//! long-polls for completions and wakes the sample waiting for each; the sample then
//! fetches its payload with `retrieve_future`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tinker_transport::RequestSpec;
use tinker_transport::retry::{RetryClass, Retryable};
use tinker_types::{
    FutureCompletion, FuturesRetrieveRequest, FuturesRetrieveResponse, SamplingSessionFuturesTarget,
};
use tokio::sync::{Notify, oneshot, watch};

use crate::error::{Error, ErrorKind, Result};
use crate::session::{Session, parse_json};

/// HTTP timeout of a long poll (the server holds it for about 30 s).
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// HTTP timeout of an ack-only poll (`timeout: 0.0`: the server answers at once).
const ACK_POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bare-400 retries before the poller gives up (a proxy may inject spurious ones).
const MAX_BAD_REQUESTS: u32 = 3;
/// Sleep after a retryable failure.
const RETRY_SLEEP: Duration = Duration::from_secs(1);
/// Sleep while the billing pause lasts.
const BILLING_SLEEP: Duration = Duration::from_secs(5);

/// Handle of one poller. Dropping it (the last clone of the sampling client went away)
/// stops the task after a final ack-only poll for anything not yet acknowledged.
pub(crate) struct SessionPoller {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes an idle poll loop: a waiter registered or a retrieved id is to be reported.
    work: Notify,
    /// `true` once the handle is dropped.
    close: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Cursor of the last successful answer.
    cursor: u64,
    /// Highest cursor sent back as `prev_cursor` by a successful poll.
    acked_cursor: u64,
    /// Samples waiting for their completion.
    waiters: HashMap<String, oneshot::Sender<()>>,
    /// Completions not yet taken by their waiter (they may arrive before it registers).
    completions: HashMap<String, FutureCompletion>,
    /// Waiters that gave up before their completion arrived; it is discarded.
    abandoned: HashSet<String>,
    /// Ids whose results were fully fetched, reported (sorted) on the next poll.
    retrieved: BTreeSet<String>,
    /// Set when polling failed for good: every waiter fails with it.
    failure: Option<Failure>,
    /// Set when the loop has ended.
    stopped: bool,
    /// What the loop did so far.
    stats: FuturesPollerStats,
}

/// What a sampling client's session futures poller (§3.3) did so far, for diagnostics
/// ([`SamplingClient::futures_poller_stats`](super::SamplingClient::futures_poller_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FuturesPollerStats {
    /// Long polls sent: the server holds them (HTTP timeout 45 s).
    pub long_polls: u64,
    /// Ack-only polls sent (`"timeout": 0.0`, HTTP timeout 5 s): nobody waits, or the
    /// poller is closing, but a cursor or retrieved ids remain to acknowledge.
    pub ack_polls: u64,
    /// Polls that got no answer within their HTTP timeout.
    pub timed_out_polls: u64,
    /// Polls that failed otherwise (connection failures, error statuses).
    pub failed_polls: u64,
    /// Results fetched right after a `finished` completion that carried their size: that
    /// many bytes were reserved from the in-flight response budget first, and the
    /// result was asked for with `allow_metadata_only: false` (one round trip).
    pub reserved_fetches: u64,
    /// The bytes those fetches reserved, in total.
    pub reserved_bytes: u64,
}

impl State {
    fn has_unreported(&self) -> bool {
        !self.retrieved.is_empty() || self.cursor > self.acked_cursor
    }
}

/// Why the poller stopped for good, kept to build one error per waiter.
#[derive(Clone)]
struct Failure {
    kind: ErrorKind,
    status: Option<u16>,
    message: String,
}

impl Failure {
    fn error(&self) -> Error {
        match self.status {
            Some(status) => Error::api(status, &self.message),
            None => Error::new(self.kind, self.message.clone()),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionPoller {
    /// Starts the poll task; it idles until the first waiter registers.
    pub(crate) fn start(holder: Arc<Session>, sampling_session_id: String, clone_id: u64) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Notify::new(),
            close: watch::Sender::new(false),
        });
        let target = SamplingSessionFuturesTarget {
            sampling_session_id,
            cloned_sampler_id: clone_id,
        };
        tokio::spawn(poll_loop(holder, Arc::clone(&shared), target));
        Self { shared }
    }

    /// Waits until `request_id` is reported complete and returns its completion.
    ///
    /// # Errors
    /// The poller's permanent failure, or [`ErrorKind::Cancelled`] if it stopped.
    pub(crate) async fn wait_for(&self, request_id: &str) -> Result<FutureCompletion> {
        let rx = {
            let mut st = self.shared.lock();
            // A completion already recorded wins over a failure.
            if let Some(c) = st.completions.remove(request_id) {
                return Ok(c);
            }
            check_alive(&st)?;
            let (tx, rx) = oneshot::channel();
            st.waiters.insert(request_id.to_owned(), tx);
            rx
        };
        self.shared.work.notify_one();
        let mut guard = WaiterGuard {
            shared: &self.shared,
            request_id,
            armed: true,
        };
        // An error only means the sender was dropped: the state says why below.
        let _ = rx.await;
        guard.armed = false;
        let mut st = self.shared.lock();
        st.waiters.remove(request_id);
        if let Some(c) = st.completions.remove(request_id) {
            return Ok(c);
        }
        check_alive(&st)?;
        Err(Error::new(
            ErrorKind::Cancelled,
            "the retrieve_futures poller stopped",
        ))
    }

    /// What the poller did so far.
    pub(crate) fn stats(&self) -> FuturesPollerStats {
        self.shared.lock().stats
    }

    /// Records a result fetch that reserved `bytes` of the in-flight budget up front.
    pub(crate) fn note_reserved_fetch(&self, bytes: u64) {
        let mut st = self.shared.lock();
        st.stats.reserved_fetches += 1;
        st.stats.reserved_bytes = st.stats.reserved_bytes.saturating_add(bytes);
    }

    /// Reports `request_id`'s result as fully fetched on the next poll.
    pub(crate) fn mark_retrieved(&self, request_id: &str) {
        self.shared.lock().retrieved.insert(request_id.to_owned());
        self.shared.work.notify_one();
    }
}

impl Drop for SessionPoller {
    fn drop(&mut self) {
        self.shared.close.send_replace(true);
    }
}

fn check_alive(st: &State) -> Result<()> {
    if let Some(f) = &st.failure {
        return Err(f.error());
    }
    if st.stopped {
        return Err(Error::new(ErrorKind::Cancelled, "the client was closed"));
    }
    Ok(())
}

/// Unregisters a waiter whose sample was abandoned (its task was dropped mid-wait).
struct WaiterGuard<'a> {
    shared: &'a Shared,
    request_id: &'a str,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = self.shared.lock();
        st.waiters.remove(self.request_id);
        if st.completions.remove(self.request_id).is_none() {
            st.abandoned.insert(self.request_id.to_owned());
        }
    }
}

async fn poll_loop(
    holder: Arc<Session>,
    shared: Arc<Shared>,
    target: SamplingSessionFuturesTarget,
) {
    let clock = holder.transport.runtime().clock.clone();
    let mut close_rx = shared.close.subscribe();
    let mut holder_closed = holder.closed_signal();
    let mut bad_requests: u32 = 0;
    let mut closing = false;
    loop {
        closing = closing || *close_rx.borrow() || *holder_closed.borrow();
        let next = {
            let st = shared.lock();
            if closing && !st.has_unreported() {
                break;
            }
            if !closing && st.waiters.is_empty() && !st.has_unreported() {
                // Idle: nothing can complete for us and nothing is left to acknowledge.
                None
            } else {
                let ack_only = closing || st.waiters.is_empty();
                let request = FuturesRetrieveRequest {
                    target: target.clone(),
                    prev_cursor: st.cursor,
                    timeout: ack_only.then_some(0.0),
                    retrieved_request_ids: st.retrieved.iter().cloned().collect(),
                };
                Some((request, ack_only))
            }
        };
        let Some((request, ack_only)) = next else {
            tokio::select! {
                () = shared.work.notified() => {}
                _ = close_rx.changed() => {}
                _ = holder_closed.changed() => {}
            }
            continue;
        };
        let result = if closing {
            // The final ack is one best-effort shot.
            send_poll(&holder, &shared, &request, ack_only).await
        } else {
            tokio::select! {
                r = send_poll(&holder, &shared, &request, ack_only) => r,
                _ = close_rx.changed() => continue,
                _ = holder_closed.changed() => continue,
            }
        };
        match result {
            Ok(resp) => {
                bad_requests = 0;
                record_answer(&shared, &request, resp);
                if closing {
                    break;
                }
            }
            Err(_) if closing => break,
            Err(e) => {
                let status = e.status();
                let sleep = if status == Some(402)
                    && holder
                        .transport
                        .billing_pause()
                        .should_pause(clock.now(), &e.to_string())
                {
                    BILLING_SLEEP
                } else if matches!(e.retry_class(), RetryClass::Retry) {
                    RETRY_SLEEP
                } else if status == Some(400) && bad_requests < MAX_BAD_REQUESTS {
                    bad_requests += 1;
                    RETRY_SLEEP
                } else {
                    let message = format!(
                        "retrieve_futures polling failed for sampling session {} (clone {}): {e}",
                        target.sampling_session_id, target.cloned_sampler_id
                    );
                    tracing::error!(error = %message, "session futures poller failed");
                    fail(
                        &shared,
                        Failure {
                            kind: e.kind(),
                            status,
                            message,
                        },
                    );
                    return;
                };
                tracing::debug!(error = %e, ?sleep, "retrieve_futures poll failed; retrying");
                tokio::select! {
                    () = clock.sleep(sleep) => {}
                    _ = close_rx.changed() => {}
                    _ = holder_closed.changed() => {}
                }
            }
        }
    }
    let mut st = shared.lock();
    st.stopped = true;
    // Wake anyone still waiting (only possible when the service was closed).
    st.waiters.clear();
}

/// Applies a successful answer: acknowledged ids and cursor, new completions.
fn record_answer(shared: &Shared, request: &FuturesRetrieveRequest, resp: FuturesRetrieveResponse) {
    let mut st = shared.lock();
    for id in &request.retrieved_request_ids {
        st.retrieved.remove(id);
    }
    st.acked_cursor = st.acked_cursor.max(request.prev_cursor);
    st.cursor = resp.cursor;
    for completion in resp.completions {
        let id = completion.request_id.clone();
        if st.abandoned.remove(&id) {
            continue;
        }
        st.completions.insert(id.clone(), completion);
        if let Some(tx) = st.waiters.remove(&id) {
            let _ = tx.send(());
        }
    }
}

fn fail(shared: &Shared, failure: Failure) {
    let mut st = shared.lock();
    st.failure = Some(failure);
    st.stopped = true;
    // Dropping the senders wakes every waiter; each then reads the failure.
    st.waiters.clear();
}

async fn send_poll(
    holder: &Session,
    shared: &Shared,
    request: &FuturesRetrieveRequest,
    ack_only: bool,
) -> Result<FuturesRetrieveResponse> {
    let spec = RequestSpec::post("/api/v1/retrieve_futures")
        .with_json(request)?
        .with_max_retries(0)
        .with_timeout(if ack_only {
            ACK_POLL_TIMEOUT
        } else {
            LONG_POLL_TIMEOUT
        });
    {
        let stats = &mut shared.lock().stats;
        if ack_only {
            stats.ack_polls += 1;
        } else {
            stats.long_polls += 1;
        }
    }
    let sent = holder.transport.send(spec).await;
    if let Err(e) = &sent {
        let stats = &mut shared.lock().stats;
        if e.kind() == tinker_transport::ErrorKind::Timeout {
            stats.timed_out_polls += 1;
        } else {
            stats.failed_polls += 1;
        }
    }
    parse_json(&sent?)
}
