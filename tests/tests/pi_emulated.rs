//! The Raspberry Pi's station, the lean aarch64 build that `scripts/test` cross-compiles, run
//! under `qemu-aarch64` user-mode emulation: the same binary a Pi runs, on this machine.
//!
//! It is ignored by a plain `cargo test` because it needs that build and the emulator;
//! `scripts/test` builds both and runs it with `--ignored`. It prints the station's resident
//! memory and the frames per second it ingests under emulation. Emulation translates every
//! aarch64 instruction, so both are worse than on a Pi: the RSS includes the translator and
//! its code cache, and the rate is a floor, not a Pi's figure.

use std::process::Stdio;
use std::time::{Duration, Instant};

use trellis_tests::*;

const T: Duration = Duration::from_secs(90);
const TRIPLE: &str = "aarch64-unknown-linux-gnu";

fn emulated_station() -> StationExe {
    let binary = root().join(format!("target/{TRIPLE}/release/edge-daemon"));
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release --target {TRIPLE} -p edge-daemon \
         --no-default-features` (scripts/test does)",
        binary.display()
    );
    StationExe::aarch64(binary)
}

fn vehicle_on(connect: &str, sysid: u8, lat: f64) -> Proc {
    let mut v = Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", connect, "--sysid", &sysid.to_string()])
            .args([
                "--lat",
                &lat.to_string(),
                "--lon",
                "-122.45",
                "--rate",
                "10",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    );
    v.wait_event("ready", T);
    v
}

/// Resident memory of a process, in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc status");
    kib / 1024.0
}

/// Frames the station has received on all its links.
fn rx_frames(station: &EdgeDaemon) -> u64 {
    station.get("/api/v1/links")["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["rx_frames"].as_u64())
        .sum()
}

/// Frames per second received over `window`.
fn rx_rate(station: &EdgeDaemon, window: Duration) -> f64 {
    let (before, started) = (rx_frames(station), Instant::now());
    std::thread::sleep(window); // a measuring window, not a wait for an event
    (rx_frames(station) - before) as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "needs the aarch64 build and qemu-aarch64; scripts/test builds both and runs it"]
fn the_aarch64_station_serves_ingests_and_stores_under_emulation() {
    let exe = emulated_station();
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path());
    let (udp, gcs_port, fleet_port) = (free_udp_port(), free_udp_port(), free_udp_port());
    let station = EdgeDaemon::start_exe(
        &exe,
        tempfile::tempdir().unwrap(),
        &[
            format!("serial:{}:57600", pty.device.display()),
            format!("udpin:127.0.0.1:{udp}"),
            format!("udpin:127.0.0.1:{fleet_port}"),
            format!("udpout:127.0.0.1:{gcs_port}"),
        ],
        &[],
    );
    assert_eq!(
        station.get("/api/v1/health")["service"],
        "station",
        "the emulated station answers its API"
    );

    // pymavlink copters, one on the serial cable and one over UDP.
    let _serial = vehicle_on(&pty.peer.display().to_string(), 201, 38.2921);
    let _udp = vehicle_on(&format!("udpout:127.0.0.1:{udp}"), 202, 38.2930);
    for (sysid, lat) in [(201, 38.2921), (202, 38.2930)] {
        let v = wait_for(&format!("vehicle {sysid} with its position"), T, || {
            let v = station.vehicle(sysid)?;
            let got = v["position"]["lat"].as_f64()?;
            ((got - lat).abs() < 1e-3).then_some(v)
        });
        assert_eq!(v["link"]["state"], "ok", "{v}");
    }

    // A pymavlink ground station behind the router hears both.
    let heard = gcs(&format!("udpin:127.0.0.1:{gcs_port}"), &[201, 202], None);
    for sysid in ["201", "202"] {
        assert!(
            heard["heartbeats"][sysid].as_u64() > Some(0),
            "the GCS heard vehicle {sysid} through the emulated router: {heard}"
        );
    }

    // Stored: history through the API, and rows in the SQLite file.
    for sysid in [201, 202] {
        let history = wait_for(&format!("history for vehicle {sysid}"), T, || {
            let h = station.try_get(&format!("/api/v1/vehicles/{sysid}/telemetry"))?;
            (h["count"].as_u64()? >= 10).then_some(h)
        });
        let samples = history["samples"].as_array().expect("samples");
        assert!(
            samples
                .windows(2)
                .all(|w| w[0]["t_us"].as_i64() <= w[1]["t_us"].as_i64()),
            "samples of {sysid} in time order"
        );
        let rows: i64 = station
            .db()
            .query_row(
                "SELECT count(*) FROM telemetry WHERE vehicle = ?1",
                [sysid],
                |r| r.get(0),
            )
            .expect("count rows");
        assert!(rows >= 10, "vehicle {sysid}: {rows} rows in SQLite");
    }

    // The figures: the field load of SPEC §8 (50 copters at 10 Hz, system ids 1-50), then more
    // than it takes.
    let pid = station.proc.pid();
    let _fleet = sim_fleet(fleet_port, 50, 10);
    wait_for("all 52 vehicles heard", T, || {
        let n = station.get("/api/v1/vehicles?limit=1000")["vehicles"]
            .as_array()?
            .len();
        (n >= 52).then_some(())
    });
    let field_rate = rx_rate(&station, Duration::from_secs(10));
    let field_rss = rss_mib(pid);
    let store = &station.get("/api/v1/health")["store"];
    assert_eq!(
        (&store["write_errors"], &store["lost_samples"]),
        (&0.into(), &0.into()),
        "the field load is stored whole under emulation: {store}"
    );
    let committed_before = station.get("/api/v1/health")["store"]["committed_frames"]
        .as_u64()
        .expect("committed frames");
    let _flood = sim_fleet(fleet_port, 100, 100);
    let flood_rate = rx_rate(&station, Duration::from_secs(10));
    let flood_rss = rss_mib(pid);
    wait_for("the store to keep committing under the flood", T, || {
        let c = station.get("/api/v1/health")["store"]["committed_frames"].as_u64()?;
        (c > committed_before).then_some(())
    });
    let store = &station.get("/api/v1/health")["store"];
    assert_eq!(store["write_errors"], 0, "{store}");
    let api = Instant::now();
    station.get("/api/v1/vehicles?limit=1000");
    let api_ms = api.elapsed().as_secs_f64() * 1e3;
    println!(
        "aarch64 station under qemu-aarch64 (emulation is slower and larger than a Pi): \
         52 vehicles at 10 Hz: {field_rate:.0} frames/s received, RSS {field_rss:.1} MiB; \
         flooded by 100 more at 100 Hz: {flood_rate:.0} frames/s received, RSS {flood_rss:.1} MiB, \
         {} samples the store could not take, the vehicle list answered in {api_ms:.0} ms",
        store["lost_samples"]
    );
}
