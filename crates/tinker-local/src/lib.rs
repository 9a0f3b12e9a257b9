//! A Tinker-compatible server that trains and samples a tiny transformer on the CPU.
//!
//! `tinker-local` speaks the wire protocol of the Tinker training API closely enough that the
//! official Python SDK (0.38) runs against it unchanged: sessions, LoRA training clients
//! (`forward_backward`, `optim_step`), checkpoints (`save_state`, `load_state`, sampler
//! weights, external exports), sampling, the REST catalogue and the future-polling protocol.
//! The compute is real: [`engine`] holds a small decoder with LoRA adapters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tinker_local::Error> {
//! let dir = std::env::temp_dir().join("tinker-local-demo");
//! let server = tinker_local::LocalServer::start(tinker_local::LocalServerConfig::new(dir)).await?;
//! println!("serving at {}", server.url());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Section numbers such as §6.4 refer to `docs/protocol.md`, the wire protocol as tinker-rs
//! implements it.
// The server has no injected clock; it stamps real time on futures, sessions and leases.
#![allow(clippy::disallowed_methods)]

pub mod engine;

mod api;
mod auth;
mod compute;
mod config;
mod engine_wire;
mod faults;
mod persist;
mod promise;
mod serve;
mod state;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use snafu::{ResultExt, Snafu};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    FaultConfig, LocalServerConfig, PauseLength, PausedQueue, PayloadFault, QueuePause,
    ScriptedFault,
};
pub use state::{AuditRecord, FuturesPoll, UsageRecord};

/// Errors starting the server.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum Error {
    /// The data directory could not be created or read.
    #[snafu(display("data directory {}: {source}", path.display()))]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The listening socket could not be bound.
    #[snafu(display("binding {addr}: {source}"))]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is invalid (bad fault spec, unknown model, ...).
    #[snafu(display("invalid configuration: {message}"))]
    Config {
        /// What is wrong.
        message: String,
    },
}

/// The entry point: starts a server in the current tokio runtime.
#[derive(Debug)]
#[non_exhaustive]
pub struct LocalServer;

impl LocalServer {
    /// Binds `config.addr` (port 0 picks a free port), loads the data directory and serves
    /// until [`LocalServerHandle::shutdown`] is called.
    pub async fn start(config: LocalServerConfig) -> Result<LocalServerHandle, Error> {
        let state = state::AppState::open(config.clone())?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .context(BindSnafu { addr: config.addr })?;
        let addr = listener
            .local_addr()
            .context(BindSnafu { addr: config.addr })?;
        let router = api::router(Arc::clone(&state));
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let sweeper = state::spawn_sweeper(Arc::clone(&state));
        let serve_state = Arc::clone(&state);
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            serve_state.begin_shutdown();
        };
        let task = tokio::spawn(serve::serve(listener, router, stop, Arc::clone(&accepted)));
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "tinker-local listening");
        Ok(LocalServerHandle {
            addr,
            state,
            stop: stop_tx,
            task: Some(task),
            sweeper,
            accepted,
        })
    }
}

/// A running server. Dropping it without [`shutdown`](Self::shutdown) stops accepting
/// connections at the next opportunity as well.
#[derive(Debug)]
pub struct LocalServerHandle {
    addr: SocketAddr,
    state: Arc<state::AppState>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
    accepted: Arc<AtomicU64>,
}

impl LocalServerHandle {
    /// The base URL clients use, e.g. `http://127.0.0.1:8790` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far (HTTP/1.1 and HTTP/2 alike).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The telemetry events clients sent, oldest first (the latest 10,000), each with the
    /// batch's envelope fields (`session_id`, `platform`, `sdk_version`, `process_uuid`)
    /// copied in.
    pub fn telemetry_events(&self) -> Vec<serde_json::Value> {
        self.state.telemetry_events()
    }

    /// The work this server accounted for (training, prefill and sampled tokens, checkpoints).
    pub fn usage_records(&self) -> Vec<UsageRecord> {
        self.state.usage_records()
    }

    /// The audit trail (checkpoint and session events).
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.state.audit_records()
    }

    /// How many times each training request actually executed, keyed by
    /// `(model_id, seq_id)`; a correct server never executes one twice.
    pub fn executions(&self) -> Vec<((String, i64), u32)> {
        self.state.executions()
    }

    /// Every `retrieve_futures` poll answered so far, in order (a read-only test hook).
    pub fn futures_polls(&self) -> Vec<FuturesPoll> {
        state::lock(&self.state.futures_polls).clone()
    }

    /// The request id of every `cancel_future` call received so far (a read-only test hook).
    pub fn cancel_requests(&self) -> Vec<String> {
        state::lock(&self.state.cancel_requests).clone()
    }

    /// Cancels a session as an operator would from the console: it ends with status
    /// `cancelled` (found by a `cancelled` search filter), refuses new models and samplers,
    /// and its heartbeats answer 410. Returns false if the session does not exist or has
    /// already ended.
    pub fn cancel_session(&self, session_id: &str, detail: Option<&str>) -> bool {
        let status = tinker_types::SessionStatus::Cancelled(tinker_types::SessionCancelled {
            detail: detail.map(str::to_owned),
        });
        let cancelled = self.state.end_session(session_id, status);
        if cancelled {
            self.state.audit(
                &self.state.session_owner(session_id),
                "session_cancel",
                None,
                None,
                serde_json::json!({ "session_id": session_id }),
            );
        }
        cancelled
    }

    /// Stops accepting connections, lets in-flight requests finish (long polls are released
    /// at once) and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.sweeper.abort();
        self.state.stop_workers();
    }
}

impl Drop for LocalServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.sweeper.abort();
    }
}
