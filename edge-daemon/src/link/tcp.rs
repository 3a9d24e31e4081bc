//! TCP links: `tcp:` connects out (SITL, a companion computer, a TCP radio bridge) and is
//! reconnected by the supervisor; `tcpin:` listens, and every client that connects becomes a
//! link of its own, so the router addresses each separately.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{stream, Backoff, Inbound, Link, LinkConfig, Links};

pub(super) async fn connect(
    link: &Arc<Link>,
    addr: &str,
    inbound: &mpsc::Sender<Inbound>,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    tracing::info!(link = link.id, %addr, "connected");
    stream::run(link, stream, inbound).await
}

pub(super) async fn listen(
    addr: SocketAddr,
    config: LinkConfig,
    links: Links,
    inbound: mpsc::Sender<Inbound>,
) {
    let mut backoff = Backoff::default();
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(%addr, "cannot listen: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    };
    tracing::info!(%addr, "listening for TCP clients");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Usually EMFILE: wait rather than spin.
                tracing::warn!(%addr, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if inbound.is_closed() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let link = links.add(format!("tcpin:{addr} <- {peer}"), config.clone());
        tracing::info!(link = link.id, %peer, "TCP client connected");
        let (links, inbound) = (links.clone(), inbound.clone());
        tokio::spawn(async move {
            if let Err(e) = stream::run(&link, stream, &inbound).await {
                tracing::info!(link = link.id, %peer, "TCP client failed: {e:#}");
            }
            link.set_connected(false);
            links.remove(link.id);
            tracing::info!(link = link.id, %peer, "TCP client gone");
        });
    }
}
