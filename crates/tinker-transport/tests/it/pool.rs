//! The connection pool over real loopback HTTP: how many TCP connections a fan-out opens
//! (issue 14: an HTTP/1.1 pool that kept 20 idle connections opened ~3,400 connections
//! for 10,000 samples; HTTP/2 multiplexes everything over one).

use std::time::Duration;

use tinker_testkit::{Reply, Server};
use tinker_transport::http::HttpVersion;
use tinker_transport::{RequestSpec, Transport};

use crate::loopback_builder as builder;

/// A server whose answers take a moment, so that the callers' requests overlap.
async fn slow_server() -> Server {
    Server::start(|_, _| Reply::json(200, "{}").after(Duration::from_millis(3))).await
}

/// `callers` tasks sending `each` requests one after another, all at once.
async fn fan_out(t: &Transport, callers: usize, each: usize) {
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                t.send(RequestSpec::post("/api/v1/x").with_body(&b"{}"[..], "application/json"))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_fan_out_reuses_its_connections() {
    // 10 rounds of 48 requests at once, each round awaited before the next (submit all,
    // await all): 48 connections serve them all. A pool that keeps 20 idle connections
    // closed 28 after every round and opened them again (~300).
    let server = slow_server().await;
    let t = builder(&server.url).build().unwrap();
    for _ in 0..10 {
        fan_out(&t, 48, 1).await;
    }
    let opened = server.connections_accepted();
    assert_eq!(server.seen().len(), 480);
    assert!(
        opened <= 48 + 16,
        "480 requests from 48 callers opened {opened} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connections_stay_near_the_bound() {
    // 400 requests at once with 16 connections allowed: the rest wait for a free one.
    let server = slow_server().await;
    let t = builder(&server.url)
        .http1_max_connections(16)
        .build()
        .unwrap();
    fan_out(&t, 400, 1).await;
    let opened = server.connections_accepted();
    assert_eq!(server.seen().len(), 400);
    assert!(
        opened <= 16 + 8,
        "400 requests with 16 connections allowed opened {opened}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_multiplexes_a_fan_out_over_one_connection() {
    let server = slow_server().await;
    let t = builder(&server.url)
        .http_version(HttpVersion::Http2PriorKnowledge)
        .build()
        .unwrap();
    fan_out(&t, 400, 2).await;
    assert_eq!(server.seen().len(), 800);
    assert_eq!(server.connections_accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http1_bound_does_not_limit_http2() {
    // 100 requests of 300 ms each with 2 HTTP/1.1 connections allowed: 15 s if the bound
    // applied to h2c, 0.3 s when they all run at once.
    let server =
        Server::start(|_, _| Reply::json(200, "{}").after(Duration::from_millis(300))).await;
    let t = builder(&server.url)
        .http_version(HttpVersion::Http2PriorKnowledge)
        .http1_max_connections(2)
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), fan_out(&t, 100, 1))
        .await
        .expect("h2c requests waited on the HTTP/1.1 bound");
    assert_eq!(server.connections_accepted(), 1);
}
