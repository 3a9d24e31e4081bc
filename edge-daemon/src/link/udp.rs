//! UDP links. `udpin` listens and answers every peer it has heard from recently (a GCS and a
//! companion computer can share one port); `udpout` sends to one address and hears its replies.
//!
//! One datagram may carry several frames, both ways; a frame never spans datagrams. The
//! receive buffer is made large and the socket drained in bursts: at high rates the losses a
//! router sees are kernel drops on a default-sized buffer, not CPU.

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
/// Frames that wait together leave packed into datagrams of at most this many bytes, a frame
/// never split across two. One datagram per frame costs a system call and a loopback or NIC
/// delivery each, and at 100,000 frames/s that alone is a core: the writer fell behind and the
/// GCS got coalesced telemetry instead of every frame. Every MAVLink peer (QGroundControl,
/// MAVProxy, pymavlink, mavlink-router) parses several frames per datagram, which is how
/// ArduPilot itself sends; 1,400 bytes stays under a 1,500-byte Ethernet or IP-radio MTU
/// with IPv6 headers. A frame sent alone still leaves at once: packing only gathers what
/// is already queued, it never waits for more.
const MAX_DATAGRAM: usize = 1_400;
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
    let mut datagram = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        link.out.next_batch(&mut batch).await;
        targets.clear();
        match &destination {
            Destination::One(addr) => targets.push(*addr),
            Destination::Peers(peers) => peers.current(Instant::now(), &mut targets),
        }
        let mut frames = batch.drain(..).peekable();
        while frames.peek().is_some() {
            datagram.clear();
            let mut packed = 0;
            while let Some(frame) = frames.next_if(|f| {
                datagram.is_empty() || datagram.len() + f.as_bytes().len() <= MAX_DATAGRAM
            }) {
                datagram.extend_from_slice(frame.as_bytes());
                packed += 1;
            }
            for target in &targets {
                match socket.send_to(&datagram, target).await {
                    Ok(n) => count_tx(&link, packed, n),
                    Err(_) => {
                        link.stats
                            .tx_errors
                            .fetch_add(packed, std::sync::atomic::Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MavMessage;
    use crate::frame::{Frame, Version};
    use crate::link::{Endpoint, Links};
    use mavlink::dialects::ardupilotmega as apm;
    use std::sync::atomic::Ordering::Relaxed;

    /// All the same length: MAVLink 2 trims a payload's trailing zeros, and the heading is
    /// its last field.
    fn position(seq: u16) -> Frame {
        let msg = MavMessage::GLOBAL_POSITION_INT(apm::GLOBAL_POSITION_INT_DATA {
            time_boot_ms: u32::from(seq),
            hdg: 9_000,
            ..Default::default()
        });
        Frame::encode(Version::V2, 1, 1, seq as u8, &msg)
    }

    /// Reads datagrams until `frames` frames came, or fails after 5 s.
    async fn receive(socket: &UdpSocket, frames: usize) -> (Vec<usize>, Vec<Frame>) {
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let mut scanner = FrameScanner::new();
        while got.len() < frames {
            let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("only {} of {frames} frames arrived", got.len()))
                .expect("receiving");
            sizes.push(n);
            scanner.push(&buf[..n]);
            while let Some(f) = scanner.next_frame() {
                got.push(f);
            }
            scanner.end_datagram();
            assert_eq!(
                scanner.take_errors().total(),
                0,
                "a datagram held a partial frame"
            );
        }
        (sizes, got)
    }

    #[tokio::test]
    async fn queued_frames_leave_packed_in_order_and_a_lone_frame_at_once() {
        let gcs = UdpSocket::bind("127.0.0.1:0").await.expect("binding");
        let target = gcs.local_addr().expect("address");
        let links = Links::default();
        let link = links.add("udpout".into(), Endpoint::UdpOut(target.to_string()).into());
        link.set_connected(true);
        // Queued before the writer runs, as a burst waits while the writer is busy.
        let queued = 1_000;
        for seq in 0..queued {
            link.send(position(seq));
        }
        let socket = Arc::new(bind("127.0.0.1:0".parse().expect("address")).expect("binding"));
        let _writer = AbortOnDrop(tokio::spawn(write_loop(
            link.clone(),
            socket,
            Destination::One(target),
        )));

        let (sizes, frames) = receive(&gcs, queued.into()).await;
        let sent: Vec<u32> = frames
            .iter()
            .map(|f| match f.decode() {
                Some(MavMessage::GLOBAL_POSITION_INT(p)) => p.time_boot_ms,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            sent,
            (0..u32::from(queued)).collect::<Vec<_>>(),
            "every frame, in order"
        );
        assert!(sizes.iter().all(|&n| n <= MAX_DATAGRAM), "{sizes:?}");
        let frame_len = frames[0].as_bytes().len();
        assert!(frames.iter().all(|f| f.as_bytes().len() == frame_len));
        assert_eq!(
            sizes.len(),
            usize::from(queued).div_ceil(MAX_DATAGRAM / frame_len),
            "datagrams are filled: {sizes:?}"
        );
        assert_eq!(link.stats.tx_frames.load(Relaxed), u64::from(queued));
        assert_eq!(link.stats.tx_coalesced.load(Relaxed), 0);

        link.send(position(7));
        let (sizes, _) = receive(&gcs, 1).await;
        assert_eq!(
            sizes,
            [frame_len],
            "a frame alone is sent alone, without waiting"
        );
    }
}
