//! The station's web UI in real headless Chromium (Debian's `chromium`, driven by Playwright's
//! `playwright-core` in `tests/browser/`), against a daemon with six vehicles (four simulated
//! copters, a pymavlink one on a low battery, so there is an alert to acknowledge, and the
//! pymavlink autopilot flying a mission planned over the field), a field, a geofence, and an
//! offline basemap from an MBTiles file this test makes; the vehicle page's chart drawn from
//! its history. Screenshots (phone and
//! desktop) are kept in `target/screenshots/`.

use std::process::Stdio;

use serde_json::{json, Value};
use trellis_tests::*;

/// A 1×1 PNG: every basemap tile of the test's MBTiles file.
const PIXEL_PNG: [u8; 69] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0xc9, 0xfe, 0x92, 0xef, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Where the simulator lays out its vineyard blocks (`SimConfig::new`).
const ORIGIN: (f64, f64) = (38.2919, -122.4580);

/// The XYZ tile holding a point at zoom `z`.
fn tile_of(lat: f64, lon: f64, z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor();
    let lat = lat.to_radians();
    let y = ((1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor();
    (x as u32, y as u32)
}

/// An MBTiles file (the format QGIS and gdal export) covering the vineyard at zooms 12–19.
fn mbtiles(path: &std::path::Path) {
    let db = rusqlite::Connection::open(path).expect("create the MBTiles file");
    db.execute_batch(
        "CREATE TABLE metadata (name TEXT, value TEXT);
         CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB);
         INSERT INTO metadata VALUES ('name', 'test vineyard'), ('format', 'png');",
    )
    .expect("schema");
    for z in 12u8..=19 {
        let (x0, y0) = tile_of(ORIGIN.0 + 0.01, ORIGIN.1 - 0.01, z);
        let (x1, y1) = tile_of(ORIGIN.0 - 0.01, ORIGIN.1 + 0.02, z);
        for x in x0..=x1 {
            for y in y0..=y1 {
                let row = (1u32 << z) - 1 - y; // MBTiles counts rows from the south
                db.execute(
                    "INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![z, x, row, &PIXEL_PNG[..]],
                )
                .expect("tile");
            }
        }
    }
}

#[test]
fn a_crew_sees_the_fleet_move_on_a_phone_and_a_pilot_gets_the_controls() {
    let dir = tempfile::tempdir().unwrap();
    let tiles = dir.path().join("vineyard.mbtiles");
    mbtiles(&tiles);
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start_with(
        &[format!("udpin:127.0.0.1:{udp}")],
        &["--mbtiles", tiles.to_str().expect("utf-8 path")],
    );
    let health = daemon.get("/api/v1/health");
    assert_eq!(health["basemap"]["max_zoom"], 19, "{health}");
    let _fleet = sim_fleet(udp, 4, 10);
    let _low = Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", &format!("udpout:127.0.0.1:{udp}")])
            .args(["--sysid", "9", "--lat", &ORIGIN.0.to_string()])
            .args(["--lon", &ORIGIN.1.to_string(), "--rate", "10"])
            .args(["--battery", "12", "--speed", "2"])
            .stdout(Stdio::null()),
    );
    wait_for(
        "the low-battery alert",
        std::time::Duration::from_secs(30),
        || {
            let alerts = daemon.get("/api/v1/alerts");
            (alerts["alerts"].as_array()?.len() == 1).then_some(())
        },
    );
    let block = [
        [ORIGIN.0, ORIGIN.1],
        [ORIGIN.0 + 0.0007, ORIGIN.1],
        [ORIGIN.0 + 0.0007, ORIGIN.1 + 0.0014],
        [ORIGIN.0, ORIGIN.1 + 0.0014],
    ];
    let (code, body) = daemon.send(
        "PUT",
        "/api/v1/fields/block-1",
        &json!({ "name": "Block 1", "polygon": block }),
    );
    assert_eq!(code, 200, "{body}");
    // A geofence around the whole vineyard (no vehicle breaches it: the one alert stays the
    // low battery's).
    let fence = [
        [ORIGIN.0 - 0.01, ORIGIN.1 - 0.01],
        [ORIGIN.0 + 0.01, ORIGIN.1 - 0.01],
        [ORIGIN.0 + 0.01, ORIGIN.1 + 0.02],
        [ORIGIN.0 - 0.01, ORIGIN.1 + 0.02],
    ];
    let (code, body) = daemon.send(
        "PUT",
        "/api/v1/geofences/vineyard",
        &json!({ "name": "Vineyard", "polygon": fence, "ceiling_m": 400 }),
    );
    assert_eq!(code, 200, "{body}");
    // A sixth vehicle, the pymavlink autopilot, is given a mission planned over the block: the
    // page shows its progress against that field.
    // Over the block, as the others: one far away would zoom the map out until the
    // others' tracks are a pixel long.
    let (lat, lon) = (ORIGIN.0.to_string(), ORIGIN.1.to_string());
    let mut worker = autopilot(
        &format!("udpout:127.0.0.1:{udp}"),
        6,
        &["--lat", &lat, "--lon", &lon],
    );
    wait_for(
        "the autopilot heard",
        std::time::Duration::from_secs(30),
        || daemon.vehicle(6),
    );
    let items: Vec<Value> = (0..4)
        .map(|i| {
            json!({ "command": 16, "frame": 3, "params": [0, 0, 0, 0],
            "x": ((ORIGIN.0 + 0.0001 * f64::from(i)) * 1e7) as i32,
            "y": (ORIGIN.1 * 1e7) as i32, "z": 20, "autocontinue": true })
        })
        .collect();
    let mission = json!({ "name": "Block 1 survey", "field": "block-1", "items": items });
    let (code, body) = daemon.send("PUT", "/api/v1/missions/block-1-survey", &mission);
    assert_eq!(code, 200, "{body}");
    let (code, sent) = daemon.send(
        "POST",
        "/api/v1/missions/block-1-survey/upload",
        &json!({ "vehicle": "6" }),
    );
    assert_eq!(code, 202, "{sent}");
    let done = daemon.command_ended(&daemon.token, sent["id"].as_i64().expect("an id"));
    assert_eq!(done["outcome"], "accepted", "{done}");
    worker.send_line("reached 1");
    let viewer = station_token(daemon.data.path(), "crew phone", "viewer");
    let pilot = station_token(daemon.data.path(), "ana", "pilot");

    // The tile the app asks for first is served, with the token in the query as <img> sends it.
    let (x, y) = tile_of(ORIGIN.0, ORIGIN.1, 17);
    let mut tile = agent()
        .get(format!(
            "{}/tiles/17/{x}/{y}?access_token={viewer}",
            daemon.api
        ))
        .call()
        .expect("a tile");
    let status = tile.status().as_u16();
    let body = tile.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        daemon.get_as("", &format!("/tiles/17/{x}/{y}")).0,
        401,
        "tiles need a token"
    );

    let pid = daemon.proc.pid().to_string();
    let found = browser(
        "station_ui.mjs",
        &[
            "--url",
            &daemon.api,
            "--viewer",
            &viewer,
            "--pilot",
            &pilot,
            "--vehicles",
            "6",
            "--basemap",
            "--daemon-pid",
            &pid,
        ],
    );
    assert_eq!(
        found["token_left_in_address"], false,
        "the QR token stays in the address bar"
    );
    assert_eq!(found["rows"], 6, "{found}");
    assert_eq!(found["markers"], 6, "{found}");
    let progress = found["field_progress"].as_str().unwrap_or("");
    assert!(
        // Four items, 0 to 3: the vehicle's total is its last item's number, as ArduPilot
        // reports it (home, item 0, not counted).
        progress.contains("V-06: item 2 of 3, reached 1"),
        "the block's progress is its mission's: {progress}"
    );
    assert!(found["moved"].as_u64() >= Some(4), "markers moved: {found}");
    assert!(found["tracks"].as_u64() >= Some(5), "tracks drawn: {found}");
    assert!(
        found["fields"].as_u64() >= Some(1),
        "field polygon: {found}"
    );
    assert_eq!(found["basemap_tile"], true, "{found}");
    assert_eq!(
        found["viewer_sees_rename"], false,
        "a viewer sees no pilot control"
    );
    assert_eq!(found["pilot_sees_rename"], true, "a pilot does");
    assert_eq!(
        found["viewer_sees_controls"], false,
        "a viewer has no command buttons"
    );
    assert_eq!(found["viewer_sees_param_fetch"], false, "{found}");
    assert_eq!(found["geofences"], 1, "the geofence drawn: {found}");
    assert!(found["chart_points"].as_u64() >= Some(2), "{found}");
    assert!(
        found["chart_inked_px"].as_u64() >= Some(200),
        "the chart drew its lines: {found}"
    );
    let labels = found["vehicle_values"].to_string();
    assert!(
        labels.contains("\"Signing\"") && labels.contains("\"Link\""),
        "{labels}"
    );
    let params = found["pilot_params"].as_str().unwrap_or("");
    assert!(
        params.ends_with("parameters; no profile applied"),
        "the simulated copter's list, read: {params}"
    );
    let command = found["pilot_command"].as_str().unwrap_or("");
    assert!(command.ends_with("mode LOITER: accepted"), "{command}");
    assert_eq!(found["viewer_alerts"], 1, "{found}");
    assert_eq!(found["viewer_sees_ack"], 0, "a viewer cannot acknowledge");
    assert!(
        found["pilot_acked"]
            .as_str()
            .is_some_and(|t| t.starts_with("acknowledged by ana")),
        "{found}"
    );
    assert!(
        found["viewer_saw_ack"]
            .as_str()
            .is_some_and(|t| t.starts_with("acknowledged by ana")),
        "{found}"
    );
    let alerts = daemon.get("/api/v1/alerts");
    assert_eq!(alerts["alerts"][0]["acknowledged"]["by"], "ana", "{alerts}");
    assert_eq!(found["offline_text"], "station offline", "{found}");
    assert_eq!(
        found["stale"], true,
        "stale numbers are marked stale: {found}"
    );
    assert_eq!(found["live_again"], true, "{found}");
    assert_eq!(found["page_errors"], json!([]), "{found}");
    assert_eq!(
        found["phone_overflow_px"], 0,
        "the page fits a phone's width: {found}"
    );
    assert_screenshots(&[
        "station-desktop.png",
        "station-phone.png",
        "station-phone-alerts.png",
    ]);
    // The stream and the page never left the viewer's token a way to edit.
    let (code, _) = daemon.send_as(
        &viewer,
        "PATCH",
        "/api/v1/vehicles/1",
        &json!({ "name": "x" }),
    );
    assert_eq!(code, 403);
}
