//! Test support shared by the tinker-rs crates' integration tests (dev-dependency only).
//!
//! - [`server`]: one scripted in-process HTTP server on `127.0.0.1:0` (HTTP/1 and 2,
//!   optionally TLS) that records every request and answers from a closure, including
//!   faults (resets, truncated bodies, stalls).
//! - [`tls`]: a self-signed `localhost` certificate and acceptor.
//! - [`proxy`]: a forwarding proxy that drops answers after the upstream executed them.
//! - [`record`]: a forwarding proxy that records every request (the wire test's capture).
//! - [`clock`]: test clocks and jitter for the transport's injected runtime.
//! - [`jwt`], [`refused_url`]: small fixtures.
//! - `local` (feature `local`): an in-process tinker-local with a temp dir and a client.

// Test support: a broken fixture (a port that cannot be bound, a poisoned lock) should
// panic at once with its location; every caller is a test.
#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: panicking on a broken fixture is the right failure"
)]
// Test clocks and fixtures read real time, as the transport's `SystemClock` does.
#![allow(clippy::disallowed_methods)]

pub mod clock;
pub mod jwt;
#[cfg(feature = "local")]
pub mod local;
pub mod proxy;
pub mod record;
pub mod server;
pub mod tls;

pub use server::{Chunk, Reply, Seen, Server};

/// An API key of the right shape for tests that never reach a real service.
pub const KEY: &str = "tml-test-key-0123456789";

/// A `http://` URL of a port on 127.0.0.1 where nothing listens.
pub async fn refused_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
