//! The crate's integration tests, one module per concern, linked into one test binary
//! (one binary links the dependency graph once instead of once per file: CI's disk and
//! link time; see ARCHITECTURE.md, "Tests").

// Helpers outside #[test] functions unwrap too: a panic there is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod circuit_and_rate;
mod faults;
mod limits;
mod observer;
mod pool;
mod properties;
mod response_limit;
mod tls;

use std::time::Duration;

use tinker_testkit::clock::{RecordingClock, runtime};
use tinker_transport::http::connect::ProxyConfig;
use tinker_transport::{Transport, TransportBuilder};

/// A transport builder for a loopback test server: the testkit key, no proxy, no
/// credentials file, a recording clock, 5 s read timeout.
fn loopback_builder(url: &str) -> TransportBuilder {
    Transport::builder()
        .base_url(url)
        .env(tinker_transport::Env::from_pairs([(
            "HOME",
            "/nonexistent",
        )]))
        .api_key(tinker_testkit::KEY.to_owned().into())
        .runtime(runtime(RecordingClock::new(0.0)))
        .proxy(ProxyConfig::None)
        .read_timeout(Duration::from_secs(5))
}
