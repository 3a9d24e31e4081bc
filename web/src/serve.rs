//! Serving an axum app the same way at both ends: plain HTTP or HTTPS (rustls, with a
//! certificate chain and key from PEM files or from the caller), `TCP_NODELAY` on every
//! connection, and a stop that lets requests in flight finish for a bounded time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

/// How long requests in flight (and open WebSockets) get once a stop begins.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub enum TlsError {
    Read(std::path::PathBuf, String),
    Rustls(rustls::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Read(path, e) => write!(f, "reading {}: {e}", path.display()),
            TlsError::Rustls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// HTTPS settings: the certificate chain, no client certificates (clients sign in with
/// tokens), HTTP/1.1 (WebSockets upgrade over it).
pub fn https_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Rustls)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// HTTPS settings from PEM files: a certificate chain and its private key.
pub fn https_from_files(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read(cert.to_path_buf(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Read(
            cert.to_path_buf(),
            "no certificate in it".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Read(key.to_path_buf(), e.to_string()))?;
    https_config(chain, key)
}

/// Sets `TCP_NODELAY` before the inner acceptor (plain or TLS) takes the connection:
/// without it, a stream's small messages wait for the client's delayed ACK (40 ms on
/// Linux) whenever one is still unacknowledged.
#[derive(Debug, Clone)]
struct NoDelay<A>(A);

impl<A, S> Accept<TcpStream, S> for NoDelay<A>
where
    A: Accept<TcpStream, S>,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = A::Future;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an API connection: {e}");
        }
        self.0.accept(stream, service)
    }
}

/// The largest request body either daemon reads (axum's default, named so that the check of
/// what a request announces and the extractors agree).
pub const MAX_BODY: usize = 2 << 20;

/// Reads every request's body before the handler runs, refusing one over [`MAX_BODY`].
///
/// A body announced too large is refused before any of it is read, so a client on a slow link
/// learns at once instead of after sending 2 MiB. Every other body is read whole first because
/// a handler may refuse a request (wrong role, type or vehicle) without reading its body, and
/// hyper then closes the connection with the body unread: the kernel resets it, and a client
/// reusing the connection loses the answer or its next request. Bodies here are small JSON.
async fn read_body_first(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let too_large = |message: String| {
        crate::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            message,
        )
        .into_response()
    };
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = announced.filter(|&n| n > MAX_BODY as u64) {
        return too_large(format!("the body is {n} bytes; at most {MAX_BODY}"));
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        // Over the limit without announcing it (chunked), or the client went away mid-body.
        Err(e) => {
            tracing::debug!("request body not read: {e}");
            return too_large(format!("the body is over {MAX_BODY} bytes"));
        }
    };
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `shutdown` resolves, then
/// gives requests in flight [`STOP_GRACE`]. Handlers see the client's address
/// (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(STOP_GRACE));
    });
    let app = app
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(read_body_first))
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = axum_server::from_tcp(listener).handle(handle);
    match tls {
        Some(config) => {
            let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(config));
            server.acceptor(NoDelay(acceptor)).serve(app).await
        }
        None => server.acceptor(NoDelay(DefaultAcceptor)).serve(app).await,
    }
}
