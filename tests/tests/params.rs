//! Parameters through the station, against `peers/autopilot.py` (pymavlink) serving its own
//! parameter list as ArduPilot (or PX4) does: the whole list read through a lossy link with
//! its gaps asked for again, sets verified by the vehicle's answer, the fleet's profiles
//! compared and applied (renamed parameters on ArduCopter 4.7, parameters that appear only
//! after an enable and a reboot, PX4's byte-wise integers), drift and history, the CLI.

use std::process::Command as Process;
use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::impair::{ImpairedLink, Impairment};
use trellis_tests::*;

const T: Duration = Duration::from_secs(30);
const SURVEY: &str = "ardupilot/copter-survey.param";

fn profile_file(name: &str) -> String {
    root()
        .join("firmware-configs")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A station hearing autopilot 5 (with `options`) directly, and a pilot's token.
fn station(options: &[&str]) -> (EdgeDaemon, Proc, String) {
    station_with(&[], options)
}

/// The same with more links (a ground station's `udpout`).
fn station_with(links: &[String], options: &[&str]) -> (EdgeDaemon, Proc, String) {
    let udp = free_udp_port();
    let mut all = vec![format!("udpin:127.0.0.1:{udp}")];
    all.extend_from_slice(links);
    let daemon = EdgeDaemon::start(&all);
    let ap = autopilot(&format!("udpout:127.0.0.1:{udp}"), 5, options);
    wait_for("the vehicle's firmware version", T, || {
        daemon.vehicle(5)?["firmware_version"]
            .is_string()
            .then_some(())
    });
    let pilot = daemon.new_token("anna", "pilot");
    (daemon, ap, pilot)
}

/// Starts a job with `method` on `path` and waits for its end.
fn job(daemon: &EdgeDaemon, token: &str, method: &str, path: &str, body: Value) -> Value {
    let (code, started) = daemon.send_as(token, method, path, &body);
    assert_eq!(code, 202, "{method} {path} {body}: {started}");
    daemon.command_ended(token, started["id"].as_i64().expect("an id"))
}

fn cli(daemon: &EdgeDaemon, token: &str, args: &[&str]) -> (Option<i32>, String) {
    daemon.cli(token, &[&["params"], args].concat())
}

fn value_of(list: &Value, name: &str) -> Option<f64> {
    list["params"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["value"]
        .as_f64()
}

#[test]
fn the_whole_list_comes_through_a_link_losing_a_fifth_with_its_gaps_asked_for_again() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let lossy = ImpairedLink::start(
        format!("127.0.0.1:{udp}").parse().expect("addr"),
        Impairment {
            loss: 0.2,
            delay: Duration::from_millis(5),
            flap: None,
        },
    );
    let survey = profile_file(SURVEY);
    let mut ap = autopilot(
        &format!("udpout:{}", lossy.addr),
        5,
        &["--params", &survey, "--pad", "1300"],
    );
    wait_for("the vehicle", T, || daemon.vehicle(5));
    let pilot = daemon.new_token("anna", "pilot");
    let (code, before) = daemon.get_as(&pilot, "/api/v1/vehicles/5/params");
    assert_eq!(code, 200);
    assert_eq!(before["complete"], false, "{before}");

    let done = job(
        &daemon,
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/fetch",
        json!({}),
    );
    assert_eq!(done["outcome"], "accepted", "{done}");
    assert_eq!(done["detail"]["count"], 1300, "{done}");
    let listed = ap.wait_event("params_listed", T);
    let asked_again = done["detail"]["re_requested"].as_u64().unwrap_or(0);
    assert!(
        asked_again >= 1300 - listed["sent"].as_u64().unwrap_or(1300),
        "every value the link dropped is asked for again: {done} {listed}"
    );
    assert!(lossy.dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);

    let (_, mut list) = daemon.get_as(&pilot, "/api/v1/vehicles/5/params");
    assert_eq!(list["complete"], true, "{}", list["count"]);
    // A page holds 1000: the rest is on the next.
    let (params, pages) = walk_pages(
        |url| daemon.get_as(&pilot, url).1,
        "/api/v1/vehicles/5/params",
        "params",
        "after",
        1000,
    );
    assert_eq!((params.len(), pages), (1300, 2));
    list["params"] = params.into();
    // So does the command line.
    let (code, out) = cli(&daemon, &pilot, &["list", "5"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1300 of 1300 parameters (complete)"), "{out}");
    assert_eq!(value_of(&list, "WPNAV_SPEED"), Some(600.0));
    // A float parameter reads as the number written, not its binary approximation.
    assert_eq!(value_of(&list, "BATT_LOW_VOLT"), Some(21.6));
    let types: Vec<&str> = list["params"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "BATT_LOW_VOLT" || p["name"] == "RTL_ALT")
        .filter_map(|p| p["type"].as_str())
        .collect();
    assert_eq!(types, vec!["real32", "int16"]);
}

#[test]
fn a_set_counts_only_when_the_vehicle_holds_the_value_and_every_change_is_kept() {
    let survey = profile_file(SURVEY);
    let (daemon, mut ap, pilot) = station(&[
        "--params",
        &survey,
        "--param",
        "RTL_ALT=1500",
        "--refuse",
        "FS_GCS_TIMEOUT",
    ]);
    let done = job(
        &daemon,
        &pilot,
        "PUT",
        "/api/v1/vehicles/5/params",
        json!({ "RTL_ALT": 3000, "BATT_LOW_VOLT": 21.2, "FS_GCS_TIMEOUT": 9, "NO_SUCH": 1 }),
    );
    assert_eq!(done["outcome"], "failed", "one was refused: {done}");
    let set: Vec<(&str, f64)> = done["detail"]["set"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("?"),
                c["value"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert!(set.contains(&("RTL_ALT", 3000.0)), "{done}");
    assert!(set
        .iter()
        .any(|(n, v)| *n == "BATT_LOW_VOLT" && (v - 21.2).abs() < 1e-5));
    let failed: Vec<&str> = done["detail"]["failed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(failed, vec!["FS_GCS_TIMEOUT", "NO_SUCH"], "{done}");
    // The vehicle heard the sets from the station's own id, and no set for a name it lacks.
    let heard = ap.wait_event_where("param_set", T, |e| e["name"] == "RTL_ALT");
    assert_eq!(
        (heard["value"].as_f64(), heard["from"].as_u64()),
        (Some(3000.0), Some(245))
    );

    // A whole number for an integer parameter, refused before it is sent.
    let done = job(
        &daemon,
        &pilot,
        "PUT",
        "/api/v1/vehicles/5/params",
        json!({ "RTL_ALT": 12.5 }),
    );
    assert_eq!(done["outcome"], "failed");
    assert!(
        done["detail"]["failed"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("whole numbers")),
        "{done}"
    );

    let (_, history) = daemon.get_as(&pilot, "/api/v1/vehicles/5/params/history?name=RTL_ALT");
    let change = &history["changes"][0];
    assert_eq!(
        (change["previous"].as_f64(), change["value"].as_f64()),
        (Some(1500.0), Some(3000.0)),
        "{history}"
    );
    assert!(change["command"].is_i64(), "made by the station: {history}");

    // Bad requests name their field; a viewer reads but never sets.
    let (code, body) = daemon.send_as(&pilot, "PUT", "/api/v1/vehicles/5/params", &json!({}));
    assert_eq!(code, 422, "{body}");
    let (code, body) = daemon.send_as(
        &pilot,
        "PUT",
        "/api/v1/vehicles/5/params",
        &json!({ "A_NAME_LONGER_THAN_16": 1 }),
    );
    assert_eq!(code, 422, "{body}");
    let (code, _) = daemon.send_as(&pilot, "PUT", "/api/v1/vehicles/9/params", &json!({"X": 1}));
    assert_eq!(code, 404);
    let viewer = daemon.new_token("crew", "viewer");
    assert_eq!(daemon.get_as(&viewer, "/api/v1/vehicles/5/params").0, 200);
    let (code, _) = daemon.send_as(
        &viewer,
        "PUT",
        "/api/v1/vehicles/5/params",
        &json!({"X": 1}),
    );
    assert_eq!(code, 403);
}

#[test]
fn a_profile_is_compared_applied_and_its_drift_shown() {
    let survey = profile_file(SURVEY);
    let qgc = free_udp_port();
    let (daemon, mut ap, pilot) = station_with(
        &[format!("udpout:127.0.0.1:{qgc}")],
        &[
            "--params",
            &survey,
            "--param",
            "RTL_ALT=1500",
            "--param",
            "BATT_LOW_VOLT=20.5",
            "--param",
            "SYSID_MYGCS=255",
            "--refuse",
            "FENCE_ALT_MAX",
            "--param",
            "FENCE_ALT_MAX=100",
            "--pad",
            "400",
        ],
    );
    // diff reads the list first when the station has not, and exits 1 on drift.
    let (code, out) = cli(&daemon, &pilot, &["diff", "5", SURVEY]);
    assert_eq!(code, Some(1), "{out}");
    for line in ["RTL_ALT", "BATT_LOW_VOLT", "SYSID_MYGCS", "FENCE_ALT_MAX"] {
        assert!(out.contains(line), "{line} in {out}");
    }
    assert!(out.contains("51 match, 4 differ"), "{out}");
    // The same from a file, by its path.
    let (code, out) = cli(&daemon, &pilot, &["diff", "5", &survey, "--json"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        json_line(out.trim())["differences"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    // A dry run shows what apply would change and changes nothing.
    let (code, out) = cli(&daemon, &pilot, &["apply", "5", SURVEY, "--dry-run"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("RTL_ALT") && out.contains("1500"), "{out}");
    let (code, out) = cli(&daemon, &pilot, &["diff", "5", SURVEY]);
    assert!(
        code == Some(1) && out.contains("51 match, 4 differ"),
        "the dry run set nothing: {out}"
    );
    // get asks the vehicle itself, not the stored list.
    let (code, out) = cli(&daemon, &pilot, &["get", "5", "RTL_ALT", "BATT_LOW_VOLT"]);
    assert_eq!(code, Some(0), "{out}");
    let read: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        read,
        vec![vec!["RTL_ALT", "1500"], vec!["BATT_LOW_VOLT", "20.5"]],
        "{out}"
    );
    let asked = ap.wait_event_where("param_read", T, |e| e["name"] == "BATT_LOW_VOLT");
    assert_eq!(asked["from"], 245, "{asked}");

    // Never while armed.
    let (code, _) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/commands",
        &json!({ "command": "arm" }),
    );
    assert_eq!(code, 202);
    wait_for("armed", T, || {
        (daemon.vehicle(5)?["armed"] == true).then_some(())
    });
    let (code, body) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/apply",
        &json!({ "profile": SURVEY }),
    );
    assert_eq!(code, 409, "{body}");
    daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/commands",
        &json!({ "command": "disarm" }),
    );
    wait_for("disarmed", T, || {
        (daemon.vehicle(5)?["armed"] == false).then_some(())
    });

    let (code, out) = cli(&daemon, &pilot, &["apply", "5", SURVEY]);
    assert_eq!(code, Some(1), "the refused one fails the apply: {out}");
    assert!(out.contains("set RTL_ALT"), "{out}");
    assert!(out.contains("FAILED FENCE_ALT_MAX"), "{out}");
    assert!(out.contains("keeps 100"), "{out}");
    assert!(
        !out.contains("reboot"),
        "no serial port or stream rate changed: {out}"
    );
    let set = ap.wait_event_where("param_set", T, |e| e["name"] == "SYSID_MYGCS");
    assert_eq!(set["value"], 245.0);

    // Now it follows the profile, and drifts only where the vehicle refused.
    let (_, view) = daemon.get_as(&pilot, "/api/v1/vehicles/5/params");
    assert_eq!(view["profile"], SURVEY, "{}", view["profile"]);
    let drift: Vec<&str> = view["drift"]["differences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(drift, vec!["FENCE_ALT_MAX"], "{}", view["drift"]);
    // A change made elsewhere (a ground station through the router) shows as drift too,
    // and in the history without a command.
    let set_elsewhere = python_json(
        "gcs.py",
        &[
            "--listen",
            &format!("udpin:127.0.0.1:{qgc}"),
            "--expect",
            "5",
            "--param-set",
            "5:RTL_ALT=2500",
        ],
    );
    assert_eq!(set_elsewhere["param"]["value"], 2500.0, "{set_elsewhere}");
    wait_for("the drift from the change elsewhere", T, || {
        let (_, view) = daemon.get_as(&pilot, "/api/v1/vehicles/5/params");
        let drift = view["drift"]["differences"].as_array()?.clone();
        drift.iter().any(|d| d["name"] == "RTL_ALT").then_some(())
    });
    let (code, out) = cli(&daemon, &pilot, &["history", "5", "RTL_ALT"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("4000 -> 2500") && lines[0].contains("elsewhere"),
        "{out}"
    );
    assert!(
        lines[1].contains("1500 -> 4000") && lines[1].contains("command"),
        "{out}"
    );

    // Profiles that cannot be used are refused with why.
    let (code, body) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/diff",
        &json!({ "profile": "mine.param", "text": "SYSID_THISMAV,3\n" }),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("identity"));
    let (code, _) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/diff",
        &json!({ "profile": "px4/multicopter-survey.params" }),
    );
    assert_eq!(code, 422, "a PX4 profile is never compared with ArduPilot");
    let (code, _) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/diff",
        &json!({ "profile": "no-such.param" }),
    );
    assert_eq!(code, 404);
    let (code, out) = cli(&daemon, &pilot, &["diff", "5", "no-such.param"]);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn a_4_7_vehicle_gets_a_4_5_profile_under_its_new_names() {
    let survey = profile_file(SURVEY);
    let (daemon, mut ap, pilot) = station(&[
        "--firmware",
        "4.7.0",
        "--params",
        &survey,
        "--param",
        "SYSID_MYGCS=255",
        "--param",
        "SR1_POSITION=0",
    ]);
    job(
        &daemon,
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/fetch",
        json!({}),
    );
    let (code, diff) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/diff",
        &json!({ "profile": SURVEY }),
    );
    assert_eq!(code, 200, "{diff}");
    let differences: Vec<(&str, &str)> = diff["differences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("?"),
                d["vehicle_name"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        differences,
        vec![
            ("SYSID_MYGCS", "MAV_GCS_SYSID"),
            ("SR1_POSITION", "MAV2_POSITION")
        ],
        "RTL_ALT 4000 cm matches RTL_ALT_M 40 m: {diff}"
    );
    assert_eq!(
        diff["matching"], 53,
        "the rest match under 4.7's names and units (LAND_*, RTL_* in metres, \
         ARMING_CHECK 1 as ARMING_SKIPCHK 0): {diff}"
    );
    assert!(
        diff["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("4.7")),
        "{diff}"
    );

    let done = job(
        &daemon,
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/apply",
        json!({ "profile": SURVEY }),
    );
    assert_eq!(done["outcome"], "accepted", "{done}");
    let set = ap.wait_event_where("param_set", T, |e| e["name"] == "MAV_GCS_SYSID");
    assert_eq!(set["value"], 245.0);
    let set = ap.wait_event_where("param_set", T, |e| e["name"] == "MAV2_POSITION");
    assert_eq!(set["value"], 5.0);
    assert_eq!(
        done["detail"]["reboot"]["takes_effect"],
        json!(["MAV2_POSITION"]),
        "stream rates take effect at boot: {done}"
    );
    let (code, out) = cli(&daemon, &pilot, &["diff", "5", SURVEY]);
    assert_eq!(code, Some(0), "{out}");
    // The profile written in 4.7's names finds the vehicle the same.
    let (code, out) = cli(
        &daemon,
        &pilot,
        &["diff", "5", "ardupilot/copter-survey-4.7.param"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("55 match"), "{out}");
}

#[test]
fn parameters_an_enable_shows_after_a_reboot_are_set_in_a_second_pass() {
    let spray = profile_file("ardupilot/copter-spray.param");
    let (daemon, mut ap, pilot) = station(&[
        "--params",
        &spray,
        "--param",
        "SPRAY_ENABLE=0",
        "--param",
        "SPRAY_PUMP_RATE=5",
        "--hidden",
        "SPRAY_:SPRAY_ENABLE",
    ]);
    let (code, out) = cli(
        &daemon,
        &pilot,
        &["apply", "5", "ardupilot/copter-spray.param"],
    );
    assert_eq!(code, Some(1), "SPRAY_* are not there yet: {out}");
    assert!(out.contains("set SPRAY_ENABLE"), "{out}");
    assert!(out.contains("reboot, then apply again"), "{out}");
    assert!(out.contains("SPRAY_PUMP_RATE"), "{out}");

    let out = Process::new(bin("edge-daemon"))
        .args([
            "command",
            "5",
            "reboot",
            "--api",
            &daemon.api,
            "--token",
            &pilot,
        ])
        .output()
        .expect("edge-daemon runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    ap.wait_event("rebooted", T);

    let (code, out) = cli(
        &daemon,
        &pilot,
        &["apply", "5", "ardupilot/copter-spray.param"],
    );
    assert_eq!(code, Some(0), "{out}");
    let set = ap.wait_event_where("param_set", T, |e| e["name"] == "SPRAY_PUMP_RATE");
    assert_eq!(set["value"], 15.0);
}

#[test]
fn a_px4_vehicle_gets_its_integers_byte_wise() {
    let px4 = profile_file("px4/multicopter-survey.params");
    let (daemon, mut ap, pilot) = station(&[
        "--autopilot",
        "px4",
        "--firmware",
        "1.15.0",
        "--params",
        &px4,
        "--param",
        "COM_DL_LOSS_T=30",
        "--param",
        "RTL_RETURN_ALT=60",
    ]);
    job(
        &daemon,
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/fetch",
        json!({}),
    );
    let (_, list) = daemon.get_as(&pilot, "/api/v1/vehicles/5/params");
    assert_eq!(
        value_of(&list, "COM_DL_LOSS_T"),
        Some(30.0),
        "not its float bits"
    );
    assert_eq!(value_of(&list, "SER_TEL1_BAUD"), Some(57600.0));
    let done = job(
        &daemon,
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/apply",
        json!({ "profile": "px4/multicopter-survey.params" }),
    );
    assert_eq!(done["outcome"], "accepted", "{done}");
    let set = ap.wait_event_where("param_set", T, |e| e["name"] == "COM_DL_LOSS_T");
    assert_eq!(set["value"], 10.0, "the vehicle decoded the integer: {set}");
    let (code, body) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/params/diff",
        &json!({ "profile": SURVEY }),
    );
    assert_eq!(
        code, 422,
        "an ArduPilot profile is never sent to PX4: {body}"
    );
}
