//! Whole flights through the public API, plus peeks at the state where a test needs one.

#[allow(deprecated)]
use mavlink::dialects::ardupilotmega::SET_MODE_DATA;
use mavlink::dialects::ardupilotmega::{
    MavAutopilot, MavCmd, MavModeFlag, MavParamType, MavResult, MavState, MavType,
    PositionTargetTypemask, ATTITUDE_DATA, AUTOPILOT_VERSION_DATA, COMMAND_LONG_DATA,
    GLOBAL_POSITION_INT_DATA, GPS_RAW_INT_DATA, HEARTBEAT_DATA, HOME_POSITION_DATA,
    MISSION_ITEM_REACHED_DATA, PARAM_REQUEST_LIST_DATA, PARAM_REQUEST_READ_DATA, PARAM_SET_DATA,
    PARAM_VALUE_DATA, SET_POSITION_TARGET_GLOBAL_INT_DATA, SYS_STATUS_DATA, VFR_HUD_DATA,
};
use mavlink::types::CharArray;
use mavlink::{MavlinkVersion, Message, MessageData};

use super::battery::{Battery, CELLS};
use super::telemetry::deg_e7;
use super::*;

const HOME: LatLon = LatLon {
    lat: 44.8378,
    lon: -0.5792,
};
const DT: f64 = 0.02;
const GCS_SYS: u8 = 255;
const GCS_COMP: u8 = 190;

/// A 100 m × 60 m block starting 40 m east and 20 m north of home.
fn field() -> Vec<LatLon> {
    [(40.0, 20.0), (140.0, 20.0), (140.0, 80.0), (40.0, 80.0)]
        .iter()
        .map(|&(e, n)| survey::from_local_m(HOME, e, n))
        .collect()
}

fn copter(auto_fly: bool) -> Copter {
    let mut cfg = CopterConfig::new(7, HOME, field());
    cfg.auto_fly = auto_fly;
    cfg.seed = 42;
    Copter::new(cfg)
}

/// Steps the copter for `seconds`, logging everything it sends.
fn run(c: &mut Copter, seconds: f64, log: &mut Vec<MavMessage>) {
    let steps = (seconds / DT).round() as u64;
    for _ in 0..steps {
        let unix_us = 1_750_000_000_000_000 + (c.time_s * 1e6) as u64;
        c.step(DT, unix_us, log);
    }
}

/// Runs until `done` or `max_s` simulated seconds; returns the time it took.
fn run_until(
    c: &mut Copter,
    max_s: f64,
    log: &mut Vec<MavMessage>,
    mut done: impl FnMut(&Copter) -> bool,
) -> Option<f64> {
    let mut t = 0.0;
    while t < max_s {
        if done(c) {
            return Some(t);
        }
        run(c, DT, log);
        t += DT;
    }
    None
}

fn send(c: &mut Copter, msg: MavMessage, log: &mut Vec<MavMessage>) -> Vec<MavMessage> {
    let mut out = Vec::new();
    c.handle(GCS_SYS, GCS_COMP, &msg, &mut out);
    log.extend(out.iter().cloned());
    out
}

fn command(cmd: MavCmd, p: [f32; 7]) -> MavMessage {
    MavMessage::COMMAND_LONG(COMMAND_LONG_DATA {
        param1: p[0],
        param2: p[1],
        param3: p[2],
        param4: p[3],
        param5: p[4],
        param6: p[5],
        param7: p[6],
        command: cmd,
        target_system: 7,
        target_component: 1,
        confirmation: 0,
    })
}

fn ack_result(out: &[MavMessage], cmd: MavCmd) -> Option<MavResult> {
    out.iter().find_map(|m| match m {
        MavMessage::COMMAND_ACK(a) if a.command == cmd => Some(a.result),
        _ => None,
    })
}

fn set_mode(c: &mut Copter, mode: FlightMode, log: &mut Vec<MavMessage>) -> Option<MavResult> {
    let out = send(
        c,
        command(
            MavCmd::MAV_CMD_DO_SET_MODE,
            [1.0, mode.number() as f32, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        log,
    );
    ack_result(&out, MavCmd::MAV_CMD_DO_SET_MODE)
}

fn arm(c: &mut Copter, log: &mut Vec<MavMessage>) -> Option<MavResult> {
    let out = send(
        c,
        command(
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        log,
    );
    ack_result(&out, MavCmd::MAV_CMD_COMPONENT_ARM_DISARM)
}

fn takeoff(c: &mut Copter, alt: f32, log: &mut Vec<MavMessage>) -> Option<MavResult> {
    let out = send(
        c,
        command(
            MavCmd::MAV_CMD_NAV_TAKEOFF,
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, alt],
        ),
        log,
    );
    ack_result(&out, MavCmd::MAV_CMD_NAV_TAKEOFF)
}

/// GUIDED, arm, take off to `alt` and wait until there.
fn launch(c: &mut Copter, alt: f32, log: &mut Vec<MavMessage>) {
    assert_eq!(
        set_mode(c, FlightMode::Guided, log),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    assert_eq!(arm(c, log), Some(MavResult::MAV_RESULT_ACCEPTED));
    assert_eq!(takeoff(c, alt, log), Some(MavResult::MAV_RESULT_ACCEPTED));
    let reached = run_until(c, 60.0, log, |c| {
        (c.altitude_m() - f64::from(alt)).abs() < 0.2
    });
    assert!(
        reached.is_some(),
        "never reached {alt} m: {}",
        c.altitude_m()
    );
}

fn texts(log: &[MavMessage]) -> Vec<String> {
    log.iter()
        .filter_map(|m| match m {
            MavMessage::STATUSTEXT(t) => t.text.to_str().ok().map(str::to_owned),
            _ => None,
        })
        .collect()
}

fn count(log: &[MavMessage], id: u32) -> usize {
    log.iter().filter(|m| m.message_id() == id).count()
}

/// Every message serialises as MAVLink 2 and parses back to itself.
fn assert_serialises(log: &[MavMessage]) {
    let mut buf = [0u8; 280];
    for m in log {
        let n = m.ser(MavlinkVersion::V2, &mut buf);
        let back = MavMessage::parse(MavlinkVersion::V2, m.message_id(), &buf[..n]);
        assert_eq!(back.as_ref().ok(), Some(m), "{m:?} did not round-trip");
    }
}

#[test]
fn auto_fly_surveys_for_ten_minutes() {
    let mut c = copter(true);
    let mut log = Vec::new();
    let mut max_alt: f64 = 0.0;
    let mut saw_armed = false;
    let start_pct = c.battery_pct();
    for _ in 0..600 {
        run(&mut c, 1.0, &mut log);
        max_alt = max_alt.max(c.altitude_m());
        saw_armed |= c.armed();
    }
    assert!(saw_armed);
    assert!((29.0..=31.0).contains(&max_alt), "max alt {max_alt}");
    let reached = count(&log, MISSION_ITEM_REACHED_DATA::ID);
    assert!(reached >= 5, "{reached} waypoints reached");
    assert!(c.battery_pct() < start_pct || texts(&log).iter().any(|t| t == "Battery swap"));
    let heartbeats = count(&log, HEARTBEAT_DATA::ID);
    assert!((599..=601).contains(&heartbeats), "{heartbeats} heartbeats");
    let positions = count(&log, GLOBAL_POSITION_INT_DATA::ID);
    assert!((5990..=6010).contains(&positions), "{positions} positions");
    let attitudes = count(&log, ATTITUDE_DATA::ID);
    assert!((5990..=6010).contains(&attitudes), "{attitudes} attitudes");
    let huds = count(&log, VFR_HUD_DATA::ID);
    assert!((2390..=2410).contains(&huds), "{huds} VFR_HUD");
    let gps = count(&log, GPS_RAW_INT_DATA::ID);
    assert!((2990..=3010).contains(&gps), "{gps} GPS_RAW_INT");
    let sys = count(&log, SYS_STATUS_DATA::ID);
    assert!((1198..=1202).contains(&sys), "{sys} SYS_STATUS");
    let homes = count(&log, HOME_POSITION_DATA::ID);
    assert!((60..=64).contains(&homes), "{homes} HOME_POSITION");
    let t = texts(&log);
    for expected in [
        "Arming motors",
        "Mission: 1 WP",
        "Reached command #1",
        "Mission: 2 WP",
    ] {
        assert!(t.iter().any(|s| s == expected), "no {expected:?} in {t:?}");
    }
    // Battery telemetry fell while flying.
    let remaining: Vec<i8> = log
        .iter()
        .filter_map(|m| match m {
            MavMessage::SYS_STATUS(s) => Some(s.battery_remaining),
            _ => None,
        })
        .collect();
    assert_eq!(remaining.first(), Some(&100));
    assert!(remaining.iter().any(|&r| r < 90), "battery never fell");
    // Survey speed is respected.
    let max_speed = log
        .iter()
        .filter_map(|m| match m {
            MavMessage::VFR_HUD(h) => Some(h.groundspeed),
            _ => None,
        })
        .fold(0.0_f32, f32::max);
    assert!((5.5..=6.3).contains(&max_speed), "max speed {max_speed}");
    assert_serialises(&log);
}

#[test]
fn auto_fly_completes_the_survey_lands_swaps_and_goes_again() {
    let mut c = copter(true);
    let mut log = Vec::new();
    let n = c.mission.waypoints.len();
    assert!(n >= 24, "{n} waypoints");
    // Survey done, back home and disarmed.
    let landed = run_until(&mut c, 1200.0, &mut log, |c| {
        c.mission.complete && !c.armed() && c.kin.landed
    });
    assert!(landed.is_some(), "never finished the survey");
    let reached = count(&log, MISSION_ITEM_REACHED_DATA::ID);
    assert_eq!(reached, n);
    assert!(survey::distance_m(c.position(), HOME) < 2.0);
    assert!(texts(&log).iter().any(|t| t == "Disarming motors"));
    // Battery swap on the ground, then it launches again and restarts at item 1.
    let relaunched = run_until(&mut c, 40.0, &mut log, |c| c.armed());
    assert!(relaunched.is_some());
    assert!(texts(&log).iter().any(|t| t == "Battery swap"));
    assert!(c.battery_pct() > 99.0);
    run(&mut c, 40.0, &mut log);
    assert_eq!(c.mode(), FlightMode::Auto.number());
    assert!(c.mission.current <= 3);
    assert_serialises(&log);
}

#[test]
fn heartbeat_reports_mode_and_arming_like_arducopter() {
    let mut c = copter(false);
    let mut log = Vec::new();
    run(&mut c, 1.0, &mut log);
    let hb = |log: &[MavMessage]| {
        log.iter()
            .rev()
            .find_map(|m| match m {
                MavMessage::HEARTBEAT(h) => Some(h.clone()),
                _ => None,
            })
            .expect("heartbeat")
    };
    let h = hb(&log);
    assert_eq!(h.custom_mode, 0);
    assert_eq!(h.mavtype, MavType::MAV_TYPE_QUADROTOR);
    assert_eq!(h.autopilot, MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA);
    assert_eq!(h.system_status, MavState::MAV_STATE_STANDBY);
    assert_eq!(h.mavlink_version, 3);
    assert_eq!(h.base_mode.bits(), 81);
    set_mode(&mut c, FlightMode::Guided, &mut log);
    arm(&mut c, &mut log);
    takeoff(&mut c, 10.0, &mut log);
    run(&mut c, 3.0, &mut log);
    let h = hb(&log);
    assert_eq!(h.custom_mode, 4);
    assert_eq!(h.base_mode.bits(), 217);
    assert_eq!(h.system_status, MavState::MAV_STATE_ACTIVE);
    assert_serialises(&log);
}

#[test]
fn guided_takeoff_reposition_and_rtl() {
    let mut c = copter(false);
    let mut log = Vec::new();
    run(&mut c, 2.0, &mut log);
    assert_eq!(c.altitude_m(), 0.0);
    // Takeoff needs GUIDED and armed.
    assert_eq!(
        takeoff(&mut c, 20.0, &mut log),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    assert_eq!(
        set_mode(&mut c, FlightMode::Guided, &mut log),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    assert_eq!(
        takeoff(&mut c, 20.0, &mut log),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_ACCEPTED));
    assert!(c.armed());
    assert!(texts(&log).iter().any(|t| t == "Arming motors"));
    assert_eq!(
        takeoff(&mut c, 20.0, &mut log),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    // Climbs at about 2.5 m/s.
    let t = run_until(&mut c, 30.0, &mut log, |c| c.altitude_m() > 19.8).expect("climbs");
    assert!((7.5..=12.0).contains(&t), "took {t} s to 20 m");
    run(&mut c, 3.0, &mut log);
    assert!((c.altitude_m() - 20.0).abs() < 0.2);
    // Already flying: a second takeoff fails.
    assert_eq!(
        takeoff(&mut c, 30.0, &mut log),
        Some(MavResult::MAV_RESULT_FAILED)
    );

    // Fly 150 m north-east with DO_REPOSITION.
    let target = survey::from_local_m(HOME, 100.0, 110.0);
    let mut reposition = command(
        MavCmd::MAV_CMD_DO_REPOSITION,
        [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 25.0],
    );
    if let MavMessage::COMMAND_LONG(ref mut cl) = reposition {
        cl.param5 = target.lat as f32;
        cl.param6 = target.lon as f32;
    }
    let out = send(&mut c, reposition, &mut log);
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_DO_REPOSITION),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    let arrived = run_until(&mut c, 60.0, &mut log, |c| {
        survey::distance_m(c.position(), target) < 1.0 && (c.altitude_m() - 25.0).abs() < 0.3
    });
    assert!(arrived.is_some(), "never reached the reposition target");

    // And a GUIDED position target.
    let target2 = survey::from_local_m(HOME, 60.0, 30.0);
    let ignore_velocity_and_more = PositionTargetTypemask::from_bits_retain(0b0000_1111_1111_1000);
    send(
        &mut c,
        MavMessage::SET_POSITION_TARGET_GLOBAL_INT(SET_POSITION_TARGET_GLOBAL_INT_DATA {
            lat_int: deg_e7(target2.lat),
            lon_int: deg_e7(target2.lon),
            alt: 18.0,
            type_mask: ignore_velocity_and_more,
            target_system: 7,
            target_component: 1,
            coordinate_frame:
                mavlink::dialects::ardupilotmega::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT,
            ..SET_POSITION_TARGET_GLOBAL_INT_DATA::default()
        }),
        &mut log,
    );
    let arrived = run_until(&mut c, 60.0, &mut log, |c| {
        survey::distance_m(c.position(), target2) < 1.0 && (c.altitude_m() - 18.0).abs() < 0.3
    });
    assert!(arrived.is_some(), "never reached the position target");

    // RTL: returns home, lands, disarms; ArduCopter stays in RTL.
    let out = send(
        &mut c,
        command(MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH, [0.0; 7]),
        &mut log,
    );
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    assert_eq!(c.mode(), 6);
    let mut max_alt_in_rtl: f64 = 0.0;
    let landed = run_until(&mut c, 180.0, &mut log, |c| {
        max_alt_in_rtl = max_alt_in_rtl.max(c.altitude_m());
        !c.armed()
    });
    assert!(landed.is_some(), "RTL never landed");
    // 18 m is above RTL_ALT (15 m): it came back at its own altitude.
    assert!((17.7..18.5).contains(&max_alt_in_rtl), "{max_alt_in_rtl}");
    assert!(survey::distance_m(c.position(), HOME) < 2.0);
    assert_eq!(c.altitude_m(), 0.0);
    assert_eq!(c.mode(), 6);
    assert!(texts(&log).iter().any(|t| t == "Disarming motors"));
    assert_serialises(&log);
}

#[test]
fn rtl_climbs_to_rtl_alt_when_low() {
    let mut c = copter(false);
    let mut log = Vec::new();
    launch(&mut c, 5.0, &mut log);
    set_mode(&mut c, FlightMode::Rtl, &mut log);
    let climbed = run_until(&mut c, 30.0, &mut log, |c| c.altitude_m() > 14.4);
    assert!(climbed.is_some());
    let landed = run_until(&mut c, 120.0, &mut log, |c| !c.armed());
    assert!(landed.is_some());
}

#[test]
fn disarm_in_flight_refused_unless_forced() {
    let mut c = copter(false);
    let mut log = Vec::new();
    launch(&mut c, 15.0, &mut log);
    let disarm = |force: f32| {
        command(
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [0.0, force, 0.0, 0.0, 0.0, 0.0, 0.0],
        )
    };
    let out = send(&mut c, disarm(0.0), &mut log);
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_COMPONENT_ARM_DISARM),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    assert!(c.armed());
    let out = send(&mut c, disarm(21196.0), &mut log);
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_COMPONENT_ARM_DISARM),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    assert!(!c.armed());
    // Motors off at 15 m: it falls in under 2.5 s.
    let fell = run_until(&mut c, 5.0, &mut log, |c| c.altitude_m() == 0.0);
    assert!(fell.is_some_and(|t| t < 2.5), "{fell:?}");
    assert_serialises(&log);
}

#[test]
fn arming_rules() {
    let mut c = copter(false);
    let mut log = Vec::new();
    // AUTO is not armable.
    assert_eq!(
        set_mode(&mut c, FlightMode::Auto, &mut log),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_FAILED));
    assert!(texts(&log).iter().any(|t| t == "Arm: Mode not armable"));
    // Armed on the ground, AUTO is refused: the mission has no takeoff item.
    set_mode(&mut c, FlightMode::Loiter, &mut log);
    assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_ACCEPTED));
    assert_eq!(
        set_mode(&mut c, FlightMode::Auto, &mut log),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    assert!(texts(&log).iter().any(|t| t == "Auto: Missing Takeoff Cmd"));
    // Left armed on the ground, it disarms itself after DISARM_DELAY (10 s).
    let t = run_until(&mut c, 20.0, &mut log, |c| !c.armed()).expect("auto-disarm");
    assert!((9.9..=10.1).contains(&t), "{t}");
    assert_serialises(&log);
}

#[test]
fn unknown_commands_and_modes() {
    let mut c = copter(false);
    let mut log = Vec::new();
    let out = send(
        &mut c,
        command(MavCmd::MAV_CMD_PREFLIGHT_CALIBRATION, [0.0; 7]),
        &mut log,
    );
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_PREFLIGHT_CALIBRATION),
        Some(MavResult::MAV_RESULT_UNSUPPORTED)
    );
    // Exactly one ack per COMMAND_LONG.
    assert_eq!(
        out.iter()
            .filter(|m| matches!(m, MavMessage::COMMAND_ACK(_)))
            .count(),
        1
    );
    // ACRO exists in ArduCopter but is not simulated; 99 is no mode at all.
    let acro = send(
        &mut c,
        command(
            MavCmd::MAV_CMD_DO_SET_MODE,
            [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        &mut log,
    );
    assert_eq!(
        ack_result(&acro, MavCmd::MAV_CMD_DO_SET_MODE),
        Some(MavResult::MAV_RESULT_UNSUPPORTED)
    );
    let bad = send(
        &mut c,
        command(
            MavCmd::MAV_CMD_DO_SET_MODE,
            [1.0, 99.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        &mut log,
    );
    assert_eq!(
        ack_result(&bad, MavCmd::MAV_CMD_DO_SET_MODE),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    // Without the custom-mode flag ArduPilot does not know what is meant.
    let no_custom = send(
        &mut c,
        command(
            MavCmd::MAV_CMD_DO_SET_MODE,
            [0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        &mut log,
    );
    assert_eq!(
        ack_result(&no_custom, MavCmd::MAV_CMD_DO_SET_MODE),
        Some(MavResult::MAV_RESULT_DENIED)
    );
    assert_eq!(c.mode(), 0);
    // The SET_MODE message is acked with a COMMAND_ACK for DO_SET_MODE.
    #[allow(deprecated)]
    let set_mode_msg = MavMessage::SET_MODE(SET_MODE_DATA {
        custom_mode: 5,
        target_system: 7,
        base_mode: MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
    });
    let out = send(&mut c, set_mode_msg, &mut log);
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_DO_SET_MODE),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    assert_eq!(c.mode(), 5);
    // Speed changes need a positive speed.
    let out = send(
        &mut c,
        command(
            MavCmd::MAV_CMD_DO_CHANGE_SPEED,
            [1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        &mut log,
    );
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_DO_CHANGE_SPEED),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    assert_serialises(&log);
}

#[test]
fn battery_failsafe_triggers_rtl() {
    let mut c = copter(false);
    let mut log = Vec::new();
    launch(&mut c, 20.0, &mut log);
    // Fly out, then pretend most of the pack is gone.
    let out_there = survey::from_local_m(HOME, 80.0, 50.0);
    let mut reposition = command(
        MavCmd::MAV_CMD_DO_REPOSITION,
        [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 20.0],
    );
    if let MavMessage::COMMAND_LONG(ref mut cl) = reposition {
        cl.param5 = out_there.lat as f32;
        cl.param6 = out_there.lon as f32;
    }
    send(&mut c, reposition, &mut log);
    run(&mut c, 20.0, &mut log);
    c.battery.consumed_mah = 3700.0;
    let t = run_until(&mut c, 30.0, &mut log, |c| c.mode() == 6).expect("failsafe RTL");
    assert!(t < 10.0);
    assert!(c.battery_pct() <= 25.0);
    let t_all = texts(&log);
    assert!(
        t_all
            .iter()
            .any(|t| t.starts_with("Battery 1 is low ") && t.ends_with(" mAh")),
        "{t_all:?}"
    );
    // System status goes CRITICAL while the failsafe is active.
    run(&mut c, 1.5, &mut log);
    assert!(log.iter().any(
        |m| matches!(m, MavMessage::HEARTBEAT(h) if h.system_status == MavState::MAV_STATE_CRITICAL)
    ));
    let landed = run_until(&mut c, 120.0, &mut log, |c| !c.armed());
    assert!(landed.is_some());
    assert!(survey::distance_m(c.position(), HOME) < 2.0);
    // The failsafe is latched: re-arming is refused until the battery is replaced.
    set_mode(&mut c, FlightMode::Guided, &mut log);
    assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_FAILED));
    assert!(texts(&log).iter().any(|t| t == "PreArm: Battery failsafe"));
    assert_serialises(&log);
}

#[test]
fn battery_voltage_and_cells_are_plausible() {
    let mut c = copter(false);
    let mut log = Vec::new();
    run(&mut c, 1.0, &mut log);
    let status = log
        .iter()
        .find_map(|m| match m {
            MavMessage::BATTERY_STATUS(b) => Some(b.clone()),
            _ => None,
        })
        .expect("battery status");
    assert!(
        status.voltages[..6]
            .iter()
            .all(|&v| (4150..=4210).contains(&v)),
        "{:?}",
        status.voltages
    );
    assert!(status.voltages[6..].iter().all(|&v| v == u16::MAX));
    assert_eq!(status.temperature, i16::MAX);
    assert_eq!(status.battery_remaining, 100);
    // Hover current and sag.
    launch(&mut c, 10.0, &mut log);
    run(&mut c, 5.0, &mut log);
    let cap = c.capacity_mah();
    let current = c.battery.current_a;
    assert!((16.0..=21.0).contains(&current), "{current} A");
    let loaded = c.battery.voltage(cap);
    let resting = CELLS as f64 * Battery::resting_cell_v(c.battery.state_of_charge(cap));
    assert!(
        resting - loaded > 0.25 && resting - loaded < 0.6,
        "sag {}",
        resting - loaded
    );
    // Empty is about 21 V, full 25.2 V.
    assert!((Battery::resting_cell_v(0.0) * 6.0 - 21.0).abs() < 0.01);
    assert!((Battery::resting_cell_v(1.0) * 6.0 - 25.2).abs() < 0.01);
    assert_serialises(&log);
}

#[test]
fn parameters() {
    let mut c = copter(false);
    let mut log = Vec::new();
    let out = send(
        &mut c,
        MavMessage::PARAM_REQUEST_LIST(PARAM_REQUEST_LIST_DATA {
            target_system: 7,
            target_component: 1,
        }),
        &mut log,
    );
    let values: Vec<&PARAM_VALUE_DATA> = out
        .iter()
        .filter_map(|m| match m {
            MavMessage::PARAM_VALUE(v) => Some(v),
            _ => None,
        })
        .collect();
    assert!(values.len() >= 30);
    let n = values.len();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(usize::from(v.param_count), n);
        assert_eq!(usize::from(v.param_index), i);
    }
    let find = |name: &str| {
        values
            .iter()
            .find(|v| v.param_id.to_str() == Ok(name))
            .copied()
    };
    assert_eq!(find("SYSID_THISMAV").map(|v| v.param_value), Some(7.0));
    assert_eq!(
        find("BATT_CAPACITY").map(|v| v.param_type),
        Some(MavParamType::MAV_PARAM_TYPE_INT32)
    );
    assert_eq!(find("WPNAV_SPEED").map(|v| v.param_value), Some(600.0));

    // Read by name and by index.
    let read = |c: &mut Copter, log: &mut Vec<MavMessage>, name: &str, index: i16| {
        send(
            c,
            MavMessage::PARAM_REQUEST_READ(PARAM_REQUEST_READ_DATA {
                param_index: index,
                target_system: 7,
                target_component: 1,
                param_id: CharArray::from(name),
            }),
            log,
        )
    };
    let out = read(&mut c, &mut log, "RTL_ALT", -1);
    assert!(matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_value == 1500.0));
    let out = read(&mut c, &mut log, "", 0);
    assert!(matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_index == 0));
    assert!(read(&mut c, &mut log, "NO_SUCH_PARAM", -1).is_empty());

    // Set: echoed, integer types rounded, unknown names ignored.
    let set = |c: &mut Copter, log: &mut Vec<MavMessage>, name: &str, value: f32| {
        send(
            c,
            MavMessage::PARAM_SET(PARAM_SET_DATA {
                param_value: value,
                target_system: 7,
                target_component: 1,
                param_id: CharArray::from(name),
                param_type: MavParamType::MAV_PARAM_TYPE_REAL32,
            }),
            log,
        )
    };
    let out = set(&mut c, &mut log, "WPNAV_SPEED", 800.0);
    assert!(
        matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_value == 800.0 && usize::from(v.param_count) == n)
    );
    let out = set(&mut c, &mut log, "RTL_ALT", 2000.4);
    assert!(matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_value == 2000.0));
    assert!(set(&mut c, &mut log, "NO_SUCH_PARAM", 1.0).is_empty());

    // WPNAV_SPEED 8 m/s is now the survey speed.
    launch(&mut c, 30.0, &mut log);
    assert_eq!(
        set_mode(&mut c, FlightMode::Auto, &mut log),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    let mut max_speed: f64 = 0.0;
    run_until(&mut c, 120.0, &mut log, |c| {
        max_speed = max_speed.max(c.kin.ground_speed());
        false
    });
    assert!((7.5..=8.2).contains(&max_speed), "{max_speed}");
    assert_serialises(&log);
}

#[test]
fn stream_rates_follow_params_and_message_interval() {
    let mut c = copter(false);
    let mut log = Vec::new();
    let out = send(
        &mut c,
        command(
            MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL,
            [
                GLOBAL_POSITION_INT_DATA::ID as f32,
                50_000.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
        ),
        &mut log,
    );
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL),
        Some(MavResult::MAV_RESULT_ACCEPTED)
    );
    let mut window = Vec::new();
    run(&mut c, 10.0, &mut window);
    let n = count(&window, GLOBAL_POSITION_INT_DATA::ID);
    assert!((199..=201).contains(&n), "{n} at 20 Hz");
    // -1 disables a stream.
    send(
        &mut c,
        command(
            MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL,
            [ATTITUDE_DATA::ID as f32, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        &mut log,
    );
    let mut window = Vec::new();
    run(&mut c, 5.0, &mut window);
    assert_eq!(count(&window, ATTITUDE_DATA::ID), 0);
    // REQUEST_MESSAGE: ack, then the message.
    let out = send(
        &mut c,
        command(
            MavCmd::MAV_CMD_REQUEST_MESSAGE,
            [
                AUTOPILOT_VERSION_DATA::ID as f32,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
        ),
        &mut log,
    );
    assert!(matches!(
        out.as_slice(),
        [MavMessage::COMMAND_ACK(a), MavMessage::AUTOPILOT_VERSION(v)]
            if a.result == MavResult::MAV_RESULT_ACCEPTED && v.flight_sw_version >> 24 == 4
    ));
    let out = send(
        &mut c,
        command(
            MavCmd::MAV_CMD_REQUEST_MESSAGE,
            [9999.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        &mut log,
    );
    assert_eq!(
        ack_result(&out, MavCmd::MAV_CMD_REQUEST_MESSAGE),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    log.extend(window);
    assert_serialises(&log);
}

#[test]
fn gcs_failsafe_when_enabled() {
    let mut c = copter(false);
    let mut log = Vec::new();
    let hb = MavMessage::HEARTBEAT(HEARTBEAT_DATA {
        mavtype: MavType::MAV_TYPE_GCS,
        autopilot: MavAutopilot::MAV_AUTOPILOT_INVALID,
        ..HEARTBEAT_DATA::default()
    });
    send(
        &mut c,
        MavMessage::PARAM_SET(PARAM_SET_DATA {
            param_value: 1.0,
            target_system: 7,
            target_component: 1,
            param_id: CharArray::from("FS_GCS_ENABLE"),
            param_type: MavParamType::MAV_PARAM_TYPE_INT8,
        }),
        &mut log,
    );
    send(&mut c, hb.clone(), &mut log);
    launch(&mut c, 10.0, &mut log);
    // No more heartbeats: after FS_GCS_TIMEOUT it returns.
    let t = run_until(&mut c, 20.0, &mut log, |c| c.mode() == 6);
    assert!(t.is_some());
    assert!(texts(&log).iter().any(|t| t == "GCS Failsafe On"));
    send(&mut c, hb, &mut log);
    run(&mut c, 0.1, &mut log);
    assert!(texts(&log).iter().any(|t| t == "GCS Failsafe Cleared"));
}

#[test]
fn sysid_enforce_ignores_other_senders() {
    let mut c = copter(false);
    let mut log = Vec::new();
    send(
        &mut c,
        MavMessage::PARAM_SET(PARAM_SET_DATA {
            param_value: 1.0,
            target_system: 7,
            target_component: 1,
            param_id: CharArray::from("SYSID_ENFORCE"),
            param_type: MavParamType::MAV_PARAM_TYPE_INT8,
        }),
        &mut log,
    );
    let mut out = Vec::new();
    c.handle(
        42,
        1,
        &command(
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
        &mut out,
    );
    assert!(out.is_empty());
    assert!(!c.armed());
    assert_eq!(c.last_sender, Some((GCS_SYS, GCS_COMP)));
}

#[test]
fn same_seed_same_run() {
    let mut a = copter(true);
    let mut b = copter(true);
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    run(&mut a, 60.0, &mut la);
    run(&mut b, 60.0, &mut lb);
    assert_eq!(la, lb);
    let mut cfg = CopterConfig::new(7, HOME, field());
    cfg.seed = 43;
    let mut other = Copter::new(cfg);
    let mut lo = Vec::new();
    run(&mut other, 60.0, &mut lo);
    assert_ne!(la, lo);
}

#[test]
fn degenerate_field_still_behaves() {
    let mut cfg = CopterConfig::new(3, HOME, vec![HOME]);
    cfg.telemetry_hz = f64::NAN;
    let mut c = Copter::new(cfg);
    let mut log = Vec::new();
    run(&mut c, 60.0, &mut log);
    assert!(!c.armed());
    assert!(c.mission.waypoints.is_empty());
    assert_eq!(
        set_mode(&mut c, FlightMode::Auto, &mut log),
        Some(MavResult::MAV_RESULT_FAILED)
    );
    // NaN telemetry_hz falls back to 10 Hz.
    let n = count(&log, GLOBAL_POSITION_INT_DATA::ID);
    assert!((599..=601).contains(&n), "{n}");
    // Odd step sizes do not panic or stall.
    c.step(0.0, 0, &mut log);
    c.step(f64::NAN, 0, &mut log);
    c.step(3.0, 0, &mut log);
    assert_serialises(&log);
}

fn noisy_copter(seed: u64) -> Copter {
    let mut cfg = CopterConfig::new(7, HOME, field());
    cfg.seed = seed;
    cfg.gps_noise = true;
    Copter::new(cfg)
}

fn positions(log: &[MavMessage]) -> Vec<GLOBAL_POSITION_INT_DATA> {
    log.iter()
        .filter_map(|m| match m {
            MavMessage::GLOBAL_POSITION_INT(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Flies a copter with GPS noise beside the same copter without, `seconds` in lockstep:
/// per GLOBAL_POSITION_INT, what the noise added (east, north, up in metres; vx, vy, vz in
/// m/s).
fn gps_errors(seconds: f64) -> Vec<[f64; 6]> {
    let (mut exact, mut noisy) = (copter(true), noisy_copter(42));
    let (mut le, mut ln) = (Vec::new(), Vec::new());
    run(&mut exact, seconds, &mut le);
    run(&mut noisy, seconds, &mut ln);
    // The noise changes what the copter reports, never how it flies.
    assert_eq!(exact.kin.east, noisy.kin.east);
    assert_eq!(exact.armed(), noisy.armed());
    let (pe, pn) = (positions(&le), positions(&ln));
    assert_eq!(pe.len(), pn.len());
    pe.iter()
        .zip(&pn)
        .map(|(e, n)| {
            let at = |p: &GLOBAL_POSITION_INT_DATA| LatLon {
                lat: f64::from(p.lat) / 1e7,
                lon: f64::from(p.lon) / 1e7,
            };
            let (de, dn) = survey::to_local_m(at(e), at(n));
            assert_eq!(n.alt - e.alt, n.relative_alt - e.relative_alt);
            assert_eq!((e.time_boot_ms, e.hdg), (n.time_boot_ms, n.hdg));
            [
                de,
                dn,
                f64::from(n.relative_alt - e.relative_alt) / 1e3,
                f64::from(n.vy - e.vy) / 1e2,
                f64::from(n.vx - e.vx) / 1e2,
                f64::from(e.vz - n.vz) / 1e2,
            ]
        })
        .collect()
}

fn rms(errors: &[[f64; 6]], axis: usize) -> f64 {
    (errors.iter().map(|e| e[axis] * e[axis]).sum::<f64>() / errors.len() as f64).sqrt()
}

#[test]
fn gps_noise_is_off_unless_asked_for() {
    let mut c = copter(true);
    let mut log = Vec::new();
    run(&mut c, 120.0, &mut log);
    assert!(c.armed(), "flying");
    let last = positions(&log).pop().expect("positions");
    let p = c.position();
    assert_eq!((last.lat, last.lon), (deg_e7(p.lat), deg_e7(p.lon)));
    assert_eq!(last.relative_alt, (c.altitude_m() * 1000.0).round() as i32);
}

#[test]
fn gps_noise_is_present_and_bounded() {
    // Ten minutes: take-off, survey and landing, 6,000 positions.
    let errors = gps_errors(600.0);
    assert!(errors.len() > 5_000);
    // Present on every axis, of the size asked for: the wandering part over ten minutes
    // (a tenth of its memory) is a sample of a few draws, so the bounds are loose.
    for (axis, lo, hi) in [
        (0, 0.05, 1.0),
        (1, 0.05, 1.0),
        (2, 0.1, 1.8),
        (3, 0.07, 0.14),
        (4, 0.07, 0.14),
        (5, 0.07, 0.14),
    ] {
        let r = rms(&errors, axis);
        assert!((lo..hi).contains(&r), "axis {axis}: rms {r}");
    }
    // Bounded: draws are truncated at 4σ (plus rounding to 1e-7° and mm).
    for e in &errors {
        assert!(e[0].abs() <= 2.01 && e[1].abs() <= 2.01, "{e:?}");
        assert!(e[2].abs() <= 3.61, "{e:?}");
        assert!(e[3..].iter().all(|v| v.abs() <= 0.41), "{e:?}");
    }
    // A random walk plus white noise, not white noise alone: 100 ms apart, positions
    // differ by about the white part (√2 × 0.1 m), far less than the error itself.
    let step: Vec<[f64; 6]> = errors
        .windows(2)
        .map(|w| std::array::from_fn(|i| w[1][i] - w[0][i]))
        .collect();
    assert!(rms(&step, 0) < 0.2, "{}", rms(&step, 0));
    assert!(rms(&step, 0) > 0.08, "{}", rms(&step, 0));
}

#[test]
fn gps_noise_over_hours_has_the_modelled_spread() {
    // The model alone, long enough for the wandering part to show its σ: 4 hours at 50 Hz.
    let mut gps = noise::GpsNoise::new(1);
    let (mut sum, mut n) = ([0.0f64; 3], 0.0);
    for _ in 0..(4 * 3600 * 50) {
        gps.advance(DT);
        let e = gps.error();
        for (s, v) in sum.iter_mut().zip([e.east, e.north, e.up]) {
            *s += v * v;
        }
        n += 1.0;
    }
    let h = (noise::GPS_SLOW_H_M.powi(2) + noise::GPS_WHITE_H_M.powi(2)).sqrt();
    let v = (noise::GPS_SLOW_V_M.powi(2) + noise::GPS_WHITE_V_M.powi(2)).sqrt();
    for (axis, want) in [(0, h), (1, h), (2, v)] {
        let got = (sum[axis] / n).sqrt();
        assert!(
            (0.7 * want..1.3 * want).contains(&got),
            "axis {axis}: σ {got}, modelled {want}"
        );
    }
}

#[test]
fn gps_noise_is_deterministic_with_a_seed() {
    let flight = |seed| {
        let mut c = noisy_copter(seed);
        let mut log = Vec::new();
        run(&mut c, 60.0, &mut log);
        log
    };
    assert_eq!(flight(42), flight(42));
    assert_ne!(positions(&flight(42)), positions(&flight(43)));
}
