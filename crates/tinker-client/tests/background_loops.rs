//! The session's background loops against a scripted server, on a clock 100× faster
//! than real time: the heartbeat (every 10 s, survives failures, stops on 410) and the
//! dynamic-config refresh (follows the interval the server sets).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinker_client::ServiceClient;
use tinker_testkit::clock::FastClock;
use tinker_testkit::{Reply, Server};
use tinker_transport::clock::{Clock, FixedJitter, Runtime};
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
        let now = clock.now();
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
    ServiceClient::builder()
        .base_url(url)
        .api_key("tml-test-key")
        .telemetry(false)
        .transport(move |t| t.runtime(runtime))
        .build()
        .await
        .unwrap()
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
        assert!(
            gap >= Duration::from_secs(10) && gap < Duration::from_secs(16),
            "heartbeat gap {gap:?}"
        );
    }
    drop(log);
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_config_refresh_follows_the_servers_interval() {
    let clock = Arc::new(FastClock::new(100));
    let log: Arc<Mutex<Log>> = Arc::default();
    // Start-up says 10 s, the first refresh says 30 s, later ones 10 s again; an interval
    // under 10 s is floored at 10.
    let server = scripted(
        clock.clone(),
        log.clone(),
        |_| 200,
        |n| match n {
            0 => 10,
            1 => 30,
            _ => 3,
        },
    )
    .await;
    let service = service(&server.url, clock.clone()).await;
    wait_for(&log, "four dynamic configs", |l| l.refreshes.len() >= 4).await;
    let times = log.lock().unwrap().refreshes.clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let within = |gap: Duration, secs: u64| {
        gap >= Duration::from_secs(secs) && gap < Duration::from_secs(secs + 6)
    };
    assert!(within(gaps[0], 10), "{gaps:?}");
    assert!(within(gaps[1], 30), "{gaps:?}");
    assert!(within(gaps[2], 10), "{gaps:?}");
    drop(service);
}
