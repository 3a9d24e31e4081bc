//! An ArduCopter-sized parameter list (1,300 parameters) read over a 57,600-baud serial link,
//! against its wire time.
//!
//! The link is two pty pairs paced at the radio's rate (`common/radio.rs`); the vehicle is the
//! pymavlink autopilot of the tests (`tests/peers/autopilot.py`: ArduPilot's parameter
//! protocol, the telemetry streams the station asks for; needs pymavlink, which
//! `scripts/test` installs), holding `copter-survey.param` padded to 1,300 parameters. The
//! download is timed on the wire: from the station's PARAM_REQUEST_LIST to the last
//! PARAM_VALUE it needed. Its wire time is the bytes of the parameter frames in that window
//! at the link's rate; the vehicle's telemetry shares the link, as in the field, and its share
//! is printed.
//!
//! `cargo bench -p edge-daemon --bench param_download`; last line
//! `FIGURE param_download_vs_wire <ratio> x`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::radio::{api, Radio, BYTES_PER_S};
use serde_json::json;

const PARAMS: usize = 1_300;
/// PARAM_REQUEST_READ, PARAM_REQUEST_LIST, PARAM_VALUE.
const PARAM_IDS: [u32; 3] = [20, 21, 22];

fn main() {
    let radio = Radio::start();
    let daemon = common::Daemon::start_with(&[format!("serial:{}:57600", radio.station)], "pilot");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut vehicle = Command::new("python3")
        .arg(format!("{root}/tests/peers/autopilot.py"))
        .args(["--connect", &radio.vehicle, "--sysid", "1"])
        .args([
            "--params",
            &format!("{root}/firmware-configs/ardupilot/copter-survey.param"),
        ])
        .args(["--pad", &PARAMS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 tests/peers/autopilot.py (pymavlink)");
    let base = format!("http://127.0.0.1:{}", daemon.api);
    common::radio::wait_for_vehicle(&base, &daemon.token, 1);
    // Telemetry alone for a while, for its share of the link.
    let quiet_from = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let quiet = quiet_from.elapsed();
    let sent = api(
        "POST",
        &format!("{base}/api/v1/vehicles/1/params/fetch"),
        &daemon.token,
        Some(&json!({})),
    );
    let id = sent["id"].as_i64().expect("an id");
    let done = common::radio::wait_for_command(&base, &daemon.token, id);
    assert_eq!(done["outcome"], "accepted", "{done}");
    assert_eq!(done["detail"]["count"], PARAMS, "{done}");
    let _ = vehicle.kill();
    let _ = vehicle.wait();

    let (down, up) = (
        radio.down.lock().unwrap_or_else(|e| e.into_inner()),
        radio.up.lock().unwrap_or_else(|e| e.into_inner()),
    );
    let list_at = down
        .frames
        .iter()
        .find(|(_, id, _)| *id == 21)
        .map(|(t, _, _)| *t)
        .expect("the station's PARAM_REQUEST_LIST");
    let last_at = up
        .frames
        .iter()
        .filter(|(_, id, _)| *id == 22)
        .map(|(t, _, _)| *t)
        .max()
        .expect("the vehicle's PARAM_VALUEs");
    let window = |frames: &[(Instant, u32, usize)], params: bool| -> usize {
        frames
            .iter()
            .filter(|(t, id, _)| *t >= list_at && *t <= last_at && PARAM_IDS.contains(id) == params)
            .map(|(_, _, n)| n)
            .sum()
    };
    let param_bytes = window(&down.frames, true) + window(&up.frames, true);
    let other_bytes = window(&down.frames, false) + window(&up.frames, false);
    let quiet_bytes: usize = up
        .frames
        .iter()
        .filter(|(t, _, _)| *t >= quiet_from && *t < quiet_from + quiet)
        .map(|(_, _, n)| n)
        .sum();
    let took = last_at.duration_since(list_at).as_secs_f64();
    let wire = param_bytes as f64 / BYTES_PER_S;
    println!("link: 57600 baud serial (pty pair, paced at {BYTES_PER_S} bytes/s each way)");
    println!(
        "vehicle telemetry alone: {:.0} bytes/s up ({:.0} % of the link)",
        quiet_bytes as f64 / quiet.as_secs_f64(),
        100.0 * quiet_bytes as f64 / quiet.as_secs_f64() / BYTES_PER_S
    );
    println!(
        "download of {PARAMS} parameters: {took:.2} s from PARAM_REQUEST_LIST to the last \
         PARAM_VALUE; parameter frames {param_bytes} bytes (wire time {wire:.2} s), {} asked \
         for again; other frames meanwhile {other_bytes} bytes",
        done["detail"]["re_requested"].as_u64().unwrap_or(0)
    );
    println!(
        "request to outcome: {:.2} s",
        (done["updated_us"].as_i64().unwrap_or(0) - done["created_us"].as_i64().unwrap_or(0))
            as f64
            / 1e6
    );
    println!("FIGURE param_download_vs_wire {:.2} x", took / wire);
}
