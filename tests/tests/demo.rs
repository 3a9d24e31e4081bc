//! `edge-daemon demo`: the whole path on one machine — simulated copters, the station, a
//! cloud relay on loopback — and the HQ page in a real browser (headless Chromium) showing
//! the fleet the station synced.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn the_demo_shows_its_fleet_at_hq_in_a_browser() {
    let data = tempfile::tempdir().unwrap();
    let (api, hq) = (free_tcp_port(), free_tcp_port());
    let mut demo = spawn_demo(data.path(), api, hq, Stdio::piped());
    let line = demo.wait_line(T, |l| l.contains("HQ (relay):"));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the HQ URL")
        .to_string();
    let token = url.split("#token=").nth(1).expect("a token").to_string();

    // The relay has the station's three copters, with live state.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    wait_for("three copters live at HQ", T, || {
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
        (live == 3).then_some(())
    });

    // The HQ page, rendered by Chromium: every copter listed, the live stream connected.
    let dom = wait_for("the HQ page to list the fleet, live", T, || {
        let out = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .args(["--virtual-time-budget=5000", "--dump-dom", &url])
            .stderr(Stdio::null())
            .output()
            .expect("chromium (scripts/test installs it)");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let listed = ["V-01", "V-02", "V-03"]
            .iter()
            .all(|name| dom.contains(&format!(">{name} — ")));
        (listed && dom.contains(r#"<span id="status">live</span>"#)).then_some(dom)
    });
    assert!(dom.contains("via demo-station"), "{dom}");
}
