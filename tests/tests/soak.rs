//! Soak: a station with 50 vehicles at 10 Hz, a GCS on a `udpout` link and an API client
//! polling, syncing to a relay through an impaired uplink (2 % loss each way, 40 ms each way,
//! down 10 s of every minute), for `SOAK_SECS` (45 in CI; the figure in BENCHMARKS.md is a
//! release run of 30 minutes or more:
//! `cargo build --release --workspace --bins && SOAK_SECS=1800 cargo test --release -p trellis-tests --test soak -- --nocapture`).
//!
//! Every `SOAK_SAMPLE_SECS` (default 5) it samples the station's RSS and open files, its
//! database and WAL size, the relay's RSS, and the sync lag (rows committed but not yet
//! acknowledged, and the age of the last acknowledgement). It prints the samples, the RSS
//! growth per hour (least squares over the samples after the first fifth), and the largest
//! sync lag; and it fails on a leak of file descriptors, a WAL that keeps growing, memory
//! that keeps growing, or a sync that does not catch up (exactly once) when the fleet stops.

use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use trellis_tests::impair::{ImpairedLink, Impairment};
use trellis_tests::*;

const T: Duration = Duration::from_secs(120);

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VmRSS of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn size_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1 << 20) as f64)
}

struct Sample {
    at_s: f64,
    rss: f64,
    files: usize,
    db: f64,
    wal: f64,
    relay_rss: f64,
    lag_rows: i64,
    ack_age_s: f64,
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var
    }
}

#[test]
fn a_station_under_load_with_an_impaired_uplink_holds_steady() {
    let secs = env_secs("SOAK_SECS", 45);
    let every = Duration::from_secs(env_secs("SOAK_SAMPLE_SECS", 5).max(1));

    let relay_port = free_udp_port();
    let link = ImpairedLink::start(
        ([127, 0, 0, 1], relay_port).into(),
        Impairment {
            loss: 0.02,
            delay: Duration::from_millis(40),
            flap: Some((Duration::from_secs(50), Duration::from_secs(10))),
        },
    );
    let mut relay = CloudRelay::on_port(relay_port, Some(link.addr));
    let data = relay.enroll_pi_north();
    relay.start();
    relay.wait_hq();

    // The GCS: a socket the station sends every vehicle's frames to, drained as QGC would.
    let gcs = UdpSocket::bind("127.0.0.1:0").expect("GCS socket");
    gcs.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let gcs_port = gcs.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let gcs_bytes = Arc::new(AtomicU64::new(0));
    let drain = {
        let (stop, bytes) = (stop.clone(), gcs_bytes.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            while !stop.load(Relaxed) {
                if let Ok(n) = gcs.recv(&mut buf) {
                    bytes.fetch_add(n as u64, Relaxed);
                }
            }
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
    let fleet = sim_fleet(udp, 50, 10);
    let pid = station.proc.pid();
    let relay_pid = relay.proc.as_ref().expect("relay runs").pid();
    let db = station.db_path();
    let wal = db.with_extension("db-wal");

    eprintln!(
        "{:>7} {:>8} {:>6} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "t (s)", "RSS MiB", "files", "db MiB", "wal MiB", "relay MiB", "lag rows", "ack age"
    );
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(every);
        // An API client, as the crews' phones are.
        let vehicles = station.get("/api/v1/vehicles");
        let health = station.get("/api/v1/health");
        let sync = station.get("/api/v1/sync");
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        let last_ack = sync["last_ack_unix_ms"].as_i64().unwrap_or(0);
        let s = Sample {
            at_s: start.elapsed().as_secs_f64(),
            rss: rss_mib(pid),
            files: open_files(pid),
            db: size_mib(&db),
            wal: size_mib(&wal),
            relay_rss: rss_mib(relay_pid),
            lag_rows: health["store"]["committed_seq"].as_i64().unwrap_or(0)
                - sync["relay_acked"].as_i64().unwrap_or(0),
            ack_age_s: if last_ack > 0 {
                (now_ms - last_ack) as f64 / 1e3
            } else {
                f64::NAN
            },
        };
        let listed = vehicles["vehicles"].as_array().map_or(0, Vec::len);
        assert_eq!(listed, 50, "the station lists its 50 vehicles");
        eprintln!(
            "{:>7.0} {:>8.1} {:>6} {:>8.1} {:>8.1} {:>9.1} {:>9} {:>7.1}s",
            s.at_s, s.rss, s.files, s.db, s.wal, s.relay_rss, s.lag_rows, s.ack_age_s
        );
        samples.push(s);
    }

    // Judge what came after start-up settled.
    let settled = &samples[samples.len() / 5..];
    assert!(settled.len() >= 3, "too few samples: raise SOAK_SECS");
    let growth = slope(&settled.iter().map(|s| (s.at_s, s.rss)).collect::<Vec<_>>()) * 3600.0;
    let relay_growth = slope(
        &settled
            .iter()
            .map(|s| (s.at_s, s.relay_rss))
            .collect::<Vec<_>>(),
    ) * 3600.0;
    let max_lag = settled.iter().map(|s| s.lag_rows).max().unwrap_or(0);
    let max_age = settled
        .iter()
        .map(|s| s.ack_age_s)
        .filter(|a| a.is_finite())
        .fold(0.0, f64::max);
    let first = &settled[0];
    let last = settled.last().expect("samples");
    let peak_rss = settled.iter().map(|s| s.rss).fold(0.0, f64::max);
    let peak_wal = settled.iter().map(|s| s.wal).fold(0.0, f64::max);
    eprintln!(
        "{secs} s: station RSS {:.1} → {:.1} MiB (peak {peak_rss:.1}), growth {growth:+.2} MiB/h; \
         relay RSS {:.1} → {:.1} MiB, {relay_growth:+.2} MiB/h; files {} → {}; \
         db {:.1} MiB, WAL peak {peak_wal:.1} MiB; largest sync lag {max_lag} rows, \
         last ack at most {max_age:.1} s old; GCS received {:.1} MiB; uplink dropped {} datagrams",
        first.rss,
        last.rss,
        first.relay_rss,
        last.relay_rss,
        first.files,
        last.files,
        last.db,
        gcs_bytes.load(Relaxed) as f64 / (1 << 20) as f64,
        link.dropped.load(Relaxed),
    );
    eprintln!("FIGURE soak_rss_growth {growth:.2} MiB/h");
    eprintln!("FIGURE soak_max_sync_lag {max_age:.1} s");

    assert!(
        last.files <= first.files + 8,
        "open files grew from {} to {}",
        first.files,
        last.files
    );
    assert!(peak_wal < 64.0, "the WAL grew to {peak_wal:.1} MiB");
    assert!(
        last.rss < first.rss + 16.0,
        "RSS grew from {:.1} to {:.1} MiB",
        first.rss,
        last.rss
    );
    assert!(gcs_bytes.load(Relaxed) > 0, "the GCS received nothing");

    // The fleet lands: everything reaches the relay, each row once. (Comparing every row is
    // heavy after a long soak, so it runs only once the relay has acknowledged everything.)
    drop(fleet);
    let deadline = Instant::now() + T;
    loop {
        let caught_up = station
            .try_get("/api/v1/health")
            .zip(station.try_get("/api/v1/sync"));
        if let Some((health, sync)) = caught_up {
            let committed = health["store"]["committed_seq"]
                .as_i64()
                .unwrap_or(i64::MAX);
            if sync["relay_acked"].as_i64().unwrap_or(0) >= committed {
                let (at_relay, at_station) = (
                    relay.rows("vineyard-co", "pi-north"),
                    edge_rows(&station.db()),
                );
                if at_relay == at_station {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "after the soak the relay holds {} rows, the station {}",
                    at_relay.len(),
                    at_station.len()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "the relay never acknowledged everything after the soak"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Relaxed);
    let _ = drain.join();
    relay.stop();
}
