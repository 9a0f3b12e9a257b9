//! The connector under the hyper client: TCP, proxies (`HTTP(S)_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, via hyper-util's matcher), and TLS (rustls with webpki roots, native
//! roots and `SSL_CERT_FILE`; or native-tls behind the `native-tls` feature).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tower::Service;

use crate::env::Env;
use crate::error::{BoxError, TransportError};

/// Which proxies to use.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum ProxyConfig {
    /// `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY` (and lower-case forms) from the
    /// transport's [`Env`], with curl's rules.
    #[default]
    FromEnv,
    /// No proxy.
    None,
    /// Every request through this proxy URL (`http://`, `socks5://`, `socks5h://`),
    /// except hosts matched by `no_proxy` (a `NO_PROXY`-style list).
    Url {
        /// The proxy URL, optionally with `user:password@`.
        url: String,
        /// Hosts that bypass the proxy.
        no_proxy: Option<String>,
    },
}

impl ProxyConfig {
    pub(crate) fn matcher(&self, env: &Env) -> Option<Matcher> {
        let builder = match self {
            ProxyConfig::None => return None,
            ProxyConfig::FromEnv => {
                let mut b = Matcher::builder();
                if let Some(v) = env.first(&["ALL_PROXY", "all_proxy"]) {
                    b = b.all(v);
                }
                if let Some(v) = env.first(&["HTTP_PROXY", "http_proxy"]) {
                    b = b.http(v);
                }
                if let Some(v) = env.first(&["HTTPS_PROXY", "https_proxy"]) {
                    b = b.https(v);
                }
                if let Some(v) = env.first(&["NO_PROXY", "no_proxy"]) {
                    b = b.no(v);
                }
                b
            }
            ProxyConfig::Url { url, no_proxy } => {
                let mut b = Matcher::builder().all(url.clone());
                if let Some(no) = no_proxy {
                    b = b.no(no.clone());
                }
                b
            }
        };
        Some(builder.build())
    }
}

/// Where TLS trust comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Trust the bundled Mozilla roots (`webpki-roots`; works offline). Default true.
    pub webpki_roots: bool,
    /// Also trust the platform store (`rustls-native-certs`). Default true.
    pub native_roots: bool,
    /// Extra PEM CA files to trust (in addition to `SSL_CERT_FILE`, which is always read
    /// from the transport's environment when set).
    pub extra_ca_files: Vec<PathBuf>,
    /// Extra DER-encoded CA certificates to trust.
    pub extra_ca_certs: Vec<Vec<u8>>,
    /// Use the platform TLS library instead of rustls (feature `native-tls`).
    pub native_tls: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            webpki_roots: true,
            native_roots: true,
            extra_ca_files: Vec::new(),
            extra_ca_certs: Vec::new(),
            native_tls: false,
        }
    }
}

impl TlsConfig {
    pub(crate) fn rustls_config(&self, env: &Env) -> Result<rustls::ClientConfig, TransportError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if self.native_roots {
            // Unreadable platform certificates are skipped, as browsers and curl do.
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
        let mut files = self.extra_ca_files.clone();
        if let Some(file) = env.get("SSL_CERT_FILE") {
            files.push(PathBuf::from(file));
        }
        for file in &files {
            let certs = CertificateDer::pem_file_iter(file).map_err(|e| {
                TransportError::invalid(format!("cannot read CA file {}: {e}", file.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    TransportError::invalid(format!("bad certificate in {}: {e}", file.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    TransportError::invalid(format!(
                        "bad CA certificate in {}: {e}",
                        file.display()
                    ))
                })?;
            }
        }
        for der in &self.extra_ca_certs {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| TransportError::invalid(format!("bad CA certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::invalid(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// A TCP connection, direct or through a proxy.
#[derive(Debug)]
pub(crate) struct ProxyStream {
    io: TokioIo<TcpStream>,
    /// The connection goes to an HTTP forward proxy: requests use absolute-form URIs.
    forwarded: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarded)
    }
}

impl Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// Connects directly, through a CONNECT tunnel (https targets), a forward proxy (http
/// targets) or SOCKS5, as the matcher decides per destination.
#[derive(Clone, Debug)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    matcher: Option<Arc<Matcher>>,
}

impl ProxyConnector {
    pub(crate) fn new(connect_timeout: Duration, matcher: Option<Arc<Matcher>>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        Self { http, matcher }
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let intercept = self.matcher.as_ref().and_then(|m| m.intercept(&dst));
        Box::pin(async move {
            let Some(proxy) = intercept else {
                let io = http.call(dst).await?;
                return Ok(ProxyStream {
                    io,
                    forwarded: false,
                });
            };
            let proxy_uri = proxy.uri().clone();
            match proxy_uri.scheme_str() {
                Some("socks5" | "socks5h") => {
                    let mut socks = SocksV5::new(proxy_uri.clone(), http)
                        .local_dns(proxy_uri.scheme_str() == Some("socks5"));
                    if let Some((user, pass)) = proxy.raw_auth() {
                        socks = socks.with_auth(user.to_owned(), pass.to_owned());
                    }
                    let io = socks.call(dst).await?;
                    Ok(ProxyStream {
                        io,
                        forwarded: false,
                    })
                }
                _ if dst.scheme_str() == Some("https") => {
                    let mut tunnel = Tunnel::new(proxy_uri, http);
                    if let Some(auth) = proxy.basic_auth() {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    let io = tunnel.call(dst).await?;
                    Ok(ProxyStream {
                        io,
                        forwarded: false,
                    })
                }
                _ => {
                    let io = http.call(proxy_uri).await?;
                    Ok(ProxyStream {
                        io,
                        forwarded: true,
                    })
                }
            }
        })
    }
}
