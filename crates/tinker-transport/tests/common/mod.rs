//! An in-process hyper server on 127.0.0.1 that records every request and answers from
//! a script, including faults (resets, truncation, stalls), plus test clocks.

// Test support: panicking on a broken fixture is the right failure.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tinker_transport::clock::{Clock, Jitter, Runtime, Sleep};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One step of a scripted response body.
#[derive(Debug, Clone)]
pub enum Chunk {
    Data(Bytes),
    Pause(Duration),
    Fail,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Drop the connection before any response byte.
    ResetBeforeHeaders,
    /// Send the head then stream `chunks` (a `Fail` aborts the connection).
    Streamed {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<Chunk>,
    },
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply::Full {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn json(status: u16, body: &str) -> Self {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Reply::Full { headers, .. } | Reply::Streamed { headers, .. } => {
                headers.push((name.into(), value.into()));
            }
            Reply::ResetBeforeHeaders => {}
        }
        self
    }
}

type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// The running server. `url` has no trailing slash.
pub struct Server {
    pub addr: SocketAddr,
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts a server; `script(request, n)` answers the `n`-th (0-based) request to the
    /// same path.
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(None, script).await
    }

    /// Like [`Server::start`], over TLS when `tls` is given (`url` is then `https://`
    /// with host `localhost`).
    pub async fn start_with(
        tls: Option<tokio_rustls::TlsAcceptor>,
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let seen2 = seen.clone();
        let url = match &tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen2.clone();
                let script = script.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        let script = script.clone();
                        async move { handle(req, seen, script).await }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                            Err(_) => return,
                        },
                        None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    };
                });
            }
        });
        Server {
            addr,
            url,
            seen,
            task,
        }
    }

    /// A server that answers `first` to the first request of each path, then `200 {}`.
    pub async fn failing_once(first: Reply) -> Self {
        Self::start(move |_, n| {
            if n == 0 {
                first.clone()
            } else {
                Reply::json(200, "{}")
            }
        })
        .await
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests seen for `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.uri.path() == path)
            .collect()
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Script,
) -> Result<Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let record = Seen {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body,
    };
    let n = {
        let mut seen = seen.lock().unwrap();
        let n = seen
            .iter()
            .filter(|s| s.uri.path() == record.uri.path())
            .count();
        seen.push(record.clone());
        n
    };
    match script(&record, n) {
        Reply::ResetBeforeHeaders => Err(std::io::Error::other("scripted reset")),
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut resp =
                Response::new(Full::new(body).map_err(|e: Infallible| match e {}).boxed());
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                resp.headers_mut().append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            Ok(resp)
        }
        Reply::Streamed {
            status,
            headers,
            chunks,
        } => {
            let stream = futures_util::stream::iter(chunks).then(|c| async move {
                match c {
                    Chunk::Data(d) => Some(Ok(Frame::data(d))),
                    Chunk::Pause(d) => {
                        tokio::time::sleep(d).await;
                        None
                    }
                    Chunk::Fail => Some(Err(std::io::Error::other("scripted mid-body reset"))),
                }
            });
            let stream = stream.filter_map(|x| async move { x });
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                resp.headers_mut().append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            Ok(resp)
        }
    }
}

/// A port with nothing listening.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A clock whose sleeps return at once but are recorded, so retry schedules are checked
/// exactly without waiting. Wall time is fixed at `unix`.
#[derive(Debug, Default)]
pub struct RecordingClock {
    pub unix: f64,
    pub sleeps: Mutex<Vec<Duration>>,
}

impl RecordingClock {
    pub fn new(unix: f64) -> Arc<Self> {
        Arc::new(Self {
            unix,
            sleeps: Mutex::new(Vec::new()),
        })
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for RecordingClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_now(&self) -> f64 {
        self.unix
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleeps.lock().unwrap().push(duration);
        Box::pin(async {})
    }
}

/// A clock running `scale` times faster than real time (for JWT refresh over sockets).
#[derive(Debug)]
pub struct FastClock {
    pub unix_at_start: f64,
    pub start: std::time::Instant,
    pub scale: f64,
}

impl Clock for FastClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_now(&self) -> f64 {
        self.unix_at_start + self.start.elapsed().as_secs_f64() * self.scale
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration.div_f64(self.scale)))
    }
}

/// Jitter fixed at zero (the longest HTTP backoff, the shortest JWT refresh).
#[derive(Debug)]
pub struct ZeroJitter;

impl Jitter for ZeroJitter {
    fn unit(&self) -> f64 {
        0.0
    }
}

pub fn runtime(clock: Arc<dyn Clock>) -> Runtime {
    Runtime {
        clock,
        jitter: Arc::new(ZeroJitter),
    }
}

/// A JWT (unsigned) with the given claims.
pub fn make_jwt(exp: f64, iat: f64, sub: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.sig",
        enc(r#"{"alg":"none","typ":"JWT"}"#),
        enc(&format!(r#"{{"exp":{exp},"iat":{iat},"sub":"{sub}"}}"#))
    )
}

pub const KEY: &str = "tml-test-key-0123456789";
