//! `footprint`: resident memory of the daemon with 50 simulated vehicles at 10 Hz, steady
//! state (SPEC §8 target ≤ 20 MB).
//!
//! Starts the release daemon and `edge-daemon sim --vehicles 50 --rate 10` as separate
//! processes, runs for 60 s (override with FOOTPRINT_SECS), samples VmRSS every second, and
//! reports the peak over the second half, once start-up allocations have settled.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let secs: u64 = std::env::var("FOOTPRINT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port");
    let bin = env!("CARGO_BIN_EXE_edge-daemon");
    let daemon = Guard(
        Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--api-listen", &api.to_string()])
            .args(["--link", &format!("udpin:127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let _fleet = Guard(
        Command::new(bin)
            .args(["sim", "--vehicles", "50", "--rate", "10"])
            .args(["--link", &format!("udpout:127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start the simulator"),
    );

    let pid = daemon.0.id();
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(kb) = rss_kb(pid) {
            samples.push((start.elapsed().as_secs(), kb));
        }
    }
    let vehicles = ureq::get(&format!("http://{api}/api/v1/health"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
        .map(|h| {
            format!(
                "{} vehicles, {} samples committed",
                h["vehicles"], h["store"]["committed_samples"]
            )
        })
        .unwrap_or_else(|| "health unavailable".into());
    let steady: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= secs / 2)
        .map(|(_, kb)| *kb)
        .collect();
    let peak = steady.iter().copied().max().unwrap_or(0);
    let first = samples.first().map_or(0, |s| s.1);
    println!(
        "{secs} s with 50 vehicles at 10 Hz ({vehicles}); RSS after 1 s {:.1} MB, steady peak {:.1} MB",
        first as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!("FIGURE footprint {:.1} MB", peak as f64 / 1024.0);
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
