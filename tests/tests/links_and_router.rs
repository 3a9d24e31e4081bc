//! The daemon against pymavlink peers over UDP and a serial pty pair.

use std::process::Stdio;
use std::time::Duration;

use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

fn vehicle(connect: &str, sysid: u8, lat: f64, lon: f64) -> Proc {
    vehicle_with(connect, sysid, lat, lon, &[])
}

fn vehicle_with(connect: &str, sysid: u8, lat: f64, lon: f64, extra: &[&str]) -> Proc {
    Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", connect, "--sysid", &sysid.to_string()])
            .args(["--lat", &lat.to_string(), "--lon", &lon.to_string()])
            .args(extra)
            .stdout(Stdio::piped()),
    )
}

fn gcs_command(port: u16, expect: &[u8], target: u8) -> serde_json::Value {
    gcs(&format!("udpin:127.0.0.1:{port}"), expect, Some(target))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn vehicles_over_udp_and_serial_appear_in_the_api_and_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path());
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[
        format!("udpin:127.0.0.1:{udp}"),
        format!("serial:{}:57600", pty.device.display()),
    ]);
    let _a = vehicle(&format!("udpout:127.0.0.1:{udp}"), 11, 38.2921, -122.4577);
    // The serial vehicle speaks MAVLink 1, as older radios and autopilots do.
    let _b = vehicle_with(
        &pty.peer.display().to_string(),
        12,
        38.2930,
        -122.4561,
        &["--mavlink1"],
    );

    for (sysid, lat, lon) in [(11, 38.2921, -122.4577), (12, 38.2930, -122.4561)] {
        let v = wait_for(&format!("vehicle {sysid} with its position"), T, || {
            let v = daemon.vehicle(sysid)?;
            let p = &v["position"];
            (close(p["lat"].as_f64()?, lat) && close(p["lon"].as_f64()?, lon)).then_some(v)
        });
        assert_eq!(v["name"], format!("V-{sysid}"));
        assert_eq!(v["autopilot"], "ardupilot");
        assert_eq!(v["mode"], "LOITER", "custom mode 5 on a quadrotor");
        assert_eq!(v["link"]["state"], "ok");
    }

    // History through the API: every sample of vehicle 11, then one per second.
    let all = wait_for("history for vehicle 11", T, || {
        let h = daemon.try_get("/api/v1/vehicles/11/telemetry")?;
        (h["count"].as_u64()? >= 20).then_some(h)
    });
    let samples = all["samples"].as_array().unwrap();
    assert!(samples
        .iter()
        .all(|s| close(s["lat"].as_f64().unwrap(), 38.2921)));
    assert!(samples
        .windows(2)
        .all(|w| w[0]["t_us"].as_i64() <= w[1]["t_us"].as_i64()));
    let time_source = samples[0]["time_source"].as_str().unwrap();
    assert!(
        ["system-synced", "gps", "system-unsynced"].contains(&time_source),
        "{time_source}"
    );
    let (first, last) = (
        samples[0]["t_us"].as_i64().unwrap(),
        samples.last().unwrap()["t_us"].as_i64().unwrap(),
    );
    let by_name = daemon.get(&format!(
        "/api/v1/vehicles/V-11/telemetry?from={}&to={}&every=1s",
        first / 1000,
        last / 1000 + 1
    ));
    let thinned = by_name["count"].as_u64().unwrap();
    let span_s = (last - first) / 1_000_000 + 2;
    assert!(
        thinned >= 1 && thinned <= span_s as u64,
        "one sample per second over {span_s} s, got {thinned}"
    );

    let db = daemon.db();
    for (sysid, lat) in [(11, 382921000i64), (12, 382930000)] {
        let rows: i64 = wait_for(&format!("samples of {sysid} in SQLite"), T, || {
            let n: i64 = db
                .query_row(
                    "SELECT count(*) FROM telemetry WHERE vehicle = ?1 AND lat_e7 = ?2",
                    [sysid, lat],
                    |r| r.get(0),
                )
                .ok()?;
            (n > 0).then_some(n)
        });
        assert!(rows > 0);
    }
}

#[test]
fn a_gcs_sees_every_vehicle_and_its_command_reaches_only_the_target() {
    let (p1, p2, gcs) = (free_udp_port(), free_udp_port(), free_udp_port());
    let daemon = EdgeDaemon::start(&[
        format!("udpin:127.0.0.1:{p1}"),
        format!("udpin:127.0.0.1:{p2}"),
        format!("udpout:127.0.0.1:{gcs}"),
    ]);
    let mut v21 = vehicle(&format!("udpout:127.0.0.1:{p1}"), 21, 38.29, -122.45);
    let mut v22 = vehicle(&format!("udpout:127.0.0.1:{p2}"), 22, 38.30, -122.46);
    v21.wait_event("ready", T);
    v22.wait_event("ready", T);
    wait_for("both vehicles known to the daemon", T, || {
        (daemon.vehicle(21).is_some() && daemon.vehicle(22).is_some()).then_some(())
    });

    let report = gcs_command(gcs, &[21, 22], 22);
    assert!(report["heartbeats"]["21"].as_u64() > Some(0), "{report}");
    assert!(report["heartbeats"]["22"].as_u64() > Some(0), "{report}");
    assert!(report["positions"]["21"].is_array(), "{report}");
    assert_eq!(
        report["ack"]["from"], 22,
        "the targeted vehicle acked: {report}"
    );
    assert_eq!(report["ack"]["result"], 0);

    let cmd = v22.wait_event("command", T);
    assert_eq!(cmd["target_system"], 22);
    assert_eq!(cmd["from"], 255);

    // Now a command for 21. Each link is first-in first-out, so had the command for 22
    // leaked onto 21's link, 21 would have reported it before this one.
    let report = gcs_command(gcs, &[21], 21);
    assert_eq!(report["ack"]["from"], 21, "{report}");
    let first = v21.wait_event("command", T);
    assert_eq!(first["target_system"], 21, "vehicle 21 heard: {first}");
}

#[test]
fn garbage_on_the_serial_line_is_counted_and_a_replugged_device_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path());
    let device = pty.device.clone();
    let daemon = EdgeDaemon::start(&[format!("serial:{}:57600", device.display())]);
    let name = format!("serial:{}", device.display());
    wait_for("the serial link to open", T, || {
        let l = daemon.link_named(&name)?;
        (l["connected"] == true).then_some(())
    });

    let sent = python_json(
        "serial_noise.py",
        &[&pty.peer.display().to_string(), "31", "400"],
    );
    let good = sent["good"].as_u64().unwrap();
    let link = wait_for("every good frame decoded", T, || {
        let l = daemon.link_named(&name)?;
        (l["rx_frames"].as_u64()? >= good).then_some(l)
    });
    assert_eq!(
        link["rx_frames"].as_u64(),
        Some(good),
        "no garbage decoded as a frame"
    );
    assert!(link["crc_errors"].as_u64() >= Some(sent["corrupted"].as_u64().unwrap() / 2));
    assert!(link["bad_bytes"].as_u64() > Some(0));
    assert_eq!(link["connected"], true, "garbage never stops a link");

    // Pull the cable, plug it back in under the same name.
    pty.unplug();
    wait_for("the daemon to notice the device is gone", T, || {
        let l = daemon.link_named(&name)?;
        (l["connected"] == false).then_some(())
    });
    let pty = PtyPair::new(dir.path());
    wait_for("the serial link to reopen by itself", T, || {
        let l = daemon.link_named(&name)?;
        (l["connected"] == true).then_some(())
    });
    python_json(
        "serial_noise.py",
        &[&pty.peer.display().to_string(), "31", "50"],
    );
    wait_for("frames after the replug", T, || {
        let l = daemon.link_named(&name)?;
        (l["rx_frames"].as_u64()? >= good + 50).then_some(())
    });
    let l = daemon.link_named(&name).unwrap();
    assert!(l["reconnects"].as_u64() >= Some(1));
}

#[test]
fn a_silent_vehicle_is_reported_link_lost_and_recovers_when_heard_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, "[vehicles]\nlink_lost_after_s = 1.5\n").unwrap();
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start_with(
        &[format!("udpin:127.0.0.1:{udp}")],
        &["--config", config.to_str().unwrap()],
    );
    let connect = format!("udpout:127.0.0.1:{udp}");
    let mut v = vehicle(&connect, 71, 38.29, -122.45);
    wait_for("vehicle 71 heard", T, || {
        (daemon.vehicle(71)?["link"]["state"] == "ok").then_some(())
    });
    v.kill9();
    let lost = wait_for("vehicle 71 reported lost", T, || {
        let v = daemon.vehicle(71)?;
        (v["link"]["state"] == "lost").then_some(v)
    });
    assert!(
        lost["link"]["since_heartbeat_s"].as_f64() > Some(1.5),
        "{lost}"
    );
    let _v = vehicle(&connect, 71, 38.29, -122.45);
    wait_for("vehicle 71 back", T, || {
        (daemon.vehicle(71)?["link"]["state"] == "ok").then_some(())
    });
}
