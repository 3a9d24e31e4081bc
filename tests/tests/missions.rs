//! Missions through the station against `peers/autopilot.py` (pymavlink, the mission
//! protocol as ArduPilot plays it): stored, uploaded, read back identical, also through a link
//! that drops a fifth of all frames each way; downloaded, cleared, set current; and a
//! MAVProxy (nobody here wrote it) doing mission traffic through the router: uploading to
//! another vehicle at the same time as the station uploads its own, and to the same vehicle,
//! which takes one upload at a time, so the station's follows MAVProxy's.

use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::impair::{ImpairedLink, Impairment};
use trellis_tests::*;

const T: Duration = Duration::from_secs(120);

fn items(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "command": if i == 1 { 22 } else { 16 },
                "frame": 3,
                "params": [0.0, 2.0, 0.0, i as f32],
                "x": 382_900_000 + i as i32 * 17,
                "y": -1_224_500_000 - i as i32 * 13,
                "z": 30.0 + (i % 7) as f32,
                "autocontinue": true,
            })
        })
        .collect()
}

/// Waits for the command or transfer `sent` (its POST's answer) to end; its final row.
fn finished(daemon: &EdgeDaemon, token: &str, sent: &Value) -> Value {
    let id = sent["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {sent}"));
    daemon.command_ended(token, id)
}

#[test]
fn a_200_item_mission_goes_up_and_comes_back_identical_through_a_link_losing_a_fifth() {
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
    let mut ap = autopilot(&format!("udpout:{}", lossy.addr), 5, &[]);
    wait_for("the vehicle's position", T, || {
        daemon.vehicle(5)?["position"].is_object().then_some(())
    });
    let pilot = daemon.new_token("anna", "pilot");

    let mission = json!({ "name": "Block 3 survey", "items": items(200), "field": "block-3" });
    let (code, stored) = daemon.send_as(&pilot, "PUT", "/api/v1/missions/block-3", &mission);
    assert_eq!(code, 200, "{stored}");
    let listed = daemon.get_as(&pilot, "/api/v1/missions").1;
    assert_eq!(
        listed["missions"][0]["fields"]["items"]
            .as_array()
            .map(Vec::len),
        Some(200)
    );

    let sent = daemon.upload_mission(&pilot, "block-3", "V-05");
    assert_eq!(sent["description"], "upload mission block-3 (200 items)");
    let done = finished(&daemon, &pilot, &sent);
    assert_eq!(done["outcome"], "accepted", "{done}");
    // Accepted means read back and compared: the station's copy of what the vehicle holds.
    assert_eq!(done["detail"]["items"], json!(items(200)), "{done}");
    let stored = ap.wait_event("mission_stored", T);
    assert_eq!(
        (stored["count"].as_u64(), stored["from"].as_u64()),
        (Some(200), Some(245))
    );
    assert!(
        lossy.dropped.load(std::sync::atomic::Ordering::Relaxed) > 50,
        "the link lost frames"
    );
}

#[test]
fn rally_points_are_a_list_of_their_own_uploaded_and_read_back() {
    let (daemon, mut ap, pilot) = station_with_autopilot(7, &[]);
    let finish = |path: &str, body: Value| {
        let (code, sent) = daemon.send_as(&pilot, "POST", path, &body);
        assert_eq!(code, 202, "{path}: {sent}");
        finished(&daemon, &pilot, &sent)
    };
    // Two rally points (MAV_CMD_NAV_RALLY_POINT) at the ends of the block, and a mission.
    let rally: Vec<Value> = [(382_905_000, -1_224_510_000), (382_915_000, -1_224_490_000)]
        .iter()
        .map(|(x, y)| {
            json!({ "command": 5100, "frame": 3, "params": [0.0, 0.0, 0.0, 0.0],
                "x": x, "y": y, "z": 40.0, "autocontinue": false })
        })
        .collect();
    for (key, body) in [
        (
            "rally-north",
            json!({ "name": "rally north", "kind": "rally", "items": rally }),
        ),
        ("m", json!({ "name": "m", "items": items(5) })),
    ] {
        let (code, stored) =
            daemon.send_as(&pilot, "PUT", &format!("/api/v1/missions/{key}"), &body);
        assert_eq!(code, 200, "{stored}");
        let path = format!("/api/v1/missions/{key}/upload");
        let done = finish(&path, json!({ "vehicle": "7" }));
        assert_eq!(done["outcome"], "accepted", "{key}: {done}");
    }
    // The vehicle stored each in its own list: rally points as type 2, the mission as 0.
    let mut stored = [
        ap.wait_event("mission_stored", T),
        ap.wait_event("mission_stored", T),
    ]
    .map(|e| (e["type"].as_u64(), e["count"].as_u64()));
    stored.sort();
    assert_eq!(stored, [(Some(0), Some(5)), (Some(2), Some(2))]);
    // Read back separately: neither list overwrote the other.
    let command = |body: Value| finish("/api/v1/vehicles/7/commands", body);
    let down = command(json!({ "command": "download_mission", "kind": "rally" }));
    assert_eq!(down["outcome"], "accepted", "{down}");
    assert_eq!(down["detail"]["items"], json!(rally), "{down}");
    let down = command(json!({ "command": "download_mission" }));
    assert_eq!(down["detail"]["items"], json!(items(5)), "{down}");
    // Clearing the rally points leaves the mission.
    let cleared = command(json!({ "command": "clear_mission", "kind": "rally" }));
    assert_eq!(cleared["outcome"], "accepted", "{cleared}");
    let down = command(json!({ "command": "download_mission", "kind": "rally" }));
    assert_eq!(down["detail"]["items"], json!([]), "{down}");
    let down = command(json!({ "command": "download_mission" }));
    assert_eq!(down["detail"]["items"], json!(items(5)), "{down}");
}

#[test]
fn a_vehicles_list_is_downloaded_set_current_and_cleared() {
    let (daemon, _ap, pilot) = station_with_autopilot(6, &[]);
    let command = |body: Value| {
        let (code, sent) = daemon.send_as(&pilot, "POST", "/api/v1/vehicles/6/commands", &body);
        assert_eq!(code, 202, "{body}: {sent}");
        finished(&daemon, &pilot, &sent)
    };
    daemon.store_mission(&pilot, "m", &items(12));
    let sent = daemon.upload_mission(&pilot, "m", "6");
    assert_eq!(finished(&daemon, &pilot, &sent)["outcome"], "accepted");
    let down = command(json!({ "command": "download_mission" }));
    assert_eq!(down["detail"]["items"], json!(items(12)), "{down}");
    let fence = command(json!({ "command": "download_mission", "kind": "fence" }));
    assert_eq!(
        fence["detail"]["items"],
        json!([]),
        "a separate list: {fence}"
    );
    assert_eq!(
        command(json!({ "command": "set_current", "seq": 7 }))["outcome"],
        "accepted"
    );
    wait_for("the vehicle on item 7", T, || {
        (daemon.vehicle(6)?["mission"]["current"] == 7).then_some(())
    });
    assert_eq!(
        command(json!({ "command": "clear_mission" }))["outcome"],
        "accepted"
    );
    let down = command(json!({ "command": "download_mission" }));
    assert_eq!(down["detail"]["items"], json!([]), "{down}");
}

#[test]
fn bad_missions_are_refused_and_a_missing_vehicle_is_named() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let pilot = daemon.new_token("anna", "pilot");
    let put = |key: &str, body: Value| {
        daemon.send_as(&pilot, "PUT", &format!("/api/v1/missions/{key}"), &body)
    };
    let (code, body) = put("m", json!({ "name": "x", "items": [] }));
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("items")),
        "{body}"
    );
    let mut bad = items(3);
    bad[2]["command"] = json!(65000);
    let (code, body) = put("m", json!({ "name": "x", "items": bad }));
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("items")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("item 2"),
        "{body}"
    );
    let (code, _) = put("m", json!({ "name": "x", "items": items(3) }));
    assert_eq!(code, 200);
    let upload = |key: &str, vehicle: &str| {
        daemon.send_as(
            &pilot,
            "POST",
            &format!("/api/v1/missions/{key}/upload"),
            &json!({ "vehicle": vehicle }),
        )
    };
    let (code, body) = upload("m", "V-09");
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("vehicle")),
        "{body}"
    );
    let viewer = daemon.new_token("crew", "viewer");
    let (code, _) = daemon.send_as(
        &viewer,
        "PUT",
        "/api/v1/missions/m2",
        &json!({ "name": "x", "items": items(2) }),
    );
    assert_eq!(code, 403);
}

#[test]
fn mavproxy_uploads_to_one_vehicle_while_the_station_uploads_to_another() {
    let (vehicles, gcs) = (free_udp_port(), free_udp_port());
    let daemon = EdgeDaemon::start(&[
        format!("udpin:127.0.0.1:{vehicles}"),
        format!("udpout:127.0.0.1:{gcs}"),
    ]);
    let mut one = autopilot(&format!("udpout:127.0.0.1:{vehicles}"), 1, &[]);
    let mut two = autopilot(&format!("udpout:127.0.0.1:{vehicles}"), 2, &[]);
    wait_for("both vehicles", T, || {
        (daemon.vehicle(1)?["position"].is_object() && daemon.vehicle(2)?["position"].is_object())
            .then_some(())
    });
    let pilot = daemon.new_token("anna", "pilot");
    daemon.store_mission(&pilot, "m", &items(200));

    let (mut mavproxy, file, _state) = mavproxy_with_a_mission(gcs, 2, 100);
    mavproxy.wait_line(T, |l| l.contains("Detected vehicle 2:1"));

    // Both at once: the station's upload to vehicle 1, MAVProxy's to vehicle 2.
    let sent = daemon.upload_mission(&pilot, "m", "1");
    mavproxy.send_line(&format!("wp load {file}"));
    let from_mavproxy = two.wait_event("mission_stored", T);
    assert_eq!(
        (
            from_mavproxy["count"].as_u64(),
            from_mavproxy["from"].as_u64()
        ),
        (Some(100), Some(250)),
        "{from_mavproxy}"
    );
    let from_station = one.wait_event("mission_stored", T);
    assert_eq!(
        (
            from_station["count"].as_u64(),
            from_station["from"].as_u64()
        ),
        (Some(200), Some(245))
    );
    let done = finished(&daemon, &pilot, &sent);
    assert_eq!(done["outcome"], "accepted", "{done}");
    assert_eq!(done["detail"]["items"], json!(items(200)));
}

#[test]
fn the_station_uploads_to_a_vehicle_busy_with_mavproxys_upload_once_it_is_done() {
    let (vehicles, gcs) = (free_udp_port(), free_udp_port());
    let daemon = EdgeDaemon::start(&[
        format!("udpin:127.0.0.1:{vehicles}"),
        format!("udpout:127.0.0.1:{gcs}"),
    ]);
    // 100 items asked for 60 ms apart: MAVProxy's upload takes 6 s, as over a slow radio,
    // ample time for the station's count to arrive in the middle of it.
    let mut vehicle = autopilot(
        &format!("udpout:127.0.0.1:{vehicles}"),
        1,
        &["--item-gap", "0.06"],
    );
    wait_for("the vehicle's position", T, || {
        daemon.vehicle(1)?["position"].is_object().then_some(())
    });
    let pilot = daemon.new_token("anna", "pilot");
    daemon.store_mission(&pilot, "m", &items(200));
    let (mut mavproxy, file, _state) = mavproxy_with_a_mission(gcs, 1, 100);
    mavproxy.wait_line(T, |l| l.contains("Detected vehicle 1:1"));

    mavproxy.send_line(&format!("wp load {file}"));
    let started = vehicle.wait_event("mission_receiving", T);
    assert_eq!(started["from"], 250, "{started}");
    let sent = daemon.upload_mission(&pilot, "m", "1");
    // The vehicle denies the station's count while MAVProxy's upload runs; the station says
    // so and asks again, neither upload disturbing the other.
    let denied = vehicle.wait_event("mission_denied", T);
    assert_eq!(denied["from"], 245, "{denied}");
    let id = sent["id"].as_i64().expect("a command id");
    let waiting = wait_for("the transfer to say it waits", T, || {
        let (_, c) = daemon.get_as(&pilot, &format!("/api/v1/commands/{id}"));
        c["detail"]["waiting"].as_str().map(str::to_string)
    });
    assert!(waiting.contains("another ground station"), "{waiting}");
    let first = vehicle.wait_event("mission_stored", T);
    assert_eq!(
        (first["count"].as_u64(), first["from"].as_u64()),
        (Some(100), Some(250)),
        "MAVProxy's upload finished first: {first}"
    );
    let second = vehicle.wait_event("mission_stored", T);
    assert_eq!(
        (second["count"].as_u64(), second["from"].as_u64()),
        (Some(200), Some(245)),
        "then the station's: {second}"
    );
    let done = finished(&daemon, &pilot, &sent);
    assert_eq!(done["outcome"], "accepted", "{done}");
    assert_eq!(
        done["detail"]["items"],
        json!(items(200)),
        "read back identical"
    );
}

#[test]
fn a_field_becomes_a_spray_mission_that_flies_along_its_rows() {
    let (daemon, mut ap, pilot) = station_with_autopilot(4, &[]);
    // An L-shaped block, its long edge running east, with a shed cut out of it.
    let (o_lat, o_lon) = (38.2919, -122.458);
    let at = |e: f64, n: f64| json!([o_lat + n / 111_000.0, o_lon + e / 87_300.0]);
    let block = json!({ "name": "Block 7", "polygon": [
        at(0.0, 0.0), at(150.0, 0.0), at(150.0, 40.0), at(60.0, 40.0), at(60.0, 78.75), at(0.0, 78.75)
    ] });
    let (code, body) = daemon.send_as(&pilot, "PUT", "/api/v1/fields/block-7", &block);
    assert_eq!(code, 200, "{body}");

    let plan = |body: Value| daemon.send_as(&pilot, "POST", "/api/v1/fields/block-7/plan", &body);
    let (code, body) = plan(json!({ "alt_m": 12, "speed_mps": 4, "pattern": "spray" }));
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("row_spacing_m")),
        "{body}"
    );
    let (code, planned) = plan(json!({
        "alt_m": 12, "speed_mps": 4, "pattern": "spray", "row_spacing_m": 2.5
    }));
    assert_eq!(code, 201, "{planned}");
    assert_eq!(planned["key"], "plan-block-7");
    assert_eq!(planned["fields"]["name"], "Spray of Block 7");
    let summary = &planned["fields"]["plan"];
    assert_eq!(
        summary["heading_deg"], 90.0,
        "along the long edge: {summary}"
    );
    // 78.75 m north–south at a 2.5 m pitch: 32 rows, those in the narrow arm shorter.
    assert_eq!(summary["passes"], 32, "{summary}");
    let items = planned["fields"]["items"]
        .as_array()
        .expect("items")
        .clone();
    let commands: Vec<u64> = items.iter().filter_map(|i| i["command"].as_u64()).collect();
    assert_eq!(
        (&commands[..3], commands.last()),
        (&[16, 22, 178][..], Some(&20))
    );

    let sent = daemon.upload_mission(&pilot, "plan-block-7", "4");
    let done = finished(&daemon, &pilot, &sent);
    assert_eq!(done["outcome"], "accepted", "{done}");
    let stored = ap.wait_event("mission_stored", T);
    assert_eq!(stored["count"].as_u64(), Some(items.len() as u64));
    // The vehicle now flies that mission: its progress is the field's.
    ap.send_line("reached 5");
    let mission = wait_for("the vehicle's progress", T, || {
        let m = daemon.vehicle(4)?["mission"].clone();
        (m["reached"] == 5).then_some(m)
    });
    assert_eq!(mission["key"], "plan-block-7", "{mission}");
    assert_eq!(mission["current"], 6, "{mission}");

    // A field without a shape cannot be planned.
    daemon.send_as(
        &pilot,
        "PUT",
        "/api/v1/fields/bare",
        &json!({ "name": "Bare" }),
    );
    let (code, body) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/fields/bare/plan",
        &json!({ "alt_m": 12, "speed_mps": 4, "row_spacing_m": 2.5 }),
    );
    assert_eq!(code, 409, "{body}");

    // The same from the CLI, as a survey uploaded in the same step.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin("edge-daemon"))
            .arg("plan")
            .args(args)
            .args(["--api", &daemon.api, "--token", &pilot])
            .output()
            .expect("edge-daemon runs");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = cli(&[
        "block-7",
        "--alt-m",
        "40",
        "--speed-mps",
        "6",
        "--pattern",
        "survey",
        "--footprint-m",
        "20",
        "--side-overlap",
        "0.25",
        "--mission",
        "survey-7",
        "--upload",
        "V-04",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("planned survey-7: 6 passes 15"),
        "78.75 m at 15 m: {out}"
    );
    assert!(
        out.contains("upload to V-04") && out.contains("accepted"),
        "{out}"
    );
    let stored = ap.wait_event("mission_stored", T);
    assert!(stored["count"].as_u64() > Some(10), "{stored}");
    let (code, out) = cli(&[
        "block-7",
        "--alt-m",
        "900",
        "--speed-mps",
        "6",
        "--row-spacing-m",
        "2",
    ]);
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("alt_m"), "{out}");
}

#[test]
fn a_geofence_goes_to_the_vehicle_as_its_fence_with_its_ceiling() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let survey = root().join("firmware-configs/ardupilot/copter-survey.param");
    let mut ap = autopilot(
        &format!("udpout:127.0.0.1:{udp}"),
        5,
        &["--params", &survey.to_string_lossy()],
    );
    wait_for("the vehicle", T, || daemon.vehicle(5));
    let pilot = daemon.new_token("anna", "pilot");
    // A block with a shed in it, as GeoJSON (closed rings), and a 45 m ceiling.
    let fence = json!({ "name": "Block 2", "ceiling_m": 45, "geometry": { "type": "Polygon",
        "coordinates": [
            [[149.160, -35.360], [149.170, -35.360], [149.170, -35.366], [149.160, -35.366],
             [149.160, -35.360]],
            [[149.164, -35.362], [149.165, -35.362], [149.165, -35.363], [149.164, -35.362]]
        ] } });
    let (code, body) = daemon.send_as(&pilot, "PUT", "/api/v1/geofences/block-2", &fence);
    assert_eq!(code, 200, "{body}");
    let (code, started) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/geofences/block-2/upload",
        &json!({ "vehicle": "V-05" }),
    );
    assert_eq!(code, 202, "{started}");
    let fence_done = daemon.command_ended(&pilot, started["fence"]["id"].as_i64().expect("id"));
    assert_eq!(fence_done["outcome"], "accepted", "{fence_done}");
    // The fence and the ceiling go out side by side: the vehicle's two events in either order.
    let mut heard = Vec::new();
    for _ in 0..2 {
        let line = ap.wait_line(T, |l| {
            json_line(l)["event"] == "mission_stored" || json_line(l)["event"] == "param_set"
        });
        heard.push(json_line(&line));
    }
    heard.sort_by_key(|e| e["event"].as_str().map(str::to_string));
    let (stored, set) = (&heard[0], &heard[1]);
    assert_eq!(
        (stored["type"].as_u64(), stored["count"].as_u64()),
        (Some(1), Some(7))
    );
    assert_eq!(
        (set["name"].as_str(), set["value"].as_f64()),
        (Some("FENCE_ALT_MAX"), Some(45.0))
    );
    let items = &fence_done["detail"]["items"];
    let commands: Vec<u64> = items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["command"].as_u64())
        .collect();
    assert_eq!(
        commands,
        [5001, 5001, 5001, 5001, 5002, 5002, 5002],
        "{items}"
    );
    assert_eq!(
        items[0]["params"][0], 4.0,
        "each vertex names its polygon's size"
    );
    assert_eq!(items[0]["x"], -353_600_000);
    let ceiling_done = daemon.command_ended(&pilot, started["ceiling"]["id"].as_i64().expect("id"));
    assert_eq!(ceiling_done["outcome"], "accepted", "{ceiling_done}");

    let (code, _) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/geofences/no-such/upload",
        &json!({ "vehicle": "5" }),
    );
    assert_eq!(code, 404);
    let viewer = daemon.new_token("crew", "viewer");
    let (code, _) = daemon.send_as(
        &viewer,
        "POST",
        "/api/v1/geofences/block-2/upload",
        &json!({ "vehicle": "5" }),
    );
    assert_eq!(code, 403);
}
