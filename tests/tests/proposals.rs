//! Missions HQ proposes: they reach the station, and nothing reaches a vehicle until a pilot
//! on site approves; the decision, who made it and why go back to HQ.

use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn a_proposal_reaches_a_vehicle_only_after_a_pilot_approves_it_and_hq_sees_the_decision() {
    let udp = free_udp_port();
    let (relay, daemon) = synced_station(udp);
    let mut ap = autopilot(
        &format!("udpout:127.0.0.1:{udp}"),
        3,
        &["--uid", "00bb00bb00bb00bb"],
    );
    let pilot = daemon.new_token("anna", "pilot");
    let viewer = daemon.new_token("crew", "viewer");
    let (o_lat, o_lon) = (38.2919, -122.458);
    let at = |e: f64, n: f64| json!([o_lat + n / 111_000.0, o_lon + e / 87_300.0]);
    let block = json!({ "name": "Block 7", "polygon": [at(0.0, 0.0), at(120.0, 0.0), at(120.0, 40.0), at(0.0, 40.0)] });
    assert_eq!(
        daemon
            .send_as(&pilot, "PUT", "/api/v1/fields/block-7", &block)
            .0,
        200
    );

    // HQ proposes a survey of the block for V-03, heard through this station.
    let admin = relay.token("vineyard-co", "admin");
    let operator = relay.token("vineyard-co", "operator");
    let id = wait_for("V-03 with its uid at HQ", T, || {
        let (_, body) = relay.hq_get(&admin, "/api/v1/orgs/vineyard-co/vehicles");
        body["vehicles"]
            .as_array()?
            .iter()
            .find(|v| v["uid"] == "00bb00bb00bb00bb")
            .map(|v| v["id"].clone())
    });
    let path = "/api/v1/orgs/vineyard-co/missions/proposals";
    let propose = |title: &str| {
        let (code, body) = relay.hq_post(
            &operator,
            path,
            &json!({ "title": title, "vehicle_id": id,
                "mission": { "kind": "survey", "field": "block-7" } }),
        );
        assert_eq!(code, 201, "{body}");
        body["id"].as_str().expect("an id").to_string()
    };
    let survey = propose("Block 7 survey");
    let other = propose("Block 7 again");
    wait_for("both proposals at the station", T, || {
        let list = daemon.get_as(&viewer, "/api/v1/missions/proposals").1;
        (list["proposals"].as_array()?.len() == 2).then_some(())
    });

    // Not on the vehicle: its mission list is empty.
    let (code, sent) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/3/commands",
        &json!({ "command": "download_mission" }),
    );
    assert_eq!(code, 202, "{sent}");
    let down = daemon.command_ended(&pilot, sent["id"].as_i64().unwrap_or(0));
    assert_eq!(
        down["detail"]["items"],
        json!([]),
        "nothing uploaded before approval: {down}"
    );

    let decide = |token: &str, key: &str, body: Value| {
        daemon.send_as(
            token,
            "POST",
            &format!("/api/v1/missions/proposals/{key}/decision"),
            &body,
        )
    };
    assert_eq!(
        decide(&viewer, &survey, json!({ "decision": "approve" })).0,
        403
    );
    let (code, body) = decide(&pilot, &survey, json!({ "decision": "approve" }));
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (422, Some("plan")),
        "{body}"
    );
    let plan = json!({ "alt_m": 25, "speed_mps": 5, "row_spacing_m": 10 });
    let (code, approved) = decide(
        &pilot,
        &survey,
        json!({ "decision": "approve", "plan": plan, "note": "wind is low" }),
    );
    assert_eq!(code, 200, "{approved}");
    assert_eq!(approved["fields"]["status"], "approved");
    assert_eq!(approved["fields"]["flown_by"], "V-03");
    let upload = daemon.command_ended(&pilot, approved["fields"]["upload"].as_i64().unwrap_or(0));
    assert_eq!(upload["outcome"], "accepted", "{upload}");
    let stored = ap.wait_event("mission_stored", T);
    assert_eq!(stored["from"], 245);
    // Decided once: a second decision is refused.
    assert_eq!(
        decide(&pilot, &survey, json!({ "decision": "reject" })).0,
        409
    );
    let (code, rejected) = decide(
        &pilot,
        &other,
        json!({ "decision": "reject", "note": "block 7 is done" }),
    );
    assert_eq!(
        (code, rejected["fields"]["status"].as_str()),
        (200, Some("rejected"))
    );

    // HQ sees both decisions, who made them and why.
    let proposals = wait_for("the decisions at HQ", T, || {
        let (_, list) = relay.hq_get(&admin, path);
        let list = list["proposals"].as_array()?.clone();
        list.iter()
            .all(|p| p["fields"]["status"] != "proposed")
            .then_some(list)
    });
    let by_key = |key: &str| {
        proposals
            .iter()
            .find(|p| p["key"] == key)
            .map(|p| p["fields"].clone())
            .unwrap_or_default()
    };
    let (s, o) = (by_key(&survey), by_key(&other));
    assert_eq!(
        (s["status"].as_str(), s["decided_by"].as_str()),
        (Some("approved"), Some("anna")),
        "{s}"
    );
    assert_eq!(s["note"], "wind is low");
    assert_eq!(
        (o["status"].as_str(), o["note"].as_str()),
        (Some("rejected"), Some("block 7 is done")),
        "{o}"
    );
}
