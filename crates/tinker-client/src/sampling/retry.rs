//! The outer retry handler of sampling (§6.5, the SDK's `RetryHandler`): a concurrency
//! limit, unlimited retries of transient failures with jittered backoff, and stuck
//! detection. One handler per (holder, sampling session id), shared by every client of
//! that session built on the holder, as the SDK shares one per session name in a process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tinker_transport::retry::RetryConfig;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::session::Session;

/// A handler and the configuration it was made for.
type ConfiguredHandler = (RetryConfig, Weak<RetryHandler>);

/// The handlers of one session, by sampling session id and retry configuration (the SDK
/// keys its handlers by both). Entries live as long as a client uses them.
#[derive(Default)]
pub(crate) struct RetryHandlers {
    by_session: Mutex<HashMap<String, Vec<ConfiguredHandler>>>,
}

impl RetryHandlers {
    /// The live handler of (`sampling_session_id`, `config`) on `holder`, or a new one.
    pub(crate) fn get(
        &self,
        holder: &Session,
        sampling_session_id: &str,
        config: RetryConfig,
    ) -> Arc<RetryHandler> {
        let mut all = self
            .by_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, handlers| {
            handlers.retain(|(_, h)| h.strong_count() > 0);
            !handlers.is_empty()
        });
        let handlers = all.entry(sampling_session_id.to_owned()).or_default();
        if let Some(handler) = handlers
            .iter()
            .find(|(c, _)| *c == config)
            .and_then(|(_, h)| h.upgrade())
        {
            return handler;
        }
        let handler = Arc::new(RetryHandler::new(holder, config));
        handlers.push((config, Arc::downgrade(&handler)));
        handler
    }
}

/// One sampling session's outer retry handler.
pub(crate) struct RetryHandler {
    config: RetryConfig,
    /// `sample_max_concurrent_requests` slots; absent with the session poller, where a
    /// waiting sample holds no connection.
    concurrency: Option<Semaphore>,
    progress: Mutex<Progress>,
}

/// What the stuck detector watches.
struct Progress {
    /// When a call of this handler last completed (or the first one of a busy period
    /// started).
    last: Instant,
    /// Calls inside the retry loop.
    active: usize,
}

impl RetryHandler {
    fn new(holder: &Session, config: RetryConfig) -> Self {
        let concurrency = (!holder.config.sample_use_retrieve_futures).then(|| {
            Semaphore::new(
                usize::try_from(holder.config.sample_max_concurrent_requests)
                    .unwrap_or(Semaphore::MAX_PERMITS)
                    .clamp(1, Semaphore::MAX_PERMITS),
            )
        });
        Self {
            config,
            concurrency,
            progress: Mutex::new(Progress {
                last: holder.transport.runtime().clock.now(),
                active: 0,
            }),
        }
    }

    /// The configuration this handler retries with.
    pub(crate) fn config(&self) -> RetryConfig {
        self.config
    }

    /// Free slots of the concurrency limit (`None` without a limit).
    #[cfg(test)]
    pub(crate) fn available_slots(&self) -> Option<usize> {
        self.concurrency.as_ref().map(Semaphore::available_permits)
    }

    /// Runs `attempt` until it succeeds or fails for good: timeouts, connection errors,
    /// 410 and 408/409/429/5xx are retried without limit, each failure reported as
    /// `RetryHandler.execute.exception` with `func` as its function name. Fails as
    /// [`ErrorKind::Stuck`] when no call of this handler completes for the configured
    /// progress timeout (unless the configuration or the server disabled stuck
    /// detection). Without `enable_retry_logic`, one attempt.
    pub(crate) async fn execute<T, F, Fut>(
        &self,
        holder: &Session,
        sampling_session_id: &str,
        func: &'static str,
        attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let _slot =
            match &self.concurrency {
                Some(limit) => Some(limit.acquire().await.map_err(|_| {
                    Error::new(ErrorKind::Cancelled, "the sampling client was closed")
                })?),
                None => None,
            };
        let _active = self.enter(holder);
        let retries = retry_loop(holder, self.config, func, attempt);
        let result = if holder.config.sample_enable_stuck_detection
            && self.config.enable_stuck_detection
        {
            tokio::select! {
                r = retries => r,
                () = self.wait_stuck(holder) => Err(Error::new(
                    ErrorKind::Stuck,
                    format!(
                        "No progress made in {}s on sampling session {sampling_session_id}. Requests appear to be stuck.",
                        self.config.progress_timeout.as_secs()
                    ),
                )),
            }
        } else {
            retries.await
        };
        if result.is_ok() {
            self.lock().last = holder.transport.runtime().clock.now();
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a call in; the first of a busy period restarts the no-progress window, so
    /// an idle handler is never stuck on its next call.
    fn enter(&self, holder: &Session) -> ActiveCall<'_> {
        let mut p = self.lock();
        if p.active == 0 {
            p.last = holder.transport.runtime().clock.now();
        }
        p.active += 1;
        ActiveCall { handler: self }
    }

    /// Returns once nothing of this handler completed for its progress timeout.
    async fn wait_stuck(&self, holder: &Session) {
        let clock = holder.transport.runtime().clock.clone();
        loop {
            let deadline = self.lock().last + self.config.progress_timeout;
            let now = clock.now();
            if now >= deadline {
                return;
            }
            clock.sleep(deadline - now).await;
        }
    }
}

/// A call inside the retry loop; counted out on drop (also when abandoned).
struct ActiveCall<'a> {
    handler: &'a RetryHandler,
}

impl Drop for ActiveCall<'_> {
    fn drop(&mut self) {
        let mut p = self.handler.lock();
        p.active = p.active.saturating_sub(1);
    }
}

async fn retry_loop<T, F, Fut>(
    holder: &Session,
    config: RetryConfig,
    func: &'static str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    if !config.enable_retry_logic {
        return attempt().await;
    }
    let runtime = holder.transport.runtime();
    let started = runtime.clock.now();
    let started_unix = runtime.clock.unix_now();
    let mut attempt_count: u32 = 0;
    loop {
        attempt_count += 1;
        let err = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let should_retry = err.is_retryable();
        crate::telemetry::retry_handler_exception(
            holder,
            &crate::telemetry::HandlerAttempt {
                func,
                should_retry,
                attempt_count,
                started,
                started_unix,
            },
            &err,
        );
        if !should_retry {
            return Err(err);
        }
        let delay = config.backoff(attempt_count, runtime.jitter.unit());
        tracing::debug!(attempt_count, error = %err, ?delay, "retrying sample");
        runtime.clock.sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {

    use std::time::Duration;

    use tinker_transport::{SecretString, Transport};

    use super::*;

    /// A session-less holder (no background loops) on a tinker-local server.
    async fn holder(server: &tinker_local::LocalServerHandle) -> Arc<Session> {
        let transport = Transport::builder()
            .base_url(server.url())
            .api_key(SecretString::from("tml-test-key".to_owned()))
            .build()
            .unwrap();
        Session::start_with_telemetry(transport, None, false)
            .await
            .unwrap()
    }

    /// The stuck-detection clock belongs to the shared handler: a call of one client
    /// completing keeps another client's call of the same session alive; an idle handler
    /// restarts its window on the next call; another session's handler is separate.
    #[tokio::test]
    async fn stuck_detection_is_shared_by_the_clients_of_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let config = tinker_local::LocalServerConfig::new(dir.path());
        let server = tinker_local::LocalServer::start(config).await.unwrap();
        let holder = holder(&server).await;
        assert!(holder.config.sample_enable_stuck_detection);
        tokio::time::pause();
        let start = tokio::time::Instant::now();
        let handlers = holder.extensions.get_or_default::<RetryHandlers>();
        let first = handlers.get(&holder, "s:sample:0", RetryConfig::default());
        let second = handlers.get(&holder, "s:sample:0", RetryConfig::default());
        let other = handlers.get(&holder, "s:sample:1", RetryConfig::default());
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!Arc::ptr_eq(&first, &other));

        let never = || std::future::pending::<Result<()>>();
        let stuck = first.execute(&holder, "s:sample:0", "f", never);
        let progress = async {
            tokio::time::sleep(Duration::from_secs(5000)).await;
            second
                .execute(&holder, "s:sample:0", "f", || async { Ok(()) })
                .await
                .unwrap();
        };
        let (err, ()) = tokio::join!(stuck, progress);
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Stuck, "{err:?}");
        // 7200 s after the other client's completion at 5000 s, not after its own start.
        assert_eq!(
            start.elapsed().as_secs(),
            5000 + RetryConfig::default().progress_timeout.as_secs()
        );

        // Idle for longer than the window: the next call starts a fresh one.
        tokio::time::sleep(Duration::from_secs(10_000)).await;
        let again = tokio::time::Instant::now();
        let err = first
            .execute(&holder, "s:sample:0", "f", never)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Stuck);
        assert_eq!(
            again.elapsed().as_secs(),
            RetryConfig::default().progress_timeout.as_secs()
        );
        drop(server);
    }
}
