//! `footprint`: the station's resident memory the way a field station runs (SPEC §8 target
//! ≤ 20 MB): 50 vehicles at 10 Hz, a GCS on a `udpout` link, 10 clients (5 WebSocket streams,
//! 5 polling the API once a second), sync enrolled and connected, first while it drains a
//! backlog of 1,000,000 rows (`FOOTPRINT_BACKLOG`) to a relay that was away, then steady
//! (`FOOTPRINT_SECS`, default 60).
//!
//! The release binaries run as their own processes (`cargo build --release --workspace
//! --bins` first): `edge-daemon serve`, `edge-daemon sim`, `cloud-relay serve`, and the
//! tests' Python WebSocket clients; VmRSS of the `serve` process is read from /proc every
//! 100 ms. The backlog is built the way a station builds one: the relay is stopped and the
//! fleet sends at 200 Hz until the outbox holds the rows; then the fleet drops to 10 Hz, the
//! clients connect and the relay starts.
//!
//! `cargo build --release --workspace --bins && cargo bench -p trellis-tests --bench footprint`

use std::net::UdpSocket;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_tests::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VmRSS in MB (10^6 bytes, as SPEC's target is written).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}

/// Where the resident memory is: anonymous (the heap, split into the main heap and the
/// other anonymous mappings, which hold malloc's per-thread arenas and thread stacks), file
/// pages (the binary and libraries) and shared memory (SQLite's WAL index), and the thread
/// count. From `/proc/<pid>/status` and `/proc/<pid>/smaps`.
fn rss_breakdown(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or(0.0, |v| {
                let kb: f64 = v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0.0);
                kb * 1024.0 / 1e6
            })
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut heap, mut other_anon, mut mappings) = (0.0, 0.0, 0);
    let mut current: Option<bool> = None; // Some(is_heap) for an anonymous mapping
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let name = line.split_whitespace().nth(5);
            current = match name {
                None => Some(false),
                Some("[heap]") => Some(true),
                _ => None,
            };
        } else if first == "Rss:" {
            let mb = words
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                * 1024.0
                / 1e6;
            match current {
                Some(true) => heap += mb,
                Some(false) if mb > 0.0 => {
                    other_anon += mb;
                    mappings += 1;
                }
                _ => {}
            }
        }
    }
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map_or("?", str::trim)
        .to_string();
    format!(
        "anonymous {:.1} MB ([heap] {heap:.1}, other anonymous {other_anon:.1} in {mappings} \
         mappings), file {:.1} MB, shared {:.1} MB; {threads} threads",
        field("RssAnon:"),
        field("RssFile:"),
        field("RssShmem:"),
    )
}

/// The file system a path is on, as `df -T` names it.
fn fs_type(path: &std::path::Path) -> String {
    let out = std::process::Command::new("df")
        .args(["--output=fstype"])
        .arg(path)
        .output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().nth(1).map(str::trim).map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

fn sync_state(station: &EdgeDaemon) -> Option<(u64, u64, bool)> {
    let sync = station.try_get("/api/v1/sync")?;
    Some((
        sync["backlog_rows"].as_u64()?,
        sync["relay_acked"].as_u64()?,
        sync["connected"].as_bool()?,
    ))
}

fn main() {
    let backlog = env_or("FOOTPRINT_BACKLOG", 1_000_000);
    let secs = env_or("FOOTPRINT_SECS", 60);
    let long = Duration::from_secs(1_800);

    let mut relay = CloudRelay::new();
    let data = relay.enroll_pi_north();
    println!(
        "station data on {}, relay data on {}",
        fs_type(data.path()),
        fs_type(relay.dir.path())
    );
    let gcs = UdpSocket::bind("127.0.0.1:0").expect("GCS socket");
    gcs.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let gcs_port = gcs.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let gcs_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            let mut bytes = 0u64;
            while !stop.load(Relaxed) {
                if let Ok(n) = gcs.recv(&mut buf) {
                    bytes += n as u64;
                }
            }
            bytes
        })
    };
    let udp = free_udp_port();
    let station = EdgeDaemon::start_in(
        data,
        &[
            format!("udpin:127.0.0.1:{udp}"),
            format!("udpout:127.0.0.1:{gcs_port}"),
        ],
        &[],
    );
    let pid = station.proc.pid();

    // The relay is away: a backlog builds.
    let t = Instant::now();
    let burst = sim_fleet(udp, 50, 200);
    wait_for("the backlog to build", long, || {
        let (rows, _, _) = sync_state(&station)?;
        (rows >= backlog).then_some(())
    });
    drop(burst);
    let built_rss = rss_mb(pid);
    println!(
        "backlog of {backlog}+ rows built in {:.0} s (RSS {built_rss:.1} MB)",
        t.elapsed().as_secs_f64()
    );
    println!("  {}", rss_breakdown(pid));

    // The field: 50 vehicles at 10 Hz, 10 clients, then the relay comes back.
    let _fleet = sim_fleet(udp, 50, 10);
    let token = station.new_token("footprint", "viewer");
    let url = format!(
        "{}/api/v1/stream",
        station.api.replacen("http://", "ws://", 1)
    );
    let mut streams: Vec<Proc> = (0..5)
        .map(|_| {
            let mut p = Proc::spawn(
                "stream client",
                python("stream_client.py")
                    .args(["--url", &url, "--token", &token, "--count"])
                    .stdout(Stdio::piped()),
            );
            p.wait_line(Duration::from_secs(30), |l| l.contains("\"open\""));
            p
        })
        .collect();
    let pollers: Vec<_> = (0..5)
        .map(|_| {
            let (stop, api, token) = (stop.clone(), station.api.clone(), token.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut answered = 0u64;
                while !stop.load(Relaxed) {
                    let ok = agent
                        .get(format!("{api}/api/v1/vehicles"))
                        .header("Authorization", format!("Bearer {token}"))
                        .call()
                        .is_ok_and(|r| r.status() == 200);
                    answered += u64::from(ok);
                    std::thread::sleep(Duration::from_secs(1));
                }
                answered
            })
        })
        .collect();

    relay.start();
    let t = Instant::now();
    let mut catchup_peak = 0.0f64;
    loop {
        catchup_peak = catchup_peak.max(rss_mb(pid));
        if let Some((rows, _, connected)) = sync_state(&station) {
            if connected && rows < 2_000 {
                break;
            }
        }
        assert!(t.elapsed() < long, "the catch-up did not end in {long:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let drained = t.elapsed();
    println!(
        "catch-up drained in {:.1} s with the fleet, the GCS and 10 clients: peak RSS {catchup_peak:.1} MB",
        drained.as_secs_f64()
    );
    println!("  after the catch-up: {}", rss_breakdown(pid));

    // Steady: everything connected, in sync.
    let t = Instant::now();
    let mut steady_peak = 0.0f64;
    let mut samples = Vec::new();
    while t.elapsed() < Duration::from_secs(secs) {
        let rss = rss_mb(pid);
        samples.push(rss);
        if t.elapsed() >= Duration::from_secs(secs / 2) {
            steady_peak = steady_peak.max(rss);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, acked, connected) = sync_state(&station).expect("sync state");
    assert!(connected, "sync stayed connected");
    stop.store(true, Relaxed);
    let answered: u64 = pollers.into_iter().map(|p| p.join().expect("poller")).sum();
    let gcs_bytes = gcs_thread.join().expect("GCS drain");
    for s in &streams {
        s.signal(libc::SIGTERM);
    }
    streams.clear();
    println!(
        "steady {secs} s: peak RSS over the second half {steady_peak:.1} MB (min {:.1}, max {:.1} over the run); \
         relay acknowledged {acked} rows; API polls answered {answered}; GCS received {:.1} MB",
        samples.iter().cloned().fold(f64::INFINITY, f64::min),
        samples.iter().cloned().fold(0.0, f64::max),
        gcs_bytes as f64 / 1e6
    );
    println!("  at the end: {}", rss_breakdown(pid));
    println!("FIGURE footprint {steady_peak:.1} MB");
    println!("FIGURE footprint_catchup_peak {catchup_peak:.1} MB");
}
