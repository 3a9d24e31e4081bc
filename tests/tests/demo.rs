//! `edge-daemon demo`: the whole path on one machine — simulated copters at two stations, a
//! cloud relay on loopback — and HQ's page (the web app, served by the relay) in a real
//! browser (headless Chromium, driven by Playwright) showing the fleet both stations synced,
//! and saying "relay unreachable" while the relay is frozen.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn the_demo_shows_its_fleet_at_hq_in_a_browser() {
    let data = tempfile::tempdir().unwrap();
    let (api, hq) = (free_tcp_port(), free_tcp_port());
    let mut demo = spawn_demo(data.path(), api, hq, Stdio::piped());
    let station = demo.wait_line(T, |l| l.contains("station UI:"));
    let station_token = station
        .split("#token=")
        .nth(1)
        .expect("the station's token")
        .trim()
        .to_string();
    let line = demo.wait_line(T, |l| l.contains("HQ (relay):"));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the HQ URL")
        .to_string();
    let token = url.split("#token=").nth(1).expect("a token").to_string();

    // The relay has both stations' copters, with live state: three here, two at the second
    // station. (Waiting for exactly three passed only when the poll fell between the two
    // stations' first reports: the second's often come first.)
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    wait_for("five copters live at HQ", T, || {
        let mut r = agent
            .get(format!("http://127.0.0.1:{hq}/api/v1/orgs/demo/vehicles"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .ok()?;
        let v: Value = r.body_mut().read_json().ok()?;
        let live = v["vehicles"]
            .as_array()?
            .iter()
            .filter(|v| v["state"]["lat"].is_number())
            .count();
        (live == 5).then_some(())
    });

    // More tokens and a second org, made with the relay's own CLI on the demo's relay: an
    // operator's, and a viewer's of an org the demo org shares its second station's copters with.
    let config = data.path().join("relay.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.path().join("relay")),
    )
    .expect("relay config");
    let relay = |args: &[&str]| cloud_relay_cli(&config, args).trim().to_string();
    let operator = relay(&["token", "create", "--org", "demo", "--role", "operator"]);
    relay(&["org", "create", "county-fire"]);
    relay(&[
        "share",
        "grant",
        "--from",
        "demo",
        "--to",
        "county-fire",
        "--vehicles",
        "V-11,V-12",
        "--coarsen",
        "100",
    ]);
    let partner = relay(&[
        "token",
        "create",
        "--org",
        "county-fire",
        "--role",
        "viewer",
    ]);

    // HQ's page, the same web app, in Chromium: both stations' vehicles, tracks, fields, the
    // stations' sync state; an operator proposes a mission from a phone.
    let base = url.split("/#").next().expect("the HQ address");
    let found = browser(
        "hq_ui.mjs",
        &[
            "--url",
            base,
            "--viewer",
            &token,
            "--operator",
            &operator,
            "--vehicles",
            "5",
            "--stations",
            "2",
            "--partner",
            &partner,
            "--shared",
            "2",
            "--relay-pid",
            &demo.pid().to_string(),
        ],
    );
    assert_eq!(found["title"], "Trellis HQ", "{found}");
    assert_eq!(
        found["rows"], 5,
        "three copters here, two at the second station: {found}"
    );
    assert_eq!(
        found["stations_in_rows"],
        serde_json::json!(["demo-south", "demo-station"]),
        "{found}"
    );
    assert_eq!(found["markers"], 5, "{found}");
    assert!(found["tracks"].as_u64() >= Some(5), "tracks drawn: {found}");
    assert!(
        found["fields"].as_u64() >= Some(5),
        "both stations' fields: {found}"
    );
    assert_eq!(found["stations_connected"], 2, "{found}");
    assert_eq!(
        found["viewer_sees_propose"], false,
        "a viewer proposes nothing"
    );
    assert!(
        found["vehicle_values"]
            .as_array()
            .is_some_and(|v| v.iter().any(|d| d == "Stations")),
        "{found}"
    );
    assert_eq!(found["page_errors"], serde_json::json!([]), "{found}");
    // The demo's relay frozen: the page says so instead of showing stale numbers as live.
    assert_eq!(found["offline_text"], "relay unreachable", "{found}");
    assert_eq!(found["stale"], true, "{found}");
    assert_eq!(found["live_again"], true, "{found}");
    assert_eq!(
        found["phone_overflow_px"], 0,
        "the page fits a phone's width: {found}"
    );
    assert!(
        found["proposed"]
            .as_str()
            .is_some_and(|p| p.starts_with("proposed")),
        "{found}"
    );
    // The other org sees the two shared copters, each labelled with its owner, coarsened,
    // with neither battery, stations nor history, and nothing to rename.
    assert_eq!(found["partner_rows"], 2, "{found}");
    assert_eq!(
        found["partner_owners"],
        serde_json::json!(["shared by demo"]),
        "{found}"
    );
    assert!(
        found["partner_title"]
            .as_str()
            .is_some_and(|t| t.ends_with("(shared by demo)")),
        "{found}"
    );
    let values = found["partner_values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(values.iter().any(|v| v == "Owner"), "{found}");
    assert!(
        !values.iter().any(|v| v == "Battery" || v == "Stations"),
        "a shared vehicle shows no battery or stations: {found}"
    );
    assert_eq!(found["partner_sees_rename"], false, "{found}");
    assert_screenshots(&["hq-desktop.png", "hq-phone.png", "hq-shared.png"]);

    // The proposal reached the station, where a pilot on site will decide on it.
    wait_for("the proposal at the station", T, || {
        let mut r = agent
            .get(format!("http://127.0.0.1:{api}/api/v1/missions/proposals"))
            .header("Authorization", format!("Bearer {station_token}"))
            .call()
            .ok()?;
        let v: Value = r.body_mut().read_json().ok()?;
        v["proposals"]
            .as_array()?
            .iter()
            .any(|p| p["fields"]["title"] == "Survey block 1 after rain")
            .then_some(())
    });

    // A pilot at the station's page rejects it with a note, and HQ hears why.
    let found = browser(
        "station_decides.mjs",
        &[
            "--url",
            &format!("http://127.0.0.1:{api}"),
            "--token",
            &station_token,
            "--title",
            "Survey block 1 after rain",
        ],
    );
    assert_eq!(
        found["propose_form_shown"], false,
        "proposing is HQ's: {found}"
    );
    assert_eq!(
        found["plan_inputs"], 3,
        "a field's proposal asks how to fly it: {found}"
    );
    let decided = found["decided"].as_str().unwrap_or("");
    assert!(
        decided.starts_with("rejected by") && decided.ends_with("vines too wet to fly over today"),
        "{found}"
    );
    assert_eq!(found["page_errors"], serde_json::json!([]), "{found}");
    assert_screenshots(&["station-proposal.png"]);
    wait_for("the decision at HQ", T, || {
        let mut r = agent
            .get(format!(
                "http://127.0.0.1:{hq}/api/v1/orgs/demo/missions/proposals"
            ))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .ok()?;
        let v: Value = r.body_mut().read_json().ok()?;
        v["proposals"]
            .as_array()?
            .iter()
            .any(|p| {
                p["fields"]["status"] == "rejected"
                    && p["fields"]["note"] == "vines too wet to fly over today"
            })
            .then_some(())
    });
}
