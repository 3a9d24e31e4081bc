//! The station against real autopilot firmware, built outside this project: ArduCopter SITL
//! from an ArduPilot source tree (`TRELLIS_ARDUPILOT`, with `./waf copter` built for the
//! `sitl` board), and PX4 SITL with its SIH simulator from a PX4-Autopilot tree
//! (`TRELLIS_PX4`, with `px4_sitl_default` built). No registry the test command may use
//! carries either, so these tests are ignored in `scripts/test` and run by hand (README,
//! "Against real firmware"):
//!
//! ```sh
//! TRELLIS_ARDUPILOT=/path/to/ardupilot TRELLIS_PX4=/path/to/PX4-Autopilot \
//!     cargo nextest run -p trellis-tests --test real_firmware --run-ignored only
//! ```
//!
//! Each test starts its own simulated copter (instance `-I n`, n from 4, TCP port 5760 + 10 n,
//! leaving instance 0 to a developer's own SITL) with a
//! fresh EEPROM, connects the station to it as its only ground station, and does what a
//! pilot or fleet admin does: nothing here is the project's own model of an autopilot.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::*;

/// Long enough for SITL's EKF to converge and for a short flight at real-time speed.
const T: Duration = Duration::from_secs(180);

/// CMAC, ArduPilot's usual SITL home.
const HOME: (f64, f64) = (-35.363_261, 149.165_230);

/// ArduCopter SITL as instance `instance`, running in a temporary directory (its EEPROM and
/// logs), with `--speedup 1`: the station's timeouts are wall-clock ones.
struct Copter {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Copter {
    fn start(instance: u8) -> Copter {
        let tree = PathBuf::from(std::env::var("TRELLIS_ARDUPILOT").expect(
            "TRELLIS_ARDUPILOT names an ArduPilot tree with build/sitl/bin/arducopter built",
        ));
        let binary = tree.join("build/sitl/bin/arducopter");
        assert!(binary.exists(), "no {}: run ./waf copter", binary.display());
        let dir = tempfile::tempdir().expect("temp dir");
        let proc = Proc::spawn(
            "arducopter",
            Command::new(&binary)
                .current_dir(dir.path())
                .args(["--model", "quad", "--speedup", "1", "-I"])
                .arg(instance.to_string())
                .arg("--defaults")
                .arg(tree.join("Tools/autotest/default_params/copter.parm"))
                .arg(format!("--home={},{},584,353", HOME.0, HOME.1))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        Copter {
            proc,
            port: 5760 + 10 * u16::from(instance),
            _dir: dir,
        }
    }

    /// A station whose only link is this copter's first serial port, and a pilot's token.
    fn station(&mut self) -> (EdgeDaemon, String) {
        self.station_with(&[])
    }

    /// The same with more links (a ground station's `udpout`).
    fn station_with(&mut self, links: &[String]) -> (EdgeDaemon, String) {
        self.proc
            .wait_line(T, |l| l.contains("Waiting for connection"));
        let mut all = vec![format!("tcp:127.0.0.1:{}", self.port)];
        all.extend_from_slice(links);
        let daemon = EdgeDaemon::start(&all);
        let pilot = daemon.new_token("anna", "pilot");
        (daemon, pilot)
    }
}

/// Sends `body` as a command to vehicle 1 and waits for its outcome.
fn command(daemon: &EdgeDaemon, token: &str, body: Value) -> Value {
    let (code, sent) = daemon.send_as(token, "POST", "/api/v1/vehicles/1/commands", &body);
    assert_eq!(code, 202, "{body}: {sent}");
    daemon.command_ended(token, sent["id"].as_i64().expect("a command id"))
}

/// Sends `body` until the vehicle accepts it: a copter refuses to change to a position mode
/// or to arm until its EKF has converged, which takes SITL tens of seconds.
fn until_accepted(daemon: &EdgeDaemon, token: &str, body: Value) -> Value {
    let deadline = std::time::Instant::now() + T;
    loop {
        let last = command(daemon, token, body.clone());
        if last["outcome"] == "accepted" {
            return last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{body} not accepted within {T:?}; last: {last}"
        );
        // The vehicle said no at once; ask again after the 1 Hz pre-arm checks have run.
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Parameter `name` as `edge-daemon params get` reads it from vehicle 1 (its `  NAME value`
/// line), failing the test if the vehicle does not answer.
fn read(daemon: &EdgeDaemon, token: &str, name: &str) -> f64 {
    let (code, out) = daemon.cli(token, &["params", "get", "1", name]);
    assert_eq!(code, Some(0), "{out}");
    out.lines()
        .filter(|l| l.starts_with("  "))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no value of {name} in {out}"))
}

/// A block 120 m by 60 m just north-east of home, planned as the crews plan it and uploaded
/// to vehicle 1: accepted once read back whole. The number of items.
fn upload_a_planned_survey(daemon: &EdgeDaemon, pilot: &str) -> usize {
    let at = |e: f64, n: f64| json!([HOME.0 + n / 111_000.0, HOME.1 + e / 90_800.0]);
    let block = json!({ "name": "Block 1", "polygon": [
        at(20.0, 20.0), at(140.0, 20.0), at(140.0, 80.0), at(20.0, 80.0)
    ] });
    let (code, body) = daemon.send_as(pilot, "PUT", "/api/v1/fields/block-1", &block);
    assert_eq!(code, 200, "{body}");
    let (code, planned) = daemon.send_as(
        pilot,
        "POST",
        "/api/v1/fields/block-1/plan",
        &json!({ "alt_m": 30, "speed_mps": 6, "pattern": "survey", "row_spacing_m": 15 }),
    );
    assert_eq!(code, 201, "{planned}");
    let sent = daemon.upload_mission(pilot, "plan-block-1", "1");
    let done = daemon.command_ended(pilot, sent["id"].as_i64().expect("id"));
    assert_eq!(
        done["outcome"], "accepted",
        "uploaded and read back: {done}"
    );
    let items = planned["fields"]["items"].as_array().map_or(0, Vec::len);
    assert!(items > 2, "a take-off, passes and RTL: {planned}");
    assert_eq!(
        done["detail"]["items"].as_array().map(Vec::len),
        Some(items),
        "{done}"
    );
    items
}

/// A fence around home with a 45 m ceiling, uploaded to vehicle 1 and accepted.
fn upload_a_fence(daemon: &EdgeDaemon, pilot: &str) {
    let fence = json!({ "name": "Block 1", "ceiling_m": 45, "geometry": { "type": "Polygon",
        "coordinates": [[
            [HOME.1 - 0.002, HOME.0 - 0.002], [HOME.1 + 0.003, HOME.0 - 0.002],
            [HOME.1 + 0.003, HOME.0 + 0.002], [HOME.1 - 0.002, HOME.0 + 0.002],
            [HOME.1 - 0.002, HOME.0 - 0.002]
        ]] } });
    let (code, body) = daemon.send_as(pilot, "PUT", "/api/v1/geofences/block-1", &fence);
    assert_eq!(code, 200, "{body}");
    let (code, started) = daemon.send_as(
        pilot,
        "POST",
        "/api/v1/geofences/block-1/upload",
        &json!({ "vehicle": "1" }),
    );
    assert_eq!(code, 202, "{started}");
    let fence_done = daemon.command_ended(pilot, started["fence"]["id"].as_i64().expect("id"));
    assert_eq!(fence_done["outcome"], "accepted", "{fence_done}");
}

/// The copter as the station sees it once its telemetry has everything a pilot needs.
fn ready(daemon: &EdgeDaemon) -> Value {
    wait_for(
        "position, home, battery, a 3D fix and the firmware",
        T,
        || {
            let v = daemon.vehicle(1)?;
            let ok = v["position"].is_object()
                && v["home"].is_object()
                && v["battery"]["voltage_v"].is_number()
                && v["gps"]["fix_type"].as_u64()? >= 3
                && v["firmware_version"].is_string()
                && v["uid"].is_string();
            ok.then_some(v)
        },
    )
}

#[test]
#[ignore = "needs TRELLIS_ARDUPILOT: an ArduPilot tree with SITL built (README)"]
fn arducopter_is_asked_for_its_data_and_its_parameters_follow_a_profile() {
    let mut copter = Copter::start(4);
    let (daemon, pilot) = copter.station();
    // No other ground station is connected: everything here was asked for by the station.
    let v = ready(&daemon);
    assert_eq!(v["autopilot"], "ardupilot", "{v}");
    let version = v["firmware_version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(version.starts_with("4."), "{v}");
    let home = &v["home"];
    assert!(
        (home["lat"].as_f64().unwrap_or(0.0) - HOME.0).abs() < 1e-4,
        "home where SITL was told: {home}"
    );

    // The whole list, then the survey profile written for 4.5/4.6.
    let (code, out) = daemon.cli(&pilot, &["params", "fetch", "1"]);
    assert_eq!(code, Some(0), "{out}");
    let count: u64 = out
        .split_whitespace()
        .zip(out.split_whitespace().skip(1))
        .find_map(|(n, w)| (w == "parameters").then(|| n.parse().ok()).flatten())
        .unwrap_or_else(|| panic!("a parameter count in {out}"));
    assert!(count > 1_000, "ArduCopter has over a thousand: {out}");

    let survey = "ardupilot/copter-survey.param";
    let (code, out) = daemon.cli(&pilot, &["params", "diff", "1", survey]);
    assert_eq!(code, Some(1), "a fresh SITL is not a survey copter: {out}");
    assert!(
        !out.contains("missing"),
        "every name found on {version}: {out}"
    );
    let (code, out) = daemon.cli(&pilot, &["params", "apply", "1", survey]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = daemon.cli(&pilot, &["params", "diff", "1", survey]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("55 match"), "{out}");
    if version.starts_with("4.7") {
        // The profile in 4.7's own names and units says the same of the same vehicle.
        let (code, out) = daemon.cli(
            &pilot,
            &["params", "diff", "1", "ardupilot/copter-survey-4.7.param"],
        );
        assert_eq!(code, Some(0), "{out}");
    }
    // What the vehicle holds, read from it, not from the station's copy.
    assert_eq!(read(&daemon, &pilot, "FENCE_ALT_MAX"), 60.0);
}

#[test]
#[ignore = "needs TRELLIS_ARDUPILOT: an ArduPilot tree with SITL built (README)"]
fn arducopter_takes_off_returns_and_lands_on_the_stations_commands() {
    let mut copter = Copter::start(5);
    let (daemon, pilot) = copter.station();
    ready(&daemon);
    // A refusal is reported as the vehicle gave it: no take-off while disarmed.
    until_accepted(
        &daemon,
        &pilot,
        json!({ "command": "mode", "mode": "GUIDED" }),
    );
    let refused = command(
        &daemon,
        &pilot,
        json!({ "command": "takeoff", "alt_m": 10 }),
    );
    assert!(
        matches!(refused["outcome"].as_str(), Some("denied" | "failed")),
        "{refused}"
    );
    until_accepted(&daemon, &pilot, json!({ "command": "arm" }));
    let up = command(
        &daemon,
        &pilot,
        json!({ "command": "takeoff", "alt_m": 10 }),
    );
    assert_eq!(up["outcome"], "accepted", "{up}");
    wait_for("the copter at 9 m", T, || {
        (daemon.vehicle(1)?["position"]["alt_rel_m"].as_f64()? > 9.0).then_some(())
    });
    let faster = command(
        &daemon,
        &pilot,
        json!({ "command": "speed", "speed_mps": 3 }),
    );
    assert_eq!(faster["outcome"], "accepted", "{faster}");
    let (code, out) = daemon.cli(&pilot, &["command", "1", "rtl"]);
    assert_eq!(code, Some(0), "{out}");
    wait_for("RTL shown as the mode", T, || {
        (daemon.vehicle(1)?["mode"] == "RTL").then_some(())
    });
    wait_for("landed and disarmed", T, || {
        (daemon.vehicle(1)?["armed"] == false).then_some(())
    });
}

#[test]
#[ignore = "needs TRELLIS_ARDUPILOT: an ArduPilot tree with SITL built (README)"]
fn arducopter_holds_the_planned_survey_and_the_fence_it_was_sent() {
    let mut copter = Copter::start(6);
    let (daemon, pilot) = copter.station();
    ready(&daemon);
    let items = upload_a_planned_survey(&daemon, &pilot);
    // The copter's own MISSION_CURRENT reports the new list: its last item's number (home,
    // item 0, is not counted).
    wait_for("the vehicle's mission named, with its length", T, || {
        let m = daemon.vehicle(1)?["mission"].clone();
        (m["key"] == "plan-block-1" && m["total"].as_u64()? as usize + 1 == items).then_some(())
    });

    // The field as the copter's inclusion fence with a ceiling.
    upload_a_fence(&daemon, &pilot);
    assert_eq!(
        read(&daemon, &pilot, "FENCE_ALT_MAX"),
        45.0,
        "the ceiling set"
    );

    // Flown: take off, start the mission, and its progress comes back from the copter.
    until_accepted(
        &daemon,
        &pilot,
        json!({ "command": "mode", "mode": "GUIDED" }),
    );
    until_accepted(&daemon, &pilot, json!({ "command": "arm" }));
    let up = command(
        &daemon,
        &pilot,
        json!({ "command": "takeoff", "alt_m": 10 }),
    );
    assert_eq!(up["outcome"], "accepted", "{up}");
    let start = command(&daemon, &pilot, json!({ "command": "start_mission" }));
    assert_eq!(start["outcome"], "accepted", "{start}");
    let progress = wait_for("the copter past its first survey waypoint", T, || {
        let m = daemon.vehicle(1)?["mission"].clone();
        (m["reached"].as_u64()? >= 2).then_some(m)
    });
    assert_eq!(progress["key"], "plan-block-1", "{progress}");
}

#[test]
#[ignore = "needs TRELLIS_ARDUPILOT: an ArduPilot tree with SITL built (README)"]
fn arducopter_signs_with_its_key_and_comes_back_after_a_reboot() {
    let mut copter = Copter::start(7);
    let (daemon, pilot) = copter.station();
    ready(&daemon);
    let admin = daemon.new_token("fleet admin", "admin");
    let (code, out) = daemon.cli(
        &admin,
        &[
            "signing",
            "enable",
            "1",
            "--passphrase",
            "rows of old vines",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    wait_for("signed frames from the copter", T, || {
        let s = daemon.vehicle(1)?["signing"].clone();
        (s["on"] == true && s["accepted"].as_u64()? > 20).then_some(())
    });
    // The copter now drops unsigned frames: an answer shows it took the station's signed ask.
    read(&daemon, &pilot, "FS_GCS_ENABLE");
    let (code, out) = daemon.cli(&admin, &["signing", "disable", "1"]);
    assert_eq!(code, Some(0), "{out}");
    wait_for("unsigned frames again", T, || {
        (daemon.vehicle(1)?["signing"]["on"] == false).then_some(())
    });

    // A reboot: SITL restarts and waits on its port; the station reconnects and asks again.
    let (code, out) = daemon.cli(&pilot, &["command", "1", "reboot"]);
    assert_eq!(code, Some(0), "{out}");
    let positions = wait_for("the copter silent while it restarts", T, || {
        let v = daemon.vehicle(1)?;
        (v["link"]["since_heard_s"].as_f64()? > 1.0).then(|| v["samples"].as_u64())?
    });
    // `samples` counts positions: they flow again, and the fix is back.
    wait_for("the copter's positions back after its reboot", T, || {
        let v = daemon.vehicle(1)?;
        (v["samples"].as_u64()? > positions + 20 && v["gps"]["fix_type"].as_u64()? >= 3)
            .then_some(())
    });
}

#[test]
#[ignore = "needs TRELLIS_ARDUPILOT: an ArduPilot tree with SITL built (README)"]
fn arducopter_takes_mavproxys_upload_and_the_stations_one_after_the_other() {
    let mut copter = Copter::start(8);
    let gcs = free_udp_port();
    let (daemon, pilot) = copter.station_with(&[format!("udpout:127.0.0.1:{gcs}")]);
    ready(&daemon);
    let at = |i: usize| (HOME.0 + i as f64 * 1e-5, HOME.1 + 2e-4);
    let items: Vec<Value> = (0..150)
        .map(|i| {
            let (lat, lon) = at(i);
            json!({ "command": 16, "frame": 3, "params": [0.0, 0.0, 0.0, 0.0],
                "x": (lat * 1e7).round() as i32, "y": (lon * 1e7).round() as i32,
                "z": 20.0, "autocontinue": true })
        })
        .collect();
    daemon.store_mission(&pilot, "m", &items);
    let (mut mavproxy, file, _state) = mavproxy_with_a_mission(gcs, 1, 100);
    mavproxy.wait_line(T, |l| l.contains("Detected vehicle 1:1"));

    // MAVProxy's count goes out first; the station's follows, while the copter may still be
    // taking MAVProxy's items (ArduPilot then answers DENIED and the station asks again;
    // `missions.rs` makes that overlap certain with a slower vehicle). Either way both
    // uploads complete and neither disturbs the other.
    mavproxy.send_line(&format!("wp load {file}"));
    mavproxy.wait_line(T, |l| l.contains("Loaded 100 waypoints"));
    let sent = daemon.upload_mission(&pilot, "m", "1");
    mavproxy.wait_line(T, |l| l.contains("Sent all 100 waypoints"));
    let done = daemon.command_ended(&pilot, sent["id"].as_i64().expect("id"));
    assert_eq!(done["outcome"], "accepted", "{done}");
    assert_eq!(
        done["detail"]["items"].as_array().map(Vec::len),
        Some(150),
        "the station's list, read back, is the copter's now: {done}"
    );
}

/// PX4 SITL with its SIH simulator (a quadrotor simulated inside PX4, no Gazebo), in a
/// temporary working directory (its parameters and logs). Whatever its instance, PX4 sends
/// its ground-station MAVLink to UDP 14550 until it hears from someone, so one runs at a time:
/// the PX4 checks are one test.
struct Px4 {
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Px4 {
    fn start() -> Px4 {
        let tree = PathBuf::from(
            std::env::var("TRELLIS_PX4")
                .expect("TRELLIS_PX4 names a PX4-Autopilot tree with build/px4_sitl_default built"),
        );
        let build = tree.join("build/px4_sitl_default");
        assert!(
            build.join("bin/px4").exists(),
            "no px4 in {}: build px4_sitl_default",
            build.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let proc = Proc::spawn(
            "px4",
            Command::new(build.join("bin/px4"))
                .current_dir(dir.path())
                .arg("-d")
                .arg("-w")
                .arg(dir.path())
                .arg(build.join("etc"))
                .env("PX4_SYS_AUTOSTART", "10040")
                .env("PX4_SIMULATOR", "sihsim")
                .env("PX4_SIM_MODEL", "sihsim_quadx")
                .env("PX4_HOME_LAT", HOME.0.to_string())
                .env("PX4_HOME_LON", HOME.1.to_string())
                .env("PX4_HOME_ALT", "584")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        Px4 {
            _proc: proc,
            _dir: dir,
        }
    }
}

#[test]
#[ignore = "needs TRELLIS_PX4: a PX4-Autopilot tree with SITL built (README)"]
fn px4_is_read_follows_its_profile_holds_a_survey_and_flies_on_command() {
    let _px4 = Px4::start();
    let daemon = EdgeDaemon::start(&["udpin:127.0.0.1:14550".to_string()]);
    let pilot = daemon.new_token("anna", "pilot");
    let v = ready(&daemon);
    assert_eq!(v["autopilot"], "px4", "{v}");

    // Parameters and the PX4 profile.
    let (code, out) = daemon.cli(&pilot, &["params", "fetch", "1"]);
    assert_eq!(code, Some(0), "{out}");
    let profile = "px4/multicopter-survey.params";
    // SITL has no serial ports, so it has none of their parameters: those are reported
    // missing, as a name a vehicle lacks always is, and everything else is set.
    let serial = [
        "SER_TEL1_BAUD",
        "MAV_0_CONFIG",
        "MAV_0_MODE",
        "MAV_0_RATE",
        "MAV_0_RADIO_CTL",
    ];
    let missing = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains("vehicle missing"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let (code, out) = daemon.cli(&pilot, &["params", "diff", "1", profile]);
    assert_eq!(
        code,
        Some(1),
        "a fresh SITL is not a survey multicopter: {out}"
    );
    assert_eq!(missing(&out), serial, "{out}");
    let (code, out) = daemon.cli(&pilot, &["params", "apply", "1", profile]);
    assert_eq!(
        code,
        Some(1),
        "the serial port's parameters cannot be set: {out}"
    );
    assert!(out.contains("not set:"), "{out}");
    let (code, out) = daemon.cli(&pilot, &["params", "diff", "1", profile]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(missing(&out), serial, "{out}");
    assert!(out.contains("27 match, 5 differ"), "all else set: {out}");
    // An integer parameter, byte-wise in the float as PX4 sends it, read back as a number.
    assert_eq!(read(&daemon, &pilot, "COM_DL_LOSS_T"), 10.0);

    // A planned survey and the field's fence.
    upload_a_planned_survey(&daemon, &pilot);
    upload_a_fence(&daemon, &pilot);

    // Flown on the station's commands.
    until_accepted(&daemon, &pilot, json!({ "command": "arm" }));
    let up = command(
        &daemon,
        &pilot,
        json!({ "command": "takeoff", "alt_m": 10 }),
    );
    assert_eq!(up["outcome"], "accepted", "{up}");
    wait_for("the vehicle at 8 m", T, || {
        (daemon.vehicle(1)?["position"]["alt_rel_m"].as_f64()? > 8.0).then_some(())
    });
    // Somewhere 30 m north, 15 m up: PX4 takes the height above sea level, from home.
    let (lat, lon) = (HOME.0 + 30.0 / 111_000.0, HOME.1);
    let goto = command(
        &daemon,
        &pilot,
        json!({ "command": "goto", "lat": lat, "lon": lon, "alt_m": 15 }),
    );
    assert_eq!(goto["outcome"], "accepted", "{goto}");
    wait_for("the vehicle there", T, || {
        let p = daemon.vehicle(1)?["position"].clone();
        let north_m = (p["lat"].as_f64()? - HOME.0) * 111_000.0;
        (north_m > 25.0 && (p["alt_rel_m"].as_f64()? - 15.0).abs() < 2.0).then_some(())
    });
    let hold = command(
        &daemon,
        &pilot,
        json!({ "command": "mode", "mode": "Hold" }),
    );
    assert_eq!(hold["outcome"], "accepted", "{hold}");
    wait_for("Hold shown as the mode", T, || {
        (daemon.vehicle(1)?["mode"] == "Hold").then_some(())
    });
    let (code, out) = daemon.cli(&pilot, &["command", "1", "rtl"]);
    assert_eq!(code, Some(0), "{out}");
    wait_for("Return shown as the mode", T, || {
        (daemon.vehicle(1)?["mode"] == "Return").then_some(())
    });
    wait_for("landed and disarmed", Duration::from_secs(300), || {
        (daemon.vehicle(1)?["armed"] == false).then_some(())
    });
}
