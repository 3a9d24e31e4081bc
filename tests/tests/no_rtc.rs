//! A station without a real-time clock, as a Raspberry Pi in a vineyard is: its system clock
//! starts years wrong (libfaketime puts it in 2000), the kernel says it is unsynchronised
//! (`peers/ntp_state.c`), the relay is out of reach, and a pymavlink autopilot sends GPS time
//! only once it has a fix. Then the relay comes in reach, NTP sets the clock (a jump of
//! years), and the Pi reboots offline and learns the time from the relay alone.
//! Throughout, every sample, event and raw frame ends up at its real time and in order,
//! nothing is expired by the jumps, the relay gets the right times, and TLS to the relay
//! verifies on a clock in 2000.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use trellis_tests::*;

const T: Duration = Duration::from_secs(60);
// Columns of a telemetry tuple (`edge_rows`): sequence, time, time source.
const SEQ: usize = 0;
const T_US: usize = 2;
const SOURCE: usize = 3;
const UNSYNCED: i64 = 0;
const GPS: i64 = 1;
const SYNCED: i64 = 2;
const RELAY: i64 = 3;
/// 2001-01-01: anything before is on the wrong clock.
const Y2001_US: i64 = 978_307_200_000_000;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The station's view of the world's time: its system clock (libfaketime, read from a file on
/// every call) and the kernel's synchronisation state (the shim, read from another).
struct FakeClock {
    dir: tempfile::TempDir,
}

impl FakeClock {
    fn new() -> FakeClock {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "libfaketime is missing: apt-get install libfaketime (scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let shim = dir.path().join("ntp_state.so");
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&shim)
            .arg(root().join("tests/peers/ntp_state.c"))
            .status()
            .expect("run cc");
        assert!(built.success(), "the ntp_adjtime shim does not build");
        let clock = FakeClock { dir };
        clock.system_in_2000();
        clock.ntp(false);
        clock
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn exe(&self) -> StationExe {
        StationExe::native()
            .with_env(
                "LD_PRELOAD",
                format!("{LIBFAKETIME}:{}", self.path("ntp_state.so").display()),
            )
            .with_env(
                "FAKETIME_TIMESTAMP_FILE",
                self.path("faketime").display().to_string(),
            )
            .with_env("FAKETIME_NO_CACHE", "1")
            // Monotonic time is the one clock a Pi without an RTC has right.
            .with_env("DONT_FAKE_MONOTONIC", "1")
            .with_env("TRELLIS_NTP_STATE", self.path("ntp").display().to_string())
    }

    /// The system clock a year after 2000-01-01, years behind, running.
    fn system_in_2000(&self) {
        let days = (real_now_us() - 946_684_800_000_000) / 86_400_000_000;
        std::fs::write(self.path("faketime"), format!("-{days}d\n")).expect("faketime file");
    }

    /// NTP sets the clock: the system clock jumps to the real time.
    fn system_right(&self) {
        std::fs::write(self.path("faketime"), "+0\n").expect("faketime file");
    }

    fn ntp(&self, synced: bool) {
        let state = if synced { "synced\n" } else { "unsynced\n" };
        std::fs::write(self.path("ntp"), state).expect("ntp state file");
    }
}

fn real_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn health(station: &EdgeDaemon) -> Value {
    station.get("/api/v1/health")
}

/// Every sample's time lies within `[from_us, to_us]` and never goes backwards.
fn assert_real_and_ordered(rows: &[Vec<i64>], from_us: i64, to_us: i64) {
    assert!(!rows.is_empty());
    for pair in rows.windows(2) {
        assert!(
            pair[1][T_US] >= pair[0][T_US],
            "sample {} at {} is before sample {} at {}",
            pair[1][SEQ],
            pair[1][T_US],
            pair[0][SEQ],
            pair[0][T_US]
        );
    }
    for r in rows {
        assert!(
            (from_us..=to_us).contains(&r[T_US]),
            "sample {} at {} µs is not between {from_us} and {to_us} (source {})",
            r[SEQ],
            r[T_US],
            r[SOURCE]
        );
        assert_ne!(
            r[SOURCE], UNSYNCED,
            "sample {} is still unsynchronised",
            r[SEQ]
        );
    }
}

/// The station's raw frames as a .tlog, read back by pymavlink: count, first and last time,
/// and how often time went backwards.
fn tlog(station: &EdgeDaemon) -> Value {
    let mut resp = agent()
        .get(&format!("{}/api/v1/export/tlog", station.api))
        .header("Authorization", format!("Bearer {}", station.token))
        .call()
        .expect("GET /api/v1/export/tlog");
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("the tlog");
    let file = station.data.path().join("export.tlog");
    std::fs::write(&file, bytes).expect("write the tlog");
    python_json("tlog_times.py", &[&file.display().to_string()])
}

/// Waits until the relay holds exactly the station's telemetry and has acknowledged it all.
fn relay_holds_outbox(relay: &CloudRelay, station: &EdgeDaemon) -> Vec<Vec<i64>> {
    wait_for("the relay to hold the station's every sample", T, || {
        let outbox = edge_rows(&station.db());
        let held = relay.rows("vineyard-co", "pi-north");
        let acked = station.try_get("/api/v1/sync")?["relay_acked"].as_i64()?;
        (held.len() == outbox.len() && acked == outbox.last()?[SEQ] && held == outbox)
            .then_some(held)
    })
}

#[test]
fn a_station_without_a_clock_gets_its_history_right_through_gps_ntp_and_an_offline_reboot() {
    // Enrolled, but out of reach until step 2.
    let mut relay = CloudRelay::new();
    let data = relay.enroll_pi_north();

    let clock = FakeClock::new();
    let udp = free_udp_port();
    let link = [format!("udpin:127.0.0.1:{udp}")];
    let start_us = real_now_us();
    let station = EdgeDaemon::start_exe(&clock.exe(), data, &link, &[]);
    let fix = clock.path("gps-fix");
    let fix_arg = fix.display().to_string();
    let _vehicle = autopilot(
        &format!("udpout:127.0.0.1:{udp}"),
        1,
        &["--gps-fix-file", &fix_arg],
    );

    // 1. No fix, no relay: samples are stamped on the system clock, and marked so.
    let early = wait_for("samples on the unsynchronised clock", T, || {
        let rows = edge_rows(&station.db());
        (rows.len() >= 20).then_some(rows)
    });
    assert_eq!(health(&station)["time_source"], "system-unsynced");
    for r in &early {
        assert!(
            r[T_US] < Y2001_US && r[SOURCE] == UNSYNCED,
            "sample {} before any fix is at {} µs from source {}",
            r[SEQ],
            r[T_US],
            r[SOURCE]
        );
    }

    // 2. The GPS gets a fix: the clock anchors to it, and what was stored on the wrong clock
    // moves to where it belongs. Then the relay comes in reach: sync, with TLS verified on a
    // system clock in 2000, sends the right times.
    std::fs::write(&fix, b"").expect("gps fix file");
    wait_for("the clock anchored to GPS", T, || {
        (health(&station)["time_source"] == "gps").then_some(())
    });
    relay.start();
    relay.wait_hq();
    let rows = relay_holds_outbox(&relay, &station);
    assert!(rows.len() > early.len());
    assert_real_and_ordered(&rows, start_us, real_now_us());
    assert!(rows.iter().all(|r| r[SOURCE] == GPS));
    let frames = tlog(&station);
    assert_eq!(frames["backwards"], 0, "{frames}");
    let first_frame_us = frames["first_us"].as_i64().expect("frames exported");
    assert!(
        first_frame_us >= start_us && last_frame_us(&frames) <= real_now_us(),
        "raw frames at their real times: {frames}"
    );
    let frames_before_jump = frames["count"].as_u64().expect("a count");
    // Events (the vehicle's identity, its state) as HQ has them: moved before they were sent.
    let hq = relay.token("vineyard-co", "viewer");
    let (_, events) = relay.hq_get(&hq, "/api/v1/orgs/vineyard-co/events?limit=1000");
    let events = events["events"].as_array().cloned().unwrap_or_default();
    assert!(!events.is_empty(), "the station's events reached HQ");
    for e in &events {
        let t = e["t_us"].as_i64().unwrap_or(0);
        assert!(
            t >= start_us && t <= real_now_us(),
            "event at its real time: {e}"
        );
    }

    // 3. NTP sets the system clock: a jump of 26 years. Times go on from where they were,
    // and retention, which ages frames against the newest, deletes nothing.
    clock.system_right();
    clock.ntp(true);
    wait_for(
        "the clock to follow the synchronised system clock",
        T,
        || (health(&station)["time_source"] == "system-synced").then_some(()),
    );
    let runs = health(&station)["store"]["housekeeping_runs"]
        .as_u64()
        .expect("housekeeping runs");
    wait_for("retention to run on the new time", T, || {
        (health(&station)["store"]["housekeeping_runs"].as_u64()? > runs).then_some(())
    });
    wait_for("samples stamped on the synchronised clock", T, || {
        edge_rows(&station.db())
            .iter()
            .any(|r| r[SOURCE] == SYNCED)
            .then_some(())
    });
    let after_jump = relay_holds_outbox(&relay, &station);
    assert_real_and_ordered(&after_jump, start_us, real_now_us());
    assert_eq!(
        after_jump[..rows.len()],
        rows[..],
        "earlier samples untouched"
    );
    let store = health(&station)["store"].clone();
    assert_eq!(store["quota_deleted_frames"], 0, "{store}");
    assert_eq!(store["quota_deleted_samples"], 0, "{store}");
    let frames = tlog(&station);
    assert_eq!(
        frames["first_us"], first_frame_us,
        "the oldest frames are kept: {frames}"
    );
    assert!(
        frames["count"].as_u64() > Some(frames_before_jump),
        "{frames}"
    );
    assert_eq!(frames["backwards"], 0, "{frames}");

    // 4. The Pi reboots offline, back in 2000, with no fix and no relay: the new run stamps
    // after everything stored. Then the relay comes back: its time is enough to move the new
    // run to its real times before anything is sent.
    relay.stop();
    let mut station = station;
    station.proc.signal(libc::SIGTERM);
    station.proc.wait_exit(T);
    let reboot_us = real_now_us();
    let before_reboot = edge_rows(&station.db());
    let newest_us = before_reboot.last().expect("rows")[T_US];
    let stored = before_reboot.len();
    let EdgeDaemon { data, .. } = station;
    std::fs::remove_file(&fix).expect("no fix");
    clock.system_in_2000();
    clock.ntp(false);
    let station = EdgeDaemon::start_exe(&clock.exe(), data, &link, &[]);
    let rebooted = wait_for("samples after the offline reboot", T, || {
        let rows = edge_rows(&station.db());
        (rows.len() >= stored + 20).then_some(rows)
    });
    for r in &rebooted[stored..] {
        assert!(
            r[T_US] > newest_us && r[SOURCE] == UNSYNCED,
            "sample {} of the new run at {} µs (source {}) is not after the newest stored, \
             {newest_us}",
            r[SEQ],
            r[T_US],
            r[SOURCE]
        );
    }
    relay.start();
    wait_for("the clock anchored to the relay's", T, || {
        (health(&station)["time_source"] == "relay").then_some(())
    });
    let all = relay_holds_outbox(&relay, &station);
    assert_real_and_ordered(&all, start_us, real_now_us());
    assert_eq!(
        all[..stored],
        before_reboot[..],
        "the earlier run untouched"
    );
    for r in &all[stored..] {
        assert!(
            r[SOURCE] == RELAY && r[T_US] >= reboot_us,
            "sample {} of the new run at {} µs (source {}) is not at its real time, after the \
             reboot at {reboot_us}",
            r[SEQ],
            r[T_US],
            r[SOURCE]
        );
    }
    let frames = tlog(&station);
    assert_eq!(frames["first_us"], first_frame_us, "{frames}");
    assert_eq!(frames["backwards"], 0, "{frames}");
    let last = last_frame_us(&frames);
    assert!(
        last >= reboot_us && last <= real_now_us(),
        "the new run's frames moved to their real times: {frames}"
    );
}

fn last_frame_us(frames: &Value) -> i64 {
    frames["last_us"].as_i64().expect("frames exported")
}
