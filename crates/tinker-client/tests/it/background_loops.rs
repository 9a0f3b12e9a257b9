//! The session's background loops against a scripted server, on a clock 100× faster
//! than real time: the heartbeat (every 10 s, survives failures, stops on 410) and the
//! dynamic-config refresh (follows the interval the server sets, floored at 10 s).
//!
//! Times are real (tokio's clock, not paused): a fast-clock sleep of `d` lasts exactly
//! `d / 100` of real time and never less, so lower bounds on real gaps are exact; upper
//! bounds are checked by counting what did not happen, which load cannot fake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinker_client::ServiceClient;
use tinker_testkit::clock::FastClock;
use tinker_testkit::{Reply, Server};
use tinker_transport::clock::{FixedJitter, Runtime};
use tokio::time::Instant;

/// What the script saw, with the fast clock's time of each request.
#[derive(Default)]
struct Log {
    heartbeats: Vec<(Instant, String)>,
    refreshes: Vec<Instant>,
}

const SESSION: &str = "sess-loops-1";

/// Starts the scripted server; `heartbeat(n)` answers the n-th heartbeat (0-based) and
/// `refresh_interval(n)` is the interval the n-th dynamic config (0 = at start-up) sets.
async fn scripted(
    clock: Arc<FastClock>,
    log: Arc<Mutex<Log>>,
    heartbeat: fn(usize) -> u16,
    refresh_interval: fn(usize) -> u64,
) -> Server {
    Server::start(move |seen, _| {
        let _ = &clock;
        let now = Instant::now();
        let path = seen.uri.path().to_owned();
        let mut log = log.lock().unwrap();
        match path.as_str() {
            "/api/v1/client/config" => Reply::json(200, "{}"),
            "/api/v1/client/dynamic_config" => {
                let n = log.refreshes.len();
                log.refreshes.push(now);
                Reply::json(
                    200,
                    &format!(r#"{{"refresh_interval_sec": {}}}"#, refresh_interval(n)),
                )
            }
            "/api/v1/create_session" => {
                Reply::json(200, &format!(r#"{{"session_id": "{SESSION}"}}"#))
            }
            "/api/v1/session_heartbeat" => {
                let n = log.heartbeats.len();
                let body = String::from_utf8_lossy(&seen.body).into_owned();
                log.heartbeats.push((now, body));
                match heartbeat(n) {
                    200 => Reply::json(200, "{}"),
                    status => Reply::json(status, r#"{"detail":"scripted"}"#),
                }
            }
            _ => Reply::json(404, r#"{"detail":"not scripted"}"#),
        }
    })
    .await
}

async fn service(url: &str, clock: Arc<FastClock>) -> ServiceClient {
    let runtime = Runtime {
        clock,
        jitter: Arc::new(FixedJitter(0.0)),
    };
    let service = ServiceClient::builder()
        .base_url(url)
        .api_key("tml-test-key")
        .telemetry(false)
        .transport(move |t| t.runtime(runtime))
        .build()
        .await
        .unwrap();
    // Sessions start on first use (as in SDK 0.38); the loops run once there is one.
    service.open_session().await.unwrap();
    service
}

/// Waits (real time, bounded) until `done` holds for the log.
async fn wait_for(log: &Mutex<Log>, what: &str, done: impl Fn(&Log) -> bool) {
    for _ in 0..400 {
        if done(&log.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_every_ten_seconds_survives_failures_and_stops_on_410() {
    let clock = Arc::new(FastClock::new(100));
    let log: Arc<Mutex<Log>> = Arc::default();
    // 200, 500 (kept going), 200, then 410: the session is over.
    let server = scripted(
        clock.clone(),
        log.clone(),
        |n| match n {
            1 => 500,
            3 => 410,
            _ => 200,
        },
        |_| 300,
    )
    .await;
    let service = service(&server.url, clock.clone()).await;
    wait_for(&log, "four heartbeats", |l| l.heartbeats.len() >= 4).await;
    // Give a fifth heartbeat time to (wrongly) happen: 3 periods of the fast clock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = log.lock().unwrap();
    assert_eq!(log.heartbeats.len(), 4, "no heartbeat after the 410");
    for (_, body) in &log.heartbeats {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["session_id"], SESSION);
    }
    for pair in log.heartbeats.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_millis(99), "heartbeat gap {gap:?}");
    }
    drop(log);
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_config_refresh_follows_the_servers_interval() {
    let clock = Arc::new(FastClock::new(100));
    let log: Arc<Mutex<Log>> = Arc::default();
    // Start-up says 3 s (floored to 10 s); the first refresh says one hour.
    let server = scripted(
        clock.clone(),
        log.clone(),
        |_| 200,
        |n| match n {
            0 => 3,
            _ => 3600,
        },
    )
    .await;
    let service = service(&server.url, clock.clone()).await;
    // The default (300 s) would take 3 s of real time: the first refresh comes well before.
    wait_for(&log, "the first refresh", |l| l.refreshes.len() >= 2).await;
    let first_gap = {
        let l = log.lock().unwrap();
        l.refreshes[1] - l.refreshes[0]
    };
    assert!(
        first_gap >= Duration::from_millis(99),
        "3 s is floored to 10 s (100 ms real): {first_gap:?}"
    );
    // An hour is 36 s of real time: nothing more comes within 1.5 s (a client that kept
    // the 10 s interval would refresh about 15 times).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(log.lock().unwrap().refreshes.len(), 2);
    drop(service);
}
