//! MAVProxy, the ground station field people script with, through the daemon's router.

use std::process::{Command, Stdio};
use std::time::Duration;

use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn mavproxy_through_the_router_sets_a_mode_and_arms_only_the_vehicle_it_addresses() {
    let (vehicles, gcs) = (free_udp_port(), free_udp_port());
    let daemon = EdgeDaemon::start(&[
        format!("udpin:127.0.0.1:{vehicles}"),
        format!("udpout:127.0.0.1:{gcs}"),
    ]);
    let _fleet = Proc::spawn(
        "edge-daemon sim",
        Command::new(bin("edge-daemon"))
            .args(["sim", "--vehicles", "2", "--idle"])
            .args(["--link", &format!("udpout:127.0.0.1:{vehicles}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let state = tempfile::tempdir().unwrap();
    let mut mavproxy = Proc::spawn(
        "mavproxy",
        Command::new("mavproxy.py")
            .arg(format!("--master=udpin:127.0.0.1:{gcs}"))
            .args(["--source-system=250", "--nowait"])
            .arg(format!("--state-basedir={}", state.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    mavproxy.wait_line(T, |l| l.contains("Detected vehicle 2:1"));
    mavproxy.send_line("vehicle 2");
    mavproxy.send_line("mode guided");
    mavproxy.wait_line(T, |l| l.contains("DO_SET_MODE: ACCEPTED"));
    mavproxy.send_line("arm throttle");
    mavproxy.wait_line(T, |l| l.contains("COMPONENT_ARM_DISARM: ACCEPTED"));

    let v2 = wait_for(
        "vehicle 2 armed in GUIDED, as the daemon sees it",
        T,
        || {
            let v = daemon.vehicle(2)?;
            (v["armed"] == true && v["mode"] == "GUIDED").then_some(v)
        },
    );
    assert_eq!(v2["name"], "V-02");
    let v1 = daemon.vehicle(1).expect("vehicle 1 known");
    assert_eq!(v1["armed"], false, "vehicle 1 was not addressed: {v1}");
    assert_eq!(v1["mode"], "STABILIZE");
}
