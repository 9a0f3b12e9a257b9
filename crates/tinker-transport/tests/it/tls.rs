//! TLS with rustls: ALPN picks HTTP/2 or HTTP/1.1; trust comes from configured CA
//! certificates or `SSL_CERT_FILE`, never from the network.

use tinker_testkit::proxy::connect_proxy;
use tinker_testkit::*;
use tinker_transport::http::HttpVersion;
use tinker_transport::http::connect::{ProxyConfig, TlsConfig};
use tinker_transport::{Env, ErrorKind, RequestSpec, Transport};

/// A self-signed certificate for `localhost` and a TLS acceptor offering h2 and http/1.1.
fn tls_server_config() -> (tokio_rustls::TlsAcceptor, tinker_testkit::tls::Cert) {
    tinker_testkit::tls::acceptor(&[b"h2", b"http/1.1"])
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
            .tls(only_roots(vec![cert.der.clone()]))
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
    std::fs::write(&pem, &cert.pem).unwrap();
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
        .tls(only_roots(vec![cert.der.clone()]))
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
