//! Arming, takeoff and disarming: ArduCopter's rules for leaving and returning to the
//! ground.

use mavlink::dialects::ardupilotmega::{MavMessage, MavResult, MavSeverity};

use super::battery::BatteryFailsafe;
use super::mode::FlightMode;
use super::Copter;

impl Copter {
    pub(super) fn arm(&mut self, force: bool, out: &mut Vec<MavMessage>) -> MavResult {
        if self.armed {
            return MavResult::MAV_RESULT_ACCEPTED;
        }
        if !self.kin.landed {
            return MavResult::MAV_RESULT_FAILED;
        }
        if !self.mode.allows_arming() {
            self.text(
                out,
                MavSeverity::MAV_SEVERITY_CRITICAL,
                "Arm: Mode not armable",
            );
            return MavResult::MAV_RESULT_FAILED;
        }
        if !force {
            if self.battery.failsafe != BatteryFailsafe::None {
                self.text(
                    out,
                    MavSeverity::MAV_SEVERITY_CRITICAL,
                    "PreArm: Battery failsafe",
                );
                return MavResult::MAV_RESULT_FAILED;
            }
            let arm_mah = self.params.get("BATT_ARM_MAH");
            let remaining = self.capacity_mah() - self.battery.consumed_mah;
            if arm_mah > 0.0 && remaining < arm_mah {
                self.text(
                    out,
                    MavSeverity::MAV_SEVERITY_CRITICAL,
                    "PreArm: Battery 1 below minimum arming capacity",
                );
                return MavResult::MAV_RESULT_FAILED;
            }
        }
        self.armed = true;
        self.ground_idle_s = 0.0;
        self.text(out, MavSeverity::MAV_SEVERITY_INFO, "Arming motors");
        // ArduPilot moves home to where the vehicle is armed and tells the GCS.
        self.home_local = (self.kin.east, self.kin.north);
        out.push(self.home_position());
        MavResult::MAV_RESULT_ACCEPTED
    }

    pub(super) fn disarm(&mut self, out: &mut Vec<MavMessage>) {
        if !self.armed {
            return;
        }
        self.armed = false;
        self.script_takeoff = false;
        self.text(out, MavSeverity::MAV_SEVERITY_INFO, "Disarming motors");
    }

    /// ArduCopter disarms by itself after DISARM_DELAY seconds armed on the ground.
    pub(super) fn auto_disarm_check(&mut self, dt: f64, out: &mut Vec<MavMessage>) {
        let delay = self.params.get("DISARM_DELAY");
        if self.armed && self.kin.landed && delay > 0.0 {
            self.ground_idle_s += dt;
            if self.ground_idle_s >= delay {
                self.disarm(out);
            }
        } else {
            self.ground_idle_s = 0.0;
        }
    }

    pub(super) fn takeoff(&mut self, alt: f64) -> MavResult {
        // ArduCopter's do_user_takeoff: armed, on the ground, in a mode with user takeoff.
        if !self.armed || !self.kin.landed || self.mode != FlightMode::Guided {
            return MavResult::MAV_RESULT_FAILED;
        }
        if !(alt.is_finite() && alt > 0.0) {
            return MavResult::MAV_RESULT_FAILED;
        }
        self.kin.landed = false;
        self.hold_xy = (self.kin.east, self.kin.north);
        self.hold_alt = alt;
        MavResult::MAV_RESULT_ACCEPTED
    }
}
