//! Fault scripts over real sockets: what the server saw, and what the caller got.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tinker_testkit::clock::*;
use tinker_testkit::*;
use tinker_transport::http::HttpVersion;
use tinker_transport::http::connect::ProxyConfig;
use tinker_transport::{ErrorKind, RequestSpec, Transport, TransportBuilder};

fn builder(url: &str, clock: Arc<RecordingClock>) -> TransportBuilder {
    Transport::builder()
        .base_url(url)
        .env(tinker_transport::Env::from_pairs([(
            "HOME",
            "/nonexistent",
        )]))
        .api_key(KEY.to_owned().into())
        .runtime(runtime(clock))
        .proxy(ProxyConfig::None)
        .read_timeout(Duration::from_secs(5))
}

/// A server that sends the response head, then nothing for 30 s.
async fn stalled_server() -> Server {
    Server::start(|_, _| Reply::Streamed {
        status: 200,
        headers: vec![],
        chunks: vec![Chunk::Pause(Duration::from_secs(30))],
    })
    .await
}

fn post(path: &str) -> RequestSpec {
    RequestSpec::post(path).with_body(&b"{}"[..], "application/json")
}

/// Every attempt of one call carried the same idempotency key and counted its retries.
fn assert_same_call(seen: &[Seen]) {
    let key = seen[0]
        .header("x-idempotency-key")
        .expect("an idempotency key")
        .to_owned();
    assert!(key.starts_with("tinker-rs-retry-"), "{key}");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.header("x-idempotency-key"), Some(key.as_str()));
        assert_eq!(
            s.header("x-stainless-retry-count"),
            Some(i.to_string().as_str())
        );
    }
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let clock = RecordingClock::new(0.0);
    let t = builder(&refused_url().await, clock.clone())
        .max_retries(3)
        .build()
        .unwrap();
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.is_retryable());
    assert_eq!(err.retries(), 3);
    assert!(err.idempotency_key().is_some());
    // The SDK's schedule with zero jitter: 0.5, 1, 2 s.
    assert_eq!(
        clock.sleeps(),
        vec![
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(2)
        ]
    );
}

#[tokio::test]
async fn reset_before_headers_then_success() {
    let server = Server::start(|_, n| {
        if n == 0 {
            Reply::ResetBeforeHeaders
        } else {
            Reply::json(200, r#"{"ok":true}"#)
        }
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let resp = t.send(post("/api/v1/x")).await.unwrap();
    assert_eq!(resp.retries(), 1);
    assert_eq!(&resp.body()[..], br#"{"ok":true}"#);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_same_call(&seen);
}

#[tokio::test]
async fn reset_mid_body_then_success() {
    let server = Server::start(|_, n| {
        if n == 0 {
            Reply::Streamed {
                status: 200,
                headers: vec![],
                chunks: vec![Chunk::Data(Bytes::from_static(b"{\"part")), Chunk::Fail],
            }
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let resp = t.send(post("/api/v1/x")).await.unwrap();
    assert_eq!(&resp.body()[..], b"{}");
    assert_same_call(&server.seen());
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn truncated_body_is_a_retryable_connection_error() {
    let server = Server::start(|_, _| Reply::Streamed {
        status: 200,
        headers: vec![("content-length".into(), "100".into())],
        chunks: vec![Chunk::Data(Bytes::from_static(b"only ten b"))],
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .max_retries(2)
        .build()
        .unwrap();
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(err.retries(), 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_same_call(&seen);
}

#[tokio::test]
async fn server_error_then_success() {
    let server = Server::start(|_, n| {
        if n == 0 {
            Reply::json(500, r#"{"detail":"boom"}"#)
        } else {
            Reply::json(200, r#"{"v":1}"#)
        }
    })
    .await;
    let clock = RecordingClock::new(0.0);
    let t = builder(&server.url, clock.clone()).build().unwrap();
    let v: serde_json::Value = t
        .send_json(RequestSpec::post("/api/v1/x"), &serde_json::json!({"a": 1}))
        .await
        .unwrap();
    assert_eq!(v["v"], 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_same_call(&seen);
    assert_eq!(&seen[1].body[..], br#"{"a":1}"#);
    assert_eq!(clock.sleeps(), vec![Duration::from_millis(500)]);
}

#[tokio::test]
async fn should_retry_false_is_final() {
    let server = Server::start(|_, _| {
        Reply::json(502, r#"{"detail":"bad gateway"}"#).with_header("x-should-retry", "false")
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InternalServer);
    assert_eq!(err.status().map(|s| s.as_u16()), Some(502));
    assert_eq!(err.retries(), 0);
    // The operation loop would still retry a 5xx (the header is an HTTP-layer hint).
    assert!(err.is_retryable());
    assert_eq!(err.detail().as_deref(), Some("bad gateway"));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn should_retry_true_retries_a_400_with_body() {
    let server = Server::failing_once(
        Reply::json(400, r#"{"detail":"x"}"#).with_header("x-should-retry", "true"),
    )
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    t.send(post("/api/v1/x")).await.unwrap();
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn rate_limit_honours_retry_after_ms() {
    let server =
        Server::failing_once(Reply::json(429, "{}").with_header("retry-after-ms", "1500")).await;
    let clock = RecordingClock::new(0.0);
    let t = builder(&server.url, clock.clone()).build().unwrap();
    t.send(post("/api/v1/x")).await.unwrap();
    assert_eq!(clock.sleeps(), vec![Duration::from_millis(1500)]);
    assert_same_call(&server.seen());
}

#[tokio::test]
async fn rate_limit_honours_http_date_retry_after() {
    // 2015-10-21T07:28:00Z; the server asks for 07:28:30.
    let now = 1_445_412_480.0;
    let server = Server::start(|_, n| {
        if n < 2 {
            Reply::json(429, "{}").with_header("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let clock = RecordingClock::new(now);
    let t = builder(&server.url, clock.clone()).build().unwrap();
    t.send(post("/api/v1/x")).await.unwrap();
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(30); 2]);
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn rate_limit_exhausts_retries_and_reports() {
    let server = Server::start(|_, _| Reply::json(429, r#"{"detail":"slow down"}"#)).await;
    let clock = RecordingClock::new(0.0);
    let t = builder(&server.url, clock.clone()).build().unwrap();
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimit);
    assert_eq!(err.retries(), 10);
    assert_eq!(server.seen().len(), 11);
    let secs: Vec<f64> = clock.sleeps().iter().map(Duration::as_secs_f64).collect();
    assert_eq!(
        secs,
        vec![0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    );
}

#[tokio::test]
async fn request_timeout_status_is_retried() {
    let server = Server::failing_once(Reply::status(408)).await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    t.send(post("/api/v1/x")).await.unwrap();
    assert_same_call(&server.seen());
}

#[tokio::test]
async fn per_request_max_retries_zero_disables_the_http_layer() {
    let server = Server::start(|_, _| Reply::json(503, "{}")).await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let err = t
        .send(
            post("/api/v1/retrieve_future")
                .with_max_retries(0)
                .with_timeout(Duration::from_secs(45)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InternalServer);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-stainless-read-timeout"), Some("45"));
}

#[tokio::test]
async fn bare_400_becomes_a_retryable_connection_error() {
    let server = Server::start(|_, n| match n {
        0 => Reply::status(400),
        1 => Reply::json(200, "{}"),
        _ => Reply::json(400, r#"{"detail":"real bad request"}"#),
    })
    .await;
    let clock = RecordingClock::new(0.0);
    let t = builder(&server.url, clock.clone()).build().unwrap();
    // The HTTP layer does not retry a 400; the bare one surfaces as a connection error…
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.is_retryable());
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    assert_eq!(server.seen().len(), 1);
    // …so the operation loop retries it (with a fresh idempotency key per attempt).
    let retry = t.operation_retry();
    let resp = retry.run("op", || t.send(post("/api/v1/x"))).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A 400 with a body is a plain, final BadRequest.
    let err = retry
        .run("op", || t.send(post("/api/v1/x")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(!err.is_retryable());
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_ne!(
        seen[0].header("x-idempotency-key"),
        seen[1].header("x-idempotency-key")
    );
}

#[tokio::test]
async fn slow_body_hits_the_idle_timeout_then_retries() {
    let server = Server::start(|_, n| {
        if n == 0 {
            Reply::Streamed {
                status: 200,
                headers: vec![],
                chunks: vec![
                    Chunk::Data(Bytes::from_static(b"{")),
                    Chunk::Pause(Duration::from_secs(30)),
                    Chunk::Data(Bytes::from_static(b"}")),
                ],
            }
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .read_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let resp = t.send(post("/api/v1/x")).await.unwrap();
    assert_eq!(resp.retries(), 1);
    let seen = server.seen();
    assert_eq!(seen[0].header("x-stainless-read-timeout"), Some("0.2"));
    assert_eq!(seen.len(), 2);
    assert_same_call(&seen);
}

#[tokio::test]
async fn stalled_body_exhausts_retries_as_a_timeout() {
    let server = stalled_server().await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .read_timeout(Duration::from_millis(100))
        .max_retries(1)
        .build()
        .unwrap();
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.retries(), 1);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn operation_timeout_bounds_the_whole_call() {
    let server = stalled_server().await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .operation_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn http1_and_http2_both_work() {
    let server = Server::start(|_, _| Reply::json(200, "{}")).await;
    for (version, expected) in [
        (HttpVersion::Http1Only, http::Version::HTTP_11),
        (HttpVersion::Auto, http::Version::HTTP_11),
        (HttpVersion::Http2PriorKnowledge, http::Version::HTTP_2),
    ] {
        let t = builder(&server.url, RecordingClock::new(0.0))
            .http_version(version)
            .build()
            .unwrap();
        t.send(RequestSpec::get("/api/v1/v")).await.unwrap();
        assert_eq!(
            server.seen().last().unwrap().version,
            expected,
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn gzip_and_zstd_response_bodies_are_decoded() {
    use std::io::Write;
    let plain = br#"{"tokens":[1,2,3,4,5,6,7,8,9,10]}"#.repeat(20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = Bytes::from(gz.finish().unwrap());
    let zs = Bytes::from(zstd::bulk::compress(&plain, 3).unwrap());
    let server = Server::start(move |req, _| {
        let (enc, body) = if req.uri.path().ends_with("gzip") {
            ("gzip", gz.clone())
        } else {
            ("zstd", zs.clone())
        };
        Reply::Full {
            status: 200,
            headers: vec![("content-encoding".into(), enc.into())],
            body,
        }
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    for path in ["/api/v1/gzip", "/api/v1/zstd"] {
        let resp = t.send(RequestSpec::get(path)).await.unwrap();
        assert_eq!(&resp.body()[..], &plain[..], "{path}");
        assert!(resp.headers().get("content-encoding").is_none());
    }
    assert_eq!(
        server.seen()[0].header("accept-encoding"),
        Some("gzip, deflate, zstd")
    );
}

#[tokio::test]
async fn zstd_request_bodies_are_compressed_once_and_replayed() {
    let server = Server::failing_once(Reply::status(503)).await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let payload = vec![7u8; 64 * 1024];
    t.send(
        RequestSpec::post("/api/v1/forward_backward")
            .with_protobuf(payload.clone())
            .with_compression(tinker_transport::Compression::Zstd)
            .with_sdk_method("TrainingClient.forward_backward"),
    )
    .await
    .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.header("content-encoding"), Some("zstd"));
        assert_eq!(s.header("content-type"), Some("application/x-protobuf"));
        assert!(s.body.len() < payload.len() / 10);
        assert_eq!(zstd::decode_all(&s.body[..]).unwrap(), payload);
        assert_eq!(
            s.header("x-sdk-method"),
            Some("TrainingClient.forward_backward")
        );
        assert_eq!(s.header("x-sdk-version"), Some("0.38.0"));
    }
    assert_same_call(&seen);
}

#[tokio::test]
async fn forward_proxy_from_env_with_auth_and_no_proxy() {
    let proxy = Server::start(|_, _| Reply::json(200, r#"{"via":"proxy"}"#)).await;
    let proxy_url = format!("http://user:pa%20ss@{}", proxy.addr);
    let env = tinker_transport::Env::from_pairs([
        ("HOME", "/nonexistent".to_owned()),
        ("HTTP_PROXY", proxy_url),
        ("NO_PROXY", "bypass.invalid".to_owned()),
    ]);
    let t = Transport::builder()
        .base_url("http://api.tinker.invalid:8123")
        .env(env.clone())
        .api_key(KEY.to_owned().into())
        .runtime(runtime(RecordingClock::new(0.0)))
        .build()
        .unwrap();
    let v: serde_json::Value = t
        .get_json(RequestSpec::get("/api/v1/healthz"))
        .await
        .unwrap();
    assert_eq!(v["via"], "proxy");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1);
    // Absolute-form request line, as a forward proxy expects.
    assert_eq!(
        seen[0].uri.to_string(),
        "http://api.tinker.invalid:8123/api/v1/healthz"
    );
    assert!(
        seen[0]
            .header("proxy-authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    // NO_PROXY hosts go direct (and fail to resolve here, which proves the bypass).
    let direct = Transport::builder()
        .base_url("http://bypass.invalid:8123")
        .env(env)
        .api_key(KEY.to_owned().into())
        .runtime(runtime(RecordingClock::new(0.0)))
        .max_retries(0)
        .build()
        .unwrap();
    let err = direct
        .send(RequestSpec::get("/api/v1/healthz"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(proxy.seen().len(), 1);
}

#[tokio::test]
async fn redirects_are_followed_and_credentials_stay_on_origin() {
    let target = Server::start(|_, _| Reply::json(200, r#"{"signed":true}"#)).await;
    let target_url = format!("{}/bucket/log.json?sig=abc", target.url);
    let origin = Server::start(move |req, _| {
        if req.uri.path() == "/api/v1/audit" {
            Reply::status(307).with_header("location", &target_url)
        } else {
            Reply::status(302).with_header("location", "/api/v1/audit")
        }
    })
    .await;
    let t = builder(&origin.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let v: serde_json::Value = t.get_json(RequestSpec::get("/api/v1/old")).await.unwrap();
    assert_eq!(v["signed"], true);
    let o = origin.seen();
    assert_eq!(o.len(), 2);
    assert!(o.iter().all(|s| s.header("x-api-key") == Some(KEY)));
    let s = target.seen();
    assert_eq!(s[0].uri.query(), Some("sig=abc"));
    assert_eq!(s[0].header("x-api-key"), None);
}

#[tokio::test]
async fn sdk_headers_are_sent() {
    let server = Server::start(|_, _| Reply::json(200, "{}")).await;
    let env = tinker_transport::Env::from_pairs([
        ("HOME", "/nonexistent"),
        ("CLOUDFLARE_ACCESS_CLIENT_ID", "cf-id"),
        ("CLOUDFLARE_ACCESS_CLIENT_SECRET", "cf-secret"),
    ]);
    let t = Transport::builder()
        .base_url(format!("{}/", server.url))
        .env(env)
        .api_key(KEY.to_owned().into())
        .proxy(ProxyConfig::None)
        .default_header(
            http::HeaderName::from_static("cf-access-client-id"),
            http::HeaderValue::from_static("override"),
        )
        .build()
        .unwrap();
    t.send(RequestSpec::get("/api/v1/training_runs").with_query("after", "2026-07-13T00:00:00Z"))
        .await
        .unwrap();
    t.send(post("/api/v1/create_session")).await.unwrap();
    t.send(RequestSpec::delete(
        "/api/v1/training_runs/r/checkpoints/weights/c",
    ))
    .await
    .unwrap();
    let seen = server.seen();
    let get = &seen[0];
    assert_eq!(
        get.uri.to_string(),
        "/api/v1/training_runs?after=2026-07-13T00%3A00%3A00Z"
    );
    assert!(
        get.header("user-agent")
            .unwrap()
            .starts_with("TinkerRs/Rust ")
    );
    assert!(get.header("user-agent").unwrap().contains("0.38.0"));
    assert_eq!(get.header("x-stainless-package-version"), Some("0.38.0"));
    assert_eq!(get.header("x-stainless-retry-count"), Some("0"));
    assert_eq!(get.header("x-stainless-read-timeout"), Some("60"));
    assert_eq!(get.header("accept"), Some("application/json"));
    assert_eq!(get.header("x-api-key"), Some(KEY));
    assert_eq!(get.header("cf-access-client-id"), Some("override"));
    assert_eq!(get.header("cf-access-client-secret"), Some("cf-secret"));
    assert_eq!(get.header("x-idempotency-key"), None);
    assert_eq!(get.header("content-type"), None);
    assert_eq!(get.header("x-sdk-method"), None);
    let post = &seen[1];
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert!(post.header("x-idempotency-key").is_some());
    // The SDK's DELETE says JSON but sends no body.
    let delete = &seen[2];
    assert_eq!(delete.header("content-type"), Some("application/json"));
    assert!(delete.body.is_empty());
}

#[tokio::test]
async fn secrets_never_reach_errors() {
    let server = Server::start(|req, _| {
        let key = req.header("x-api-key").unwrap_or_default().to_owned();
        Reply::json(401, &format!(r#"{{"detail":"invalid key {key}"}}"#))
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let err = t.send(post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    for text in [
        err.to_string(),
        format!("{err:?}"),
        err.body_excerpt().unwrap(),
        err.detail().unwrap(),
        format!("{t:?}"),
    ] {
        assert!(!text.contains(KEY), "{text}");
    }
    assert!(err.to_string().starts_with("Error code: 401 - "));
    assert!(err.to_string().contains("[REDACTED]"));
}

#[tokio::test]
async fn user_layer_sees_every_attempt() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = Server::failing_once(Reply::status(500)).await;
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let t = builder(&server.url, RecordingClock::new(0.0))
        .layer(tower::layer::layer_fn(
            move |inner: tinker_transport::http::HttpService| {
                let c = c.clone();
                tower::service_fn(move |req: tinker_transport::http::HttpRequest| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let mut inner = inner.clone();
                    async move {
                        use tower::ServiceExt;
                        inner.ready().await?;
                        tower::Service::call(&mut inner, req).await
                    }
                })
            },
        ))
        .build()
        .unwrap();
    t.send(post("/api/v1/x")).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bare_400_budget_is_sixteen_and_successes_restore_it() {
    let server = Server::start(|req, _| {
        if req.uri.path() == "/api/v1/ok" {
            Reply::json(200, "{}")
        } else {
            Reply::status(400)
        }
    })
    .await;
    let t = builder(&server.url, RecordingClock::new(0.0))
        .build()
        .unwrap();
    let kinds = |n: usize| {
        let t = t.clone();
        async move {
            let mut kinds = Vec::new();
            for _ in 0..n {
                kinds.push(t.send(post("/api/v1/x")).await.unwrap_err().kind());
            }
            kinds
        }
    };
    let first = kinds(17).await;
    assert!(first[..16].iter().all(|k| *k == ErrorKind::Connection));
    assert_eq!(first[16], ErrorKind::BadRequest);
    t.send(post("/api/v1/ok")).await.unwrap();
    assert_eq!(
        kinds(2).await,
        vec![ErrorKind::Connection, ErrorKind::BadRequest]
    );
}
