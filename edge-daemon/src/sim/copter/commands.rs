//! Commands from the ground station: COMMAND_LONG and COMMAND_INT, the SET_MODE message,
//! GUIDED position targets, and the COMMAND_ACKs that answer them.

use mavlink::dialects::ardupilotmega::{
    MavCmd, MavMessage, MavResult, PositionTargetTypemask, COMMAND_ACK_DATA, COMMAND_INT_DATA,
    COMMAND_LONG_DATA, SET_POSITION_TARGET_GLOBAL_INT_DATA,
};

use super::mode::FlightMode;
use super::{Copter, HOME_AMSL_M};
use crate::survey::{self, LatLon};

/// Magic value in param2 of MAV_CMD_COMPONENT_ARM_DISARM that forces (dis)arming.
const FORCE_ARM_MAGIC: f32 = 21196.0;

/// A COMMAND_LONG or COMMAND_INT, normalised. Positions keep full precision from
/// COMMAND_INT (degrees ×1e7 integers) instead of going through f32.
#[derive(Debug, Clone, Copy)]
pub(super) struct Command {
    command: MavCmd,
    params: [f32; 4],
    lat: f64,
    lon: f64,
    z: f32,
    /// COMMAND_INT's frame as its number (COMMAND_LONG has none).
    frame: Option<u32>,
}

impl Command {
    pub(super) fn from_long(c: &COMMAND_LONG_DATA) -> Self {
        Self {
            command: c.command,
            params: [c.param1, c.param2, c.param3, c.param4],
            lat: f64::from(c.param5),
            lon: f64::from(c.param6),
            z: c.param7,
            frame: None,
        }
    }

    pub(super) fn from_int(c: &COMMAND_INT_DATA) -> Self {
        Self {
            command: c.command,
            params: [c.param1, c.param2, c.param3, c.param4],
            lat: f64::from(c.x) / 1e7,
            lon: f64::from(c.y) / 1e7,
            z: c.z,
            frame: Some(c.frame as u32),
        }
    }
}

/// MAV_FRAME numbers (several enum variants are deprecated aliases in the crate, so the
/// numbers are compared instead).
const FRAME_GLOBAL: u32 = 0;
const FRAME_GLOBAL_RELATIVE_ALT: u32 = 3;
const FRAME_GLOBAL_INT: u32 = 5;
const FRAME_GLOBAL_RELATIVE_ALT_INT: u32 = 6;
const FRAME_GLOBAL_TERRAIN_ALT: u32 = 10;
const FRAME_GLOBAL_TERRAIN_ALT_INT: u32 = 11;

impl Copter {
    /// The SET_MODE message. The ack says MAV_CMD_DO_SET_MODE where ArduPilot says 11, which
    /// `MavCmd` cannot represent (see the `copter` module docs).
    pub(super) fn handle_set_mode(
        &mut self,
        base_mode: u8,
        custom_mode: u32,
        out: &mut Vec<MavMessage>,
    ) {
        let result = self.set_mode_common(u32::from(base_mode), custom_mode, out);
        ack(out, MavCmd::MAV_CMD_DO_SET_MODE, result, self.last_sender);
    }

    /// GUIDED position targets; ArduCopter ignores them in other modes.
    pub(super) fn handle_position_target(&mut self, t: &SET_POSITION_TARGET_GLOBAL_INT_DATA) {
        if self.mode != FlightMode::Guided || !self.armed || self.kin.landed {
            return;
        }
        let ignore_xy = PositionTargetTypemask::POSITION_TARGET_TYPEMASK_X_IGNORE
            | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_Y_IGNORE;
        if !t.type_mask.intersects(ignore_xy) {
            let p = LatLon {
                lat: f64::from(t.lat_int) / 1e7,
                lon: f64::from(t.lon_int) / 1e7,
            };
            self.hold_xy = survey::to_local_m(self.origin, p);
        }
        if !t
            .type_mask
            .contains(PositionTargetTypemask::POSITION_TARGET_TYPEMASK_Z_IGNORE)
        {
            if let Some(alt) = self.relative_alt(f64::from(t.alt), t.coordinate_frame as u32) {
                self.hold_alt = alt.max(0.0);
            }
        }
    }

    /// Converts an altitude in a global frame to height above the configured home.
    fn relative_alt(&self, alt: f64, frame: u32) -> Option<f64> {
        if !alt.is_finite() {
            return None;
        }
        match frame {
            FRAME_GLOBAL | FRAME_GLOBAL_INT => Some(alt - HOME_AMSL_M),
            FRAME_GLOBAL_RELATIVE_ALT
            | FRAME_GLOBAL_RELATIVE_ALT_INT
            | FRAME_GLOBAL_TERRAIN_ALT
            | FRAME_GLOBAL_TERRAIN_ALT_INT => Some(alt),
            _ => None,
        }
    }

    pub(super) fn handle_command(&mut self, cmd: Command, out: &mut Vec<MavMessage>) {
        let mut extra: Option<MavMessage> = None;
        let result = self.run_command(&cmd, &mut extra, out);
        ack(out, cmd.command, result, self.last_sender);
        // A requested message follows its ack, as ArduPilot queues it for the next send.
        if let Some(m) = extra {
            out.push(m);
        }
    }

    /// Executes one command and returns its MAV_RESULT the way ArduCopter decides it.
    fn run_command(
        &mut self,
        cmd: &Command,
        extra: &mut Option<MavMessage>,
        out: &mut Vec<MavMessage>,
    ) -> MavResult {
        let [p1, p2, _p3, _p4] = cmd.params;
        match cmd.command {
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM => {
                let force = p2 == FORCE_ARM_MAGIC;
                if p1 == 1.0 {
                    self.arm(force, out)
                } else if p1 == 0.0 {
                    if !self.kin.landed && !force {
                        // ArduCopter refuses a GCS disarm while it thinks it is flying.
                        return MavResult::MAV_RESULT_FAILED;
                    }
                    self.disarm(out);
                    MavResult::MAV_RESULT_ACCEPTED
                } else {
                    MavResult::MAV_RESULT_UNSUPPORTED
                }
            }
            MavCmd::MAV_CMD_NAV_TAKEOFF => {
                if cmd.frame.is_some_and(|f| {
                    f != FRAME_GLOBAL_RELATIVE_ALT && f != FRAME_GLOBAL_RELATIVE_ALT_INT
                }) {
                    // COMMAND_INT takeoff must be relative to home.
                    return MavResult::MAV_RESULT_DENIED;
                }
                self.takeoff(f64::from(cmd.z))
            }
            MavCmd::MAV_CMD_NAV_LAND => self.mode_result(FlightMode::Land, out),
            MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH => self.mode_result(FlightMode::Rtl, out),
            MavCmd::MAV_CMD_DO_SET_MODE => self.set_mode_common(p1 as u32, p2 as u32, out),
            MavCmd::MAV_CMD_MISSION_START => {
                // ArduCopter does not support partial missions through MISSION_START.
                if p1 != 0.0 || p2 != 0.0 {
                    return MavResult::MAV_RESULT_DENIED;
                }
                self.mode_result(FlightMode::Auto, out)
            }
            MavCmd::MAV_CMD_DO_CHANGE_SPEED => {
                if p2 > 0.0 && p2.is_finite() {
                    match p1 as i32 {
                        // Climb and descent speed changes are accepted but not modelled.
                        2 | 3 => {}
                        _ => self.speed_override = Some(f64::from(p2)),
                    }
                    MavResult::MAV_RESULT_ACCEPTED
                } else {
                    MavResult::MAV_RESULT_FAILED
                }
            }
            MavCmd::MAV_CMD_DO_REPOSITION => self.reposition(cmd, out),
            MavCmd::MAV_CMD_REQUEST_MESSAGE => match self.build_message(p1 as u32) {
                Some(m) => {
                    *extra = Some(m);
                    MavResult::MAV_RESULT_ACCEPTED
                }
                None => MavResult::MAV_RESULT_FAILED,
            },
            MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL => self.set_message_interval(p1 as u32, p2),
            _ => MavResult::MAV_RESULT_UNSUPPORTED,
        }
    }

    fn mode_result(&mut self, mode: FlightMode, out: &mut Vec<MavMessage>) -> MavResult {
        self.set_mode(mode.number(), out)
    }

    /// MAV_CMD_DO_REPOSITION: fly to a point in GUIDED, switching to GUIDED when param2 has
    /// MAV_DO_REPOSITION_FLAGS_CHANGE_MODE (1), as ArduCopter does.
    fn reposition(&mut self, cmd: &Command, out: &mut Vec<MavMessage>) -> MavResult {
        let change_mode = (cmd.params[1] as i32) & 1 == 1;
        if self.mode != FlightMode::Guided && !change_mode {
            return MavResult::MAV_RESULT_DENIED;
        }
        let latlon_ok = cmd.lat.is_finite()
            && cmd.lon.is_finite()
            && cmd.lat.abs() <= 90.0
            && cmd.lon.abs() <= 180.0;
        if !latlon_ok {
            return MavResult::MAV_RESULT_DENIED;
        }
        if !self.armed || self.kin.landed {
            return MavResult::MAV_RESULT_FAILED;
        }
        if self.mode != FlightMode::Guided
            && self.set_mode(FlightMode::Guided.number(), out) != MavResult::MAV_RESULT_ACCEPTED
        {
            return MavResult::MAV_RESULT_FAILED;
        }
        // Lat/lon of zero mean "here" in MAVLink.
        if cmd.lat != 0.0 || cmd.lon != 0.0 {
            let p = LatLon {
                lat: cmd.lat,
                lon: cmd.lon,
            };
            self.hold_xy = survey::to_local_m(self.origin, p);
        }
        let frame = cmd.frame.unwrap_or(FRAME_GLOBAL_RELATIVE_ALT);
        if let Some(alt) = self.relative_alt(f64::from(cmd.z), frame) {
            self.hold_alt = alt.max(0.0);
        }
        let speed = cmd.params[0];
        if speed > 0.0 && speed.is_finite() {
            self.speed_override = Some(f64::from(speed));
        }
        MavResult::MAV_RESULT_ACCEPTED
    }
}

/// COMMAND_ACK addressed back to the sender, as ArduPilot fills the MAVLink 2 extension.
fn ack(out: &mut Vec<MavMessage>, command: MavCmd, result: MavResult, to: Option<(u8, u8)>) {
    let (target_system, target_component) = to.unwrap_or((0, 0));
    out.push(MavMessage::COMMAND_ACK(COMMAND_ACK_DATA {
        command,
        result,
        target_system,
        target_component,
        ..Default::default()
    }));
}
