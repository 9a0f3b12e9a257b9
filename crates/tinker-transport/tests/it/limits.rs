//! Operation retry loop, byte budgets and dispatch limits on a paused tokio clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tinker_transport::ByteBudget;
use tinker_transport::clock::{FixedJitter, Runtime, TokioClock};
use tinker_transport::limit::SampleDispatchLimiter;
use tinker_transport::retry::{
    BillingPause, OperationRetry, OperationRetryConfig, RetryClass, Retryable,
};
use tokio::time::Instant;

#[derive(Debug)]
struct Failure(RetryClass);

impl Retryable for Failure {
    fn retry_class(&self) -> RetryClass {
        self.0
    }
    fn describe(&self) -> String {
        format!("{:?}", self.0)
    }
}

fn runtime() -> Runtime {
    Runtime {
        clock: Arc::new(TokioClock::starting_at(0.0)),
        jitter: Arc::new(FixedJitter(0.0)),
    }
}

fn op_retry(billing_window: Duration) -> OperationRetry {
    OperationRetry::new(
        OperationRetryConfig::default(),
        runtime(),
        Arc::new(BillingPause::new(billing_window)),
    )
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_back_off_exponentially_within_300s() {
    let retry = op_retry(Duration::from_secs(3600));
    let start = Instant::now();
    let times = std::sync::Mutex::new(Vec::new());
    let result: Result<(), Failure> = retry
        .run("op", || {
            times
                .lock()
                .unwrap()
                .push((Instant::now() - start).as_secs());
            async { Err(Failure(RetryClass::Retry)) }
        })
        .await;
    assert!(result.is_err());
    let times = times.into_inner().unwrap();
    // 0, +1, +2, +4, +8, +16, +30, +30, … until 300 s, the last sleep truncated to it.
    assert_eq!(&times[..8], &[0, 1, 3, 7, 15, 31, 61, 91]);
    assert_eq!(*times.last().unwrap(), 300);
    assert_eq!(Instant::now() - start, Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_are_returned_at_once_and_success_ends_the_loop() {
    let retry = op_retry(Duration::from_secs(3600));
    let calls = AtomicU32::new(0);
    let r: Result<(), Failure> = retry
        .run("op", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Failure(RetryClass::Fatal)) }
        })
        .await;
    assert!(r.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let n = AtomicU32::new(0);
    let r: Result<u32, Failure> = retry
        .run("op", || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                if i < 3 {
                    Err(Failure(RetryClass::Retry))
                } else {
                    Ok(i)
                }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn billing_pause_sleeps_5s_until_the_window_closes() {
    let retry = op_retry(Duration::from_secs(60));
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    // 402 for 30 s, then success: paused through.
    let r: Result<(), Failure> = retry
        .run("op", || {
            calls.fetch_add(1, Ordering::SeqCst);
            let elapsed = Instant::now() - start;
            async move {
                if elapsed < Duration::from_secs(30) {
                    Err(Failure(RetryClass::Billing))
                } else {
                    Ok(())
                }
            }
        })
        .await;
    assert!(r.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 7); // t = 0, 5, …, 30
    // Still 402 past the 60 s window (same incident): fatal.
    let r: Result<(), Failure> = retry
        .run("op", || async { Err(Failure(RetryClass::Billing)) })
        .await;
    assert!(r.is_err());
    // The window opened at t = 0; the first 402 more than 60 s later (t = 65) is fatal.
    assert_eq!(Instant::now() - start, Duration::from_secs(65));
    // After 5 quiet minutes a new incident starts a new window.
    tokio::time::advance(Duration::from_secs(301)).await;
    assert!(retry.billing().should_pause(Instant::now(), "402"));
}

#[tokio::test(start_paused = true)]
async fn byte_budget_waits_only_while_negative() {
    let budget = ByteBudget::new(100);
    // Larger than the whole budget: proceeds, driving it negative.
    let big = budget.acquire(250).await;
    assert_eq!(budget.remaining(), -150);
    let b2 = budget.clone();
    let waiter = tokio::spawn(async move {
        let p = b2.acquire(10).await;
        (Instant::now(), p.bytes())
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiter.is_finished(), "must wait while remaining < 0");
    let released_at = Instant::now();
    drop(big);
    let (woke_at, bytes) = waiter.await.unwrap();
    assert_eq!(bytes, 10);
    assert_eq!(woke_at, released_at);
    // Remaining 100 → 90 while held, back to 100 after.
    assert_eq!(budget.remaining(), 100);
    // Exactly zero remaining is not negative: the next acquirer proceeds.
    let a = budget.acquire(100).await;
    let b = tokio::time::timeout(Duration::from_secs(1), budget.acquire(1)).await;
    assert!(b.is_ok());
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn sample_dispatch_throttles_after_backoff() {
    let limiter = SampleDispatchLimiter::new(1000, runtime());
    assert!(!limiter.is_throttled());
    let p = limiter.acquire(100).await;
    drop(p);
    limiter.request_backoff(10);
    assert!(limiter.is_throttled());
    let start = Instant::now();
    limiter.wait_backoff().await;
    assert_eq!(Instant::now() - start, Duration::from_secs(1));
    // Throttled for 10 s after the backoff ends: cost ×20 and only 10 slots.
    let held: Vec<_> = futures_util::future::join_all((0..10).map(|_| limiter.acquire(1))).await;
    let eleventh = tokio::time::timeout(Duration::from_secs(1), limiter.acquire(1)).await;
    assert!(eleventh.is_err(), "the 10 throttled slots are taken");
    drop(held);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(!limiter.is_throttled());
    // Unthrottled: 400 slots.
    let many: Vec<_> = futures_util::future::join_all((0..400).map(|_| limiter.acquire(0))).await;
    assert_eq!(many.len(), 400);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), limiter.acquire(0))
            .await
            .is_err()
    );
}
