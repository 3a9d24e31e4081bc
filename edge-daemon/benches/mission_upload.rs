//! A 200-item mission uploaded over a 57,600-baud serial link, against its wire time.
//!
//! Two pty pairs stand in for the cable and its radios: the release daemon opens one with
//! `serial:…:57600`, the pymavlink autopilot of the tests (`tests/peers/autopilot.py`, which
//! plays the mission protocol as ArduPilot does and streams the telemetry the station asks
//! for, as a vehicle on a radio does; needs pymavlink, which `scripts/test` installs) the
//! other, and a forwarder between their masters lets bytes through
//! at 5,760 bytes/s each way (57,600 baud, 8N1), reading every frame that passes. The upload is
//! timed on the wire: from the station's MISSION_COUNT to the vehicle's MISSION_ACK. Its wire
//! time is the bytes of the mission-protocol frames in that window, both ways (each waits for
//! the other, so they never overlap), at the link's rate. The telemetry the vehicle keeps
//! sending shares the link, as it does in the field; its share is printed.
//!
//! `cargo bench -p edge-daemon --bench mission_upload`; last line
//! `FIGURE mission_upload_vs_wire <ratio> x` (target ≤ 1.3).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::radio::{api, Radio, Wire, BYTES_PER_S};
use serde_json::{json, Value};

const ITEMS: usize = 200;
/// MISSION_REQUEST, MISSION_COUNT, MISSION_ACK, MISSION_REQUEST_INT, MISSION_ITEM_INT.
const MISSION_IDS: [u32; 5] = [40, 44, 47, 51, 73];

fn main() {
    let radio = Radio::start();
    let daemon = common::Daemon::start_with(&[format!("serial:{}:57600", radio.station)], "pilot");
    let peer = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/peers/autopilot.py");
    let mut vehicle = Command::new("python3")
        .arg(peer)
        .args(["--connect", &radio.vehicle, "--sysid", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 tests/peers/autopilot.py (pymavlink)");
    let base = format!("http://127.0.0.1:{}", daemon.api);
    common::radio::wait_for_vehicle(&base, &daemon.token, 1);
    let items: Vec<Value> = (0..ITEMS)
        .map(|i| {
            json!({ "command": 16, "frame": 3, "params": [0, 0, 0, 0],
                "x": 382_919_000 + i as i32 * 90, "y": -1_224_580_000 + (i % 2) as i32 * 9_000,
                "z": 30, "autocontinue": true })
        })
        .collect();
    let mission = json!({ "name": "bench", "items": items });
    api(
        "PUT",
        &format!("{base}/api/v1/missions/bench"),
        &daemon.token,
        Some(&mission),
    );
    // Telemetry alone for a while, for its share of the link.
    let quiet_from = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let quiet = quiet_from.elapsed();
    let sent = api(
        "POST",
        &format!("{base}/api/v1/missions/bench/upload"),
        &daemon.token,
        Some(&json!({ "vehicle": "1" })),
    );
    let id = sent["id"].as_i64().expect("an id");
    let done = common::radio::wait_for_command(&base, &daemon.token, id);
    assert_eq!(done["outcome"], "accepted", "{done}");
    let _ = vehicle.kill();
    let _ = vehicle.wait();

    let (down, up) = (
        radio.down.lock().unwrap_or_else(|e| e.into_inner()),
        radio.up.lock().unwrap_or_else(|e| e.into_inner()),
    );
    let count_at = down
        .frames
        .iter()
        .find(|(_, id, _)| *id == 44)
        .map(|(t, _, _)| *t)
        .expect("the station's MISSION_COUNT");
    let ack_at = up
        .frames
        .iter()
        .find(|(t, id, _)| *id == 47 && *t > count_at)
        .map(|(t, _, _)| *t)
        .expect("the vehicle's MISSION_ACK");
    let window = |w: &Wire, mission: bool| -> usize {
        w.frames
            .iter()
            .filter(|(t, id, _)| {
                *t >= count_at && *t <= ack_at && MISSION_IDS.contains(id) == mission
            })
            .map(|(_, _, n)| n)
            .sum()
    };
    let mission_bytes = window(&down, true) + window(&up, true);
    let other_bytes = window(&down, false) + window(&up, false);
    let quiet_bytes: usize = up
        .frames
        .iter()
        .filter(|(t, _, _)| *t >= quiet_from && *t < quiet_from + quiet)
        .map(|(_, _, n)| n)
        .sum();
    let took = ack_at.duration_since(count_at).as_secs_f64();
    let wire = mission_bytes as f64 / BYTES_PER_S;
    println!("link: 57600 baud serial (pty pair, paced at {BYTES_PER_S} bytes/s each way)");
    println!(
        "vehicle telemetry alone: {:.0} bytes/s up ({:.0} % of the link)",
        quiet_bytes as f64 / quiet.as_secs_f64(),
        100.0 * quiet_bytes as f64 / quiet.as_secs_f64() / BYTES_PER_S
    );
    println!(
        "upload of {ITEMS} items: {took:.2} s from MISSION_COUNT to MISSION_ACK; mission frames \
         {mission_bytes} bytes (wire time {wire:.2} s); other frames meanwhile {other_bytes} bytes"
    );
    println!(
        "with the read-back: {:.2} s from the request to accepted",
        (done["updated_us"].as_i64().unwrap_or(0) - done["created_us"].as_i64().unwrap_or(0))
            as f64
            / 1e6
    );
    println!("FIGURE mission_upload_vs_wire {:.2} x", took / wire);
}
