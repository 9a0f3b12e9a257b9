//! One scripted in-process HTTP server on `127.0.0.1:0` (HTTP/1.1 and HTTP/2, optionally
//! TLS): it records every request and answers from a script, including faults (a reset
//! before the head, a body cut mid-stream, stalls).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One request the server received, recorded for assertions.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request method.
    pub method: Method,
    /// The request target (path and query for origin-form requests).
    pub uri: Uri,
    /// The HTTP version the request came over.
    pub version: Version,
    /// All request headers.
    pub headers: HeaderMap,
    /// The whole request body (empty if it could not be read).
    pub body: Bytes,
}

impl Seen {
    /// The value of header `name`, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One step of a scripted response body.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Chunk {
    /// Send these bytes as one data frame.
    Data(Bytes),
    /// Wait this long before the next step.
    Pause(Duration),
    /// Abort the connection mid-body.
    Fail,
}

/// A scripted answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reply {
    /// A complete response.
    Full {
        /// The status code.
        status: u16,
        /// Response headers, in order.
        headers: Vec<(String, String)>,
        /// The whole body.
        body: Bytes,
    },
    /// Drop the connection before any response byte.
    ResetBeforeHeaders,
    /// Wait `delay`, then answer `reply` (a server that stalls before its head).
    Delayed {
        /// How long to wait before answering.
        delay: Duration,
        /// The answer after the wait.
        reply: Box<Reply>,
    },
    /// Send the head then stream `chunks` (a `Fail` aborts the connection).
    Streamed {
        /// The status code.
        status: u16,
        /// Response headers, in order.
        headers: Vec<(String, String)>,
        /// The body, step by step.
        chunks: Vec<Chunk>,
    },
}

impl Reply {
    /// An empty response with `status`.
    pub fn status(status: u16) -> Self {
        Reply::Full {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A JSON response (`content-type: application/json`).
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// A response with `body` and no headers.
    pub fn bytes(status: u16, body: impl Into<Bytes>) -> Self {
        Reply::Full {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// This reply, sent only after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Reply::Delayed {
            delay,
            reply: Box::new(self),
        }
    }

    /// Adds a response header (no effect on a reset).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Reply::Full { headers, .. } | Reply::Streamed { headers, .. } => {
                headers.push((name.into(), value.into()));
            }
            Reply::Delayed { reply, .. } => {
                let inner = std::mem::replace(reply.as_mut(), Reply::ResetBeforeHeaders);
                **reply = inner.with_header(name, value);
            }
            Reply::ResetBeforeHeaders => {}
        }
        self
    }
}

type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// The running server (stopped on drop). `url` has no trailing slash.
pub struct Server {
    /// The bound address (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` over TLS.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
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
    /// with host `localhost`; see [`crate::tls::acceptor`]).
    pub async fn start_with(
        tls: Option<tokio_rustls::TlsAcceptor>,
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let seen2 = seen.clone();
        let accepted: Arc<AtomicUsize> = Arc::default();
        let accepted2 = accepted.clone();
        let url = match &tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted2.fetch_add(1, Ordering::Relaxed);
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
            accepted,
            task,
        }
    }

    /// A server that answers the `n`-th request (0-based, all paths together) with
    /// `replies[n]`, and every request after the script's end with its last reply (an
    /// empty script answers `500`).
    pub async fn scripted(replies: Vec<Reply>) -> Self {
        let next = std::sync::atomic::AtomicUsize::new(0);
        Self::start(move |_, _| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            replies
                .get(n)
                .or(replies.last())
                .cloned()
                .unwrap_or(Reply::status(500))
        })
        .await
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

    /// TCP connections accepted so far (for bounds on the client's connection pool).
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
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
    let mut reply = script(&record, n);
    while let Reply::Delayed {
        delay,
        reply: inner,
    } = reply
    {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::ResetBeforeHeaders | Reply::Delayed { .. } => {
            Err(std::io::Error::other("scripted reset"))
        }
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
