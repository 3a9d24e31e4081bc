//! QUIC with mutual TLS, configured the same way on both sides.
//!
//! The relay requires a client certificate issued by its CA and reads the edge's identity
//! from it ([`peer_identity`]); the edge trusts only the relay's CA. TLS 1.3 only, ALPN
//! [`crate::ALPN`]. Transport parameters are tuned for the links edges actually have:
//! cellular and satellite, hundreds of milliseconds of RTT, loss, and long silences.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::{EdgeIdentity, IdentityError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC crypto configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("peer identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("the peer presented no certificate")]
    NoCertificate,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: CertificateDer<'static>) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    Ok(Arc::new(roots))
}

/// Transport parameters for long, lossy, intermittent links: large flow-control windows so a
/// 600 ms satellite RTT still fills the pipe (quinn's defaults assume ~100 ms), and keep-alives
/// well inside NAT timeouts. A path silent for the idle timeout is given up and redialled:
/// resuming a session costs one handshake, and sync resumes exactly from the relay's mark.
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let window: u32 = 16 << 20;
    t.stream_receive_window(window.into());
    t.receive_window((4 * window).into());
    t.send_window(4 * u64::from(window));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(20)) {
        t.max_idle_timeout(Some(idle));
    }
    t.datagram_receive_buffer_size(Some(1 << 20));
    Arc::new(t)
}

/// The relay side: its own certificate, and the CA every edge certificate must chain to.
pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    client_ca: CertificateDer<'static>,
) -> Result<quinn::ServerConfig, TransportError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(client_ca)?, provider())
            .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![crate::ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport_config());
    Ok(config)
}

/// The receive buffer the relay asks the kernel for on its one UDP socket, which every edge's
/// connection shares (Linux caps the request at `net.core.rmem_max`; raise that where the
/// relay serves many edges). With the default of about 200 KB, a relay holding 1,000 edges on
/// a busy 2-core machine dropped about 2,000 datagrams a second in steady state and far more
/// while they all resumed after a restart; QUIC recovers each loss, but its backed-off probes
/// left a few connections hearing nothing for the whole idle timeout
/// (`tests/benches/relay_restart.rs`). The edge's UDP links ask for as much.
pub const SERVER_RECV_BUFFER: usize = 8 << 20;

/// Binds the relay's UDP socket with a [`SERVER_RECV_BUFFER`] receive buffer, or the largest
/// the kernel allows.
fn server_socket(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    // Best effort: a smaller buffer still works, it only drops sooner under load.
    let _ = state.set_recv_buffer_size((&socket).into(), SERVER_RECV_BUFFER);
    Ok(socket)
}

/// No minimum time between two stateless resets. quinn's default, 20 ms, allows one reset
/// per 20 ms for the whole endpoint (and, as it stamps a whole batch of received datagrams
/// with one instant, any non-zero interval allows only one per batch): a relay restarted
/// under 1,000 edges ignored most of their packets, and about half of them waited out their
/// idle timeout (20 s) instead of reconnecting at once (`tests/benches/relay_restart.rs`).
/// The limit guards against floods; here the connection-id check already drops every packet
/// whose id this relay's key did not make, and a reset is always smaller than the packet that
/// prompted it, so resets stay bounded by, and smaller than, what the relay receives.
const MIN_RESET_INTERVAL: Duration = Duration::ZERO;

/// The relay's endpoint. `reset_secret` keys QUIC stateless resets and the connection-id
/// check: kept across restarts, both let a restarted relay recognise packets meant for its
/// previous run and reset those connections, so every edge reconnects at once instead of
/// waiting out its idle timeout.
pub fn server_endpoint(
    config: quinn::ServerConfig,
    addr: std::net::SocketAddr,
    reset_secret: &[u8; 32],
) -> std::io::Result<quinn::Endpoint> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_secret);
    let tag = ring::hmac::sign(&key, b"trellis quic connection id key");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(key));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    endpoint_config.min_reset_interval(MIN_RESET_INTERVAL);
    quinn::Endpoint::new(
        endpoint_config,
        Some(config),
        server_socket(addr)?,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The edge side: its enrollment certificate, and the relay's CA.
pub fn client_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    relay_ca: CertificateDer<'static>,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(relay_ca)?)
        .with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![crate::ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport_config());
    Ok(config)
}

/// Who is on the other end of an accepted connection: read from the certificate TLS has
/// already verified against the CA, and from nowhere else.
pub fn peer_identity(conn: &quinn::Connection) -> Result<EdgeIdentity, TransportError> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(TransportError::NoCertificate)?;
    let leaf = certs.first().ok_or(TransportError::NoCertificate)?;
    Ok(EdgeIdentity::from_certificate(leaf)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    struct Relay {
        endpoint: quinn::Endpoint,
        ca: Ca,
    }

    fn relay() -> Relay {
        let (ca, _) = Ca::generate("test relay CA").unwrap();
        let relay = ca.issue_relay(&["localhost".into()]).unwrap();
        let config = server_config(
            relay.cert_der().unwrap(),
            relay.key_der().unwrap(),
            ca.cert_der().unwrap(),
        )
        .unwrap();
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        Relay { endpoint, ca }
    }

    async fn connect(
        relay: &Relay,
        edge_ca: &Ca,
        id: &EdgeIdentity,
    ) -> Result<quinn::Connection, String> {
        let edge = edge_ca.issue_edge(id).unwrap();
        let config = client_config(
            edge.cert_der().unwrap(),
            edge.key_der().unwrap(),
            relay.ca.cert_der().unwrap(),
        )
        .unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        let addr = relay.endpoint.local_addr().unwrap();
        let conn = endpoint
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        // The handshake completes on the client before the server has checked our
        // certificate; a round trip proves the relay accepted it.
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(b"ping").await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(16).await.map_err(|e| e.to_string())?;
        Ok(conn)
    }

    async fn accept_one(relay: &Relay) -> Result<EdgeIdentity, String> {
        let incoming = relay.endpoint.accept().await.ok_or("endpoint closed")?;
        let conn = incoming.await.map_err(|e| e.to_string())?;
        let id = peer_identity(&conn).map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let ping = recv.read_to_end(16).await.map_err(|e| e.to_string())?;
        send.write_all(&ping).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let _ = conn.closed().await;
        Ok(id)
    }

    #[tokio::test]
    async fn the_relay_learns_the_edge_identity_from_its_certificate() {
        let relay = relay();
        let id = EdgeIdentity::new("vineyard-co", "pi-north").unwrap();
        let server = accept_one(&relay);
        let client = async {
            let conn = connect(&relay, &relay.ca, &id).await.unwrap();
            conn.close(0u32.into(), b"done");
        };
        let (seen, ()) = tokio::join!(server, client);
        assert_eq!(seen.unwrap(), id);
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_is_refused() {
        let relay = relay();
        let (rogue, _) = Ca::generate("rogue CA").unwrap();
        let id = EdgeIdentity::new("vineyard-co", "pi-north").unwrap();
        let server = accept_one(&relay);
        let client = connect(&relay, &rogue, &id);
        let (server, client) = tokio::join!(server, client);
        assert!(server.is_err(), "relay accepted a rogue edge");
        assert!(client.is_err(), "rogue edge got through");
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_refused() {
        let relay = relay();
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots(relay.ca.cert_der().unwrap()).unwrap())
            .with_no_client_auth();
        let mut tls = tls;
        tls.alpn_protocols = vec![crate::ALPN.to_vec()];
        let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        let addr = relay.endpoint.local_addr().unwrap();
        let client = async {
            let conn = endpoint
                .connect(addr, "localhost")
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(b"ping").await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            recv.read_to_end(16).await.map_err(|e| e.to_string())
        };
        let (server, client) = tokio::join!(accept_one(&relay), client);
        assert!(server.is_err() && client.is_err(), "{server:?} {client:?}");
    }

    /// A relay's run: its endpoint on its own runtime, accepting every connection and
    /// holding it open. Shutting the runtime down drops everything unsent, as a crash does.
    fn relay_run(
        config: &quinn::ServerConfig,
        addr: std::net::SocketAddr,
        secret: &[u8; 32],
    ) -> (
        tokio::runtime::Runtime,
        std::net::SocketAddr,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let endpoint = {
            let _guard = runtime.enter();
            // The previous run's socket closes as its runtime finishes dropping it.
            let mut tries = 0;
            loop {
                match server_endpoint(config.clone(), addr, secret) {
                    Ok(e) => break e,
                    Err(_) if tries < 100 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("binding {addr}: {e}"),
                }
            }
        };
        let addr = endpoint.local_addr().unwrap();
        let counter = accepted.clone();
        runtime.spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        conn.closed().await;
                    }
                });
            }
        });
        (runtime, addr, accepted)
    }

    /// A relay restarted on the same address with the same secret answers a packet of each of
    /// its previous run's connections with a stateless reset, however many arrive at once, so
    /// every edge reconnects at once instead of waiting out its idle timeout (quinn's default
    /// of one reset per 20 ms reset only a few of these and left the rest to time out).
    #[test]
    fn a_restarted_relay_resets_all_its_former_connections_at_once() {
        const EDGES: usize = 100;
        let (ca, _) = Ca::generate("test relay CA").unwrap();
        let relay = ca.issue_relay(&["localhost".into()]).unwrap();
        let config = server_config(
            relay.cert_der().unwrap(),
            relay.key_der().unwrap(),
            ca.cert_der().unwrap(),
        )
        .unwrap();
        let secret = [9u8; 32];
        let (first, addr, accepted) = relay_run(&config, "127.0.0.1:0".parse().unwrap(), &secret);

        let edges = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let conns: Vec<quinn::Connection> = edges.block_on(async {
            let mut conns = Vec::new();
            for i in 0..EDGES {
                let id = EdgeIdentity::new("vineyard-co", &format!("pi-{i}")).unwrap();
                let edge = ca.issue_edge(&id).unwrap();
                let client = client_config(
                    edge.cert_der().unwrap(),
                    edge.key_der().unwrap(),
                    ca.cert_der().unwrap(),
                )
                .unwrap();
                // One socket per edge, as each station has its own.
                let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
                conns.push(
                    endpoint
                        .connect_with(client, addr, "localhost")
                        .unwrap()
                        .await
                        .unwrap(),
                );
            }
            conns
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while accepted.load(std::sync::atomic::Ordering::SeqCst) < EDGES {
            assert!(
                std::time::Instant::now() < deadline,
                "relay accepted too few"
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        // The crash: nothing more leaves the first run, not even a close.
        first.shutdown_timeout(Duration::from_secs(1));
        let (_second, _, _) = relay_run(&config, addr, &secret);
        let reasons = edges.block_on(async {
            let mut waits = tokio::task::JoinSet::new();
            for (i, conn) in conns.iter().cloned().enumerate() {
                waits.spawn(async move {
                    // Anything the edge sends now reaches the new run.
                    if let Ok(mut lane) = conn.open_uni().await {
                        let _ = lane.write_all(b"batch").await;
                    }
                    let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed());
                    (i, closed.await.map_err(|_| "still open after 3 s"))
                });
            }
            let mut reasons = vec![Err("not waited for"); EDGES];
            while let Some(joined) = waits.join_next().await {
                let (i, reason) = joined.unwrap();
                reasons[i] = reason;
            }
            reasons
        });
        for (i, reason) in reasons.iter().enumerate() {
            assert!(
                matches!(reason, Ok(quinn::ConnectionError::Reset)),
                "edge {i}: {reason:?}"
            );
        }
    }

    /// Every edge's connection arrives on the relay's one socket: it asks for a receive
    /// buffer of [`SERVER_RECV_BUFFER`] and gets it, or as much as the kernel allows (on a
    /// host left at Linux's default `rmem_max`, about 200 KB, this checks nothing more).
    #[test]
    fn the_relay_socket_asks_for_a_large_receive_buffer() {
        let socket = server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
        let granted = state.recv_buffer_size((&socket).into()).unwrap();
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(SERVER_RECV_BUFFER);
        // Linux grants at most `rmem_max` and reports twice what it grants.
        assert!(granted >= SERVER_RECV_BUFFER.min(cap), "{granted} bytes");
    }
}
