//! The background loops of a session with a session id: heartbeat (§2.1), dynamic config
//! refresh (§6.7) and the drain of abandoned sampling requests to `cancel_future` (§3.2).
//! Each holds only a weak reference and ends when the session is gone or closed.

use std::sync::{PoisonError, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use tinker_transport::RequestSpec;
use tinker_types::{CancelFutureRequest, SessionHeartbeatRequest};
use tokio::sync::mpsc;

use super::Session;
use super::server_config::fetch_dynamic_config;
use crate::error::Result;

/// Heartbeat period (§2.1).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Warn about failing heartbeats after this long without a success.
const HEARTBEAT_WARN_AFTER: Duration = Duration::from_secs(120);

/// HTTP timeout of one `cancel_future` call.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(30);

/// Drains the session's cancel queue: waits for one id, takes up to
/// `sample_cancel_max_batch_size` more that are already queued, sends the batch
/// concurrently. Ends when the session is gone.
pub(super) async fn cancel_drain_loop(
    session: Weak<Session>,
    mut queue: mpsc::UnboundedReceiver<String>,
) {
    while let Some(first) = queue.recv().await {
        let Some(h) = session.upgrade() else { return };
        let max = usize::try_from(h.dynamic_config().sample_cancel_max_batch_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut batch = vec![first];
        while batch.len() < max {
            match queue.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        join_all(batch.into_iter().map(|id| cancel_one(&h, id))).await;
    }
}

async fn cancel_one(session: &Session, request_id: String) {
    if let Err(e) = send_cancel(session, &request_id).await {
        // The server also stops orphaned work when heartbeats lapse; never re-queue.
        tracing::error!(request_id = %request_id, error = %e, "failed to cancel sampling request");
    }
}

async fn send_cancel(session: &Session, request_id: &str) -> Result<()> {
    let body = CancelFutureRequest {
        request_id: request_id.to_owned(),
    };
    let bytes = tinker_types::json::to_vec(&body)?;
    session
        .send_retrying_quiet("cancel_future", || {
            Ok(RequestSpec::post("/api/v1/cancel_future")
                .with_body(bytes.clone(), tinker_transport::APPLICATION_JSON)
                .with_max_retries(0)
                .with_timeout(CANCEL_TIMEOUT))
        })
        .await?;
    Ok(())
}

pub(super) async fn heartbeat_loop(session: Weak<Session>) {
    let Some(h) = session.upgrade() else { return };
    let clock = h.transport.runtime().clock.clone();
    let Some(session_id) = h.session_id.clone() else {
        return;
    };
    drop(h);
    let mut last_ok = clock.now();
    loop {
        clock.sleep(HEARTBEAT_EVERY).await;
        let Some(h) = session.upgrade() else { return };
        if h.is_closed() {
            return;
        }
        let req = SessionHeartbeatRequest {
            session_id: session_id.clone(),
        };
        let result = match RequestSpec::post("/api/v1/session_heartbeat").with_json(&req) {
            Ok(spec) => {
                h.transport
                    .send(
                        spec.with_max_retries(0)
                            .with_timeout(Duration::from_secs(10)),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => last_ok = clock.now(),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(410) => {
                tracing::info!(session_id = %session_id, "session finished; heartbeat stopped");
                return;
            }
            Err(e) => {
                let since = clock.now() - last_ok;
                if since >= HEARTBEAT_WARN_AFTER {
                    tracing::warn!(
                        session_id = %session_id,
                        seconds_without_heartbeat = since.as_secs(),
                        error = %e,
                        "session heartbeat failing"
                    );
                } else {
                    tracing::debug!(error = %e, "session heartbeat failed");
                }
            }
        }
    }
}

pub(super) async fn dynamic_refresh_loop(session: Weak<Session>) {
    loop {
        let (clock, every) = {
            let Some(h) = session.upgrade() else { return };
            let every = h.dynamic_config().effective_refresh_interval_sec();
            (h.transport.runtime().clock.clone(), every)
        };
        clock.sleep(Duration::from_secs(every)).await;
        let Some(h) = session.upgrade() else { return };
        if h.is_closed() {
            return;
        }
        match fetch_dynamic_config(&h.transport, false).await {
            Ok(cfg) => *h.dynamic.write().unwrap_or_else(PoisonError::into_inner) = cfg,
            Err(e) => {
                tracing::debug!(error = %e, "dynamic config refresh failed; keeping old values")
            }
        }
    }
}
