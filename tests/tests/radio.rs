//! Five vehicles on one 57600-baud SiK radio (`peers/sik_radio.py`: the station's serial port
//! on a pty, the half-duplex air link, the ground radio's 2 KB transmit buffer), with a ground
//! station routed through the station that keeps the uplink busy. The ground radio reports its
//! buffer in RADIO_STATUS; the station paces what it writes to it, so the radio drops nothing,
//! the pilot's commands all arrive first time (ahead of the routed chatter), and the vehicles'
//! telemetry keeps coming down. (The `radio` bench runs the same scene without the reports.)

use trellis_tests::*;

const COMMANDS: usize = 20;

#[test]
fn a_station_on_a_slow_radio_paces_itself_and_every_command_arrives() {
    let run = radio::run(radio::Setup {
        report: true,
        chatty_hz: 200.0,
        commands: COMMANDS,
    });
    println!("{run:#}");
    let stats = &run["radio"];
    assert!(stats["reports"].as_u64() > Some(5), "{stats}");
    assert_eq!(
        stats["up_dropped"], 0,
        "the ground radio overflowed: {stats}"
    );
    assert!(
        run["chatty"]["requests"].as_u64() > stats["up_in"].as_u64(),
        "the chatty GCS asked for more than the radio carried, so the pace held it: {run}"
    );
    let link = &run["link"];
    assert!(link["radio_reports"].as_u64() > Some(5), "{link}");
    assert!(link["radio_pace_bytes_per_s"].as_u64().is_some(), "{link}");
    let outcomes = run["commands"].as_array().expect("commands");
    assert_eq!(outcomes.len(), COMMANDS);
    for c in outcomes {
        assert_eq!(c["outcome"], "accepted", "{c}");
        assert_eq!(c["sends"], 1, "no command was lost on the way: {c}");
    }
    // The station asks each vehicle for positions at 5 Hz; they keep arriving.
    for v in run["positions_per_s"].as_array().expect("rates") {
        assert!(
            v.as_f64() > Some(3.0),
            "a vehicle's telemetry starved: {run}"
        );
    }
}
