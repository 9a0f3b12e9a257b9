//! [`ApiFuture`], the handle every asynchronous operation returns, and the progress record
//! that lets a timed-out wait say which future it was waiting for.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};
use crate::payload::RequestType;
use crate::session::Session;

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
pub(super) fn note_poll(request_id: &str, iteration: u64) {
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
    holder: Arc<Session>,
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
        holder: &Arc<Session>,
        request_type: RequestType,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Self {
        let progress = Arc::new(FutureProgress::default());
        let fut = holder.metrics.instrument(
            crate::observe::Operation::of_request(request_type),
            holder.session_id.as_deref(),
            fut,
        );
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
        holder: &Arc<Session>,
        request_type: RequestType,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Self {
        let mut handle = Self::spawn_traced(holder, request_type, fut);
        handle.abort_on_drop = true;
        handle
    }

    /// A handle that yields `value` (nothing was sent).
    pub(crate) fn ready(value: T) -> Self {
        Self {
            inner: Inner::Ready(Some(Ok(value))),
            abort_on_drop: false,
            trace: None,
        }
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
                    &*trace.holder,
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
