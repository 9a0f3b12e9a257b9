//! TLS with rustls: ALPN picks HTTP/2 or HTTP/1.1; trust comes from configured CA
//! certificates or `SSL_CERT_FILE`, never from the network.

// Fixture helpers (certificate, CONNECT proxy) are test code: panicking is the failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use tinker_transport::http::HttpVersion;
use tinker_transport::http::connect::{ProxyConfig, TlsConfig};
use tinker_transport::{Env, ErrorKind, RequestSpec, Transport};

/// A self-signed certificate for `localhost` and a TLS acceptor offering h2 and http/1.1.
fn tls_server_config() -> (
    tokio_rustls::TlsAcceptor,
    rcgen::CertifiedKey<rcgen::KeyPair>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS 1.2 and 1.3")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("a server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert)
}

fn only_roots(extra: Vec<Vec<u8>>) -> TlsConfig {
    let mut tls = TlsConfig::default();
    tls.webpki_roots = false;
    tls.native_roots = false;
    tls.extra_ca_certs = extra;
    tls
}

#[tokio::test]
async fn alpn_negotiates_http2_or_http1() {
    let (acceptor, cert) = tls_server_config();
    let server = Server::start_with(Some(acceptor), |_, _| Reply::json(200, "{}")).await;
    for (version, expected) in [
        (HttpVersion::Auto, http::Version::HTTP_2),
        (HttpVersion::Http1Only, http::Version::HTTP_11),
    ] {
        let t = Transport::builder()
            .base_url(&server.url)
            .env(Env::from_pairs([("HOME", "/nonexistent")]))
            .api_key(KEY.to_owned().into())
            .proxy(ProxyConfig::None)
            .tls(only_roots(vec![cert.cert.der().to_vec()]))
            .http_version(version)
            .build()
            .unwrap();
        t.send(RequestSpec::get("/api/v1/healthz")).await.unwrap();
        assert_eq!(server.seen().last().unwrap().version, expected);
    }
}

#[tokio::test]
async fn ssl_cert_file_is_trusted_and_unknown_cas_are_not() {
    let (acceptor, cert) = tls_server_config();
    let server = Server::start_with(Some(acceptor), |_, _| Reply::json(200, "{}")).await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, cert.cert.pem()).unwrap();
    let with_file = Env::from_pairs([
        ("HOME", "/nonexistent".to_owned()),
        ("SSL_CERT_FILE", pem.to_str().unwrap().to_owned()),
    ]);
    let t = Transport::builder()
        .base_url(&server.url)
        .env(with_file)
        .api_key(KEY.to_owned().into())
        .proxy(ProxyConfig::None)
        .tls(only_roots(Vec::new()))
        .build()
        .unwrap();
    t.send(RequestSpec::get("/api/v1/healthz")).await.unwrap();
    // Without it, the self-signed certificate is rejected (a connection error).
    let t = Transport::builder()
        .base_url(&server.url)
        .env(Env::from_pairs([("HOME", "/nonexistent")]))
        .api_key(KEY.to_owned().into())
        .proxy(ProxyConfig::None)
        .max_retries(0)
        .build()
        .unwrap();
    let err = t
        .send(RequestSpec::get("/api/v1/healthz"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(server.seen().len(), 1);
}

/// A CONNECT proxy that records the authorities it tunnels to.
async fn connect_proxy() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
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

#[tokio::test]
async fn https_goes_through_a_connect_tunnel() {
    let (acceptor, cert) = tls_server_config();
    let server =
        Server::start_with(Some(acceptor), |_, _| Reply::json(200, r#"{"tls":true}"#)).await;
    let (proxy_url, tunnels) = connect_proxy().await;
    let t = Transport::builder()
        .base_url(&server.url)
        .env(Env::from_pairs([("HOME", "/nonexistent")]))
        .api_key(KEY.to_owned().into())
        .proxy(ProxyConfig::Url {
            url: proxy_url,
            no_proxy: None,
        })
        .tls(only_roots(vec![cert.cert.der().to_vec()]))
        .build()
        .unwrap();
    let v: serde_json::Value = t
        .get_json(RequestSpec::get("/api/v1/healthz"))
        .await
        .unwrap();
    assert_eq!(v["tls"], true);
    assert_eq!(
        *tunnels.lock().unwrap(),
        vec![format!("CONNECT localhost:{}", server.addr.port())]
    );
    // Inside the tunnel TLS negotiates HTTP/2 with the origin, which gets the key.
    let seen = server.seen();
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert_eq!(seen[0].uri.path(), "/api/v1/healthz");
    assert_eq!(seen[0].header("x-api-key"), Some(KEY));
}
