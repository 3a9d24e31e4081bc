//! TCP links (both directions, with reconnect), the CLI's contract, and systemd notification.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

fn vehicle(connect: &str, sysid: u8) -> Proc {
    Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", connect, "--sysid", &sysid.to_string()])
            .args(["--lat", "38.29", "--lon", "-122.45"])
            .stdout(Stdio::piped()),
    )
}

#[test]
fn tcpin_clients_each_become_a_link_and_reach_each_other() {
    let port = free_tcp_port();
    let daemon = EdgeDaemon::start(&[format!("tcpin:127.0.0.1:{port}")]);
    let _v = vehicle(&format!("tcp:127.0.0.1:{port}"), 51);
    wait_for("the TCP vehicle", T, || daemon.vehicle(51));
    let report = gcs(&format!("tcp:127.0.0.1:{port}"), &[51], Some(51));
    assert_eq!(report["ack"]["from"], 51, "{report}");
    let links = daemon.get("/api/v1/links");
    let clients = links["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"].as_str().unwrap().starts_with("tcpin:"))
        .count();
    assert!(clients >= 1, "{links}");
}

#[test]
fn a_tcp_link_connects_when_the_peer_comes_up_and_reconnects_after_it_restarts() {
    let port = free_tcp_port();
    // The daemon first: nobody listens yet, so the link retries with backoff.
    let daemon = EdgeDaemon::start(&[format!("tcp:127.0.0.1:{port}")]);
    let name = format!("tcp:127.0.0.1:{port}");
    wait_for("a failed connection attempt", T, || {
        (daemon.link_named(&name)?["reconnects"].as_u64()? >= 1).then_some(())
    });
    let mut v = vehicle(&format!("tcpin:127.0.0.1:{port}"), 52);
    wait_for("the vehicle behind the TCP server", T, || {
        daemon.vehicle(52)
    });

    v.kill9();
    wait_for("the link to notice the peer is gone", T, || {
        (daemon.link_named(&name)?["connected"] == false).then_some(())
    });
    let before = daemon.vehicle(52).unwrap()["samples"].as_u64().unwrap();
    let _v = vehicle(&format!("tcpin:127.0.0.1:{port}"), 52);
    wait_for("samples again after the peer restarted", T, || {
        (daemon.vehicle(52)?["samples"].as_u64()? > before).then_some(())
    });
}

#[test]
fn the_cli_prints_json_and_its_exit_codes_mean_something() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let _v = vehicle(&format!("udpout:127.0.0.1:{udp}"), 61);
    wait_for("the vehicle", T, || daemon.vehicle(61));

    let out = Command::new(bin("edge-daemon"))
        .args(["vehicles", "--json", "--api", &daemon.api])
        .env("TRELLIS_TOKEN", &daemon.token)
        .output()
        .unwrap();
    assert!(out.status.success());
    let vehicles: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(vehicles[0]["sysid"], 61);

    let out = Command::new(bin("edge-daemon"))
        .args(["status", "--json", "--api", &daemon.api])
        .args(["--token", &daemon.token])
        .output()
        .unwrap();
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["health"]["status"], "ok");
    assert_eq!(status["links"][0]["connected"], true);

    let refused = Command::new(bin("edge-daemon"))
        .args(["vehicles", "--api", &daemon.api])
        .env_remove("TRELLIS_TOKEN")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(4), "no token: refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("token create"));

    let unreachable = Command::new(bin("edge-daemon"))
        .args([
            "status",
            "--api",
            &format!("http://127.0.0.1:{}", free_tcp_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));

    let bad_endpoint = Command::new(bin("edge-daemon"))
        .args(["serve", "--link", "/dev/ttyUSB0"])
        .output()
        .unwrap();
    assert_eq!(bad_endpoint.status.code(), Some(2), "usage error");
    assert!(String::from_utf8_lossy(&bad_endpoint.stderr).contains("expected KIND:ADDRESS"));

    let missing = Command::new(bin("edge-daemon"))
        .args(["serve", "--config", "/nonexistent/edge.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/edge.toml"));
}

#[test]
fn the_daemon_tells_systemd_it_is_ready_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(T)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let _daemon = Proc::spawn(
        "edge-daemon",
        Command::new(bin("edge-daemon"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args(["--api-listen", &format!("127.0.0.1:{}", free_tcp_port())])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            .stdin(Stdio::null()),
    );
    expect_ready_and_watchdog(&socket);
}

#[test]
fn the_relay_tells_systemd_it_is_ready_and_feeds_the_watchdog() {
    let relay = CloudRelay::new();
    let socket_path = relay.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(T)).unwrap();
    let _proc = Proc::spawn(
        "cloud-relay",
        Command::new(bin("cloud-relay"))
            .arg("--config")
            .arg(&relay.config)
            .arg("serve")
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            .stdin(Stdio::null()),
    );
    expect_ready_and_watchdog(&socket);
}

/// Reads notifications until READY=1 and two WATCHDOG=1 have arrived (each read is bounded
/// by the socket's timeout).
fn expect_ready_and_watchdog(socket: &UnixDatagram) {
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    for _ in 0..10 {
        let n = socket
            .recv(&mut buf)
            .expect("a notification before the timeout");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
        if seen.contains("READY=1") && seen.matches("WATCHDOG=1").count() >= 2 {
            return;
        }
    }
    panic!("expected READY=1 and WATCHDOG=1 twice, got:\n{seen}");
}
