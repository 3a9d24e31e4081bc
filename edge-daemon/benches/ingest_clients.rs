//! `ingest_clients`: ingest the way a station runs it, with no WebSocket client and with 100
//! clients on the live stream, one of which never reads (a phone whose browser froze).
//!
//! The release daemon runs as its own process with a `udpin` link and its store committing.
//! A sender thread plays 50 copters as fast as one thread can: GLOBAL_POSITION_INT frames
//! over UDP (a HEARTBEAT every 10th frame of each vehicle), pre-encoded so that the sender
//! spends its time sending. The figure is the samples the store commits per second (read
//! from `/api/v1/health` before and after the window), so a frame counts only once it is
//! decoded, routed and durable. The clients read `/api/v1/stream?kinds=state` on a
//! one-thread runtime in this process, as many phones would; the stalled one opens its
//! stream and never reads it.
//!
//! Everything shares this machine's cores: the sender, the daemon and the clients. That is
//! the honest cost of the clients here (they take CPU the daemon would have had); on a real
//! station they are other devices.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_daemon::dialect::MavMessage;
use edge_daemon::frame::{Frame, Version};
use futures_util::StreamExt as _;
use mavlink::dialects::ardupilotmega as apm;

const VEHICLES: u8 = 50;
/// Distinct positions per vehicle the sender cycles through.
const POSITIONS: u32 = 200;

fn main() {
    let secs: u64 = std::env::var("INGEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let window = Duration::from_secs(secs);
    let alone = run(0, window);
    println!("{}", alone.line(0, secs));
    let crowded = run(100, window);
    println!("{}", crowded.line(100, secs));
    println!(
        "with 100 clients (1 stalled) ingest is {:.1} % of ingest alone",
        crowded.samples_per_s / alone.samples_per_s * 100.0
    );
    println!(
        "FIGURE ingest_with_clients {:.0} samples/s",
        crowded.samples_per_s
    );
}

struct Outcome {
    samples_per_s: f64,
    /// The daemon's CPU time per million committed samples.
    cpu_s_per_million: f64,
    sent_per_s: f64,
    /// State messages the reading clients received, per client per second.
    messages_per_client_s: f64,
    /// Whether the daemon had closed the stalled client's stream by the end.
    stalled_closed: Option<bool>,
}

impl Outcome {
    fn line(&self, clients: usize, secs: u64) -> String {
        let mut line = format!(
            "{clients} client(s), {VEHICLES} vehicles, {secs} s: {:.0} samples/s committed \
             ({:.0} frames/s sent over UDP; daemon CPU {:.2} s per million samples)",
            self.samples_per_s, self.sent_per_s, self.cpu_s_per_million
        );
        if clients > 0 {
            line += &format!(
                "; each reading client got {:.0} state messages/s",
                self.messages_per_client_s
            );
        }
        if let Some(closed) = self.stalled_closed {
            line += if closed {
                "; the stalled client was closed"
            } else {
                "; the stalled client was still open"
            };
        }
        line
    }
}

fn committed_samples(api: u16) -> u64 {
    let body: serde_json::Value = ureq::get(&format!("http://127.0.0.1:{api}/api/v1/health"))
        .call()
        .and_then(|mut r| r.body_mut().read_json())
        .expect("health");
    body["store"]["committed_samples"]
        .as_u64()
        .expect("committed_samples")
}

fn run(clients: usize, window: Duration) -> Outcome {
    let daemon = common::Daemon::start();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent, udp) = (stop.clone(), sent.clone(), daemon.udp);
        std::thread::spawn(move || send(udp, &stop, &sent))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/stream?kinds=state&access_token={}",
        daemon.api, daemon.token
    );
    let (received, stalled_closed, samples, elapsed, sent_in_window, cpu) =
        runtime.block_on(async {
            let mut streams = Vec::new();
            for _ in 0..clients {
                streams.push(common::open_stream(&url).await);
            }
            let stalled = streams.pop();
            let received = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let readers: Vec<_> = streams
                .into_iter()
                .map(|mut ws| {
                    let (received, done) = (received.clone(), done.clone());
                    tokio::spawn(async move {
                        while let Some(Ok(_)) = ws.next().await {
                            received.fetch_add(1, Relaxed);
                            if done.load(Relaxed) {
                                break;
                            }
                        }
                    })
                })
                .collect();
            // Warm-up: every vehicle heard, the store committing at its pace.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let api = daemon.api;
            let first = tokio::task::spawn_blocking(move || committed_samples(api))
                .await
                .expect("health task");
            let (received_0, sent_0, cpu_0, t0) = (
                received.load(Relaxed),
                sent.load(Relaxed),
                daemon.cpu_seconds(),
                Instant::now(),
            );
            tokio::time::sleep(window).await;
            let last = tokio::task::spawn_blocking(move || committed_samples(api))
                .await
                .expect("health task");
            let elapsed = t0.elapsed();
            let cpu = daemon.cpu_seconds() - cpu_0;
            let received = received.load(Relaxed) - received_0;
            let sent_in_window = sent.load(Relaxed) - sent_0;
            done.store(true, Relaxed);
            // The stalled client reads now: what the daemon had sent it, then, if the daemon
            // closed it, the close.
            let stalled_closed = match stalled {
                Some(mut ws) => {
                    let mut closed = false;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                    while let Ok(next) = tokio::time::timeout_at(deadline, ws.next()).await {
                        match next {
                            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None => {
                                closed = true;
                                break;
                            }
                            Some(Err(_)) => {
                                closed = true;
                                break;
                            }
                            Some(Ok(_)) => {}
                        }
                    }
                    Some(closed)
                }
                None => None,
            };
            for r in readers {
                r.abort();
            }
            (
                received,
                stalled_closed,
                last - first,
                elapsed,
                sent_in_window,
                cpu,
            )
        });
    stop.store(true, Relaxed);
    let _ = sender.join();
    let secs = elapsed.as_secs_f64();
    let readers = clients.saturating_sub(1).max(1) as f64;
    Outcome {
        samples_per_s: samples as f64 / secs,
        cpu_s_per_million: cpu / (samples.max(1) as f64 / 1e6),
        sent_per_s: sent_in_window as f64 / secs,
        messages_per_client_s: received as f64 / secs / readers,
        stalled_closed,
    }
}

/// Sends the fleet's frames until `stop`, as fast as one thread can.
fn send(udp: u16, stop: &AtomicBool, sent: &AtomicU64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(("127.0.0.1", udp)).expect("connect");
    let mut frames = Vec::new();
    for n in 0..POSITIONS {
        for sysid in 1..=VEHICLES {
            if n % 10 == 0 {
                frames.push(Frame::encode(
                    Version::V2,
                    sysid,
                    1,
                    n as u8,
                    &common::heartbeat(),
                ));
            }
            let position = MavMessage::GLOBAL_POSITION_INT(apm::GLOBAL_POSITION_INT_DATA {
                time_boot_ms: n * 100,
                lat: 382_000_000 + n as i32 * 10,
                lon: -1_224_580_000 + i32::from(sysid) * 1_000,
                alt: 30_000,
                relative_alt: 30_000,
                hdg: 9_000,
                ..Default::default()
            });
            frames.push(Frame::encode(Version::V2, sysid, 1, n as u8, &position));
        }
    }
    let mut count = 0u64;
    'send: loop {
        for frame in &frames {
            if socket.send(frame.as_bytes()).is_ok() {
                count += 1;
            }
            // A relaxed load is cheap next to a send; stop is seen at once.
            if count.is_multiple_of(256) {
                sent.store(count, Relaxed);
            }
            if stop.load(Relaxed) {
                break 'send;
            }
        }
    }
}
