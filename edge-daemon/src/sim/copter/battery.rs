//! The battery: a 6S 5000 mAh LiPo with coulomb counting, a discharge curve and load sag,
//! the current the copter draws from it, and ArduPilot's battery failsafe (`BATT_LOW_*`,
//! `BATT_CRT_*`). What the copter does about a failsafe is in `failsafe.rs`.

use mavlink::dialects::ardupilotmega::{MavMessage, MavSeverity};

use super::noise::XorShift64;
use super::Copter;

/// Battery: 6S LiPo.
pub(super) const CELLS: usize = 6;
/// Internal resistance of a fresh 6S 5000 mAh pack, ohm (about 3 mΩ per cell).
const PACK_RESISTANCE_OHM: f64 = 0.018;
/// Currents, amps: avionics only, props at MOT_SPIN_ARM on the ground, hover.
const IDLE_CURRENT_A: f64 = 0.5;
const SPIN_ARM_CURRENT_A: f64 = 3.0;
pub(super) const HOVER_CURRENT_A: f64 = 18.0;
/// Resting cell voltage against state of charge for a LiPo (flat middle, steep ends).
const LIPO_CURVE: [(f64, f64); 12] = [
    (0.00, 3.50),
    (0.05, 3.61),
    (0.10, 3.68),
    (0.20, 3.73),
    (0.30, 3.77),
    (0.40, 3.80),
    (0.50, 3.84),
    (0.60, 3.88),
    (0.70, 3.94),
    (0.80, 4.01),
    (0.90, 4.09),
    (1.00, 4.20),
];

/// Battery failsafe levels, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum BatteryFailsafe {
    None,
    Low,
    Critical,
}

/// A 6S LiPo pack with coulomb counting, a discharge curve and load sag.
#[derive(Debug, Clone)]
pub(super) struct Battery {
    pub(super) consumed_mah: f64,
    pub(super) consumed_wh: f64,
    pub(super) current_a: f64,
    /// Filtered I·R drop, volts (sag recovers over a fraction of a second, not instantly).
    sag_v: f64,
    /// Fixed per-cell imbalance, volts, summing to zero.
    cell_offsets_v: [f64; CELLS],
    low_volt_timer_s: f64,
    crit_volt_timer_s: f64,
    pub(super) failsafe: BatteryFailsafe,
}

impl Battery {
    pub(super) fn new(rng: &mut XorShift64) -> Self {
        let mut offsets = [0.0; CELLS];
        for o in offsets.iter_mut() {
            *o = 0.006 * rng.signed();
        }
        let mean = offsets.iter().sum::<f64>() / CELLS as f64;
        for o in offsets.iter_mut() {
            *o -= mean;
        }
        Self {
            consumed_mah: 0.0,
            consumed_wh: 0.0,
            current_a: IDLE_CURRENT_A,
            sag_v: 0.0,
            cell_offsets_v: offsets,
            low_volt_timer_s: 0.0,
            crit_volt_timer_s: 0.0,
            failsafe: BatteryFailsafe::None,
        }
    }

    pub(super) fn state_of_charge(&self, capacity_mah: f64) -> f64 {
        (1.0 - self.consumed_mah / capacity_mah).clamp(0.0, 1.0)
    }

    pub(super) fn resting_cell_v(soc: f64) -> f64 {
        let soc = soc.clamp(0.0, 1.0);
        for w in LIPO_CURVE.windows(2) {
            let ((s0, v0), (s1, v1)) = (w[0], w[1]);
            if soc <= s1 {
                return v0 + (v1 - v0) * (soc - s0) / (s1 - s0);
            }
        }
        LIPO_CURVE[LIPO_CURVE.len() - 1].1
    }

    /// Pack voltage under the present load.
    pub(super) fn voltage(&self, capacity_mah: f64) -> f64 {
        CELLS as f64 * Self::resting_cell_v(self.state_of_charge(capacity_mah)) - self.sag_v
    }

    pub(super) fn update(&mut self, dt: f64, current_a: f64, capacity_mah: f64) {
        self.current_a = current_a;
        self.consumed_mah += current_a * dt / 3.6;
        // Internal resistance rises as the pack empties.
        let soc = self.state_of_charge(capacity_mah);
        let resistance = PACK_RESISTANCE_OHM * (1.0 + 0.6 * (1.0 - soc));
        let target_sag = current_a * resistance;
        self.sag_v += (target_sag - self.sag_v) * (dt / 0.4).min(1.0);
        self.consumed_wh += self.voltage(capacity_mah) * current_a * dt / 3600.0;
    }

    /// Percentage remaining from consumed capacity, as ArduPilot's capacity_remaining_pct.
    pub(super) fn remaining_pct(&self, capacity_mah: f64) -> f64 {
        100.0 * self.state_of_charge(capacity_mah)
    }

    pub(super) fn cell_voltages_mv(&self, capacity_mah: f64) -> [u16; 10] {
        let mut cells = [u16::MAX; 10];
        let per_cell = self.voltage(capacity_mah) / CELLS as f64;
        for (c, off) in cells.iter_mut().zip(self.cell_offsets_v.iter()) {
            *c = ((per_cell + off) * 1000.0).round().clamp(0.0, 65534.0) as u16;
        }
        cells
    }

    pub(super) fn swap(&mut self) {
        self.consumed_mah = 0.0;
        self.consumed_wh = 0.0;
        self.sag_v = 0.0;
        self.low_volt_timer_s = 0.0;
        self.crit_volt_timer_s = 0.0;
        self.failsafe = BatteryFailsafe::None;
    }
}

impl Copter {
    pub(super) fn capacity_mah(&self) -> f64 {
        self.params.get("BATT_CAPACITY").max(1.0)
    }

    /// Battery current for the present flight state, amps.
    pub(super) fn current_draw(&mut self) -> f64 {
        let noise = 0.15 * self.rng.signed();
        if !self.armed {
            return IDLE_CURRENT_A + 0.05 * noise;
        }
        let k = &self.kin;
        if k.landed {
            return SPIN_ARM_CURRENT_A + noise;
        }
        let accel = k.ae.hypot(k.an);
        let effort = (accel / 2.0 + k.vz.max(0.0) / 2.5).clamp(0.0, 1.0);
        let descent_relief = 0.1 * ((-k.vz).max(0.0) / 1.5).min(1.0);
        let drag = 0.02 * k.ground_speed().powi(2);
        HOVER_CURRENT_A * (1.0 + 0.3 * effort - descent_relief) + drag + noise
    }

    pub(super) fn check_battery_failsafe(&mut self, dt: f64, out: &mut Vec<MavMessage>) {
        // AP_BattMonitor only evaluates failsafes while armed.
        if !self.armed {
            self.battery.low_volt_timer_s = 0.0;
            self.battery.crit_volt_timer_s = 0.0;
            return;
        }
        let capacity = self.capacity_mah();
        let volts = self.battery.voltage(capacity);
        let remaining = capacity - self.battery.consumed_mah;
        let p = &self.params;
        let (low_v, crit_v) = (p.get("BATT_LOW_VOLT"), p.get("BATT_CRT_VOLT"));
        let (low_mah, crit_mah) = (p.get("BATT_LOW_MAH"), p.get("BATT_CRT_MAH"));
        let timer = p.get("BATT_LOW_TIMER");
        let b = &mut self.battery;
        b.low_volt_timer_s = if low_v > 0.0 && volts < low_v {
            b.low_volt_timer_s + dt
        } else {
            0.0
        };
        b.crit_volt_timer_s = if crit_v > 0.0 && volts < crit_v {
            b.crit_volt_timer_s + dt
        } else {
            0.0
        };
        let level = if (crit_mah > 0.0 && remaining <= crit_mah)
            || (crit_v > 0.0 && b.crit_volt_timer_s >= timer)
        {
            BatteryFailsafe::Critical
        } else if (low_mah > 0.0 && remaining <= low_mah)
            || (low_v > 0.0 && b.low_volt_timer_s >= timer)
        {
            BatteryFailsafe::Low
        } else {
            BatteryFailsafe::None
        };
        if level <= b.failsafe {
            return;
        }
        b.failsafe = level;
        let (word, action) = match level {
            BatteryFailsafe::Critical => ("critical", self.params.get("BATT_FS_CRT_ACT")),
            _ => ("low", self.params.get("BATT_FS_LOW_ACT")),
        };
        let used = self.battery.consumed_mah;
        self.text(
            out,
            MavSeverity::MAV_SEVERITY_WARNING,
            &format!("Battery 1 is {word} {volts:.2}V used {used:.0} mAh"),
        );
        self.failsafe_action(action as i32, out);
    }
}
