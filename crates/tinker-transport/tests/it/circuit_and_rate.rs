//! The circuit breaker and the governor rate limit over real sockets.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinker_testkit::*;
use tinker_transport::circuit::{
    CircuitBreakerConfig, CircuitState, CircuitTransition, EndpointFamily,
};
use tinker_transport::limit::RateLimit;
use tinker_transport::{ErrorKind, RequestSpec};

use crate::loopback_builder as builder;

fn post(path: &str) -> RequestSpec {
    RequestSpec::post(path).with_body(&b"{}"[..], "application/json")
}

#[tokio::test]
async fn circuit_opens_fails_fast_then_recovers_through_a_trial() {
    // Four 503s (two calls of one retry each), then success.
    let count = std::sync::atomic::AtomicUsize::new(0);
    let server = Server::start(move |_, _| {
        if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 4 {
            Reply::status(503)
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let transitions: Arc<Mutex<Vec<CircuitTransition>>> = Arc::default();
    let seen = transitions.clone();
    let t = builder(&server.url)
        .max_retries(1)
        .circuit_breaker(
            CircuitBreakerConfig::default()
                .failure_threshold(2)
                .open_for(Duration::from_millis(300)),
        )
        .circuit_observer(Arc::new(move |t| seen.lock().unwrap().push(t)))
        .build()
        .unwrap();

    // A call and its retries count once.
    let first = t.send(post("/api/v1/forward_backward")).await.unwrap_err();
    assert_eq!(first.kind(), ErrorKind::InternalServer);
    assert_eq!(
        t.circuit_states(),
        vec![(EndpointFamily::Training, CircuitState::Closed)]
    );
    let second = t.send(post("/api/v1/optim_step")).await.unwrap_err();
    assert_eq!(second.kind(), ErrorKind::InternalServer);
    assert_eq!(server.seen().len(), 4);

    // Open: refused before anything is sent, and not retryable.
    let refused = t.send(post("/api/v1/forward_backward")).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
    assert!(!refused.is_retryable());
    assert!(
        refused
            .circuit_retry_in()
            .is_some_and(|d| d <= Duration::from_millis(300))
    );
    assert!(
        refused
            .to_string()
            .contains("training circuit breaker is open"),
        "{refused}"
    );
    assert_eq!(server.seen().len(), 4, "nothing was sent while open");

    // Other families keep their own circuit.
    t.send(post("/api/v1/asample")).await.unwrap();
    assert_eq!(server.seen().len(), 5);

    tokio::time::sleep(Duration::from_millis(350)).await;
    t.send(post("/api/v1/forward_backward")).await.unwrap();
    assert_eq!(
        t.circuit_states(),
        vec![
            (EndpointFamily::Training, CircuitState::Closed),
            (EndpointFamily::Sampling, CircuitState::Closed)
        ]
    );
    let states: Vec<_> = transitions
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.family, t.from, t.to))
        .collect();
    use CircuitState::*;
    assert_eq!(
        states,
        vec![
            (EndpointFamily::Training, Closed, Open),
            (EndpointFamily::Training, Open, HalfOpen),
            (EndpointFamily::Training, HalfOpen, Closed),
        ]
    );
}

#[tokio::test]
async fn caller_errors_do_not_open_the_circuit_and_it_is_off_by_default() {
    let server = Server::start(|_, _| Reply::json(400, r#"{"detail":"bad input"}"#)).await;
    let t = builder(&server.url)
        .circuit_breaker(CircuitBreakerConfig::default().failure_threshold(1))
        .build()
        .unwrap();
    for _ in 0..3 {
        let e = t.send(post("/api/v1/forward")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
    }
    assert_eq!(server.seen().len(), 3);

    let down = Server::start(|_, _| Reply::status(500)).await;
    let plain = builder(&down.url).max_retries(0).build().unwrap();
    for _ in 0..8 {
        let e = plain.send(post("/api/v1/forward")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InternalServer);
    }
    assert_eq!(down.seen().len(), 8, "no breaker unless asked for");
    assert!(plain.circuit_states().is_empty());
}

#[tokio::test]
async fn rate_limit_spaces_attempts_and_is_shared_by_clones() {
    let server = Server::start(|_, _| Reply::json(200, "{}")).await;
    // 20 per second, burst 1: 9 calls after the first need at least 9 × 50 ms.
    let limit = RateLimit::per_second(NonZeroU32::new(20).unwrap(), NonZeroU32::new(1).unwrap());
    let t = builder(&server.url).rate_limit(limit).build().unwrap();
    let clone = t.clone();
    let start = tokio::time::Instant::now();
    let a = tokio::spawn({
        let t = t.clone();
        async move {
            for _ in 0..5 {
                t.send(post("/api/v1/x")).await.unwrap();
            }
        }
    });
    for _ in 0..5 {
        clone.send(post("/api/v1/x")).await.unwrap();
    }
    a.await.unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(440), "{elapsed:?}");
    assert_eq!(server.seen().len(), 10);
}
