//! `sd_wear`: the bytes the station writes to its storage per hour, the figure that decides how
//! long a Raspberry Pi's SD card lives. With 5 and 50 copters at 10 Hz, at each commit window
//! a user may set (`[store] commit_window_ms`), with sync to a relay on (the way a station
//! runs: acknowledgements move the outbox cursor too) and a GCS on a `udpout` link.
//!
//! The figure is `write_bytes` from `/proc/<pid>/io` of the `serve` process: bytes it sent
//! towards the block device, counted when a page is first dirtied, so the database, its WAL
//! and the checkpoints that copy the WAL back are all in it, each time a page is written
//! again after being cleaned. A page rewritten while still dirty counts once, as the kernel
//! writes it once. The data directory must be on a disk-backed file system (not tmpfs,
//! which writes nothing), and it is: the bench prints which.
//!
//! The release binaries run as their own processes:
//! `cargo build --release --workspace --bins && cargo bench -p trellis-tests --bench sd_wear`
//! (`SD_WEAR_SECS` per configuration, default 120; `SD_WEAR_WINDOWS`, default
//! `200,1000,5000,15000`; `SD_WEAR_VEHICLES`, default `5,50`).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use trellis_tests::*;

fn io_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/io"))
}

fn fs_type(path: &std::path::Path) -> String {
    let out = std::process::Command::new("df")
        .args(["--output=fstype"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap_or("unknown")
        .trim()
        .to_string()
}

struct Wear {
    bytes_per_hour: f64,
    cancelled_per_hour: f64,
    samples_per_s: f64,
    commits_per_s: f64,
}

fn measure(relay: &CloudRelay, n: usize, vehicles: u8, window_ms: u64, secs: u64) -> Wear {
    let data = tempfile::tempdir_in(root().join("target")).expect("data dir on the disk");
    relay.enroll("vineyard-co", &format!("pi-{n}"), data.path());
    let config = data.path().join("edge-daemon.toml");
    std::fs::write(
        &config,
        format!("[store]\ncommit_window_ms = {window_ms}\n"),
    )
    .expect("config");
    let gcs = UdpSocket::bind("127.0.0.1:0").expect("GCS socket");
    let gcs_port = gcs.local_addr().expect("addr").port();
    let udp = free_udp_port();
    let station = EdgeDaemon::start_in(
        data,
        &[
            format!("udpin:127.0.0.1:{udp}"),
            format!("udpout:127.0.0.1:{gcs_port}"),
        ],
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let pid = station.proc.pid();
    let _fleet = sim_fleet(udp, vehicles, 10);
    wait_for(
        "every vehicle heard and sync connected",
        Duration::from_secs(60),
        || {
            let heard = station.try_get("/api/v1/vehicles?limit=1000")?["vehicles"]
                .as_array()?
                .len();
            let connected = station.try_get("/api/v1/sync")?["connected"] == true;
            (heard == usize::from(vehicles) && connected).then_some(())
        },
    );
    // Past the start: the schema, the first checkpoint and the relay's catch-up.
    std::thread::sleep(Duration::from_secs(10)); // a warm-up period, not a wait for an event

    let health = |field: &str| {
        station.get("/api/v1/health")["store"][field]
            .as_u64()
            .unwrap_or(0)
    };
    let (w0, c0) = (
        io_field(pid, "write_bytes:"),
        io_field(pid, "cancelled_write_bytes:"),
    );
    let (s0, k0, t0) = (
        health("committed_samples"),
        health("commits"),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(secs)); // the measuring window
    let (w1, c1) = (
        io_field(pid, "write_bytes:"),
        io_field(pid, "cancelled_write_bytes:"),
    );
    let (s1, k1) = (health("committed_samples"), health("commits"));
    let elapsed = t0.elapsed().as_secs_f64();
    let sync = station.get("/api/v1/sync");
    assert_eq!(sync["connected"], true, "sync stayed on: {sync}");
    let per_hour = 3_600.0 / elapsed;
    let samples_per_s = (s1 - s0) as f64 / elapsed;
    // The committed count moves once a window: a long window shows up to one window less.
    let expected = f64::from(vehicles) * 10.0 * (elapsed - window_ms as f64 / 1e3) / elapsed;
    assert!(
        samples_per_s > 0.8 * expected,
        "the station stored {samples_per_s:.0} samples/s of the {expected:.0} sent: a figure from \
         this run would not be the station's"
    );
    Wear {
        bytes_per_hour: (w1 - w0) as f64 * per_hour,
        cancelled_per_hour: (c1 - c0) as f64 * per_hour,
        samples_per_s,
        commits_per_s: (k1 - k0) as f64 / elapsed,
    }
}

fn main() {
    let secs = std::env::var("SD_WEAR_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let windows: Vec<u64> = std::env::var("SD_WEAR_WINDOWS")
        .unwrap_or_else(|_| "200,1000,5000,15000".into())
        .split(',')
        .map(|w| {
            w.trim()
                .parse()
                .expect("SD_WEAR_WINDOWS: milliseconds, comma-separated")
        })
        .collect();
    let mut relay = CloudRelay::new();
    relay.admin(&["org", "create", "vineyard-co"]);
    relay.start();
    relay.wait_hq();
    println!(
        "station data on {} (under target/), {secs} s per configuration, sync on, a GCS attached",
        fs_type(&root().join("target"))
    );
    println!("vehicles | commit window | written/hour | per sample | commits/s | truncated/hour");
    let fleets: Vec<u8> = std::env::var("SD_WEAR_VEHICLES")
        .unwrap_or_else(|_| "5,50".into())
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .expect("SD_WEAR_VEHICLES: counts, comma-separated")
        })
        .collect();
    let mut n = 0;
    for vehicles in fleets {
        for &window in &windows {
            n += 1;
            let w = measure(&relay, n, vehicles, window, secs);
            let per_sample = w.bytes_per_hour / 3_600.0 / w.samples_per_s.max(1.0);
            println!(
                "{vehicles:>8} | {window:>10} ms | {:>9.1} MB | {per_sample:>8.0} B | {:>9.2} | {:>10.1} MB",
                w.bytes_per_hour / 1e6,
                w.commits_per_s,
                w.cancelled_per_hour / 1e6,
            );
            println!(
                "FIGURE sd_wear_{vehicles}v_{window}ms {:.1} MB/h",
                w.bytes_per_hour / 1e6
            );
        }
    }
}
