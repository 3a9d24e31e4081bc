//! A running relay: the QUIC listener for edges and the HQ API, started together on the
//! caller's tokio runtime. `cloud-relay serve` runs one; `edge-daemon demo` runs one on
//! loopback beside the edge so a newcomer sees the whole path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sync_protocol::enrollment::Bundle;
use sync_protocol::identity::EdgeIdentity;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::live::LiveView;
use crate::store::{RelayStore, Store};
use crate::{hq, pki_files, server};

/// The relay database inside the data directory.
pub const DB_FILE: &str = "relay.db";

pub struct Relay {
    pub quic_addr: SocketAddr,
    pub hq_addr: SocketAddr,
    pub store: Arc<dyn Store>,
    endpoint: quinn::Endpoint,
    stop: tokio::sync::oneshot::Sender<()>,
    hq: JoinHandle<std::io::Result<()>>,
    quic: JoinHandle<()>,
    /// Membership of a relay of several instances, when configured.
    _cluster: Option<crate::cluster::Cluster>,
}

impl Relay {
    /// Binds both listeners (so a busy port fails here, with its address) and starts
    /// serving.
    pub async fn start(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Relay> {
        let ca = pki_files::ca(&config.data_dir)?;
        let cert = pki_files::relay_cert(&config.data_dir, &ca, &config.quic.server_names)?;
        let quic = sync_protocol::transport::server_config(
            cert.cert_der()?,
            cert.key_der()?,
            ca.cert_der()?,
        )?;
        let reset = pki_files::reset_secret(&config.data_dir)?;
        let endpoint = sync_protocol::transport::server_endpoint(quic, config.quic.listen, &reset)
            .with_context(|| format!("QUIC cannot listen on {}", config.quic.listen))?;
        let quic_addr = endpoint.local_addr()?;

        let tls = if config.hq.tls {
            Some(hq_tls(config, &cert)?)
        } else {
            None
        };
        let listener = std::net::TcpListener::bind(config.hq.listen)
            .with_context(|| format!("HQ API cannot listen on {}", config.hq.listen))?;
        listener.set_nonblocking(true)?;
        let hq_addr = listener.local_addr()?;
        let live = Arc::new(LiveView::default());
        let cluster = if config.cluster.nats.is_empty() {
            None
        } else {
            let instance = match config.cluster.instance.as_str() {
                "" => format!("{}:{}", host_name(), quic_addr.port()),
                name => name.to_string(),
            };
            let cluster = &config.cluster;
            Some(
                crate::cluster::Cluster::join(
                    &cluster.nats,
                    &cluster.subject,
                    &instance,
                    live.clone(),
                )
                .await?,
            )
        };
        let node = format!("relay/{}", config.quic.public_address);
        let state = hq::HqState::new(store.clone(), live.clone(), &node);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let hq = tokio::spawn(hq::serve(listener, tls, state, async {
            let _ = stop_rx.await;
        }));
        let quic = tokio::spawn(server::run(endpoint.clone(), store.clone(), live));
        tracing::info!(quic = %quic_addr, hq = %hq_addr, tls = config.hq.tls,
            data = %config.data_dir.display(), "cloud relay running");
        Ok(Relay {
            quic_addr,
            hq_addr,
            store,
            endpoint,
            stop,
            hq,
            quic,
            _cluster: cluster,
        })
    }

    /// Runs until `shutdown` resolves or a listener fails, then stops.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let result = tokio::select! {
            () = shutdown => Ok(()),
            r = &mut self.hq => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("HQ API")),
                Err(e) => Err(e.into()),
            },
            r = &mut self.quic => r.map_err(Into::into),
        };
        self.stop().await;
        result
    }

    /// Closes edge connections (they reconnect to a restarted relay) and the HQ API.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.endpoint
            .close(server::CLOSE_DONE.into(), b"relay stopping");
        // The close frames go out at once; an edge on a dead link is not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        self.quic.abort();
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "relay".into())
}

/// The HTTPS identity: the configured files, else the relay's own CA-issued certificate.
fn hq_tls(
    config: &Config,
    relay: &sync_protocol::pki::CertifiedKey,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    if config.hq.cert_file.as_os_str().is_empty() {
        let chain = vec![relay.cert_der()?];
        Ok(trellis_web::serve::https_config(chain, relay.key_der()?)?)
    } else {
        Ok(trellis_web::serve::https_from_files(
            &config.hq.cert_file,
            &config.hq.key_file,
        )?)
    }
}

/// Enrolls `org/edge`: records it, issues its certificate, and returns its bundle (which
/// holds the edge's private key: write it 0600).
pub fn enroll(
    config: &Config,
    store: &dyn RelayStore,
    org: &str,
    edge: &str,
) -> anyhow::Result<Bundle> {
    let id = EdgeIdentity::new(org, edge)?;
    store.enroll_edge(&id)?;
    let ca = pki_files::ca(&config.data_dir)?;
    let key = ca.issue_edge(&id)?;
    Ok(Bundle {
        org: org.into(),
        edge: edge.into(),
        relay: config.quic.public_address.clone(),
        server_name: server_name(config),
        relay_ca_pem: ca.cert_pem.clone(),
        cert_pem: key.cert_pem,
        key_pem: key.key_pem,
    })
}

/// The certificate name edges check: the host of the (first) public address when the
/// certificate covers it, else the first configured name.
fn server_name(config: &Config) -> String {
    let first = config
        .quic
        .public_address
        .split(',')
        .next()
        .unwrap_or("")
        .trim();
    let host = first.rsplit_once(':').map_or(first, |(h, _)| h);
    if config.quic.server_names.iter().any(|n| n == host) {
        host.to_string()
    } else {
        config
            .quic
            .server_names
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost".into())
    }
}
