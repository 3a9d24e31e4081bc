//! Alerts acknowledged at the station: a pilot acknowledges, a viewer cannot; the
//! acknowledgement is committed before the answer (it survives a kill -9 straight after),
//! reaches open streams, is given once (a retry answers with the first), and reaches HQ
//! through sync, naming who acknowledged.

use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

fn alert_in(list: &Value, seq: &Value) -> Option<Value> {
    list["alerts"]
        .as_array()?
        .iter()
        .find(|a| &a["seq"] == seq)
        .cloned()
}

#[test]
fn a_pilot_acknowledges_an_alert_once_and_hq_learns_who() {
    let udp = free_udp_port();
    let (relay, daemon) = synced_station(udp);
    let admin = relay.token("vineyard-co", "admin");
    let mut v = pymavlink_vehicle(udp, 4, 5);
    wait_for("the vehicle", T, || daemon.vehicle(4));

    let viewer = station_token(daemon.data.path(), "crew phone", "viewer");
    let pilot = station_token(daemon.data.path(), "ana", "pilot");
    let mut stream = stream_client(&daemon, &viewer, "?kinds=alerts");

    v.send_line("battery 10");
    let alert = json_line(&stream.wait_line(T, |l| json_line(l)["type"] == "alert"));
    let seq = alert["event"]["seq"].clone();
    assert_eq!(alert["event"]["acknowledged"], Value::Null, "{alert}");
    let ack_path = format!("/api/v1/alerts/{seq}/ack");

    // A crew's phone may see alerts, not acknowledge them.
    let (code, body) = daemon.send_as(&viewer, "POST", &ack_path, &json!({}));
    assert_eq!((code, &body["error"]["code"]), (403, &json!("forbidden")));
    // What does not name an alert is refused, saying so.
    let (code, body) = daemon.send_as(&pilot, "POST", "/api/v1/alerts/999999/ack", &json!({}));
    assert_eq!((code, &body["error"]["code"]), (404, &json!("not_found")));
    let (code, body) = daemon.send_as(&pilot, "POST", "/api/v1/alerts/abc/ack", &json!({}));
    assert_eq!(code, 400, "{body}");
    // Nor does an event that is not an alert (the vehicle's identity, here).
    let identity: i64 = daemon
        .db()
        .query_row(
            "SELECT min(seq) FROM events WHERE code = 'identity'",
            [],
            |r| r.get(0),
        )
        .expect("the identity event");
    let path = format!("/api/v1/alerts/{identity}/ack");
    let (code, body) = daemon.send_as(&pilot, "POST", &path, &json!({}));
    assert_eq!(code, 404, "{body}");

    let (code, first) = daemon.send_as(&pilot, "POST", &ack_path, &json!({}));
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["acknowledged"]["by"], "ana", "{first}");
    assert_eq!(first["already"], false, "{first}");

    // Every open stream hears of it, naming the alert.
    let ack = json_line(&stream.wait_line(T, |l| json_line(l)["type"] == "ack"));
    assert_eq!(ack["event"]["acknowledges"], seq, "{ack}");
    assert_eq!(ack["event"]["vehicle"], 4, "{ack}");

    // A retry (a phone on a bad link) gets the first acknowledgement back and writes nothing.
    let (code, again) = daemon.send_as(&pilot, "POST", &ack_path, &json!({}));
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["already"], true, "{again}");
    assert_eq!(again["acknowledged"], first["acknowledged"], "{again}");

    // Durable before the answer: killed at once, the station still has it.
    let mut daemon = daemon;
    daemon.proc.kill9();
    let EdgeDaemon { data, .. } = daemon;
    let daemon = EdgeDaemon::start_in(data, &[], &[]);
    let listed = alert_in(&daemon.get("/api/v1/alerts"), &seq).expect("the alert");
    assert_eq!(listed["acknowledged"], first["acknowledged"], "{listed}");
    let acks: i64 = daemon
        .db()
        .query_row("SELECT count(*) FROM events WHERE code = 'ack'", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(acks, 1, "one ACK event, however many times it was sent");

    // HQ sees the alert acknowledged, by whom.
    let at_hq = wait_for("the acknowledgement at HQ", T, || {
        let (_, alerts) = relay.hq_get(&admin, "/api/v1/orgs/vineyard-co/alerts");
        alert_in(&alerts, &seq).filter(|a| !a["acknowledged"].is_null())
    });
    assert_eq!(at_hq["acknowledged"]["by"], "ana", "{at_hq}");
    assert_eq!(at_hq["edge"], "pi-north", "{at_hq}");
}

#[test]
fn failsafes_ekf_trouble_and_a_degraded_gps_are_alerts_once_each() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let mut v = pymavlink_vehicle(udp, 4, 5);
    wait_for("the vehicle", T, || daemon.vehicle(4));
    let codes = || -> Vec<String> {
        daemon.get("/api/v1/alerts")["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["code"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    // ArduPilot repeats a failsafe message while it lasts: one alert.
    for _ in 0..3 {
        v.send_line("text 2 Radio Failsafe");
        v.wait_event("text", T);
    }
    v.send_line("text 6 EKF3 IMU0 is using GPS");
    v.wait_event("text", T);
    v.send_line("text 4 EKF variance");
    v.wait_event("text", T);
    // A good fix, then none.
    v.send_line("gps 3 120");
    v.wait_event("gps", T);
    v.send_line("gps 1 9999");
    v.wait_event("gps", T);
    let got = wait_for("three alerts", T, || {
        let c = codes();
        (c.len() >= 3).then_some(c)
    });
    // Newest first.
    assert_eq!(got, ["gps_degraded", "ekf", "failsafe"], "{got:?}");
    let alerts = daemon.get("/api/v1/alerts");
    assert_eq!(
        alerts["alerts"][2]["message"], "V-04: Radio Failsafe",
        "{alerts}"
    );
    assert_eq!(alerts["alerts"][2]["severity"], "critical", "{alerts}");
}

#[test]
fn an_armed_vehicle_outside_its_geofences_or_over_a_ceiling_raises_a_breach() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    // The pymavlink autopilot sits at -35.3632, 149.1652, 30 m above home.
    let _ap = autopilot(&format!("udpout:127.0.0.1:{udp}"), 5, &[]);
    wait_for("its position", T, || {
        daemon.vehicle(5)?["position"].is_object().then_some(())
    });
    let pilot = daemon.new_token("anna", "pilot");
    let fence = |south: f64, ceiling: u32| {
        json!({ "name": "Block 2", "ceiling_m": ceiling, "polygon": [
            [south, 149.16], [south, 149.17], [south + 0.01, 149.17], [south + 0.01, 149.16]
        ] })
    };
    // A fence elsewhere: on the ground, nothing; armed, a breach.
    let (code, body) = daemon.send_as(
        &pilot,
        "PUT",
        "/api/v1/geofences/block-2",
        &fence(-35.40, 100),
    );
    assert_eq!(code, 200, "{body}");
    let alerts = || daemon.get("/api/v1/alerts")["alerts"].clone();
    let (code, sent) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/5/commands",
        &json!({ "command": "arm" }),
    );
    assert_eq!(code, 202, "{sent}");
    let first = wait_for("a breach", T, || {
        let a = alerts();
        (a.as_array()?.len() == 1).then_some(a)
    });
    assert_eq!(first[0]["code"], "geofence_breach");
    assert_eq!(
        first[0]["message"],
        "V-05 geofence breach: outside every geofence"
    );
    // Moved to where the vehicle is: back inside; then a ceiling under it: a new breach.
    let put = |f: Value| {
        daemon
            .send_as(&pilot, "PUT", "/api/v1/geofences/block-2", &f)
            .0
    };
    assert_eq!(put(fence(-35.368, 100)), 200);
    let clear = wait_for("back inside", T, || {
        let a = alerts();
        (a.as_array()?.len() == 2).then_some(a)
    });
    assert_eq!(clear[0]["code"], "geofence_clear", "{clear}");
    assert_eq!(put(fence(-35.368, 20)), 200);
    let third = wait_for("a second breach", T, || {
        let a = alerts();
        (a.as_array()?.len() == 3).then_some(a)
    });
    assert_eq!(
        third[0]["message"],
        "V-05 geofence breach: 30 m above home, over Block 2's 20 m ceiling"
    );
}
