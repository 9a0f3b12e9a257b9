//! Credentials and JWT auth over real sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tinker_testkit::clock::*;
use tinker_testkit::jwt::make_jwt;
use tinker_testkit::*;
use tinker_transport::http::connect::ProxyConfig;
use tinker_transport::{Credential, Env, ErrorKind, RequestSpec, Transport};

/// A transport with the test key, no proxy and the given clock.
fn transport(url: &str, clock: Arc<dyn tinker_transport::clock::Clock>) -> Transport {
    Transport::builder()
        .base_url(url)
        .env(env(&[]))
        .api_key(KEY.to_owned().into())
        .proxy(ProxyConfig::None)
        .runtime(runtime(clock))
        .build()
        .expect("a transport")
}

fn env(pairs: &[(&str, &str)]) -> Env {
    let mut all = vec![("HOME".to_owned(), "/nonexistent".to_owned())];
    all.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Env::from_pairs(all)
}

#[tokio::test]
async fn invalid_token_is_replaced_once_and_replayed() {
    let now = 1_800_000_000.0;
    let exchanges = Arc::new(AtomicUsize::new(0));
    let ex = exchanges.clone();
    let server = Server::start(move |req, n| {
        if req.uri.path() == "/api/v1/auth/token" {
            let i = ex.fetch_add(1, Ordering::SeqCst);
            let jwt = make_jwt(now + 3600.0, now, &format!("token{i}"));
            return Reply::json(200, &format!(r#"{{"jwt":"{jwt}"}}"#));
        }
        if n == 0 {
            Reply::json(401, r#"{"detail":"expired"}"#)
                .with_header("www-authenticate", r#"Bearer error="invalid_token""#)
        } else {
            Reply::json(200, r#"{"ok":true}"#)
        }
    })
    .await;
    let t = Transport::builder()
        .base_url(&server.url)
        .env(env(&[]))
        .api_key(KEY.to_owned().into())
        .proxy(ProxyConfig::None)
        .runtime(runtime(Arc::new(
            tinker_transport::clock::TokioClock::starting_at(now),
        )))
        .build()
        .unwrap();
    // Before the switch: the raw key.
    t.send(RequestSpec::post("/api/v1/client/config"))
        .await
        .ok();
    assert_eq!(server.seen()[0].header("x-api-key"), Some(KEY));
    t.enable_jwt_auth(false).unwrap();
    let resp = t.send(RequestSpec::post("/api/v1/dynamic")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let token_calls = server.seen_at("/api/v1/auth/token");
    assert_eq!(
        token_calls.len(),
        2,
        "one lazy exchange, one after invalid_token"
    );
    assert!(
        token_calls
            .iter()
            .all(|s| s.header("x-api-key") == Some(KEY))
    );
    assert_eq!(&token_calls[0].body[..], b"{}");
    let api = server.seen_at("/api/v1/dynamic");
    assert_eq!(api.len(), 2);
    let first = api[0].header("x-api-key").unwrap();
    let second = api[1].header("x-api-key").unwrap();
    assert!(first.starts_with("eyJ") && second.starts_with("eyJ"));
    assert_ne!(first, second);
    // The replay is the same HTTP attempt: same key, same retry count.
    assert_eq!(
        api[0].header("x-idempotency-key"),
        api[1].header("x-idempotency-key")
    );
    assert_eq!(api[1].header("x-stainless-retry-count"), Some("0"));
    // Claims of the current token (whoami).
    let claims = t.token_claims().await.unwrap().unwrap();
    assert_eq!(claims.sub.as_deref(), Some("token1"));
}

#[tokio::test]
async fn a_rejected_credential_fails_without_http_retries() {
    let server = Server::start(|req, _| {
        if req.uri.path() == "/api/v1/auth/token" {
            Reply::json(401, r#"{"detail":"bad key"}"#)
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let t = transport(&server.url, RecordingClock::new(1e9));
    t.enable_jwt_auth(false).unwrap();
    let err = t.send(RequestSpec::post("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(server.seen_at("/api/v1/x").len(), 0);
    assert_eq!(server.seen_at("/api/v1/auth/token").len(), 1);
}

#[tokio::test]
async fn jwt_is_refreshed_in_the_background_at_half_life() {
    // 1000× fast clock: a 60 s token is refreshed after ~27–33 s = ~30 ms real time.
    // A test clock reads real time, as `SystemClock` does.
    #[allow(clippy::disallowed_methods)]
    let clock = Arc::new(ScaledClock {
        unix_at_start: 1_800_000_000.0,
        start: std::time::Instant::now(),
        scale: 1000.0,
    });
    let c = clock.clone();
    let server = Server::start(move |req, _| {
        if req.uri.path() == "/api/v1/auth/token" {
            use tinker_transport::clock::Clock;
            let now = c.unix_now();
            let jwt = make_jwt(now + 60.0, now, "u");
            Reply::json(200, &format!(r#"{{"jwt":"{jwt}"}}"#))
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    let t = transport(&server.url, clock);
    t.enable_jwt_auth(false).unwrap();
    t.send(RequestSpec::post("/api/v1/x")).await.unwrap();
    assert_eq!(server.seen_at("/api/v1/auth/token").len(), 1);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let refreshed = server.seen_at("/api/v1/auth/token").len();
    assert!(refreshed >= 3, "background refreshes: {refreshed}");
    t.close();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let after_close = server.seen_at("/api/v1/auth/token").len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.seen_at("/api/v1/auth/token").len(), after_close);
}

#[tokio::test]
async fn credential_command_runs_for_each_token() {
    let server = Server::start(|_, _| Reply::json(200, "{}")).await;
    let t = Transport::builder()
        .base_url(&server.url)
        .env(env(&[(
            "TINKER_CREDENTIAL_CMD",
            "echo '  tml-from-command  '",
        )]))
        .proxy(ProxyConfig::None)
        .build()
        .unwrap();
    assert!(t.credential().unwrap().is_command());
    t.send(RequestSpec::get("/api/v1/x")).await.unwrap();
    assert_eq!(
        server.seen()[0].header("x-api-key"),
        Some("tml-from-command")
    );
    // An empty command output is a credential error, not a retried one.
    let t = Transport::builder()
        .base_url(&server.url)
        .env(env(&[("TINKER_CREDENTIAL_CMD", "true")]))
        .proxy(ProxyConfig::None)
        .build()
        .unwrap();
    let err = t.send(RequestSpec::get("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credential);
    assert_eq!(err.retries(), 0);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn an_expired_jwt_is_refused_before_sending() {
    let server = Server::start(|_, _| Reply::json(200, "{}")).await;
    let jwt = make_jwt(1000.0, 0.0, "u");
    let t = Transport::builder()
        .base_url(&server.url)
        .env(env(&[]))
        .api_key(jwt.clone().into())
        .proxy(ProxyConfig::None)
        .build()
        .unwrap();
    assert!(t.credential().unwrap().is_jwt());
    let err = t.send(RequestSpec::get("/api/v1/x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credential);
    assert!(!err.to_string().contains(&jwt));
    assert!(server.seen().is_empty());
}

#[test]
fn credential_resolution_follows_the_sdk_order() {
    // Explicit key wins; malformed keys fall back to the command; else error.
    let e = env(&[("TINKER_API_KEY", "tml-env")]);
    assert!(Credential::resolve(Some(&"tml-explicit".to_owned().into()), &e).is_ok());
    let bad = env(&[("TINKER_API_KEY", "sk-wrong")]);
    let err = Credential::resolve(None, &bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credential);
    assert!(err.to_string().contains("tml-"));
    let bad_with_cmd = env(&[
        ("TINKER_API_KEY", "sk-wrong"),
        ("TINKER_CREDENTIAL_CMD", "echo x"),
    ]);
    assert!(
        Credential::resolve(None, &bad_with_cmd)
            .unwrap()
            .is_command()
    );
    assert!(Credential::resolve(None, &env(&[])).is_err());
    // The command source is enforced unless the key is a JWT.
    let cmd = env(&[
        ("TINKER_API_KEY", "tml-k"),
        ("TINKER_CREDENTIAL_CMD", "echo x"),
    ]);
    assert!(
        Credential::resolve_for_command_source(None, &cmd)
            .unwrap()
            .is_command()
    );
    let jwt = make_jwt(4e9, 0.0, "u");
    let with_jwt = env(&[
        ("TINKER_API_KEY", jwt.as_str()),
        ("TINKER_CREDENTIAL_CMD", "echo x"),
    ]);
    assert!(
        Credential::resolve_for_command_source(None, &with_jwt)
            .unwrap()
            .is_jwt()
    );
    // Debug never shows the secret.
    let c = Credential::api_key("tml-supersecret").unwrap();
    assert!(!format!("{c:?}").contains("supersecret"));
}

#[test]
fn the_credentials_file_default_key_is_used_last() {
    let home = tempfile::tempdir().unwrap();
    let file =
        tinker_transport::auth::CredentialsFile::new(home.path().join(".tinker/credentials.json"));
    file.add_key("k", &"tml-stored".to_owned().into(), "n", true)
        .unwrap();
    let home_str = home.path().to_str().unwrap().to_owned();
    let e = Env::from_pairs([("HOME", home_str.clone())]);
    let c = Credential::resolve(None, &e).unwrap();
    assert!(!c.is_command() && !c.is_jwt());
    // A configured command shadows the stored key.
    let e = Env::from_pairs([
        ("HOME", home_str),
        ("TINKER_CREDENTIAL_CMD", "echo x".to_owned()),
    ]);
    assert!(Credential::resolve(None, &e).unwrap().is_command());
}
