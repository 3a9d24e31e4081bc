//! Flight modes: the ArduCopter modes this simulator flies, and mode changes with
//! ArduCopter's checks and side effects.
//!
//! Mode names, and whether ArduCopter has a mode number at all, come from
//! [`crate::vehicle::modes`], the table the daemon decodes heartbeats with, so the
//! simulator's STATUSTEXTs name modes exactly as a ground station shows them.

use mavlink::dialects::ardupilotmega::{
    MavAutopilot, MavMessage, MavModeFlag, MavResult, MavSeverity, MavType,
};

use super::guidance::{RtlStage, BRAKE_DECEL};
use super::Copter;
use crate::vehicle::modes::{self, Firmware};

/// The ArduCopter flight modes this simulator flies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlightMode {
    Stabilize,
    AltHold,
    Auto,
    Guided,
    Loiter,
    Rtl,
    Land,
    Brake,
}

impl FlightMode {
    const ALL: [Self; 8] = [
        Self::Stabilize,
        Self::AltHold,
        Self::Auto,
        Self::Guided,
        Self::Loiter,
        Self::Rtl,
        Self::Land,
        Self::Brake,
    ];

    /// ArduCopter's number for the mode (HEARTBEAT custom_mode).
    pub(super) fn number(self) -> u32 {
        match self {
            Self::Stabilize => 0,
            Self::AltHold => 2,
            Self::Auto => 3,
            Self::Guided => 4,
            Self::Loiter => 5,
            Self::Rtl => 6,
            Self::Land => 9,
            Self::Brake => 17,
        }
    }

    /// The simulated mode with ArduCopter number `n`, if any.
    fn from_number(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.number() == n)
    }

    /// The name ArduPilot uses in messages ("GUIDED", "RTL", ...).
    fn name(self) -> String {
        heartbeat_mode_name(self.number())
    }

    /// ArduCopter refuses to arm in modes that would fly off on their own.
    pub(super) fn allows_arming(self) -> bool {
        !matches!(self, Self::Auto | Self::Rtl | Self::Land | Self::Brake)
    }

    /// Modes where the position controller is active: ArduCopter sets GUIDED_ENABLED in
    /// base_mode for those.
    pub(super) fn position_controlled(self) -> bool {
        !matches!(self, Self::Stabilize | Self::AltHold)
    }
}

/// The name a ground station shows for custom mode `number` in this copter's heartbeat
/// ("MODE(n)" when ArduCopter has no such mode).
fn heartbeat_mode_name(number: u32) -> String {
    modes::mode_name(
        MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA as u8,
        MavType::MAV_TYPE_QUADROTOR as u8,
        MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED.bits(),
        number,
    )
}

/// ArduCopter's name for mode `number`, or None when ArduCopter has no such mode: tells
/// "not simulated" from "no such mode". Only a real mode's name maps back to its number;
/// the "MODE(n)" fallback names nothing.
fn arducopter_mode_name(number: u32) -> Option<String> {
    let name = heartbeat_mode_name(number);
    let known = modes::mode_number(Firmware::ArduCopter, &name).is_some_and(|(_, n)| n == number);
    known.then_some(name)
}

impl Copter {
    /// ArduPilot's `_set_mode_common`: only custom modes are understood.
    pub(super) fn set_mode_common(
        &mut self,
        base_mode: u32,
        custom_mode: u32,
        out: &mut Vec<MavMessage>,
    ) -> MavResult {
        if base_mode & u32::from(MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED.bits()) == 0 {
            return MavResult::MAV_RESULT_DENIED;
        }
        self.set_mode(custom_mode, out)
    }

    pub(super) fn set_mode(&mut self, number: u32, out: &mut Vec<MavMessage>) -> MavResult {
        let Some(mode) = FlightMode::from_number(number) else {
            return match arducopter_mode_name(number) {
                Some(name) => {
                    self.text(
                        out,
                        MavSeverity::MAV_SEVERITY_WARNING,
                        &format!("Mode change to {name} failed: not simulated"),
                    );
                    MavResult::MAV_RESULT_UNSUPPORTED
                }
                None => {
                    self.text(
                        out,
                        MavSeverity::MAV_SEVERITY_WARNING,
                        &format!("No such mode {number}"),
                    );
                    MavResult::MAV_RESULT_FAILED
                }
            };
        };
        if mode == self.mode {
            return MavResult::MAV_RESULT_ACCEPTED;
        }
        if mode == FlightMode::Auto {
            if self.mission.waypoints.is_empty() {
                self.text(
                    out,
                    MavSeverity::MAV_SEVERITY_WARNING,
                    &format!("Mode change to {} failed: init failed", mode.name()),
                );
                return MavResult::MAV_RESULT_FAILED;
            }
            if self.armed && self.kin.landed {
                // The built-in mission has no NAV_TAKEOFF item.
                self.text(
                    out,
                    MavSeverity::MAV_SEVERITY_CRITICAL,
                    "Auto: Missing Takeoff Cmd",
                );
                self.text(
                    out,
                    MavSeverity::MAV_SEVERITY_WARNING,
                    &format!("Mode change to {} failed: init failed", mode.name()),
                );
                return MavResult::MAV_RESULT_FAILED;
            }
        }
        self.enter_mode(mode, out);
        MavResult::MAV_RESULT_ACCEPTED
    }

    fn enter_mode(&mut self, mode: FlightMode, out: &mut Vec<MavMessage>) {
        self.mode = mode;
        self.speed_override = None;
        self.mission_done_since_s = None;
        let decel = if mode == FlightMode::Brake {
            BRAKE_DECEL
        } else {
            self.wp_accel()
        };
        self.hold_xy = self.kin.stopping_point(decel);
        self.hold_alt = self.kin.alt;
        match mode {
            FlightMode::Auto => {
                // Resume the interrupted item (MIS_RESTART 0), or restart a finished mission.
                if self.mission.complete || self.mission.current == 0 {
                    self.mission.current = 1;
                    self.mission.complete = false;
                }
                if !self.kin.landed {
                    self.announce_mission_item(out);
                }
            }
            FlightMode::Rtl => {
                // RTL_ALT is a minimum: higher than that, it comes back at its altitude.
                self.rtl_alt = (self.params.get("RTL_ALT") / 100.0).max(self.kin.alt);
                self.rtl_stage = RtlStage::Climb;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_modes_have_arducopter_numbers_and_names() {
        let expected = [
            (FlightMode::Stabilize, "STABILIZE"),
            (FlightMode::AltHold, "ALT_HOLD"),
            (FlightMode::Auto, "AUTO"),
            (FlightMode::Guided, "GUIDED"),
            (FlightMode::Loiter, "LOITER"),
            (FlightMode::Rtl, "RTL"),
            (FlightMode::Land, "LAND"),
            (FlightMode::Brake, "BRAKE"),
        ];
        for (mode, name) in expected {
            let number = mode.number();
            assert_eq!(
                modes::mode_number(Firmware::ArduCopter, name),
                Some((1, number))
            );
            assert_eq!(FlightMode::from_number(number), Some(mode));
            assert_eq!(mode.name(), name);
        }
        assert_eq!(arducopter_mode_name(1).as_deref(), Some("ACRO"));
        assert_eq!(arducopter_mode_name(8), None);
        assert_eq!(arducopter_mode_name(99), None);
    }
}
