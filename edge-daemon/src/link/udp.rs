//! UDP links. `udpin` listens and answers every peer it has heard from recently (a GCS and a
//! companion computer can share one port); `udpout` sends to one address and hears its replies.
//!
//! One datagram may carry several frames; a frame never spans datagrams. The receive buffer is
//! made large and the socket drained in bursts: at high rates the losses a router sees are
//! kernel drops on a default-sized buffer, not CPU.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{count_rx, count_tx, deliver, take_frames, Inbound, Link};
use crate::frame::FrameScanner;

/// Requested kernel receive buffer (the kernel may cap it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 << 20;
/// Datagrams read in one burst before handing the batch to the router.
const BURST: usize = 64;
/// A `udpin` peer silent this long stops receiving our traffic.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn run_in(
    link: &Arc<Link>,
    addr: SocketAddr,
    inbound: &mpsc::Sender<Inbound>,
) -> anyhow::Result<()> {
    let socket = Arc::new(bind(addr).with_context(|| format!("binding {addr}"))?);
    let peers = Arc::new(Peers::default());
    link.set_connected(true);
    let writer = AbortOnDrop(tokio::spawn(write_loop(
        link.clone(),
        socket.clone(),
        Destination::Peers(peers.clone()),
    )));
    let result = read_loop(link, &socket, Some(&peers), inbound).await;
    drop(writer);
    result
}

pub(super) async fn run_out(
    link: &Arc<Link>,
    addr: &str,
    inbound: &mpsc::Sender<Inbound>,
) -> anyhow::Result<()> {
    let target = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let local: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = Arc::new(bind(local).context("binding a local UDP port")?);
    link.set_connected(true);
    let writer = AbortOnDrop(tokio::spawn(write_loop(
        link.clone(),
        socket.clone(),
        Destination::One(target),
    )));
    let result = read_loop(link, &socket, None, inbound).await;
    drop(writer);
    result
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!("could not enlarge the UDP receive buffer: {e}");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn read_loop(
    link: &Link,
    socket: &UdpSocket,
    peers: Option<&Peers>,
    inbound: &mpsc::Sender<Inbound>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 65_536];
    let mut scanner = FrameScanner::new();
    loop {
        let first = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // An ICMP "port unreachable" for an earlier send; the peer may come up later.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e).context("receiving"),
        };
        let received = Instant::now();
        let mut frames = Vec::new();
        let mut next = Some(first);
        let mut burst = 0;
        while let Some((n, from)) = next {
            scanner.push(&buf[..n]);
            let mut batch = take_frames(link, &mut scanner, n);
            // Whatever is left can never complete: count it as truncated.
            scanner.end_datagram();
            count_rx(link, &mut scanner, 0, 0);
            if let Some(peers) = peers {
                if !batch.is_empty() {
                    peers.heard(from, received);
                }
            }
            frames.append(&mut batch);
            burst += 1;
            next = if burst < BURST {
                socket.try_recv_from(&mut buf).ok()
            } else {
                None
            };
        }
        if deliver(inbound, link.id, received, frames).await.is_err() {
            return Ok(());
        }
    }
}

enum Destination {
    One(SocketAddr),
    Peers(Arc<Peers>),
}

async fn write_loop(link: Arc<Link>, socket: Arc<UdpSocket>, destination: Destination) {
    let mut batch = Vec::new();
    let mut targets = Vec::new();
    loop {
        link.out.next_batch(&mut batch).await;
        targets.clear();
        match &destination {
            Destination::One(addr) => targets.push(*addr),
            Destination::Peers(peers) => peers.current(Instant::now(), &mut targets),
        }
        for frame in batch.drain(..) {
            for target in &targets {
                match socket.send_to(frame.as_bytes(), target).await {
                    Ok(n) => count_tx(&link, n),
                    Err(_) => {
                        link.stats
                            .tx_errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Addresses a `udpin` link has heard MAVLink from, with when.
#[derive(Default)]
struct Peers(Mutex<Vec<(SocketAddr, Instant)>>);

impl Peers {
    fn heard(&self, addr: SocketAddr, at: Instant) {
        let mut peers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match peers.iter_mut().find(|(a, _)| *a == addr) {
            Some(entry) => entry.1 = at,
            None => {
                tracing::info!(%addr, "new UDP peer");
                peers.push((addr, at));
            }
        }
    }

    fn current(&self, now: Instant, out: &mut Vec<SocketAddr>) {
        let mut peers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|(_, at)| now.duration_since(*at) < PEER_TIMEOUT);
        out.extend(peers.iter().map(|(a, _)| *a));
    }
}

/// Aborts a companion task when the link's main task ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
