//! Shared set-up of the end-to-end tests: an in-process tinker-local and a client for it.

#![allow(dead_code, clippy::unwrap_used)]

use tinker_client::{ServiceClient, TrainingClient};
use tinker_local::{FaultConfig, LocalServer, LocalServerConfig, LocalServerHandle};
use tinker_types::{CrossEntropyInputs, Datum, ModelInput};

pub const MODEL: &str = "tinker-local/micro";

pub struct Env {
    pub server: LocalServerHandle,
    pub service: ServiceClient,
    _dir: tempfile::TempDir,
}

pub async fn start(faults: Option<&str>) -> Env {
    start_with(faults, |_| {}).await
}

pub async fn start_with(faults: Option<&str>, tweak: impl FnOnce(&mut LocalServerConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LocalServerConfig::new(dir.path());
    if let Some(spec) = faults {
        config.faults = FaultConfig::parse(spec).unwrap();
    }
    config.long_poll = std::time::Duration::from_secs(2);
    tweak(&mut config);
    let server = LocalServer::start(config).await.unwrap();
    let service = ServiceClient::builder()
        .base_url(server.url())
        .api_key("tml-test-key")
        .build()
        .await
        .unwrap();
    Env {
        server,
        service,
        _dir: dir,
    }
}

/// A next-token datum over `tokens` (inputs all but the last, targets all but the first).
pub fn datum(tokens: &[u32]) -> Datum {
    let input = ModelInput::from_tokens(&tokens[..tokens.len() - 1]);
    let targets: Vec<i64> = tokens[1..].iter().map(|&t| i64::from(t)).collect();
    let weights = vec![1.0; targets.len()];
    Datum::new(
        input,
        CrossEntropyInputs::new(targets, weights)
            .unwrap()
            .into_inputs()
            .unwrap(),
    )
}

pub async fn training(env: &Env) -> TrainingClient {
    env.service
        .create_lora_training_client(MODEL, 4)
        .await
        .unwrap()
}

/// A clock that runs `speedup` times faster than real time: every sleep lasts
/// `1/speedup` of its length and moves this clock's time forward by the rest. Retry windows
/// (the 300 s operation loop) then pass in seconds, with the real schedule of attempts.
#[derive(Debug)]
pub struct FastClock {
    speedup: u32,
    skipped: std::sync::Mutex<std::time::Duration>,
}

impl FastClock {
    pub fn new(speedup: u32) -> Self {
        Self {
            speedup: speedup.max(1),
            skipped: std::sync::Mutex::new(std::time::Duration::ZERO),
        }
    }

    fn skipped(&self) -> std::time::Duration {
        *self.skipped.lock().unwrap()
    }
}

impl tinker_transport::clock::Clock for FastClock {
    fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.skipped()
    }

    fn unix_now(&self) -> f64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        (now + self.skipped()).as_secs_f64()
    }

    fn sleep(&self, duration: std::time::Duration) -> tinker_transport::clock::Sleep {
        let real = duration / self.speedup;
        *self.skipped.lock().unwrap() += duration - real;
        Box::pin(tokio::time::sleep(real))
    }
}

/// A service client for `env`'s server whose retry loops run on a [`FastClock`] and whose
/// HTTP layer does not retry (only the operation loop does).
pub async fn fast_retry_service(env: &Env) -> ServiceClient {
    use std::sync::Arc;
    let runtime = tinker_transport::clock::Runtime {
        clock: Arc::new(FastClock::new(100)),
        jitter: Arc::new(tinker_transport::clock::FixedJitter(0.0)),
    };
    ServiceClient::builder()
        .base_url(env.server.url())
        .api_key("tml-test-key")
        .max_retries(0)
        .transport(move |t| t.runtime(runtime))
        .build()
        .await
        .unwrap()
}

/// What a [`Stub`] answers: status, headers, body.
pub type StubReply = (u16, Vec<(&'static str, String)>, bytes::Bytes);

/// A scripted in-process HTTP server (optionally TLS): every request is answered by
/// `reply(path_and_query)`.
pub struct Stub {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    pub async fn start(
        tls: Option<tokio_rustls::TlsAcceptor>,
        reply: impl Fn(&str) -> StubReply + Send + Sync + 'static,
    ) -> Self {
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let reply = Arc::new(reply);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let reply = reply.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let path = req
                                .uri()
                                .path_and_query()
                                .map_or("/", |p| p.as_str())
                                .to_owned();
                            let (status, headers, body) = reply(&path);
                            let mut resp = http::Response::builder().status(status);
                            for (k, v) in headers {
                                resp = resp.header(k, v);
                            }
                            let resp = resp.body(http_body_util::Full::new(body)).unwrap();
                            async move { Ok::<_, std::convert::Infallible>(resp) }
                        },
                    );
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self { url, task }
    }
}

/// A self-signed certificate for `localhost` and a TLS acceptor (http/1.1) using it; the
/// second value is the certificate (DER) for the client to trust.
pub fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, Vec<u8>) {
    use std::sync::Arc;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.cert.der().to_vec(),
    )
}

/// A session-less REST client for `base_url`, trusting `ca` (DER) when given.
pub async fn rest_client(base_url: &str, ca: Option<Vec<u8>>) -> tinker_client::RestClient {
    use tinker_transport::http::connect::{ProxyConfig, TlsConfig};
    let mut builder = tinker_transport::Transport::builder()
        .base_url(base_url)
        .env(tinker_transport::Env::from_pairs([(
            "HOME",
            "/nonexistent",
        )]))
        .api_key("tml-test-key".to_owned().into())
        .proxy(ProxyConfig::None);
    if let Some(ca) = ca {
        let mut tls = TlsConfig::default();
        tls.webpki_roots = false;
        tls.native_roots = false;
        tls.extra_ca_certs = vec![ca];
        builder = builder.tls(tls);
    }
    tinker_client::RestClient::connect(builder.build().unwrap())
        .await
        .unwrap()
}
