//! auto_fly: what a field crew's script (or Lua on the autopilot) would do: launch, survey,
//! RTL, swap the battery on the ground, and go again.

use mavlink::dialects::ardupilotmega::{MavMessage, MavResult, MavSeverity};

use super::mode::FlightMode;
use super::Copter;

/// auto_fly: time on the ground after landing before the next launch, and when within it
/// the battery is swapped.
pub(super) const GROUND_TURNAROUND_S: f64 = 20.0;
const BATTERY_SWAP_AT_S: f64 = 15.0;
/// auto_fly: pause hovering at the last survey waypoint before RTL.
const MISSION_DONE_PAUSE_S: f64 = 2.0;

impl Copter {
    /// One step of the script: on the ground, swap the battery and relaunch (GUIDED, arm,
    /// take off); at survey altitude, switch to AUTO; once the mission is done, RTL.
    pub(super) fn run_script(&mut self, out: &mut Vec<MavMessage>) {
        let now = self.time_s;
        if !self.armed && self.kin.landed {
            let since = *self.ground_since_s.get_or_insert(now);
            if now - since >= BATTERY_SWAP_AT_S && self.battery.consumed_mah > 100.0 {
                self.battery.swap();
                self.text(out, MavSeverity::MAV_SEVERITY_INFO, "Battery swap");
            }
            if now - since >= GROUND_TURNAROUND_S && !self.mission.waypoints.is_empty() {
                // Try again in a full turnaround if anything refuses.
                self.ground_since_s = Some(now);
                if self.set_mode(FlightMode::Guided.number(), out) == MavResult::MAV_RESULT_ACCEPTED
                    && self.arm(false, out) == MavResult::MAV_RESULT_ACCEPTED
                    && self.takeoff(self.mission.plan.altitude_m) == MavResult::MAV_RESULT_ACCEPTED
                {
                    self.script_takeoff = true;
                }
            }
            return;
        }
        self.ground_since_s = None;
        if self.script_takeoff
            && self.mode == FlightMode::Guided
            && !self.kin.landed
            && (self.kin.alt - self.mission.plan.altitude_m).abs() < 0.5
        {
            self.script_takeoff = false;
            self.set_mode(FlightMode::Auto.number(), out);
        }
        if self.mode == FlightMode::Auto && self.mission.complete {
            let since = *self.mission_done_since_s.get_or_insert(now);
            if now - since >= MISSION_DONE_PAUSE_S {
                self.set_mode(FlightMode::Rtl.number(), out);
            }
        }
    }
}
