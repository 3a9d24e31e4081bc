//! Physics: the kinematic state and one integration step of the position controller,
//! attitude and a falling copter.

use super::guidance::{Setpoint, Vertical};
use super::Copter;

/// Standard gravity, m/s².
const GRAVITY: f64 = 9.80665;
/// Vertical acceleration limit (PSC_ACCZ_MAX is 2.5 m/s²; gentler is more typical in flight).
const VERT_ACCEL: f64 = 1.5;
/// Linear gain of the position controllers' square-root shaping, 1/s.
const POS_GAIN: f64 = 1.0;
/// Heading slew limit while tracking, rad/s (about 60°/s).
const YAW_RATE_MAX: f64 = 1.05;
/// Quadratic drag coefficient (1/m): about 5° of forward tilt at 6 m/s.
const DRAG_COEFF: f64 = 0.025;
/// ANGLE_MAX 30°.
const ANGLE_MAX_RAD: f64 = std::f64::consts::FRAC_PI_6;
/// Terminal velocity of a disarmed (falling) copter, m/s.
const TERMINAL_VELOCITY: f64 = 25.0;
/// Below this height and not climbing, the land detector declares touchdown.
const TOUCHDOWN_ALT_M: f64 = 0.05;

/// Kinematic state in a local frame around the configured home (east, north, up).
#[derive(Debug, Clone, Default)]
pub(super) struct Kinematics {
    pub(super) east: f64,
    pub(super) north: f64,
    /// Height above the configured home, metres.
    pub(super) alt: f64,
    pub(super) ve: f64,
    pub(super) vn: f64,
    /// Vertical speed, up positive.
    pub(super) vz: f64,
    /// Horizontal acceleration applied in the last step, m/s².
    pub(super) ae: f64,
    pub(super) an: f64,
    /// Heading, radians from true north, clockwise, in [0, 2π).
    pub(super) yaw: f64,
    pub(super) yaw_rate: f64,
    pub(super) roll: f64,
    pub(super) pitch: f64,
    pub(super) roll_rate: f64,
    pub(super) pitch_rate: f64,
    pub(super) landed: bool,
}

impl Kinematics {
    pub(super) fn ground_speed(&self) -> f64 {
        self.ve.hypot(self.vn)
    }

    /// Where the copter would stop braking at `decel` from its current velocity; ArduCopter
    /// targets this point when entering LOITER, GUIDED, BRAKE and LAND.
    pub(super) fn stopping_point(&self, decel: f64) -> (f64, f64) {
        let v = self.ground_speed();
        let d = v * v / (2.0 * decel);
        if v < 1e-6 {
            (self.east, self.north)
        } else {
            (self.east + self.ve / v * d, self.north + self.vn / v * d)
        }
    }
}

impl Copter {
    /// Integrates one slice. Returns true on touchdown.
    pub(super) fn fly(&mut self, dt: f64, sp: Setpoint) -> bool {
        let climb_max = (self.params.get("WPNAV_SPEED_UP") / 100.0).max(0.1);
        let descent_max = (self.params.get("WPNAV_SPEED_DN") / 100.0).max(0.1);
        let turbulence = (0.004 * self.rng.signed(), 0.004 * self.rng.signed());
        let k = &mut self.kin;
        if k.landed {
            k.ve = 0.0;
            k.vn = 0.0;
            k.vz = 0.0;
            k.ae = 0.0;
            k.an = 0.0;
            k.alt = 0.0;
            k.yaw_rate = 0.0;
            k.roll_rate = -k.roll / 0.5;
            k.pitch_rate = -k.pitch / 0.5;
            k.roll += k.roll_rate * dt;
            k.pitch += k.pitch_rate * dt;
            return false;
        }
        if !self.armed {
            // Motors stopped in the air: it falls.
            k.vz = (k.vz - GRAVITY * dt).max(-TERMINAL_VELOCITY);
            k.ve *= 1.0 - (0.3 * dt).min(1.0);
            k.vn *= 1.0 - (0.3 * dt).min(1.0);
            k.east += k.ve * dt;
            k.north += k.vn * dt;
            k.alt += k.vz * dt;
            if k.alt <= 0.0 {
                k.alt = 0.0;
                k.landed = true;
                k.ve = 0.0;
                k.vn = 0.0;
                k.vz = 0.0;
                return true;
            }
            return false;
        }

        // Horizontal: square-root shaped approach (slows down to arrive), acceleration limited.
        let (vde, vdn) = match sp.xy {
            Some((te, tn)) => {
                let (dx, dy) = (te - k.east, tn - k.north);
                let d = dx.hypot(dy);
                if d < 1e-6 {
                    (0.0, 0.0)
                } else {
                    let v = sp.speed.min(POS_GAIN * d).min((2.0 * sp.accel * d).sqrt());
                    (dx / d * v, dy / d * v)
                }
            }
            None => (0.0, 0.0),
        };
        let (mut dve, mut dvn) = (vde - k.ve, vdn - k.vn);
        let dv = dve.hypot(dvn);
        // A little authority beyond the profile's acceleration so tracking errors close.
        let max_dv = 1.25 * sp.accel * dt;
        if dv > max_dv {
            dve *= max_dv / dv;
            dvn *= max_dv / dv;
        }
        k.ae = dve / dt;
        k.an = dvn / dt;
        k.ve += dve;
        k.vn += dvn;
        k.east += k.ve * dt;
        k.north += k.vn * dt;

        // Vertical.
        let vz_des = match sp.vertical {
            Vertical::Altitude(h) => {
                let err = h - k.alt;
                let v = (POS_GAIN * err.abs()).min((2.0 * VERT_ACCEL * err.abs()).sqrt());
                (v * err.signum()).clamp(-descent_max, climb_max)
            }
            Vertical::Descend(rate) => -rate,
        };
        let dvz = (vz_des - k.vz).clamp(-VERT_ACCEL * dt, VERT_ACCEL * dt);
        k.vz += dvz;
        k.alt += k.vz * dt;
        if k.alt <= TOUCHDOWN_ALT_M && k.vz <= 0.0 {
            k.alt = 0.0;
            k.landed = true;
            k.ve = 0.0;
            k.vn = 0.0;
            k.vz = 0.0;
            k.ae = 0.0;
            k.an = 0.0;
            return true;
        }

        // Heading follows the track once moving (WP_YAW_BEHAVIOR 2).
        let speed = k.ground_speed();
        let prev_yaw = k.yaw;
        if speed > 1.0 {
            let want = k.ve.atan2(k.vn);
            let err = (want - k.yaw + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU)
                - std::f64::consts::PI;
            k.yaw += err.clamp(-YAW_RATE_MAX * dt, YAW_RATE_MAX * dt);
            k.yaw = k.yaw.rem_euclid(std::f64::consts::TAU);
        }
        let dyaw = (k.yaw - prev_yaw + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU)
            - std::f64::consts::PI;
        k.yaw_rate = dyaw / dt;

        // Attitude: tilt into the thrust needed for the acceleration plus drag.
        let te = k.ae + DRAG_COEFF * speed * k.ve;
        let tn = k.an + DRAG_COEFF * speed * k.vn;
        let (s, c) = k.yaw.sin_cos();
        let a_fwd = te * s + tn * c;
        let a_right = te * c - tn * s;
        let pitch_t = (-(a_fwd / GRAVITY).atan()).clamp(-ANGLE_MAX_RAD, ANGLE_MAX_RAD);
        let roll_t = (a_right / GRAVITY)
            .atan()
            .clamp(-ANGLE_MAX_RAD, ANGLE_MAX_RAD);
        let blend = (dt / 0.15).min(1.0);
        let roll = k.roll + (roll_t + turbulence.0 - k.roll) * blend;
        let pitch = k.pitch + (pitch_t + turbulence.1 - k.pitch) * blend;
        k.roll_rate = (roll - k.roll) / dt;
        k.pitch_rate = (pitch - k.pitch) / dt;
        k.roll = roll;
        k.pitch = pitch;
        false
    }
}
