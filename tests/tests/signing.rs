//! MAVLink 2 signing through the station, against pymavlink's own signing on both sides: the
//! autopilot (`peers/autopilot.py`, which takes its key from SETUP_SIGNING and then drops
//! unsigned frames, as ArduPilot does) and a ground station through the router
//! (`peers/gcs.py`) with the key, without it, and with a wrong one.

use std::process::Command as Process;
use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

fn cli(daemon: &EdgeDaemon, token: &str, args: &[&str]) -> (Option<i32>, String) {
    daemon.cli(token, &[&["signing"], args].concat())
}

/// A ground station on `port` sending DO_SET_MODE to vehicle 5 (to every vehicle with
/// `broadcast`), signed with `key` if given; its report (`ack` null when no answer came
/// within `timeout_s`).
fn ground_station(port: u16, key: Option<&str>, timeout_s: &str, broadcast: bool) -> Value {
    let listen = format!("udpin:127.0.0.1:{port}");
    let mut args = vec![
        "--listen",
        &listen,
        "--expect",
        "5",
        "--command-target",
        if broadcast { "0" } else { "5" },
        "--timeout",
        timeout_s,
    ];
    if let Some(key) = key {
        args.extend(["--signing-key", key]);
    }
    python_json("gcs.py", &args)
}

fn signing(daemon: &EdgeDaemon) -> Value {
    daemon
        .vehicle(5)
        .map(|v| v["signing"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn a_signing_vehicle_hears_only_what_is_signed_with_its_key() {
    let udp = free_udp_port();
    let qgc = free_udp_port();
    let daemon = EdgeDaemon::start(&[
        format!("udpin:127.0.0.1:{udp}"),
        format!("udpout:127.0.0.1:{qgc}"),
    ]);
    let mut ap = autopilot(&format!("udpout:127.0.0.1:{udp}"), 5, &[]);
    wait_for("the vehicle", T, || daemon.vehicle(5));
    let admin = daemon.new_token("fleet admin", "admin");
    let pilot = daemon.new_token("anna", "pilot");

    // Only an admin installs keys.
    let (code, out) = cli(&daemon, &pilot, &["enable", "5"]);
    assert_eq!(code, Some(4), "{out}");
    let (code, out) = cli(
        &daemon,
        &admin,
        &["enable", "V-05", "--passphrase", "rows of old vines"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("install a signing key on V-05: accepted"),
        "{out}"
    );
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("signing key for V-05 (shown once): "))
        .expect("the key, shown once")
        .to_string();
    assert_eq!(
        key,
        passphrase_key("rows of old vines"),
        "MAVProxy's derivation"
    );
    ap.wait_event_where("signing", T, |e| e["enabled"] == true);
    assert_eq!(signing(&daemon)["on"], true);

    // The station signs what it sends: the vehicle, which now drops unsigned frames, obeys.
    let (code, sent) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/commands",
        &json!({ "command": "arm" }),
    );
    assert_eq!(code, 202, "{sent}");
    let armed = daemon.command_ended(&pilot, sent["id"].as_i64().expect("id"));
    assert_eq!(armed["outcome"], "accepted", "{armed}");
    // An unsigned frame from the vehicle itself is only counted: the station does not drop
    // its own vehicle's telemetry (a radio's RADIO_STATUS is never signed).
    ap.send_line("unsigned-text rows 4 to 9 done");
    ap.wait_event("sent_unsigned", T);
    wait_for("the unsigned text shown and counted", T, || {
        let v = daemon.vehicle(5)?;
        (v["last_text"] == "rows 4 to 9 done"
            && v["signing"]["unsigned_from_vehicle"].as_u64()? >= 1)
            .then_some(())
    });

    // A ground station with the key commands it through the router.
    let with_key = ground_station(qgc, Some(&key), "20", false);
    assert_eq!(with_key["ack"]["result"], 0, "{with_key}");
    // Without the key, or with another, its command never reaches the vehicle.
    let without = ground_station(qgc, None, "3", false);
    assert!(without["ack"].is_null(), "{without}");
    wait_for("the unsigned command counted", T, || {
        (signing(&daemon)["rejected_unsigned"].as_u64()? >= 1).then_some(())
    });
    let wrong_key = passphrase_key("another passphrase entirely");
    let wrong = ground_station(qgc, Some(&wrong_key), "3", false);
    assert!(wrong["ack"].is_null(), "{wrong}");
    wait_for("the badly signed command counted", T, || {
        (signing(&daemon)["rejected_bad"].as_u64()? >= 1).then_some(())
    });
    // Nor does an unsigned command broadcast to every vehicle.
    let before = signing(&daemon)["rejected_unsigned"].as_u64().unwrap_or(0);
    let broadcast = ground_station(qgc, None, "3", true);
    assert!(broadcast["ack"].is_null(), "{broadcast}");
    wait_for("the unsigned broadcast counted", T, || {
        (signing(&daemon)["rejected_unsigned"].as_u64()? > before).then_some(())
    });
    let (code, out) = cli(&daemon, &pilot, &["status", "5"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("signing on"), "{out}");
    let counts = signing(&daemon);
    assert!(counts["accepted"].as_u64() > Some(10), "{counts}");
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trellis_signing_dropped_total{vehicle=\"5\",reason=\"unsigned\"}"),
        "{metrics}"
    );

    // Off again: unsigned commands pass as before.
    let (code, out) = cli(&daemon, &admin, &["disable", "5"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(signing(&daemon)["on"], false);
    let unsigned = ground_station(qgc, None, "20", false);
    assert_eq!(unsigned["ack"]["result"], 0, "{unsigned}");
    // What the vehicle heard from the ground station, in order: the signed command, its
    // signing turned off, the unsigned one after; the two refused never arrived.
    let mut heard = Vec::new();
    for _ in 0..3 {
        let line = ap.wait_line(T, |l| {
            let e = json_line(l);
            (e["event"] == "command" && e["from"] == 255) || e["event"] == "signing"
        });
        let e = json_line(&line);
        heard.push(if e["event"] == "signing" {
            format!("signing {}", e["enabled"])
        } else {
            "command".to_string()
        });
    }
    assert_eq!(heard, ["command", "signing false", "command"]);
    let (code, out) = cli(&daemon, &admin, &["disable", "5"]);
    assert_eq!(code, Some(5), "already off: {out}");
}

/// Hex of the key a passphrase stands for (its SHA-256), computed apart from the daemon.
fn passphrase_key(passphrase: &str) -> String {
    let out = Process::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
            passphrase,
        ])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
