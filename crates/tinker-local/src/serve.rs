//! The accept loop: HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port, so a
//! client may multiplex every request over one connection instead of opening one per
//! request in flight.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Concurrent HTTP/2 streams per connection: enough for every sample and long poll of a
/// large fan-out (hyper's default, 200, would queue the rest behind held long polls).
const MAX_STREAMS: u32 = 16_384;
/// HTTP/2 receive window per stream: a 4.8 MB chunk of P1 arrives in about one window.
const STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 receive window per connection (all streams together).
const CONNECTION_WINDOW: u32 = 32 << 20;

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the requests in
/// flight. Counts accepted connections in `accepted`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    accepted: Arc<AtomicU64>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    // Fixed flow-control windows, not hyper's adaptive ones: those start at the spec's
    // 64 KiB for the whole connection and grow only from ping round trips, and a fan-out of
    // 2,000 samples over one h2c connection took 3.9-7.4 s instead of 0.56-0.71 s
    // (sdk_bench burst n=2000 h2c=1, load 4-6; issue 14). A connection may now have up to
    // 32 MiB of request bodies unread; each body is still capped by `max_body_bytes`.
    builder
        .http2()
        .max_concurrent_streams(MAX_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accept = listener.accept() => match accept {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
