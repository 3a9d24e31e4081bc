//! The built-in mission: home as item 0 and a lawnmower survey of the configured field as
//! items 1..n, and how AUTO flies it ("Mission: N WP", "Reached command #N",
//! MISSION_ITEM_REACHED).

use mavlink::dialects::ardupilotmega::{MavMessage, MavSeverity, MISSION_ITEM_REACHED_DATA};

use super::guidance::{Setpoint, Vertical};
use super::Copter;
use crate::survey::{self, LatLon, SurveyPlan};

/// Survey defaults for the mission the copter builds from its field.
const SURVEY_ALT_M: f64 = 30.0;
const SURVEY_ROW_SPACING_M: f64 = 5.0;
pub(super) const SURVEY_SPEED_MPS: f64 = 6.0;

/// The built-in mission: item 0 is home, items 1..=n the survey waypoints.
#[derive(Debug, Clone)]
pub(super) struct Mission {
    pub(super) plan: SurveyPlan,
    pub(super) waypoints: Vec<LatLon>,
    /// Waypoints in the local frame.
    local: Vec<(f64, f64)>,
    /// Current item, 1-based; 0 before the mission has ever started.
    pub(super) current: u16,
    pub(super) complete: bool,
}

impl Mission {
    pub(super) fn build(origin: LatLon, field: &[LatLon]) -> Self {
        let plan = SurveyPlan {
            row_spacing_m: SURVEY_ROW_SPACING_M,
            heading_deg: longest_edge_bearing(field),
            altitude_m: SURVEY_ALT_M,
            speed_mps: SURVEY_SPEED_MPS,
            overlap: 0.0,
            turnaround_m: 0.0,
            cover_swath: false,
        };
        let mut waypoints = survey::lawnmower(field, &plan);
        // MISSION_CURRENT and MISSION_ITEM_REACHED carry u16 sequence numbers.
        waypoints.truncate(usize::from(u16::MAX - 1));
        let local = waypoints
            .iter()
            .map(|&p| survey::to_local_m(origin, p))
            .collect();
        Self {
            plan,
            waypoints,
            local,
            current: 0,
            complete: false,
        }
    }

    fn len(&self) -> u16 {
        u16::try_from(self.waypoints.len()).unwrap_or(u16::MAX)
    }
}

/// True bearing of the longest edge of a polygon: vine rows run along the block's long side.
fn longest_edge_bearing(field: &[LatLon]) -> f64 {
    let n = field.len();
    let mut best = (0.0, 0.0);
    for i in 0..n {
        let (a, b) = (field[i], field[(i + 1) % n]);
        let d = survey::distance_m(a, b);
        if d.is_finite() && d > best.0 {
            best = (d, survey::bearing_deg(a, b));
        }
    }
    best.1
}

impl Copter {
    /// AUTO: fly to the current item; on reaching it, report it and go on to the next, or
    /// loiter at the last one.
    pub(super) fn auto_guidance(&mut self, hold: Setpoint, out: &mut Vec<MavMessage>) -> Setpoint {
        if self.mission.complete || self.mission.current == 0 || self.kin.landed {
            return hold;
        }
        let idx = usize::from(self.mission.current - 1);
        let Some(&(te, tn)) = self.mission.local.get(idx) else {
            return hold;
        };
        let alt = self.mission.plan.altitude_m;
        let dist = (te - self.kin.east).hypot(tn - self.kin.north);
        if dist <= self.wp_radius() && (alt - self.kin.alt).abs() < 1.0 {
            let seq = self.mission.current;
            out.push(MavMessage::MISSION_ITEM_REACHED(
                MISSION_ITEM_REACHED_DATA { seq },
            ));
            self.text(
                out,
                MavSeverity::MAV_SEVERITY_INFO,
                &format!("Reached command #{seq}"),
            );
            if seq < self.mission.len() {
                self.mission.current += 1;
                self.announce_mission_item(out);
            } else {
                // Out of commands: ArduCopter stays in AUTO and loiters where it is.
                self.mission.complete = true;
                self.hold_xy = (te, tn);
                self.hold_alt = alt;
                return Setpoint {
                    xy: Some((te, tn)),
                    ..hold
                };
            }
        }
        let idx = usize::from(self.mission.current - 1);
        let target = self.mission.local.get(idx).copied().unwrap_or((te, tn));
        Setpoint {
            xy: Some(target),
            vertical: Vertical::Altitude(alt),
            ..hold
        }
    }

    pub(super) fn announce_mission_item(&mut self, out: &mut Vec<MavMessage>) {
        let seq = self.mission.current;
        self.text(
            out,
            MavSeverity::MAV_SEVERITY_INFO,
            &format!("Mission: {seq} WP"),
        );
    }
}
