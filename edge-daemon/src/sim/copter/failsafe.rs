//! Failsafes: what the copter does when one triggers, and the GCS failsafe. The battery
//! failsafe's levels and thresholds live with the battery model in `battery.rs`.

use mavlink::dialects::ardupilotmega::{MavMessage, MavSeverity};

use super::guidance::RtlStage;
use super::mode::FlightMode;
use super::Copter;

impl Copter {
    /// ArduCopter's failsafe actions (BATT_FS_*_ACT / FS_GCS_ENABLE numbering): 0 none,
    /// 1 land, 2 RTL, 3 SmartRTL or RTL, 4 SmartRTL or land, 5 terminate. On the ground a
    /// failsafe just disarms; a copter already landing keeps landing.
    pub(super) fn failsafe_action(&mut self, action: i32, out: &mut Vec<MavMessage>) {
        if action == 0 {
            return;
        }
        if self.kin.landed {
            self.disarm(out);
            return;
        }
        let landing = self.mode == FlightMode::Land
            || (self.mode == FlightMode::Rtl && self.rtl_stage == RtlStage::Descend);
        match action {
            5 => self.disarm(out),
            1 => {
                self.set_mode(FlightMode::Land.number(), out);
            }
            _ if landing => {}
            _ => {
                self.set_mode(FlightMode::Rtl.number(), out);
            }
        }
    }

    /// GCS failsafe: with FS_GCS_ENABLE set, losing the GCS heartbeat (SYSID_MYGCS) for
    /// FS_GCS_TIMEOUT seconds triggers the action, once a GCS has been heard at all.
    pub(super) fn check_gcs_failsafe(&mut self, out: &mut Vec<MavMessage>) {
        let enable = self.params.get("FS_GCS_ENABLE") as i32;
        let Some(last) = self.last_gcs_heartbeat_s else {
            return;
        };
        if enable == 0 {
            self.gcs_failsafe = false;
            return;
        }
        let lost = self.time_s - last > self.params.get("FS_GCS_TIMEOUT").max(1.0);
        if lost && !self.gcs_failsafe && self.armed {
            self.gcs_failsafe = true;
            self.text(out, MavSeverity::MAV_SEVERITY_WARNING, "GCS Failsafe On");
            // 2: continue the mission in AUTO; 5: land; others: RTL.
            let action = match enable {
                2 if self.mode == FlightMode::Auto => 0,
                5 => 1,
                _ => 2,
            };
            self.failsafe_action(action, out);
        } else if !lost && self.gcs_failsafe {
            self.gcs_failsafe = false;
            self.text(out, MavSeverity::MAV_SEVERITY_INFO, "GCS Failsafe Cleared");
        }
    }
}
