//! Links: the daemon's connections to radios, vehicles and ground-control software.
//!
//! Every transport has the same shape: a reader that cuts frames out of what arrives and hands
//! them to the router as an [`Inbound`] batch, and a writer that drains the link's
//! [`OutQueue`]. Supervision is the same for all of them too: a link that fails is retried
//! with backoff forever, so an unplugged radio or a restarted peer never needs a daemon
//! restart. Each transport lives in its own file; this one holds what they share.

pub mod endpoint;
pub mod flow;
pub mod outbound;
mod serial;
mod stream;
mod tcp;
mod udp;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use endpoint::Endpoint;
pub use flow::RadioFlow;
pub use outbound::{OutQueue, Pushed};

use crate::frame::{Frame, FrameScanner};

/// A link's number, unique for the daemon's lifetime (never reused after a client leaves).
pub type LinkId = u32;

/// Frames one read produced on one link, stamped with when they arrived.
#[derive(Debug)]
pub struct Inbound {
    pub link: LinkId,
    pub received: Instant,
    pub frames: Vec<Frame>,
}

/// Allow/deny lists of message ids. An empty `allow` allows everything not denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsgFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<u32>,
}

impl MsgFilter {
    pub fn permits(&self, msgid: u32) -> bool {
        (self.allow.is_empty() || self.allow.contains(&msgid)) && !self.deny.contains(&msgid)
    }

    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// One configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub endpoint: Endpoint,
    /// Frames this link accepts from its peer.
    #[serde(default, skip_serializing_if = "MsgFilter::is_open")]
    pub filter_in: MsgFilter,
    /// Frames the router sends out of this link.
    #[serde(default, skip_serializing_if = "MsgFilter::is_open")]
    pub filter_out: MsgFilter,
}

impl From<Endpoint> for LinkConfig {
    fn from(endpoint: Endpoint) -> Self {
        LinkConfig {
            endpoint,
            filter_in: MsgFilter::default(),
            filter_out: MsgFilter::default(),
        }
    }
}

/// Counters a link keeps; read by the API, written by the link's tasks.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub connected: AtomicBool,
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub tx_coalesced: AtomicU64,
    pub tx_errors: AtomicU64,
    pub bad_bytes: AtomicU64,
    pub crc_errors: AtomicU64,
    pub truncated: AtomicU64,
    pub filtered: AtomicU64,
    pub reconnects: AtomicU64,
}

/// A live link as the router and the API see it.
#[derive(Debug)]
pub struct Link {
    pub id: LinkId,
    /// The endpoint, plus the peer for a `tcpin` client: `tcpin:0.0.0.0:5760 <- 10.0.0.7:40112`.
    pub name: String,
    pub config: LinkConfig,
    pub stats: LinkStats,
    pub out: OutQueue,
    /// The pace its radio asks for, when it reports (`flow.rs`).
    pub flow: RadioFlow,
    pub started: Instant,
}

impl Link {
    /// Bytes a second the line itself carries: a serial port's baud over 10 (8N1); 0 if
    /// the link does not say.
    pub fn line_rate(&self) -> u32 {
        match &self.config.endpoint {
            Endpoint::Serial { baud, .. } => baud / 10,
            _ => 0,
        }
    }

    /// Queues a frame for this link, applying its outbound filter, and counts the outcome.
    pub fn send(&self, frame: Frame) {
        if !self.config.filter_out.permits(frame.message_id()) {
            return;
        }
        match self.out.push(frame) {
            Pushed::Queued => {}
            Pushed::Coalesced => {
                self.stats.tx_coalesced.fetch_add(1, Relaxed);
            }
            Pushed::Dropped => {
                self.stats.tx_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Queues one of the station's own frames (its commands, requests, heartbeat): they go
    /// out before anything routed through it.
    pub fn send_own(&self, frame: Frame) {
        if !self.config.filter_out.permits(frame.message_id()) {
            return;
        }
        if !self.out.push_own(frame) {
            self.stats.tx_dropped.fetch_add(1, Relaxed);
        }
    }

    fn set_connected(&self, up: bool) {
        self.stats.connected.store(up, Relaxed);
        self.out.set_open(up);
    }
}

/// The set of live links. The router keeps its own copy and refreshes it when
/// [`generation`](Links::generation) moves, so the per-frame path takes no lock.
#[derive(Clone, Default)]
pub struct Links(Arc<Registry>);

#[derive(Default)]
struct Registry {
    next_id: AtomicU32,
    generation: AtomicU64,
    list: RwLock<Vec<Arc<Link>>>,
}

impl Links {
    pub fn add(&self, name: String, config: LinkConfig) -> Arc<Link> {
        let link = Arc::new(Link {
            id: self.0.next_id.fetch_add(1, Relaxed) + 1,
            name,
            config,
            stats: LinkStats::default(),
            out: OutQueue::default(),
            flow: RadioFlow::default(),
            started: Instant::now(),
        });
        self.write().push(link.clone());
        self.0.generation.fetch_add(1, Relaxed);
        link
    }

    pub fn remove(&self, id: LinkId) {
        self.write().retain(|l| l.id != id);
        self.0.generation.fetch_add(1, Relaxed);
    }

    pub fn generation(&self) -> u64 {
        self.0.generation.load(Relaxed)
    }

    pub fn snapshot(&self) -> Vec<Arc<Link>> {
        self.0
            .list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Link>>> {
        self.0.list.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts a link and supervises it for as long as the runtime runs.
pub fn spawn(config: LinkConfig, links: &Links, inbound: mpsc::Sender<Inbound>) {
    match config.endpoint.clone() {
        Endpoint::TcpIn(addr) => {
            tokio::spawn(tcp::listen(addr, config, links.clone(), inbound));
        }
        endpoint => {
            let link = links.add(endpoint.to_string(), config);
            tokio::spawn(supervise(link, inbound));
        }
    }
}

/// Runs a link, and runs it again after it fails, with capped exponential backoff.
async fn supervise(link: Arc<Link>, inbound: mpsc::Sender<Inbound>) {
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let result = match &link.config.endpoint {
            Endpoint::Serial { path, baud } => serial::run(&link, path, *baud, &inbound).await,
            Endpoint::UdpIn(addr) => udp::run_in(&link, *addr, &inbound).await,
            Endpoint::UdpOut(addr) => udp::run_out(&link, addr, &inbound).await,
            Endpoint::Tcp(addr) => tcp::connect(&link, addr, &inbound).await,
            // Each tcpin client runs as its own link under the listener (tcp::listen).
            Endpoint::TcpIn(_) => return,
        };
        link.set_connected(false);
        if inbound.is_closed() {
            return; // the daemon is shutting down
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Backoff::default();
        }
        let wait = backoff.next();
        match result {
            Ok(()) => {
                tracing::info!(link = link.id, name = %link.name, "link closed; reopening in {wait:?}")
            }
            Err(e) => {
                tracing::warn!(link = link.id, name = %link.name, "link failed: {e:#}; retrying in {wait:?}")
            }
        }
        link.stats.reconnects.fetch_add(1, Relaxed);
        tokio::time::sleep(wait).await;
    }
}

/// Capped exponential backoff: 100 ms, 200 ms, … up to 5 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        now
    }
}

/// Moves every frame the scanner holds into a batch and accounts for it on the link.
/// Returns the batch (possibly empty).
fn take_frames(link: &Link, scanner: &mut FrameScanner, bytes: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = scanner.next_frame() {
        if link.config.filter_in.permits(frame.message_id()) {
            frames.push(frame);
        } else {
            link.stats.filtered.fetch_add(1, Relaxed);
        }
    }
    count_rx(link, scanner, frames.len(), bytes);
    frames
}

fn count_rx(link: &Link, scanner: &mut FrameScanner, frames: usize, bytes: usize) {
    let s = &link.stats;
    s.rx_frames.fetch_add(frames as u64, Relaxed);
    s.rx_bytes.fetch_add(bytes as u64, Relaxed);
    let errors = scanner.take_errors();
    if errors.total() > 0 {
        s.bad_bytes.fetch_add(errors.bad_bytes, Relaxed);
        s.crc_errors.fetch_add(errors.crc_errors, Relaxed);
        s.truncated.fetch_add(errors.truncated, Relaxed);
    }
}

/// Hands a batch to the router. `Err` means the router is gone (shutdown).
async fn deliver(
    inbound: &mpsc::Sender<Inbound>,
    link: LinkId,
    received: Instant,
    frames: Vec<Frame>,
) -> Result<(), LinkClosed> {
    if frames.is_empty() {
        return Ok(());
    }
    inbound
        .send(Inbound {
            link,
            received,
            frames,
        })
        .await
        .map_err(|_| LinkClosed)
}

/// The router has stopped; links end quietly.
#[derive(Debug, thiserror::Error)]
#[error("router stopped")]
pub struct LinkClosed;

fn count_tx(link: &Link, frames: u64, bytes: usize) {
    link.stats.tx_frames.fetch_add(frames, Relaxed);
    link.stats.tx_bytes.fetch_add(bytes as u64, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MavMessage;
    use crate::frame::Version;

    #[test]
    fn the_outbound_filter_holds_for_the_stations_own_frames_too() {
        let links = Links::default();
        let mut config = LinkConfig::from("udpin:127.0.0.1:1".parse::<Endpoint>().unwrap());
        config.filter_out.deny = vec![0];
        let link = links.add("radio".into(), config);
        link.set_connected(true);
        let heartbeat = MavMessage::HEARTBEAT(Default::default());
        link.send_own(Frame::encode(Version::V2, 190, 1, 0, &heartbeat));
        link.send(Frame::encode(Version::V2, 255, 190, 0, &heartbeat));
        assert!(
            link.out.is_empty(),
            "a denied message id leaves by neither path"
        );
        let command = MavMessage::COMMAND_LONG(Default::default());
        link.send_own(Frame::encode(Version::V2, 190, 1, 1, &command));
        assert_eq!(link.out.len(), 1);
    }
}
