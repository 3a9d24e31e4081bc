//! `route_latency`: added latency of a frame through the daemon, UDP in → UDP out to a GCS
//! endpoint, at 1,000 frames/s (SPEC §8 target: p99 ≤ 0.1 ms added).
//!
//! The release daemon runs as its own process. A "vehicle" socket sends GLOBAL_POSITION_INT
//! frames numbered in `time_boot_ms` to the daemon's `udpin`; a "GCS" socket receives them from
//! its `udpout`. The same sender and receiver, connected directly over loopback, give the
//! baseline. On a shared VM the scheduler's mood drifts over seconds, so baseline and daemon
//! are measured in alternating rounds and the figure is the median over rounds of (daemon −
//! baseline), at p50 and p99.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_daemon::dialect::MavMessage;
use edge_daemon::frame::{Frame, FrameScanner, Version};
use mavlink::dialects::ardupilotmega as apm;

const FRAMES: u32 = 3_000;
const ROUNDS: usize = 5;
const WARMUP: u32 = 500;
const PERIOD: Duration = Duration::from_millis(1);

fn main() {
    let direct = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let direct_addr = direct.local_addr().expect("addr");

    let dir = tempfile::tempdir().expect("temp dir");
    let gcs = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let vehicle_port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_edge-daemon"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--api-listen", "127.0.0.1:0"])
        .args(["--link", &format!("udpin:127.0.0.1:{vehicle_port}")])
        .args([
            "--link",
            &format!("udpout:{}", gcs.local_addr().expect("addr")),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the daemon");
    let through_addr = ([127, 0, 0, 1], vehicle_port).into();

    let (mut added50, mut added99, mut lost) = (Vec::new(), Vec::new(), 0usize);
    for round in 1..=ROUNDS {
        let baseline = measure(&direct, direct_addr);
        let through = measure(&gcs, through_addr);
        lost += 2 * FRAMES as usize - baseline.len() - through.len();
        let (b50, b99) = (pct(&baseline, 50.0), pct(&baseline, 99.0));
        let (d50, d99) = (pct(&through, 50.0), pct(&through, 99.0));
        println!(
            "round {round}: direct p50 {b50:.1} us p99 {b99:.1} us; through daemon p50 {d50:.1} us p99 {d99:.1} us"
        );
        added50.push(d50 - b50);
        added99.push(d99 - b99);
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    added50.sort_by(f64::total_cmp);
    added99.sort_by(f64::total_cmp);
    println!(
        "{ROUNDS} rounds of {FRAMES} frames each way at {} frames/s; frames lost: {lost}",
        1_000_000 / PERIOD.as_micros()
    );
    println!(
        "FIGURE route_latency_p50_added {:.1} us",
        pct(&added50, 50.0)
    );
    println!(
        "FIGURE route_latency_p99_added {:.1} us",
        pct(&added99, 50.0)
    );
}

/// Sends numbered frames to `target` every millisecond from one thread while `rx` receives
/// them on another; returns the one-way latencies in microseconds.
fn measure(rx: &UdpSocket, target: std::net::SocketAddr) -> Vec<f64> {
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // Warm up until frames come through (the daemon's links take a moment to open).
    let warm = Instant::now();
    let mut buf = [0u8; 2048];
    'warm: for i in 0..WARMUP * 20 {
        tx.send_to(frame(u32::MAX - 1).as_bytes(), target)
            .expect("send");
        while let Ok(n) = rx.recv(&mut buf) {
            if n > 0 && i > WARMUP {
                break 'warm;
            }
        }
        assert!(
            warm.elapsed() < Duration::from_secs(30),
            "nothing came through"
        );
    }
    while rx.recv(&mut buf).is_ok() {}

    let start = Instant::now();
    let frames: Vec<Frame> = (0..FRAMES).map(frame).collect();
    let sender = std::thread::spawn(move || {
        let mut sent = Vec::with_capacity(FRAMES as usize);
        for (i, f) in frames.iter().enumerate() {
            // Sleep, not spin: on two cores a spinning sender would steal the daemon's CPU.
            let due = start + PERIOD * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent.push(Instant::now());
            tx.send_to(f.as_bytes(), target).expect("send");
        }
        sent
    });
    let mut received = vec![None; FRAMES as usize];
    let mut scanner = FrameScanner::new();
    let deadline = start + PERIOD * FRAMES + Duration::from_secs(2);
    while Instant::now() < deadline {
        let Ok(n) = rx.recv(&mut buf) else { continue };
        let at = Instant::now();
        scanner.push(&buf[..n]);
        while let Some(f) = scanner.next_frame() {
            if let Some(MavMessage::GLOBAL_POSITION_INT(m)) = f.decode() {
                if let Some(slot) = received.get_mut(m.time_boot_ms as usize) {
                    *slot = Some(at);
                }
            }
        }
        scanner.end_datagram();
    }
    let sent = sender.join().expect("sender");
    let mut latencies: Vec<f64> = sent
        .iter()
        .zip(&received)
        .filter_map(|(s, r)| r.map(|r| r.duration_since(*s).as_secs_f64() * 1e6))
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn frame(i: u32) -> Frame {
    let m = MavMessage::GLOBAL_POSITION_INT(apm::GLOBAL_POSITION_INT_DATA {
        time_boot_ms: i,
        lat: 382_919_000,
        lon: -1_224_580_000,
        ..Default::default()
    });
    Frame::encode(Version::V2, 1, 1, i as u8, &m)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}
