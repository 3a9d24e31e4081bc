//! The station as a ground-control component of its own, against `peers/autopilot.py`: a
//! pymavlink autopilot that, like a fresh ArduPilot, sends only HEARTBEAT and SYS_STATUS until
//! a ground station asks. With no QGroundControl anywhere, the station's heartbeat and
//! requests are all that make its position, uid and home appear.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

/// Reads `p`'s events until `done` holds for those read so far; returns them all.
fn events_until(p: &mut Proc, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let seen = RefCell::new(Vec::new());
    p.wait_line(T, |line| {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            seen.borrow_mut().push(v);
        }
        done(&seen.borrow())
    });
    seen.into_inner()
}

fn of<'a>(events: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |e| e["event"] == kind)
}

/// The rate asked for each stream group by system `from`, the last request winning.
fn streams_from(events: &[Value], from: u64) -> BTreeMap<u64, u64> {
    of(events, "stream")
        .filter(|e| e["from"] == from)
        .map(|e| {
            (
                e["stream"].as_u64().unwrap_or(0),
                e["rate"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn requested(events: &[Value], from: u64, message: u64) -> bool {
    of(events, "request").any(|e| e["from"] == from && e["message"] == message)
}

/// ArduPilot sends no uid but its board id in uid2, and SITL's version is a development
/// build: the vehicle still gets a stable identity (the id's SHA-256, first 8 bytes), and
/// its version says "-dev".
#[test]
fn an_ardupilot_without_a_uid_is_known_by_its_board_id() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let _ap = autopilot(
        &format!("udpout:127.0.0.1:{udp}"),
        8,
        &[
            "--uid2",
            "3d1219c7c4c5404aa",
            "--firmware",
            "4.7.0",
            "--dev",
        ],
    );
    let v = wait_for("vehicle 8 with a uid", T, || {
        let v = daemon.vehicle(8)?;
        v["uid"].is_string().then_some(v)
    });
    let expected = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib; print(hashlib.sha256(b'3d1219c7c4c5404aa' + bytes(1)).hexdigest()[:16])",
        ])
        .output()
        .expect("python3");
    let expected = String::from_utf8_lossy(&expected.stdout).trim().to_string();
    assert_eq!(v["uid"], expected.as_str(), "{v}");
    assert_eq!(v["firmware_version"], "4.7.0-dev");
}

#[test]
fn a_fresh_autopilot_shows_its_position_uid_and_home_with_no_ground_station_connected() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let mut ap = autopilot(
        &format!("udpout:127.0.0.1:{udp}"),
        7,
        &[
            "--uid",
            "abcdef0123456789",
            "--firmware",
            "4.6.2",
            "--lat",
            "38.3",
            "--lon",
            "-122.4",
        ],
    );
    let v = wait_for("vehicle 7 with a position, a uid and a home", T, || {
        let v = daemon.vehicle(7)?;
        let complete = v["position"].is_object() && v["uid"].is_string();
        (complete && v["home"].is_object() && v["gps"]["fix"] == "3d").then_some(v)
    });
    assert!(
        (v["position"]["lat"].as_f64().unwrap_or(0.0) - 38.3).abs() < 1e-6,
        "{v}"
    );
    assert!(
        (v["home"]["lon"].as_f64().unwrap_or(0.0) + 122.4).abs() < 1e-6,
        "{v}"
    );
    assert_eq!(v["uid"], "abcdef0123456789");
    assert_eq!(v["firmware_version"], "4.6.2");
    assert_eq!(v["gps"]["satellites"], 14);
    assert_eq!(v["battery"]["remaining_pct"], 87);

    // What it was asked for, and by whom: the station's own address, the default rates, and
    // a heartbeat once a second.
    let events = events_until(&mut ap, |seen| {
        of(seen, "gcs_heartbeat").count() >= 4
            && streams_from(seen, 245).len() == 5
            && requested(seen, 245, 148)
            && requested(seen, 245, 242)
    });
    let expected: BTreeMap<u64, u64> = [(6, 5), (2, 2), (10, 4), (11, 4), (12, 1)].into();
    assert_eq!(streams_from(&events, 245), expected, "{events:?}");
    assert!(
        of(&events, "request").all(|e| e["comp"] == 190),
        "{events:?}"
    );
    let beats: Vec<f64> = of(&events, "gcs_heartbeat")
        .map(|e| {
            assert_eq!(
                (e["from"].as_u64(), e["comp"].as_u64()),
                (Some(245), Some(190))
            );
            e["t"].as_f64().unwrap_or(0.0)
        })
        .collect();
    for pair in beats.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (0.5..1.5).contains(&gap),
            "heartbeats {gap:.3} s apart: {beats:?}"
        );
    }
    assert!(
        of(&events, "command").next().is_none(),
        "asking for data is all the station did: {events:?}"
    );
}

#[test]
fn a_rebooted_or_returning_autopilot_is_asked_again_never_below_qgroundcontrols_rates() {
    let udp = free_udp_port();
    let qgc = free_udp_port();
    let _daemon = EdgeDaemon::start(&[
        format!("udpin:127.0.0.1:{udp}"),
        format!("udpout:127.0.0.1:{qgc}"),
    ]);
    let mut ap = autopilot(&format!("udpout:127.0.0.1:{udp}"), 7, &[]);
    events_until(&mut ap, |seen| streams_from(seen, 245).len() == 5);

    // A QGroundControl through the router asks for positions at 10 Hz (the station: 5).
    let report = python_json(
        "gcs.py",
        &[
            "--listen",
            &format!("udpin:127.0.0.1:{qgc}"),
            "--expect",
            "7",
            "--stream",
            "6:10",
        ],
    );
    assert!(report["positions"]["7"].is_array(), "{report}");
    events_until(&mut ap, |seen| {
        of(seen, "stream").any(|e| e["from"] == 255 && e["stream"] == 6 && e["rate"] == 10)
    });

    // A reboot loses the rates: positions stop, heartbeats go on. The station asks again for
    // everything, positions at QGroundControl's 10 Hz rather than its own 5.
    ap.send_line("reboot");
    let events = events_until(&mut ap, |seen| {
        let after: Vec<Value> = seen
            .iter()
            .skip_while(|e| e["event"] != "rebooted")
            .cloned()
            .collect();
        streams_from(&after, 245).len() == 5 && requested(&after, 245, 148)
    });
    let after: Vec<Value> = events
        .into_iter()
        .skip_while(|e| e["event"] != "rebooted")
        .collect();
    let expected: BTreeMap<u64, u64> = [(6, 10), (2, 2), (10, 4), (11, 4), (12, 1)].into();
    assert_eq!(streams_from(&after, 245), expected, "{after:?}");

    // Out of radio range for longer than the link-lost silence (5 s), then back: asked again.
    ap.send_line("silence 6");
    ap.wait_event("silent", T);
    let back = ap.wait_event_where("request", T, |e| e["from"] == 245 && e["message"] == 148);
    assert_eq!(back["comp"], 190);
}

#[test]
fn px4_is_asked_with_message_intervals() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let mut ap = autopilot(
        &format!("udpout:127.0.0.1:{udp}"),
        3,
        &["--autopilot", "px4"],
    );
    let events = events_until(&mut ap, |seen| of(seen, "interval").count() >= 8);
    assert!(
        of(&events, "interval").any(|e| e["message"] == 33 && e["hz"] == 5.0 && e["from"] == 245),
        "{events:?}"
    );
    assert!(of(&events, "stream").next().is_none(), "{events:?}");
    wait_for("PX4's position", T, || {
        daemon.vehicle(3)?["position"].is_object().then_some(())
    });
    assert_eq!(
        daemon.vehicle(3).map(|v| v["autopilot"].clone()),
        Some("px4".into())
    );
}

#[test]
fn the_stations_address_and_heartbeat_are_configurable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, "[gcs]\nsystem_id = 200\nheartbeat = false\n").expect("config");
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start_with(
        &[format!("udpin:127.0.0.1:{udp}")],
        &["--config", config.to_str().expect("utf-8")],
    );
    let mut ap = autopilot(&format!("udpout:127.0.0.1:{udp}"), 4, &[]);
    // In one tick the heartbeat goes out before the requests, so by the time the requests
    // have arrived a heartbeat would have too.
    let events = events_until(&mut ap, |seen| requested(seen, 200, 242));
    assert!(of(&events, "gcs_heartbeat").next().is_none(), "{events:?}");
    assert_eq!(streams_from(&events, 200).len(), 5, "{events:?}");
    wait_for("its position", T, || {
        daemon.vehicle(4)?["position"].is_object().then_some(())
    });

    // 255 is QGroundControl's and MAVProxy's: refused, with the reason.
    std::fs::write(&config, "[gcs]\nsystem_id = 255\n").expect("config");
    let out = std::process::Command::new(bin("edge-daemon"))
        .args(["serve", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("edge-daemon runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gcs.system_id") && stderr.contains("QGroundControl"),
        "{stderr}"
    );
}
