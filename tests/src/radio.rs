//! Five vehicles on one 57600-baud SiK radio, with a chatty ground station routed through the
//! station: the run that `tests/radio.rs` asserts on and the `radio` bench prints.
//!
//! The radio is `peers/sik_radio.py` (a pty for the station's serial port, the half-duplex air
//! link, the ground radio's 2 KB transmit buffer, RADIO_STATUS when `report`); the vehicles are
//! `peers/autopilot.py`; the chatty GCS (`peers/chatty_gcs.py`) asks every vehicle for
//! parameters through the station's `udpin` link, as QGroundControl refreshing a fleet does.
//! A pilot's commands go through the API one after another, each waited for.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{autopilot, free_udp_port, python, wait_for, EdgeDaemon, Proc};

const T: Duration = Duration::from_secs(90);
pub const VEHICLES: u8 = 5;

pub struct Setup {
    /// Whether the ground radio reports its buffer (RADIO_STATUS), as SiK does by default.
    pub report: bool,
    /// PARAM_REQUEST_READs a second from the chatty GCS; 0: no chatty GCS.
    pub chatty_hz: f64,
    /// Commands the pilot sends, one a second, each waited for before the next.
    pub commands: usize,
}

/// How often the pilot sends a command: the scene's pace, not a wait for anything.
const COMMAND_EVERY: Duration = Duration::from_secs(1);

/// Runs the scene; returns what it saw: the radio's counters, the station's serial link, each
/// command's outcome, latency (stored to answered, ms) and sends, and each vehicle's positions
/// a second while the commands went out.
pub fn run(setup: Setup) -> Value {
    let mut args = vec![];
    if setup.report {
        args.push("--report");
    }
    let mut radio = Proc::spawn(
        "sik radio",
        python("sik_radio.py")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let ready = radio.wait_event("ready", T);
    let pty = ready["station"]
        .as_str()
        .expect("the radio's pty")
        .to_string();
    let air = ready["vehicle_port"].as_u64().expect("the air side's port");
    let gcs_port = free_udp_port();
    let daemon = EdgeDaemon::start(&[
        format!("serial:{pty}:57600"),
        format!("udpin:127.0.0.1:{gcs_port}"),
    ]);
    let _vehicles: Vec<Proc> = (1..=VEHICLES)
        .map(|id| autopilot(&format!("udpout:127.0.0.1:{air}"), id, &["--pad", "50"]))
        .collect();
    wait_for("every vehicle's position over the radio", T, || {
        (1..=VEHICLES)
            .all(|id| {
                daemon
                    .vehicle(u64::from(id))
                    .is_some_and(|v| v["position"].is_object())
            })
            .then_some(())
    });
    let pilot = daemon.new_token("pilot", "pilot");
    if setup.report {
        wait_for("the station to hear its radio's buffer", T, || {
            serial_link(&daemon)["radio_reports"]
                .as_u64()
                .is_some_and(|n| n > 0)
                .then_some(())
        });
    }
    let targets: Vec<String> = (1..=VEHICLES).map(|v| v.to_string()).collect();
    let mut chatty = (setup.chatty_hz > 0.0).then(|| {
        let mut p = Proc::spawn(
            "chatty gcs",
            python("chatty_gcs.py")
                .args(["--connect", &format!("udpout:127.0.0.1:{gcs_port}")])
                .args(["--hz", &setup.chatty_hz.to_string()])
                .args(["--targets", &targets.join(",")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        p.wait_event("ready", T);
        p
    });

    let positions = || -> Vec<i64> {
        let db = daemon.db();
        (1..=VEHICLES)
            .map(|v| {
                db.query_row(
                    "SELECT count(*) FROM telemetry WHERE vehicle = ?1",
                    [v],
                    |r| r.get(0),
                )
                .unwrap_or(0)
            })
            .collect()
    };
    let before = positions();
    let started = Instant::now();
    let mut commands = Vec::new();
    for i in 0..setup.commands {
        let due = started + COMMAND_EVERY * i as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let vehicle = i % usize::from(VEHICLES) + 1;
        let (code, sent) = daemon.send_as(
            &pilot,
            "POST",
            &format!("/api/v1/vehicles/{vehicle}/commands"),
            &json!({ "command": "speed", "speed_mps": 4 + i % 3 }),
        );
        assert_eq!(code, 202, "{sent}");
        let id = sent["id"].as_i64().expect("a command id");
        let c = daemon.command_ended(&pilot, id);
        let ms = (c["updated_us"].as_i64().unwrap_or(0) - c["created_us"].as_i64().unwrap_or(0))
            as f64
            / 1e3;
        commands.push(json!({
            "vehicle": vehicle,
            "outcome": c["outcome"],
            "sends": c["sends"],
            "latency_ms": ms,
        }));
    }
    let secs = started.elapsed().as_secs_f64();
    let after = positions();
    let rates: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / secs)
        .collect();
    let chatty = chatty.as_mut().map_or(Value::Null, |p| {
        p.send_line("stop");
        p.wait_event("sent", T)
    });
    radio.send_line("stats");
    let stats = radio.wait_event("stats", T);
    let link = serial_link(&daemon);
    json!({
        "radio": stats,
        "link": link,
        "commands": commands,
        "seconds": secs,
        "positions_per_s": rates,
        "chatty": chatty,
    })
}

/// The station's view of its serial link to the radio.
fn serial_link(daemon: &EdgeDaemon) -> Value {
    daemon.get("/api/v1/links")["links"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|l| {
                    l["endpoint"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("serial:"))
                })
                .cloned()
        })
        .unwrap_or(Value::Null)
}

/// The median, 95th percentile and worst of `values`.
pub fn percentiles(values: &mut [f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), values[values.len() - 1])
}
