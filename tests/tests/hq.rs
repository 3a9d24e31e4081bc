//! The relay's HQ API over HTTPS (trusted through the relay's CA): one vehicle heard by two
//! ground stations is one vehicle with one history; tokens see only their own org; sharing
//! agreements show what they grant and stop at once on revoke, also on an open WebSocket
//! (the `websockets` library as the HQ client).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

struct Site {
    edge: EdgeDaemon,
    udp: u16,
}

fn site(relay: &CloudRelay, org: &str, name: &str) -> Site {
    let data = tempfile::tempdir().unwrap();
    relay.enroll(org, name, data.path());
    let udp = free_udp_port();
    let edge = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    Site { edge, udp }
}

/// A pymavlink vehicle flying north at 5 m/s.
fn vehicle(sysid: u8, uid: &str, lat: f64, connect: &[u16], positions: u32) -> Proc {
    let mut cmd = python("vehicle.py");
    cmd.args(["--connect", &format!("udpout:127.0.0.1:{}", connect[0])])
        .args(["--sysid", &sysid.to_string(), "--uid", uid])
        .args(["--lat", &lat.to_string(), "--lon", "-122.455"])
        .args(["--rate", "50", "--speed", "5", "--battery", "80"])
        .args(["--positions", &positions.to_string()])
        .stdout(Stdio::piped());
    if let Some(also) = connect.get(1) {
        cmd.args(["--also", &format!("udpout:127.0.0.1:{also}")]);
    }
    Proc::spawn("pymavlink vehicle", &mut cmd)
}

/// The relay has acknowledged `rows` samples and every event. (Reading the backlog in one
/// request and the committed count in another raced: rows committed between the two read as
/// synced.)
fn synced(site: &Site, rows: u64) -> Option<()> {
    let s = site.edge.try_get("/api/v1/sync")?;
    (s["relay_acked"].as_u64()? >= rows && s["events_backlog"] == 0).then_some(())
}

#[test]
fn one_vehicle_heard_by_two_edges_is_one_vehicle_and_orgs_never_see_each_other() {
    let mut relay = CloudRelay::new();
    relay.admin(&["org", "create", "vineyard-co"]);
    relay.admin(&["org", "create", "orchard-co"]);
    relay.start();
    relay.wait_hq();
    let north = site(&relay, "vineyard-co", "pi-north");
    let south = site(&relay, "vineyard-co", "pi-south");
    let other = site(&relay, "orchard-co", "pi-orchard");

    // One copter heard by both vineyard stations, through the same radio burst each time;
    // the orchard flies its own copter, with the same system id.
    let mut v = vehicle(3, "00aa00aa00aa00aa", 38.29, &[north.udp, south.udp], 150);
    let mut w = vehicle(3, "00bb00bb00bb00bb", 38.40, &[other.udp], 150);
    v.wait_event("done", T);
    w.wait_event("done", T);
    for s in [&north, &south, &other] {
        wait_for("each station synced to the relay", T, || synced(s, 150));
    }

    let viewer = relay.token("vineyard-co", "viewer");
    let operator = relay.token("vineyard-co", "operator");
    let stranger = relay.token("orchard-co", "admin");

    let (status, body) = relay.hq_get(&viewer, "/api/v1/orgs/vineyard-co/vehicles");
    assert_eq!(status, 200, "{body}");
    let vehicles = body["vehicles"].as_array().expect("vehicles").clone();
    assert_eq!(vehicles.len(), 1, "one vehicle, heard twice: {body:#}");
    let copter = &vehicles[0];
    assert_eq!(copter["uid"], "00aa00aa00aa00aa");
    let heard_by: Vec<&str> = copter["heard_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["edge"].as_str().unwrap())
        .collect();
    assert_eq!(heard_by, ["pi-north", "pi-south"]);
    let lat = copter["state"]["lat"].as_f64().expect("a live state");
    assert!((38.29..38.30).contains(&lat), "{copter}");
    let id = copter["id"].as_i64().unwrap();

    // Its history: 150 samples from each station, kept once each, in time order.
    let (status, body) = relay.hq_get(
        &viewer,
        &format!("/api/v1/orgs/vineyard-co/vehicles/{id}/telemetry"),
    );
    assert_eq!(status, 200, "{body}");
    let samples = body["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 150, "deduplicated history");
    let lats: Vec<f64> = samples.iter().map(|s| s["lat"].as_f64().unwrap()).collect();
    assert!(lats.windows(2).all(|w| w[0] < w[1]), "one track, northward");
    // The same history walked 40 samples a page: every sample once, none lost at a seam.
    let history = format!("/api/v1/orgs/vineyard-co/vehicles/{id}/telemetry");
    let (paged, pages) = walk_pages(
        |url| relay.hq_get(&viewer, url).1,
        &history,
        "samples",
        "after",
        40,
    );
    assert_eq!(&paged, samples, "paged history equals the one-page history");
    assert!(pages >= 4, "{pages} pages");
    let (status, body) = relay.hq_get(&viewer, &format!("{history}?after=yesterday"));
    assert_eq!(
        (status, &body["error"]["field"]),
        (422, &json!("after")),
        "{body}"
    );
    // Every list of HQ pages in key order.
    let (edges, pages) = walk_pages(
        |url| relay.hq_get(&viewer, url).1,
        "/api/v1/orgs/vineyard-co/edges",
        "edges",
        "after",
        1,
    );
    let names: Vec<&str> = edges.iter().filter_map(|e| e["edge"].as_str()).collect();
    assert_eq!((names, pages), (vec!["pi-north", "pi-south"], 2));
    let (status, body) = relay.hq_get(&viewer, "/api/v1/orgs/vineyard-co/vehicles?after=x");
    assert_eq!(
        (status, &body["error"]["field"]),
        (422, &json!("after")),
        "{body}"
    );
    let (status, body) = relay.hq_get(&viewer, "/api/v1/orgs/vineyard-co/fields?limit=1001");
    assert_eq!(
        (status, &body["error"]["field"]),
        (422, &json!("limit")),
        "{body}"
    );

    let (_, edges) = relay.hq_get(&viewer, "/api/v1/orgs/vineyard-co/edges");
    let edges = edges["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert!(
        edges.iter().all(|e| e["connected"] == true
            && e["telemetry_acked"].as_u64() >= Some(150)
            && e["gaps"].as_array().is_some_and(|g| g.is_empty())),
        "both stations connected, synced and without gaps: {edges:#?}"
    );

    // The admin's view from the command line agrees.
    let status: Value = serde_json::from_str(&relay.admin(&["status", "--json"])).unwrap();
    let vineyard = status["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["org"] == "vineyard-co")
        .expect("vineyard-co in status");
    assert_eq!(vineyard["vehicles"], 1);
    assert_eq!(vineyard["edges"].as_array().unwrap().len(), 2);

    // The orchard's token sees nothing of the vineyard: 404 exactly as for an org that does
    // not exist, never data.
    let (_, missing) = relay.hq_get(&stranger, "/api/v1/orgs/no-such-org/vehicles");
    for path in [
        "/api/v1/orgs/vineyard-co/vehicles".to_string(),
        format!("/api/v1/orgs/vineyard-co/vehicles/{id}"),
        format!("/api/v1/orgs/vineyard-co/vehicles/{id}/telemetry"),
        "/api/v1/orgs/vineyard-co/alerts".into(),
        "/api/v1/orgs/vineyard-co/events".into(),
        "/api/v1/orgs/vineyard-co/edges".into(),
        "/api/v1/orgs/vineyard-co/missions/proposals".into(),
        "/api/v1/orgs/vineyard-co/stream".into(),
    ] {
        let (status, body) = relay.hq_get(&stranger, &path);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
        assert_eq!(
            body["error"]["message"]
                .as_str()
                .map(|m| m.replace("vineyard-co", "X")),
            missing["error"]["message"]
                .as_str()
                .map(|m| m.replace("no-such-org", "X")),
            "{path}: indistinguishable from a missing org"
        );
    }
    // Nor its own vehicle by the vineyard's id, nor the vineyard's through the COP.
    let (status, _) = relay.hq_get(&stranger, &format!("/api/v1/orgs/orchard-co/vehicles/{id}"));
    assert_eq!(status, 404);
    let (_, cop) = relay.hq_get(&stranger, "/api/v1/cop");
    let owners: Vec<&str> = cop["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["orchard-co"], "{cop:#}");

    // No token, a made-up token: 401. A viewer may not propose; an operator may.
    assert_eq!(relay.hq_get("", "/api/v1/orgs/vineyard-co/vehicles").0, 401);
    assert_eq!(
        relay
            .hq_get("trellis_0000", "/api/v1/orgs/vineyard-co/vehicles")
            .0,
        401
    );
    let proposal = json!({ "title": "Block 7 resurvey", "vehicle_id": id,
        "mission": { "survey": "block-7", "altitude_m": 40 } });
    let path = "/api/v1/orgs/vineyard-co/missions/proposals";
    assert_eq!(relay.hq_post(&viewer, path, &proposal).0, 403);
    // A viewer hears "not allowed" whatever it sent, never what was wrong with its body.
    assert_eq!(relay.hq_post(&viewer, path, &json!({ "title": 3 })).0, 403);
    assert_eq!(relay.hq_post(&stranger, path, &proposal).0, 404);
    // JSON of the wrong shape: 422, as at the station (the shared HTTP layer).
    let (status, body) = relay.hq_post(&operator, path, &json!({ "title": 3 }));
    assert_eq!((status, &body["error"]["code"]), (422, &json!("invalid")));
    let (status, body) = relay.hq_post(&operator, path, &proposal);
    assert_eq!(status, 201, "{body}");
    let (_, list) = relay.hq_get(&viewer, path);
    let p = &list["proposals"][0]["fields"];
    assert_eq!(p["title"], "Block 7 resurvey");
    assert_eq!(p["status"], "proposed");
    assert_eq!(p["vehicle"]["uid"], "00aa00aa00aa00aa", "{p}");

    // Both daemons' /metrics parse with Prometheus' own parser.
    let relay_metrics = parse_metrics(&relay.metrics());
    let group_commits = &relay_metrics["trellis_relay_group_commits"];
    assert_eq!(group_commits["type"], "counter", "{relay_metrics}");
    assert!(
        group_commits["samples"][0][2].as_f64() >= Some(1.0),
        "{group_commits}"
    );
    let station_metrics = parse_metrics(&north.edge.metrics());
    assert_eq!(
        station_metrics["trellis_store_commit_seconds"]["type"], "histogram",
        "{station_metrics}"
    );
}

fn stream(relay: &CloudRelay, org: &str, token: &str) -> Proc {
    let url = format!("wss://127.0.0.1:{}/api/v1/orgs/{org}/stream", relay.hq_port);
    let ca = relay.ca_pem();
    let mut p = Proc::spawn(
        "HQ stream client",
        python("stream_client.py")
            .args(["--url", &url, "--token", token])
            .arg("--ca")
            .arg(&ca)
            .stdout(Stdio::piped()),
    );
    p.wait_line(T, |l| l.contains("\"open\""));
    p
}

fn shared_entities(cop: &Value) -> Vec<Value> {
    cop["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["shared"] == true)
        .cloned()
        .collect()
}

#[test]
fn a_sharing_agreement_shows_what_it_grants_and_revoking_it_stops_at_once() {
    let mut relay = CloudRelay::new();
    relay.admin(&["org", "create", "vineyard-co"]);
    relay.admin(&["org", "create", "county-fire"]);
    relay.start();
    relay.wait_hq();
    let north = site(&relay, "vineyard-co", "pi-north");
    // V-01 flies inside Block 7, V-02 a kilometre north of it; both keep flying.
    let _inside = vehicle(1, "0000000000000001", 38.2920, &[north.udp], 0);
    let _outside = vehicle(2, "0000000000000002", 38.3100, &[north.udp], 0);
    let viewer = relay.token("vineyard-co", "viewer");
    wait_for("both vineyard vehicles live at HQ", T, || {
        let (_, v) = relay.hq_get(&viewer, "/api/v1/orgs/vineyard-co/vehicles");
        let live = v["vehicles"]
            .as_array()?
            .iter()
            .filter(|v| v["state"].is_object())
            .count();
        (live == 2).then_some(())
    });

    let area = relay.dir.path().join("block-7.geojson");
    std::fs::write(
        &area,
        r#"{"type": "Feature", "properties": {"name": "Block 7"}, "geometry": {"type": "Polygon",
            "coordinates": [[[-122.46, 38.28], [-122.45, 38.28], [-122.45, 38.30],
                             [-122.46, 38.30], [-122.46, 38.28]]]}}"#,
    )
    .unwrap();
    let fire = relay.token("county-fire", "viewer");
    assert!(shared_entities(&relay.hq_get(&fire, "/api/v1/cop").1).is_empty());
    relay.admin(&[
        "share",
        "grant",
        "--from",
        "vineyard-co",
        "--to",
        "county-fire",
        "--area",
        area.to_str().unwrap(),
        "--coarsen",
        "500",
    ]);

    let (status, cop) = relay.hq_get(&fire, "/api/v1/cop");
    assert_eq!(status, 200);
    let shared = shared_entities(&cop);
    assert_eq!(shared.len(), 1, "only the vehicle inside the area: {cop:#}");
    let e = &shared[0];
    assert_eq!(
        (&e["owner"], &e["name"]),
        (&json!("vineyard-co"), &json!("V-01"))
    );
    assert_eq!(e["coarsened_m"], 500.0);
    assert!(
        e.get("battery").is_none() && e.get("heard_by").is_none(),
        "{e}"
    );
    // The position is the centre of a 500 m cell, within a cell of the true one.
    let lat = e["state"]["lat"].as_f64().unwrap();
    let step = 500.0 / 111_320.0;
    assert!(((lat / step).fract() - 0.5).abs() < 1e-6, "snapped: {lat}");
    let (_, own) = relay.hq_get(&viewer, "/api/v1/orgs/vineyard-co/vehicles");
    // (Listed by fleet id, which follows the order HQ first heard them in.)
    let inside = own["vehicles"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["uid"] == "0000000000000001"))
        .expect("V-01 in the org's vehicles");
    let true_lat = inside["state"]["lat"].as_f64().unwrap();
    assert!((lat - true_lat).abs() <= step, "{lat} vs {true_lat}");
    assert!(lat != true_lat);

    // An open stream shows it, and withdraws it when the agreement is revoked.
    let mut ws = stream(&relay, "county-fire", &fire);
    let snapshot: Value =
        serde_json::from_str(&ws.wait_line(T, |l| l.contains("snapshot"))).expect("snapshot JSON");
    assert_eq!(shared_entities(&snapshot).len(), 1, "{snapshot:#}");
    ws.wait_line(T, |l| l.contains("\"vehicle\"") && l.contains("V-01"));
    relay.admin(&[
        "share",
        "revoke",
        "--from",
        "vineyard-co",
        "--to",
        "county-fire",
    ]);
    let revoked_at = std::time::Instant::now();
    let gone = ws.wait_line(T, |l| l.contains("\"gone\""));
    assert!(gone.contains("vineyard-co"), "{gone}");
    assert!(
        revoked_at.elapsed() < Duration::from_secs(3),
        "withdrawn from the open stream {:?} after the revoke",
        revoked_at.elapsed()
    );
    assert!(shared_entities(&relay.hq_get(&fire, "/api/v1/cop").1).is_empty());
}

/// Fields and geofences as both sides list them, without keys' order mattering.
fn records(v: &Value, table: &str) -> Value {
    v[table].clone()
}

#[test]
fn offline_edits_at_the_edge_and_at_hq_converge_field_by_field() {
    let mut relay = CloudRelay::new();
    let data = relay.enroll_pi_north();
    relay.start();
    relay.wait_hq();
    let operator = relay.token("vineyard-co", "operator");
    let put = |relay: &CloudRelay, path: &str, body: Value| {
        let (status, reply) = relay.hq_send("PUT", &operator, path, &body);
        assert_eq!(status, 200, "PUT {path}: {reply}");
    };

    // 1. HQ, while the station has never connected.
    put(
        &relay,
        "/api/v1/orgs/vineyard-co/fields/block-7",
        json!({ "name": "Block 7 (HQ)", "variety": "Pinot noir" }),
    );
    let (status, _) = relay.hq_post(
        &operator,
        "/api/v1/orgs/vineyard-co/missions/proposals",
        &json!({ "title": "Resurvey block 7", "mission": { "field": "block-7" } }),
    );
    assert_eq!(status, 201);

    // 2. The station, while the relay is down: a later edit of the same field, and another.
    relay.stop();
    let edge = EdgeDaemon::start_in(data, &[], &[]);
    for (path, body) in [
        (
            "/api/v1/fields/block-7",
            json!({ "name": "Block 7 north", "rows": 40 }),
        ),
        ("/api/v1/geofences/north", json!({ "ceiling_m": 90 })),
    ] {
        let (status, reply) = edge.send("PUT", path, &body);
        assert_eq!(status, 200, "PUT {path}: {reply}");
    }
    let mut edge = edge;
    edge.proc.kill9();
    let EdgeDaemon { data, .. } = edge;

    // 3. HQ again, while the station is off: later than the station's geofence edit.
    relay.start();
    relay.wait_hq();
    put(
        &relay,
        "/api/v1/orgs/vineyard-co/geofences/north",
        json!({ "ceiling_m": 120 }),
    );
    put(
        &relay,
        "/api/v1/orgs/vineyard-co/fields/block-7",
        json!({ "variety": "Chardonnay" }),
    );

    // 4. They meet: every field takes its latest write, on both sides.
    let edge = EdgeDaemon::start_in(data, &[], &[]);
    let expected_fields = json!([{ "key": "block-7", "fields": {
        "name": "Block 7 north", "rows": 40, "variety": "Chardonnay" } }]);
    let expected_fences = json!([{ "key": "north", "fields": { "ceiling_m": 120 } }]);
    wait_for("edge and HQ to converge", T, || {
        let at_edge = (
            records(&edge.get("/api/v1/fields"), "fields"),
            records(&edge.get("/api/v1/geofences"), "geofences"),
        );
        let at_hq = (
            records(
                &relay.hq_get(&operator, "/api/v1/orgs/vineyard-co/fields").1,
                "fields",
            ),
            records(
                &relay
                    .hq_get(&operator, "/api/v1/orgs/vineyard-co/geofences")
                    .1,
                "geofences",
            ),
        );
        (at_edge == at_hq && at_edge.0 == expected_fields && at_edge.1 == expected_fences)
            .then_some(())
    });
    let proposals = edge.get("/api/v1/missions/proposals");
    assert_eq!(
        proposals["proposals"][0]["fields"]["title"], "Resurvey block 7",
        "HQ's proposal reached the station: {proposals}"
    );
    assert_eq!(proposals["proposals"][0]["fields"]["status"], "proposed");
}
