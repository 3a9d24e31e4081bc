//! Commands to vehicles, until their COMMAND_ACK says what happened.
//!
//! A command goes out as COMMAND_LONG (COMMAND_INT for `goto`, whose position needs the
//! integer degrees × 10⁷ that a float parameter would round to a metre). MAVLink gives an ack
//! no key but the vehicle and the command number, so the station keeps at most one command of
//! each number in flight per vehicle; another waits behind it. An ack counts when it comes from
//! the vehicle's autopilot and is addressed to the station (or to nobody: firmware older than
//! the target fields), so a QGroundControl's own commands and acks never mix in.
//!
//! Unanswered, a COMMAND_LONG is sent again every [`RESEND_AFTER`] with its confirmation
//! counter raised (so the vehicle can tell a retry from a new command), [`SENDS`] times in all;
//! then it has timed out. `IN_PROGRESS` stops the retries: the vehicle has it, and has
//! [`IN_PROGRESS_LIMIT`] to give the final answer.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use mavlink::dialects::ardupilotmega as apm;
use serde::{Deserialize, Serialize};

use crate::dialect::MavMessage;

pub const RESEND_AFTER: Duration = Duration::from_millis(1_500);
pub const SENDS: u8 = 4;
pub const IN_PROGRESS_LIMIT: Duration = Duration::from_secs(30);

/// What a command asks a vehicle to do, with its arguments resolved (a mode by number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Arm,
    Disarm,
    /// Climb to `alt_m` above home.
    Takeoff {
        alt_m: f32,
    },
    Land,
    Rtl,
    /// The mode named `mode`, which is `custom_mode` on this vehicle's firmware.
    Mode {
        mode: String,
        custom_mode: u32,
    },
    /// Fly to a point, `alt_m` above home.
    Goto {
        lat: f64,
        lon: f64,
        alt_m: f32,
    },
    Speed {
        speed_mps: f32,
    },
    StartMission,
    Pause,
    Continue,
    Reboot,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Arm => "arm",
            Command::Disarm => "disarm",
            Command::Takeoff { .. } => "takeoff",
            Command::Land => "land",
            Command::Rtl => "rtl",
            Command::Mode { .. } => "mode",
            Command::Goto { .. } => "goto",
            Command::Speed { .. } => "speed",
            Command::StartMission => "start_mission",
            Command::Pause => "pause",
            Command::Continue => "continue",
            Command::Reboot => "reboot",
        }
    }

    /// For people: "mode LOITER", "takeoff to 20 m".
    pub fn describe(&self) -> String {
        match self {
            Command::Takeoff { alt_m } => format!("takeoff to {alt_m} m"),
            Command::Mode { mode, .. } => format!("mode {mode}"),
            Command::Goto { lat, lon, alt_m } => format!("goto {lat:.6}, {lon:.6} at {alt_m} m"),
            Command::Speed { speed_mps } => format!("speed {speed_mps} m/s"),
            other => other.name().to_string(),
        }
    }

    fn mav_cmd(&self) -> apm::MavCmd {
        use apm::MavCmd::*;
        match self {
            Command::Arm | Command::Disarm => MAV_CMD_COMPONENT_ARM_DISARM,
            Command::Takeoff { .. } => MAV_CMD_NAV_TAKEOFF,
            Command::Land => MAV_CMD_NAV_LAND,
            Command::Rtl => MAV_CMD_NAV_RETURN_TO_LAUNCH,
            Command::Mode { .. } => MAV_CMD_DO_SET_MODE,
            Command::Goto { .. } => MAV_CMD_DO_REPOSITION,
            Command::Speed { .. } => MAV_CMD_DO_CHANGE_SPEED,
            Command::StartMission => MAV_CMD_MISSION_START,
            Command::Pause | Command::Continue => MAV_CMD_DO_PAUSE_CONTINUE,
            Command::Reboot => MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN,
        }
    }

    /// The message for send number `send` (0 first), to `to`. PX4 takes a mode as main and
    /// sub mode in two parameters, ArduPilot the whole custom mode in one; PX4 takes
    /// altitudes above sea level (and only that frame in COMMAND_INT) and NaN for "here",
    /// ArduPilot altitudes above home and 0 for "here".
    fn message(&self, to: Addressee, send: u8) -> MavMessage {
        let (system, component) = to.address;
        let px4 = to.px4;
        // The API refuses these for a PX4 without a home; should one slip through, NaN is
        // PX4's "as it is" (take-off to its MIS_TAKEOFF_ALT, goto at the current height).
        let above_sea = |alt_m: f32| {
            to.home_msl_m
                .map_or(f32::NAN, |h| (h + f64::from(alt_m)) as f32)
        };
        let mut p = [0f32; 7];
        match self {
            Command::Arm => p[0] = 1.0,
            Command::Disarm => p[0] = 0.0,
            Command::Takeoff { alt_m } if px4 => {
                p[3] = f32::NAN; // yaw: as it is
                p[4] = f32::NAN; // here
                p[5] = f32::NAN;
                p[6] = above_sea(*alt_m);
            }
            Command::Takeoff { alt_m } => p[6] = *alt_m,
            Command::Mode { custom_mode, .. } => {
                p[0] = 1.0; // MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
                if px4 {
                    p[1] = ((custom_mode >> 16) & 0xFF) as f32;
                    p[2] = (custom_mode >> 24) as f32;
                } else {
                    p[1] = *custom_mode as f32;
                }
            }
            Command::Goto { lat, lon, alt_m } => {
                // The only frame PX4 takes in COMMAND_INT (it answers GLOBAL, 0, with
                // UNSUPPORTED_MAV_FRAME), though MAVLink now deprecates the name.
                #[allow(deprecated)]
                let global_int = apm::MavFrame::MAV_FRAME_GLOBAL_INT;
                return MavMessage::COMMAND_INT(apm::COMMAND_INT_DATA {
                    // Ground speed: the vehicle's default. Bit 0 of param2: switch to
                    // guided mode to get there.
                    param1: -1.0,
                    param2: 1.0,
                    param4: f32::NAN,
                    x: (lat * 1e7).round() as i32,
                    y: (lon * 1e7).round() as i32,
                    z: if px4 { above_sea(*alt_m) } else { *alt_m },
                    command: self.mav_cmd(),
                    target_system: system,
                    target_component: component,
                    frame: if px4 {
                        global_int
                    } else {
                        apm::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT
                    },
                    current: 0,
                    autocontinue: 0,
                    ..Default::default()
                });
            }
            Command::Speed { speed_mps } => {
                p[0] = 1.0; // ground speed
                p[1] = *speed_mps;
                p[2] = -1.0; // throttle unchanged
            }
            Command::Continue => p[0] = 1.0,
            Command::Reboot => p[0] = 1.0, // the autopilot
            Command::Land | Command::Rtl | Command::StartMission | Command::Pause => {}
        }
        MavMessage::COMMAND_LONG(apm::COMMAND_LONG_DATA {
            param1: p[0],
            param2: p[1],
            param3: p[2],
            param4: p[3],
            param5: p[4],
            param6: p[5],
            param7: p[6],
            command: self.mav_cmd(),
            target_system: system,
            target_component: component,
            confirmation: send,
        })
    }
}

/// A vehicle as its commands are encoded for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Addressee {
    /// (system, component).
    pub address: (u8, u8),
    pub px4: bool,
    /// Its home's altitude above mean sea level, once it has said.
    pub home_msl_m: Option<f64>,
}

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored, sent or waiting to be sent; no answer yet.
    Pending,
    /// The vehicle has it and is working on it.
    InProgress,
    Accepted,
    /// Refused: not now (TEMPORARILY_REJECTED) or not at all (DENIED).
    Denied,
    Failed,
    Unsupported,
    /// No answer after every send, or no final answer in time after IN_PROGRESS.
    TimedOut,
}

impl Outcome {
    pub fn is_final(self) -> bool {
        !matches!(self, Outcome::Pending | Outcome::InProgress)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::InProgress => "in_progress",
            Outcome::Accepted => "accepted",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
            Outcome::Unsupported => "unsupported",
            Outcome::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Pending,
            Outcome::InProgress,
            Outcome::Accepted,
            Outcome::Denied,
            Outcome::Failed,
            Outcome::Unsupported,
            Outcome::TimedOut,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    fn of(result: apm::MavResult) -> Outcome {
        use apm::MavResult::*;
        match result {
            MAV_RESULT_ACCEPTED => Outcome::Accepted,
            MAV_RESULT_IN_PROGRESS => Outcome::InProgress,
            MAV_RESULT_TEMPORARILY_REJECTED | MAV_RESULT_DENIED => Outcome::Denied,
            MAV_RESULT_UNSUPPORTED => Outcome::Unsupported,
            _ => Outcome::Failed,
        }
    }
}

/// A command's new state, for the store (which records it and tells stream clients and HQ).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandUpdate {
    pub id: i64,
    pub vehicle: u8,
    pub outcome: Outcome,
    /// The MAV_RESULT of the ack that gave this outcome.
    pub result: Option<u8>,
    /// IN_PROGRESS acks may carry a percentage.
    pub progress: Option<u8>,
    pub sends: u8,
    /// What a transfer brought back (`{"items": […]}`) or why it failed (`{"error": …}`).
    pub detail: Option<serde_json::Value>,
}

impl CommandUpdate {
    /// An outcome with no MAV_RESULT to give (the station's own jobs: parameters, signing).
    pub fn of(
        id: i64,
        vehicle: u8,
        outcome: Outcome,
        sends: u8,
        detail: Option<serde_json::Value>,
    ) -> CommandUpdate {
        CommandUpdate {
            id,
            vehicle,
            outcome,
            result: None,
            progress: None,
            sends,
            detail,
        }
    }

    /// A station's job under way, `percent` done.
    pub fn working(id: i64, vehicle: u8, percent: u8) -> CommandUpdate {
        CommandUpdate {
            progress: Some(percent),
            ..CommandUpdate::of(id, vehicle, Outcome::InProgress, 1, None)
        }
    }

    /// A failure, and why.
    pub fn failed(id: i64, vehicle: u8, why: impl Into<String>) -> CommandUpdate {
        let why: String = why.into();
        CommandUpdate::of(
            id,
            vehicle,
            Outcome::Failed,
            0,
            Some(serde_json::json!({ "error": why })),
        )
    }
}

#[derive(Debug)]
struct InFlight {
    id: i64,
    command: Command,
    sends: u8,
    next_send: Option<Instant>,
    /// Set by IN_PROGRESS: the final answer is due by then.
    deadline: Option<Instant>,
}

/// The commands not yet answered, by vehicle and command number; the front of each queue is
/// in flight.
#[derive(Debug, Default)]
pub struct Commands {
    queues: BTreeMap<(u8, u32), VecDeque<InFlight>>,
    updates: Vec<CommandUpdate>,
}

impl Commands {
    /// Queues command `id` (already stored) for `vehicle`; it goes out on the next tick.
    pub fn start(&mut self, id: i64, vehicle: u8, command: Command) {
        let key = (vehicle, command.mav_cmd() as u32);
        self.queues.entry(key).or_default().push_back(InFlight {
            id,
            command,
            sends: 0,
            next_send: None,
            deadline: None,
        });
    }

    /// A COMMAND_ACK from `vehicle`'s autopilot, addressed to the station.
    pub fn acked(&mut self, vehicle: u8, ack: &apm::COMMAND_ACK_DATA, at: Instant) {
        let key = (vehicle, ack.command as u32);
        let Some(queue) = self.queues.get_mut(&key) else {
            return; // not ours, or a duplicate of an answer already taken
        };
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.sends == 0 {
            return; // an old answer: this one has not gone out yet
        }
        let outcome = Outcome::of(ack.result);
        let update = CommandUpdate {
            id: front.id,
            vehicle,
            outcome,
            result: Some(ack.result as u8),
            progress: (outcome == Outcome::InProgress && ack.progress <= 100)
                .then_some(ack.progress),
            sends: front.sends,
            detail: None,
        };
        if outcome == Outcome::InProgress {
            front.next_send = None;
            if front.deadline.is_none() {
                // Retries stop; the vehicle has it. The first IN_PROGRESS sets the limit.
                front.deadline = Some(at + IN_PROGRESS_LIMIT);
            }
        } else {
            queue.pop_front();
        }
        tracing::info!(
            vehicle,
            command = update.id,
            outcome = outcome.as_str(),
            "command answered"
        );
        self.updates.push(update);
    }

    /// What is due at `now`: first sends and resends as `(vehicle, message)`, to be addressed
    /// to the vehicle's autopilot component; timeouts become updates.
    pub fn due(
        &mut self,
        now: Instant,
        target: impl Fn(u8) -> Option<Addressee>,
    ) -> Vec<(u8, MavMessage)> {
        let mut out = Vec::new();
        for (&(vehicle, _), queue) in &mut self.queues {
            while let Some(front) = queue.front_mut() {
                let timed_out = match front.deadline {
                    Some(deadline) => now >= deadline,
                    None => front.sends >= SENDS && front.next_send.is_some_and(|t| now >= t),
                };
                if timed_out {
                    tracing::warn!(vehicle, command = front.id, "command timed out");
                    self.updates.push(CommandUpdate {
                        id: front.id,
                        vehicle,
                        outcome: Outcome::TimedOut,
                        result: None,
                        progress: None,
                        sends: front.sends,
                        detail: None,
                    });
                    queue.pop_front();
                    continue;
                }
                let send_now = front.deadline.is_none()
                    && front.sends < SENDS
                    && front.next_send.is_none_or(|t| now >= t);
                if send_now {
                    // A vehicle no longer known still uses up its sends, and times out.
                    if let Some(to) = target(vehicle) {
                        out.push((vehicle, front.command.message(to, front.sends)));
                    }
                    front.sends += 1;
                    front.next_send = Some(now + RESEND_AFTER);
                }
                break;
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        out
    }

    /// Outcome changes since the last call.
    pub fn take_updates(&mut self) -> Vec<CommandUpdate> {
        std::mem::take(&mut self.updates)
    }

    pub fn has_updates(&self) -> bool {
        !self.updates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(px4: bool, home_msl_m: Option<f64>) -> Addressee {
        Addressee {
            address: (1, 1),
            px4,
            home_msl_m,
        }
    }

    #[test]
    fn px4_is_given_altitudes_above_sea_level_and_nan_for_here() {
        let takeoff = Command::Takeoff { alt_m: 10.0 };
        let MavMessage::COMMAND_LONG(c) = takeoff.message(to(true, Some(584.0)), 0) else {
            panic!("a COMMAND_LONG");
        };
        assert_eq!(c.param7, 594.0, "home + 10 m");
        assert!(c.param4.is_nan() && c.param5.is_nan() && c.param6.is_nan());
        let MavMessage::COMMAND_LONG(c) = takeoff.message(to(false, Some(584.0)), 0) else {
            panic!("a COMMAND_LONG");
        };
        assert_eq!(
            (c.param5, c.param6, c.param7),
            (0.0, 0.0, 10.0),
            "ArduPilot: above home"
        );
        // PX4 before its home is known: its own take-off altitude.
        let MavMessage::COMMAND_LONG(c) = takeoff.message(to(true, None), 0) else {
            panic!("a COMMAND_LONG");
        };
        assert!(c.param7.is_nan());

        let goto = Command::Goto {
            lat: -35.36,
            lon: 149.16,
            alt_m: 30.0,
        };
        let MavMessage::COMMAND_INT(c) = goto.message(to(true, Some(584.0)), 0) else {
            panic!("a COMMAND_INT");
        };
        assert_eq!(
            (c.frame as u8, c.z),
            (5, 614.0),
            "GLOBAL_INT, above sea level"
        );
        let MavMessage::COMMAND_INT(c) = goto.message(to(false, Some(584.0)), 0) else {
            panic!("a COMMAND_INT");
        };
        assert_eq!(
            (c.frame, c.z),
            (apm::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT, 30.0)
        );
    }
}
