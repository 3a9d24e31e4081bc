//! `live_latency`: a vehicle's frame received on a link → a WebSocket client holds the new
//! state, with 50 vehicles at 10 Hz, for 1 and for 100 clients (SPEC §8: p99 ≤ 5 ms).
//!
//! The release daemon runs as its own process with a `udpin` link. A sender thread plays 50
//! vehicles: a HEARTBEAT a second and GLOBAL_POSITION_INT at 10 Hz each, over UDP, with the
//! frame's number written into its latitude (the position the stream then shows). The
//! clients, on their own tokio runtime in this process, read `/api/v1/stream?kinds=state`
//! over real WebSocket connections and turn each state message's latitude back into the
//! frame it came from; latency = arrival at the client − the moment the sender handed the
//! frame to its socket. Frames the stream coalesced (a vehicle's next frame arrived within
//! its 100 ms) are counted, not timed.

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_daemon::dialect::MavMessage;
use edge_daemon::frame::{Frame, Version};
use futures_util::StreamExt as _;
use mavlink::dialects::ardupilotmega as apm;

const VEHICLES: u8 = 50;
const HZ: u32 = 10;
/// Latitude of frame 0, in 1e-7 degrees; frame `n` is at `BASE_LAT + n`.
const BASE_LAT: i32 = 382_000_000;

/// When each (vehicle, frame number) left the sender.
type Sent = Arc<Mutex<HashMap<(u8, u32), Instant>>>;

fn main() {
    let secs: u64 = std::env::var("LIVE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut last_p99 = f64::NAN;
    for clients in [1usize, 100] {
        let (p50, p99, timed, coalesced) = run(clients, Duration::from_secs(secs));
        let line = format!(
            "{clients} client(s), {VEHICLES} vehicles at {HZ} Hz, {secs} s: p50 {p50:.2} ms, p99 {p99:.2} ms \
             ({timed} state messages timed, {coalesced} frames coalesced)"
        );
        println!("{line}");
        last_p99 = p99;
    }
    println!("FIGURE live_latency_p99 {last_p99:.2} ms");
}

fn run(clients: usize, window: Duration) -> (f64, f64, usize, u64) {
    let daemon = common::Daemon::start();
    let (api, udp, token) = (daemon.api, daemon.udp, daemon.token.clone());

    let sent: Sent = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (sent, stop) = (sent.clone(), stop.clone());
        std::thread::spawn(move || send(udp, &sent, &stop))
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (latencies, coalesced) = runtime.block_on(async {
        let url = format!("ws://127.0.0.1:{api}/api/v1/stream?kinds=state&access_token={token}");
        let mut streams = Vec::new();
        for _ in 0..clients {
            streams.push(common::open_stream(&url).await);
        }
        // Clients read from the start; what arrives in the warm-up (every vehicle heard and
        // streaming) is not timed.
        let measure_from = Instant::now() + Duration::from_secs(3);
        let until = measure_from + window;
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut ws| {
                let sent = sent.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut last: HashMap<u8, u32> = HashMap::new();
                    let mut coalesced = 0u64;
                    while let Ok(Some(Ok(message))) =
                        tokio::time::timeout_at(until.into(), ws.next()).await
                    {
                        let at = Instant::now();
                        let Ok(text) = message.to_text() else {
                            continue;
                        };
                        let Some((sysid, n)) = frame_of(text) else {
                            continue;
                        };
                        if let Some(prev) = last.insert(sysid, n) {
                            coalesced += u64::from(n.saturating_sub(prev + 1));
                        }
                        let sent_at = sent.lock().map(|s| s.get(&(sysid, n)).copied());
                        if let Ok(Some(sent_at)) = sent_at {
                            if sent_at >= measure_from {
                                latencies.push(at.duration_since(sent_at).as_secs_f64() * 1e3);
                            }
                        }
                    }
                    (latencies, coalesced)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut coalesced = 0;
        for t in tasks {
            let (l, c) = t.await.expect("client task");
            all.extend(l);
            coalesced += c;
        }
        (all, coalesced)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sender.join();
    drop(daemon);
    let mut latencies = latencies;
    latencies.sort_by(f64::total_cmp);
    assert!(!latencies.is_empty(), "no state message could be timed");
    (
        common::pct(&latencies, 50.0),
        common::pct(&latencies, 99.0),
        latencies.len(),
        coalesced,
    )
}

/// The vehicle and frame number a state message shows. A scan, not a JSON parse: with 100
/// clients in this process the bench's own parsing would otherwise take the CPU the daemon
/// is being measured on.
fn frame_of(text: &str) -> Option<(u8, u32)> {
    let number = |text: &'_ str, key: &str| -> Option<String> {
        let from = text.find(key)? + key.len();
        let rest = &text[from..];
        let end = rest.find([',', '}'])?;
        Some(rest[..end].to_string())
    };
    let sysid: u8 = number(text, "\"sysid\":")?.parse().ok()?;
    // Keys are in alphabetical order: the position's latitude follows its altitudes.
    let position = &text[text.find("\"position\":{")?..];
    let lat: f64 = number(position, "\"lat\":")?.parse().ok()?;
    let n = (lat * 1e7).round() as i64 - i64::from(BASE_LAT);
    Some((sysid, u32::try_from(n).ok()?))
}

/// Plays the fleet until `stop`: each vehicle's frames 1/HZ apart, vehicles spread evenly.
fn send(udp: u16, sent: &Sent, stop: &std::sync::atomic::AtomicBool) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = ("127.0.0.1", udp);
    let start = Instant::now();
    let step = Duration::from_secs(1) / (HZ * u32::from(VEHICLES));
    let mut i: u32 = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = start + step * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sysid = (i % u32::from(VEHICLES)) as u8 + 1;
        let n = i / u32::from(VEHICLES);
        if n.is_multiple_of(HZ) {
            let hb = Frame::encode(Version::V2, sysid, 1, n as u8, &common::heartbeat());
            let _ = socket.send_to(hb.as_bytes(), target);
        }
        let position = MavMessage::GLOBAL_POSITION_INT(apm::GLOBAL_POSITION_INT_DATA {
            time_boot_ms: n * (1000 / HZ),
            lat: BASE_LAT + n as i32,
            lon: -1_224_580_000,
            alt: 30_000,
            relative_alt: 30_000,
            hdg: 9_000,
            ..Default::default()
        });
        let frame = Frame::encode(Version::V2, sysid, 1, n as u8, &position);
        if let Ok(mut s) = sent.lock() {
            s.insert((sysid, n), Instant::now());
        }
        let _ = socket.send_to(frame.as_bytes(), target);
        i = i.wrapping_add(1);
    }
}
