//! Commands through the station, against `peers/autopilot.py` (pymavlink) as the vehicle:
//! every outcome a vehicle can give, what went over the air, the record kept before sending,
//! the stream, the CLI, and HQ.

use std::process::Command as Process;
use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

fn send(daemon: &EdgeDaemon, token: &str, vehicle: &str, body: Value) -> (u16, Value) {
    daemon.send_as(
        token,
        "POST",
        &format!("/api/v1/vehicles/{vehicle}/commands"),
        &body,
    )
}

/// Sends `body` to vehicle 5 as `token`, expects 202, and waits for the final outcome.
fn outcome(daemon: &EdgeDaemon, token: &str, body: Value) -> Value {
    let (code, sent) = send(daemon, token, "5", body.clone());
    assert_eq!(code, 202, "{body}: {sent}");
    assert_eq!(sent["outcome"], "pending", "{sent}");
    assert_eq!(sent["by"], "anna", "{sent}");
    let id = sent["id"].as_i64().expect("an id");
    daemon.command_ended(token, id)
}

#[test]
fn every_outcome_a_vehicle_gives_is_reported_with_what_went_over_the_air() {
    const SPEED: &str = "178";
    const MISSION_START: &str = "300";
    const PAUSE: &str = "193";
    const LAND: &str = "21";
    let (daemon, mut ap, pilot) = station_with_autopilot(
        5,
        &[
            "--deny",
            SPEED,
            "--fail",
            MISSION_START,
            "--unsupported",
            PAUSE,
            "--ignore",
            LAND,
        ],
    );
    let mut stream = stream_client(&daemon, &pilot, "?kinds=commands");

    let arm = outcome(&daemon, &pilot, json!({ "command": "arm" }));
    assert_eq!(
        (arm["outcome"].as_str(), arm["result"].as_u64()),
        (Some("accepted"), Some(0)),
        "{arm}"
    );
    assert_eq!(arm["sends"], 1);
    wait_for("the vehicle armed", T, || {
        (daemon.vehicle(5)?["armed"] == true).then_some(())
    });
    let mode = outcome(
        &daemon,
        &pilot,
        json!({ "command": "mode", "mode": "loiter" }),
    );
    assert_eq!(mode["outcome"], "accepted", "{mode}");
    assert_eq!(mode["description"], "mode LOITER");
    wait_for("the vehicle in LOITER", T, || {
        (daemon.vehicle(5)?["mode"] == "LOITER").then_some(())
    });
    let goto = outcome(
        &daemon,
        &pilot,
        json!({ "command": "goto", "lat": 38.2912345, "lon": -122.4598765, "alt_m": 25 }),
    );
    assert_eq!(goto["outcome"], "accepted", "{goto}");

    for (body, expected, result) in [
        (json!({ "command": "speed", "speed_mps": 5 }), "denied", 2),
        (json!({ "command": "start_mission" }), "failed", 4),
        (json!({ "command": "pause" }), "unsupported", 3),
    ] {
        let c = outcome(&daemon, &pilot, body.clone());
        assert_eq!(c["outcome"], expected, "{body}: {c}");
        assert_eq!(c["result"], result, "{body}: {c}");
        assert_eq!(c["sends"], 1, "an answer stops the retries: {c}");
    }

    // Takeoff: in progress first (the stream shows it), then accepted.
    let takeoff = outcome(
        &daemon,
        &pilot,
        json!({ "command": "takeoff", "alt_m": 20 }),
    );
    assert_eq!(takeoff["outcome"], "accepted", "{takeoff}");
    let id = takeoff["id"].clone();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("accepted") {
        let line = stream.wait_line(T, |l| l.contains("\"command\""));
        let m = json_line(&line);
        if m["type"] == "command" && m["event"]["command"]["id"] == id {
            seen.push(
                m["event"]["command"]["outcome"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    assert_eq!(seen, ["pending", "in_progress", "in_progress", "accepted"]);

    // Land is never answered: four sends, the confirmation counter 0 to 3, then timed out.
    let land = outcome(&daemon, &pilot, json!({ "command": "land" }));
    assert_eq!(
        (land["outcome"].as_str(), land["sends"].as_u64()),
        (Some("timed_out"), Some(4)),
        "{land}"
    );
    assert!(land["result"].is_null(), "{land}");

    // What the autopilot received, from the station (245/190) and nobody else.
    let mut confirmations = Vec::new();
    let mut goto_seen = None;
    while confirmations.len() < 4 {
        let c = ap.wait_event("command", T);
        assert_eq!(c["from"], 245, "{c}");
        if c["command"] == 21 {
            confirmations.push(c["confirmation"].as_u64().unwrap_or(99));
        }
        if c["command"] == 192 {
            goto_seen = Some(c);
        }
    }
    assert_eq!(confirmations, [0, 1, 2, 3]);
    let goto_seen = goto_seen.expect("the goto reached the vehicle");
    assert_eq!(goto_seen["type"], "COMMAND_INT", "{goto_seen}");
    assert_eq!(
        (goto_seen["x"].as_i64(), goto_seen["y"].as_i64()),
        (Some(382_912_345), Some(-1_224_598_765)),
        "full precision: {goto_seen}"
    );
    assert_eq!(goto_seen["z"], 25.0);
}

#[test]
fn a_command_or_its_answer_lost_on_the_air_is_sent_again_and_its_outcome_is_the_vehicles() {
    const ARM_DISARM: &str = "400";
    const SET_MODE: &str = "176";
    const PAUSE_CONTINUE: u64 = 193;
    // The radio loses the first two mode commands on the way up, and the vehicle's first
    // answer to arming on the way down.
    let (daemon, mut ap, pilot) = station_with_autopilot(
        5,
        &[
            "--lose",
            &format!("{SET_MODE}:2"),
            "--lose-ack",
            &format!("{ARM_DISARM}:1"),
        ],
    );

    let mode = outcome(
        &daemon,
        &pilot,
        json!({ "command": "mode", "mode": "loiter" }),
    );
    assert_eq!(
        (mode["outcome"].as_str(), mode["sends"].as_u64()),
        (Some("accepted"), Some(3)),
        "the third send got through: {mode}"
    );
    wait_for("the vehicle in LOITER", T, || {
        (daemon.vehicle(5)?["mode"] == "LOITER").then_some(())
    });
    let arm = outcome(&daemon, &pilot, json!({ "command": "arm" }));
    assert_eq!(
        (arm["outcome"].as_str(), arm["sends"].as_u64()),
        (Some("accepted"), Some(2)),
        "the answer to the second send got back: {arm}"
    );
    wait_for("the vehicle armed", T, || {
        (daemon.vehicle(5)?["armed"] == true).then_some(())
    });

    // Pause, then continue: the same MAVLink command, its first parameter 0 then 1.
    for body in [
        json!({ "command": "pause" }),
        json!({ "command": "continue" }),
    ] {
        let c = outcome(&daemon, &pilot, body.clone());
        assert_eq!(c["outcome"], "accepted", "{body}: {c}");
    }

    // What the vehicle heard, in order: the mode's third send (confirmation 2) after two it
    // never heard, arming twice (the retry carries confirmation 1), pause and continue.
    let mut heard = Vec::new();
    while heard.len() < 7 {
        let line = ap.wait_line(T, |l| {
            let e = json_line(l);
            e["event"] == "lost_command" || e["event"] == "lost_ack" || e["event"] == "command"
        });
        let e = json_line(&line);
        let what = match e["event"].as_str() {
            Some("command") if e["command"] == PAUSE_CONTINUE => {
                format!("193 param1 {}", e["params"][0])
            }
            Some(event) => format!("{event} {} c{}", e["command"], e["confirmation"]),
            None => continue,
        };
        heard.push(what);
    }
    assert_eq!(
        heard,
        [
            "lost_command 176 c0",
            "lost_command 176 c1",
            "command 176 c2",
            "command 400 c0",
            "lost_ack 400 cnull",
            "command 400 c1",
            "193 param1 0.0",
        ],
        "then continue"
    );
    let cont = ap.wait_event("command", T);
    assert_eq!(
        (cont["command"].as_u64(), cont["params"][0].as_f64()),
        (Some(PAUSE_CONTINUE), Some(1.0)),
        "{cont}"
    );
}

#[test]
fn an_ack_addressed_to_no_one_in_particular_still_ends_the_command() {
    // Older firmware answers with target 0/0 rather than the asker.
    let (daemon, _ap, pilot) = station_with_autopilot(5, &["--ack-to-zero"]);
    let mode = outcome(
        &daemon,
        &pilot,
        json!({ "command": "mode", "mode": "loiter" }),
    );
    assert_eq!(
        (mode["outcome"].as_str(), mode["sends"].as_u64()),
        (Some("accepted"), Some(1)),
        "{mode}"
    );
}

#[test]
fn a_px4_without_a_home_is_not_sent_an_altitude_it_would_misread() {
    // PX4 takes take-off and goto altitudes above sea level, worked out from home.
    let (daemon, _ap, pilot) = station_with_autopilot(
        5,
        &["--autopilot", "px4", "--firmware", "1.15.0", "--no-home"],
    );
    for body in [
        json!({ "command": "takeoff", "alt_m": 10 }),
        json!({ "command": "goto", "lat": -35.36, "lon": 149.16, "alt_m": 20 }),
    ] {
        let (code, refused) = send(&daemon, &pilot, "5", body.clone());
        assert_eq!(code, 409, "{body}: {refused}");
        let why = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(why.contains("home position"), "{why}");
    }
    // Commands without an altitude go as always.
    let arm = outcome(&daemon, &pilot, json!({ "command": "arm" }));
    assert_eq!(arm["outcome"], "accepted", "{arm}");
}

#[test]
fn wrong_commands_are_refused_naming_what_is_wrong_and_viewers_cannot_command() {
    let (daemon, _ap, pilot) = station_with_autopilot(5, &[]);
    let (code, body) = send(
        &daemon,
        &pilot,
        "5",
        json!({ "command": "mode", "mode": "WARP" }),
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"]["field"], "mode");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("LOITER"),
        "{body}"
    );
    let (code, body) = send(&daemon, &pilot, "9", json!({ "command": "arm" }));
    assert_eq!(code, 404, "{body}");
    let (code, body) = send(&daemon, &pilot, "5", json!({ "command": "takeoff" }));
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("alt_m")),
        "{body}"
    );
    let viewer = daemon.new_token("crew", "viewer");
    let (code, body) = send(&daemon, &viewer, "5", json!({ "command": "arm" }));
    assert_eq!(code, 403, "{body}");
    let (code, _) = daemon.get_as(&pilot, "/api/v1/commands/424242");
    assert_eq!(code, 404);
    let none: i64 = daemon
        .db()
        .query_row("SELECT count(*) FROM commands", [], |r| r.get(0))
        .expect("count");
    assert_eq!(none, 0, "nothing refused was stored");
    assert_eq!(
        daemon.vehicle(5).map(|v| v["armed"].clone()),
        Some(false.into())
    );
}

#[test]
fn a_command_is_on_record_before_it_is_sent_and_a_crash_keeps_it() {
    const ARM: &str = "400";
    let (mut daemon, mut ap, pilot) = station_with_autopilot(5, &["--ignore", ARM]);
    let (code, sent) = send(&daemon, &pilot, "V-05", json!({ "command": "arm" }));
    assert_eq!(code, 202, "{sent}");
    // The vehicle has it, so it was sent; the daemon dies before any answer could come.
    let heard = ap.wait_event("command", T);
    assert_eq!(heard["command"], 400);
    daemon.proc.kill9();
    let (by, outcome, command): (String, String, String) = daemon
        .db()
        .query_row(
            "SELECT by, outcome, command FROM commands WHERE id = ?1",
            [sent["id"].as_i64()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the command is in the database");
    assert_eq!(
        (by.as_str(), outcome.as_str(), command.as_str()),
        ("anna", "pending", "arm")
    );
}

#[test]
fn the_cli_sends_a_command_and_says_how_it_ended() {
    let (daemon, _ap, pilot) = station_with_autopilot(5, &["--deny", "178"]);
    let cli = |token: &str, args: &[&str]| {
        let out = Process::new(bin("edge-daemon"))
            .arg("command")
            .args(args)
            .args(["--api", &daemon.api, "--token", token])
            .output()
            .expect("edge-daemon runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&pilot, &["V-05", "arm"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("arm to V-05: accepted"), "{out}");
    let (code, out, err) = cli(&pilot, &["5", "mode", "RTL"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = cli(&pilot, &["5", "speed", "5"]);
    assert_eq!(code, Some(1), "denied is a failure: {out}");
    assert!(out.contains("denied (MAV_RESULT 2)"), "{out}");
    let (code, _, err) = cli(&pilot, &["5", "mode", "WARP"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("no mode \"WARP\""), "{err}");
    let viewer = daemon.new_token("crew", "viewer");
    let (code, _, err) = cli(&viewer, &["5", "arm"]);
    assert_eq!(code, Some(4), "{err}");
    let (code, out, _) = cli(&pilot, &["5", "rtl", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(json_line(out.trim())["outcome"], "accepted", "{out}");
}

#[test]
fn hq_sees_who_commanded_what_and_how_it_ended() {
    let udp = free_udp_port();
    let (relay, daemon) = synced_station(udp);
    let _ap = autopilot(&format!("udpout:127.0.0.1:{udp}"), 5, &["--deny", "400"]);
    wait_for("the vehicle", T, || daemon.vehicle(5));
    let pilot = daemon.new_token("anna", "pilot");
    let (code, sent) = send(&daemon, &pilot, "5", json!({ "command": "arm" }));
    assert_eq!(code, 202, "{sent}");
    let admin = relay.token("vineyard-co", "admin");
    let events = wait_for("the command's outcome at HQ", T, || {
        let (_, body) = relay.hq_get(&admin, "/api/v1/orgs/vineyard-co/events?kind=command");
        let events = body["events"].as_array()?.clone();
        events
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("denied")))
            .then_some(events)
    });
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(messages.contains(&"arm by anna: pending"), "{messages:?}");
    assert!(messages.contains(&"arm by anna: denied"), "{messages:?}");
}
