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

// A test clock reads real time, as `SystemClock` does.
#[allow(clippy::disallowed_methods)]
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

/// What a [`DropProxy`] saw and did, by route (the last path segment).
#[derive(Debug, Default, Clone)]
pub struct ProxyStats {
    /// Requests forwarded upstream.
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Upstream answers by status class (`5xx`, `429`, `408`, ...), other than 2xx.
    pub upstream_errors: std::collections::BTreeMap<String, u64>,
    /// Upstream connections that failed or were dropped (tinker-local's `pdrop`).
    pub upstream_drops: u64,
    /// Answers this proxy dropped *after* the upstream executed the request.
    pub dropped_after_execution: std::collections::BTreeMap<String, u64>,
}

/// An HTTP proxy in front of a server that, with a seeded probability, drops the
/// connection after the upstream answered (the request ran; the client never hears).
pub struct DropProxy {
    pub url: String,
    pub stats: std::sync::Arc<std::sync::Mutex<ProxyStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DropProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BoxError = std::io::Error;

/// A tiny seeded PRNG (splitmix64): the proxy's draws depend only on the seed and the
/// order of requests.
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl DropProxy {
    /// Forwards to `upstream` (e.g. `http://127.0.0.1:8790`); answers to requests whose path
    /// ends with one of `routes` are dropped with probability `p_drop`.
    pub async fn start(
        upstream: &str,
        seed: u64,
        p_drop: f64,
        routes: &'static [&'static str],
    ) -> Self {
        use http_body_util::{BodyExt, Full};
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stats = Arc::new(Mutex::new(ProxyStats::default()));
        let rng = Arc::new(Mutex::new(SplitMix(seed)));
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let upstream = upstream.to_owned();
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, upstream, stats, rng) =
                    (client.clone(), upstream.clone(), st.clone(), rng.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (client, upstream, stats, rng) =
                                (client.clone(), upstream.clone(), stats.clone(), rng.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let path = parts
                                    .uri
                                    .path_and_query()
                                    .map_or("/", |p| p.as_str())
                                    .to_owned();
                                let route =
                                    parts.uri.path().rsplit('/').next().unwrap_or("").to_owned();
                                *stats
                                    .lock()
                                    .unwrap()
                                    .requests
                                    .entry(route.clone())
                                    .or_default() += 1;
                                let body = match body.collect().await {
                                    Ok(b) => b.to_bytes(),
                                    Err(e) => return Err(BoxError::other(e.to_string())),
                                };
                                let mut up = http::Request::builder()
                                    .method(parts.method)
                                    .uri(format!("{upstream}{path}"));
                                for (k, v) in &parts.headers {
                                    up = up.header(k, v);
                                }
                                let up = up.body(Full::new(body)).unwrap();
                                let resp = match client.request(up).await {
                                    Ok(r) => r,
                                    Err(e) => {
                                        stats.lock().unwrap().upstream_drops += 1;
                                        return Err(BoxError::other(e.to_string()));
                                    }
                                };
                                let (rparts, rbody) = resp.into_parts();
                                let rbody = match rbody.collect().await {
                                    Ok(b) => b.to_bytes(),
                                    Err(e) => {
                                        stats.lock().unwrap().upstream_drops += 1;
                                        return Err(BoxError::other(e.to_string()));
                                    }
                                };
                                let status = rparts.status.as_u16();
                                if status >= 300 {
                                    let class = if status >= 500 {
                                        "5xx".to_owned()
                                    } else {
                                        status.to_string()
                                    };
                                    *stats
                                        .lock()
                                        .unwrap()
                                        .upstream_errors
                                        .entry(class)
                                        .or_default() += 1;
                                }
                                let draw = rng.lock().unwrap().unit();
                                if status < 300
                                    && routes.iter().any(|r| route == *r)
                                    && draw < p_drop
                                {
                                    *stats
                                        .lock()
                                        .unwrap()
                                        .dropped_after_execution
                                        .entry(route)
                                        .or_default() += 1;
                                    // An error from the service makes hyper close the connection
                                    // without an answer.
                                    return Err(BoxError::other("dropped after execution"));
                                }
                                Ok::<_, BoxError>(http::Response::from_parts(
                                    rparts,
                                    Full::new(rbody),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, stats, task }
    }

    pub fn stats(&self) -> ProxyStats {
        self.stats.lock().unwrap().clone()
    }
}
