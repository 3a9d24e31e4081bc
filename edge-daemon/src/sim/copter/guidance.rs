//! Guidance: what each flight mode asks of the position controller in one step, including
//! ArduCopter's RTL stages and landing descent rates. AUTO's mission logic is in `mission.rs`.

use mavlink::dialects::ardupilotmega::MavMessage;

use super::mode::FlightMode;
use super::Copter;

/// ArduCopter switches from `WPNAV_SPEED_DN` to `LAND_SPEED` below `LAND_ALT_LOW` (10 m).
const LAND_ALT_LOW_M: f64 = 10.0;
/// Deceleration of ArduCopter's BRAKE mode (BRAKE_MODE_DECEL_RATE, 7.5 m/s²).
pub(super) const BRAKE_DECEL: f64 = 7.5;
/// Without a pilot, STABILIZE/ALT_HOLD just coast to a stop on drag.
const DRIFT_DECEL: f64 = 0.5;

/// What the position controller is asked to do in one step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setpoint {
    /// Horizontal target (east, north), or None to just decelerate.
    pub(super) xy: Option<(f64, f64)>,
    pub(super) speed: f64,
    pub(super) accel: f64,
    pub(super) vertical: Vertical,
}

/// How the position controller handles height.
#[derive(Debug, Clone, Copy)]
pub(super) enum Vertical {
    /// Hold or go to this height above the configured home.
    Altitude(f64),
    /// Descend at this rate until touchdown.
    Descend(f64),
}

/// Stages of ArduCopter's RTL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum RtlStage {
    Climb,
    Return,
    Loiter { until_s: f64 },
    FinalHold,
    Descend,
}

impl Copter {
    fn cruise_speed(&self) -> f64 {
        self.speed_override
            .unwrap_or_else(|| self.params.get("WPNAV_SPEED") / 100.0)
            .max(0.2)
    }

    pub(super) fn wp_accel(&self) -> f64 {
        (self.params.get("WPNAV_ACCEL") / 100.0).max(0.5)
    }

    pub(super) fn wp_radius(&self) -> f64 {
        (self.params.get("WPNAV_RADIUS") / 100.0).max(0.1)
    }

    fn land_rate(&self) -> f64 {
        if self.kin.alt > LAND_ALT_LOW_M {
            let high = self.params.get("LAND_SPEED_HIGH");
            let rate = if high > 0.0 {
                high
            } else {
                self.params.get("WPNAV_SPEED_DN")
            };
            (rate / 100.0).max(0.3)
        } else {
            (self.params.get("LAND_SPEED") / 100.0).max(0.3)
        }
    }

    /// The setpoint of the current mode for this step; AUTO and RTL also advance their own
    /// stages here.
    pub(super) fn guidance(&mut self, out: &mut Vec<MavMessage>) -> Setpoint {
        let speed = self.cruise_speed();
        let accel = self.wp_accel();
        let hold = Setpoint {
            xy: Some(self.hold_xy),
            speed,
            accel,
            vertical: Vertical::Altitude(self.hold_alt),
        };
        match self.mode {
            FlightMode::Stabilize | FlightMode::AltHold => Setpoint {
                xy: None,
                accel: DRIFT_DECEL,
                ..hold
            },
            FlightMode::Guided | FlightMode::Loiter => hold,
            FlightMode::Brake => Setpoint {
                accel: BRAKE_DECEL,
                ..hold
            },
            FlightMode::Land => Setpoint {
                vertical: Vertical::Descend(self.land_rate()),
                ..hold
            },
            FlightMode::Auto => self.auto_guidance(hold, out),
            FlightMode::Rtl => self.rtl_guidance(hold),
        }
    }

    /// RTL: climb to `rtl_alt`, return home, loiter, then descend (or hold RTL_ALT_FINAL).
    fn rtl_guidance(&mut self, hold: Setpoint) -> Setpoint {
        if self.kin.landed {
            return hold;
        }
        let home = self.home_local;
        let speed = {
            let rtl_speed = self.params.get("RTL_SPEED");
            if rtl_speed > 0.0 {
                rtl_speed / 100.0
            } else {
                self.params.get("WPNAV_SPEED") / 100.0
            }
        };
        let at_home = Setpoint {
            xy: Some(home),
            speed,
            vertical: Vertical::Altitude(self.rtl_alt),
            ..hold
        };
        match self.rtl_stage {
            RtlStage::Climb => {
                if self.kin.alt >= self.rtl_alt - 0.5 {
                    self.rtl_stage = RtlStage::Return;
                }
                Setpoint {
                    vertical: Vertical::Altitude(self.rtl_alt),
                    ..hold
                }
            }
            RtlStage::Return => {
                let d = (home.0 - self.kin.east).hypot(home.1 - self.kin.north);
                if d <= self.wp_radius() {
                    let loiter_s = (self.params.get("RTL_LOIT_TIME") / 1000.0).max(0.0);
                    self.rtl_stage = RtlStage::Loiter {
                        until_s: self.time_s + loiter_s,
                    };
                }
                at_home
            }
            RtlStage::Loiter { until_s } => {
                if self.time_s >= until_s {
                    let final_alt = self.params.get("RTL_ALT_FINAL") / 100.0;
                    self.rtl_stage = if final_alt > 0.0 {
                        RtlStage::FinalHold
                    } else {
                        RtlStage::Descend
                    };
                }
                at_home
            }
            RtlStage::FinalHold => Setpoint {
                vertical: Vertical::Altitude(self.params.get("RTL_ALT_FINAL") / 100.0),
                ..at_home
            },
            RtlStage::Descend => Setpoint {
                vertical: Vertical::Descend(self.land_rate()),
                ..at_home
            },
        }
    }
}
