//! A forwarding proxy that records every request it passes on (method, path and query,
//! headers, body) in arrival order: the capture side of the wire test (`tinker-wire`).

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request as the proxy received it, and the status of the upstream's answer.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The request body as sent (still compressed if the client compressed it).
    pub body: bytes::Bytes,
    /// The upstream's status code (0 when the upstream could not be reached).
    pub status: u16,
}

/// A recording proxy in front of one upstream server (HTTP/1.1 and h2c towards clients,
/// HTTP/1.1 upstream). Stops when dropped.
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub url: String,
    record: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RecordingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingProxy")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingProxy {
    /// Forwards every request to `upstream` (e.g. `http://127.0.0.1:8790`) and records it.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let record: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.to_owned();
        let rec = record.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, rec) = (client.clone(), upstream.clone(), rec.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            forward(client.clone(), upstream.clone(), rec.clone(), req)
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, record, task }
    }

    /// The requests recorded so far, in arrival order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.record.lock().unwrap().clone()
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<bytes::Bytes>,
>;

async fn forward(
    client: Client,
    upstream: String,
    record: Arc<Mutex<Vec<Recorded>>>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<bytes::Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .to_bytes();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut up = http::Request::builder()
        .method(parts.method.clone())
        .uri(format!("{upstream}{path_and_query}"));
    for (name, value) in &parts.headers {
        // h2 clients send no `host`; the HTTP/1.1 upstream connection sets its own.
        if name != http::header::HOST {
            up = up.header(name, value);
        }
    }
    let up = up.body(Full::new(body.clone())).unwrap();
    // The entry is recorded before the upstream answers: arrival order is the client's order.
    let index = {
        let mut rec = record.lock().unwrap();
        rec.push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
            status: 0,
        });
        rec.len() - 1
    };
    let resp = client
        .request(up)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let (rparts, rbody) = resp.into_parts();
    let rbody = rbody
        .collect()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .to_bytes();
    record.lock().unwrap()[index].status = rparts.status.as_u16();
    Ok(http::Response::from_parts(rparts, Full::new(rbody)))
}
