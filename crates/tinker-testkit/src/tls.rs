//! A self-signed certificate for `localhost`, for [`Server::start_with`](crate::Server::start_with).

use std::sync::Arc;

/// The certificate a client must trust to reach an [`acceptor`]'s server.
#[derive(Debug, Clone)]
pub struct Cert {
    /// DER encoding.
    pub der: Vec<u8>,
    /// PEM encoding (for `SSL_CERT_FILE`-style files).
    pub pem: String,
}

/// A TLS acceptor for `localhost` with a fresh self-signed certificate, offering `alpn`
/// (e.g. `[b"h2", b"http/1.1"]`), and that certificate.
pub fn acceptor(alpn: &[&[u8]]) -> (tokio_rustls::TlsAcceptor, Cert) {
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
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        Cert {
            der: cert.cert.der().to_vec(),
            pem: cert.cert.pem(),
        },
    )
}
