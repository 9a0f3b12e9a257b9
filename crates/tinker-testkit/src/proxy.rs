//! A forwarding HTTP/1.1 proxy that, with a seeded probability, drops the answer after
//! the upstream executed the request: the request ran, the client never hears; and a CONNECT tunnel proxy.

use std::sync::Arc;

/// A CONNECT proxy (HTTP/1 and 2) that records `"CONNECT authority"` for every tunnel it
/// opens; returns its `http://` URL and that record.
pub async fn connect_proxy() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let record = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let authority = req
                                .uri()
                                .authority()
                                .map(|a| a.to_string())
                                .unwrap_or_default();
                            record
                                .lock()
                                .unwrap()
                                .push(format!("{} {authority}", req.method()));
                            tokio::spawn(async move {
                                let upgraded = hyper::upgrade::on(req).await.unwrap();
                                let mut upstream =
                                    tokio::net::TcpStream::connect(authority).await.unwrap();
                                let _ = tokio::io::copy_bidirectional(
                                    &mut TokioIo::new(upgraded),
                                    &mut upstream,
                                )
                                .await;
                            });
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Empty::<bytes::Bytes>::new(),
                            ))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, tunnels)
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
    /// `http://127.0.0.1:PORT` of the proxy.
    pub url: String,
    /// What the proxy saw and did so far.
    pub stats: std::sync::Arc<std::sync::Mutex<ProxyStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for DropProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropProxy")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for DropProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BoxError = std::io::Error;

/// A tiny seeded PRNG (splitmix64): the proxy's draws depend only on the seed and the
/// order of requests.
#[derive(Debug)]
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

    /// A snapshot of [`DropProxy::stats`].
    pub fn stats(&self) -> ProxyStats {
        self.stats.lock().unwrap().clone()
    }
}
