//! One simulated ArduPilot-like multicopter (ArduCopter 4.x behaviour), as pure logic.
//!
//! No I/O, no clocks and no randomness except a seeded xorshift: the caller advances time with
//! [`Copter::step`] and feeds ground-station messages to [`Copter::handle`], and both append
//! the MAVLink messages a real flight controller would send. That keeps the simulator
//! deterministic (a seed reproduces a run exactly) and lets tests fly ten minutes in a second.
//!
//! What is modelled, and why it matters to a ground station:
//! - Telemetry streams at ArduPilot's usual rates (position class scaled by `telemetry_hz`),
//!   with the field encodings ArduPilot uses (AMSL altitudes in VFR_HUD and GPS_RAW_INT, GPS
//!   time in GPS_RAW_INT, `UINT16_MAX` for unused battery cells, `INT16_MAX` for an unknown
//!   battery temperature, base_mode 89/217 for a disarmed/armed copter in a position mode).
//! - Arming rules (mode must allow arming, battery failsafe blocks it, home is reset at
//!   arming), auto-disarm after `DISARM_DELAY` on the ground, disarm on touchdown in LAND/RTL,
//!   in-flight disarm refused unless forced with 21196 (and then the copter falls).
//! - Modes STABILIZE, ALT_HOLD, AUTO, GUIDED, LOITER, RTL, LAND and BRAKE with ArduCopter's
//!   numbers; RTL climbs to `RTL_ALT` (or keeps a higher altitude), returns at `WPNAV_SPEED`,
//!   loiters `RTL_LOIT_TIME`, then descends at `WPNAV_SPEED_DN` down to 10 m and `LAND_SPEED`
//!   below it (about 1 m/s on average from survey altitude), lands and disarms.
//! - A built-in mission: home as item 0 and a lawnmower survey of the configured field as
//!   items 1..n, with "Mission: N WP" / "Reached command #N" texts and MISSION_ITEM_REACHED.
//!   As in ArduCopter, AUTO cannot start armed on the ground without a takeoff item, so the
//!   usual sequence is GUIDED, arm, takeoff, AUTO (which is exactly what `auto_fly` does).
//! - A 6S 5000 mAh LiPo with a realistic discharge curve and sag, capacity and voltage
//!   failsafes (`BATT_LOW_MAH` 25 % → RTL, `BATT_CRT_MAH` 10 % → LAND) announced the way
//!   ArduPilot words them, and the GCS failsafe when `FS_GCS_ENABLE` is set.
//! - A parameter table of about 40 real ArduCopter parameters, several of which change the
//!   behaviour (`WPNAV_SPEED`, `RTL_ALT`, `BATT_*`, `DISARM_DELAY`, `SR1_*`, `SYSID_ENFORCE`).
//!
//! Two protocol details differ from a real ArduPilot because of the `mavlink` crate as the
//! workspace configures it (0.21 without `mav2-message-extensions`): COMMAND_ACK carries no
//! `target_system`/`target_component` and MISSION_CURRENT no `total`/`mission_state`, since
//! those extension fields do not exist in the generated structs; and ArduPilot acks the
//! SET_MODE *message* with `command = 11` (the SET_MODE message id), a value `MavCmd` cannot
//! represent (the crate would fail to parse such an ack with `InvalidEnum`), so this
//! simulator acks it with `MAV_CMD_DO_SET_MODE` instead.

use mavlink::dialects::ardupilotmega::{
    GpsFixType, MavAutopilot, MavBatteryFunction, MavBatteryType, MavCmd, MavMessage, MavModeFlag,
    MavParamType, MavProtocolCapability, MavResult, MavSeverity, MavState, MavSysStatusSensor,
    MavType, PositionTargetTypemask, ATTITUDE_DATA, AUTOPILOT_VERSION_DATA, BATTERY_STATUS_DATA,
    COMMAND_ACK_DATA, COMMAND_INT_DATA, COMMAND_LONG_DATA, GLOBAL_POSITION_INT_DATA,
    GPS_RAW_INT_DATA, HEARTBEAT_DATA, HOME_POSITION_DATA, MISSION_CURRENT_DATA,
    MISSION_ITEM_REACHED_DATA, PARAM_VALUE_DATA, RADIO_STATUS_DATA,
    SET_POSITION_TARGET_GLOBAL_INT_DATA, STATUSTEXT_DATA, SYSTEM_TIME_DATA, SYS_STATUS_DATA,
    VFR_HUD_DATA,
};
use mavlink::types::CharArray;
use mavlink::MessageData;

use crate::survey::{self, LatLon, SurveyPlan};

/// Altitude of home above mean sea level, metres (a valley-floor vineyard).
const HOME_AMSL_M: f64 = 48.0;
/// Standard gravity, m/s².
const GRAVITY: f64 = 9.80665;
/// Survey defaults for the mission the copter builds from its field.
const SURVEY_ALT_M: f64 = 30.0;
const SURVEY_ROW_SPACING_M: f64 = 5.0;
const SURVEY_SPEED_MPS: f64 = 6.0;
/// Magic value in param2 of MAV_CMD_COMPONENT_ARM_DISARM that forces (dis)arming.
const FORCE_ARM_MAGIC: f32 = 21196.0;
/// ArduCopter switches from `WPNAV_SPEED_DN` to `LAND_SPEED` below `LAND_ALT_LOW` (10 m).
const LAND_ALT_LOW_M: f64 = 10.0;
/// Deceleration of ArduCopter's BRAKE mode (BRAKE_MODE_DECEL_RATE, 7.5 m/s²).
const BRAKE_DECEL: f64 = 7.5;
/// Without a pilot, STABILIZE/ALT_HOLD just coast to a stop on drag.
const DRIFT_DECEL: f64 = 0.5;
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
/// Battery: 6S LiPo.
const CELLS: usize = 6;
/// Internal resistance of a fresh 6S 5000 mAh pack, ohm (about 3 mΩ per cell).
const PACK_RESISTANCE_OHM: f64 = 0.018;
/// Currents, amps: avionics only, props at MOT_SPIN_ARM on the ground, hover.
const IDLE_CURRENT_A: f64 = 0.5;
const SPIN_ARM_CURRENT_A: f64 = 3.0;
const HOVER_CURRENT_A: f64 = 18.0;
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
/// auto_fly: time on the ground after landing before the next launch, and when within it
/// the battery is swapped.
const GROUND_TURNAROUND_S: f64 = 20.0;
const BATTERY_SWAP_AT_S: f64 = 15.0;
/// auto_fly: pause hovering at the last survey waypoint before RTL.
const MISSION_DONE_PAUSE_S: f64 = 2.0;
/// Firmware reported in AUTOPILOT_VERSION: ArduCopter 4.5.7 official.
const FLIGHT_SW_VERSION: u32 = (4 << 24) | (5 << 16) | (7 << 8) | 255;

/// Configuration of one simulated copter.
#[derive(Debug, Clone)]
pub struct CopterConfig {
    /// MAVLink system id (also SYSID_THISMAV).
    pub sysid: u8,
    /// Where it boots, arms and returns to.
    pub home: LatLon,
    /// The vineyard block it surveys (polygon, open or closed ring).
    pub field: Vec<LatLon>,
    /// Position/attitude stream rate, Hz (default 10).
    pub telemetry_hz: f64,
    /// Take off and survey by itself, forever: survey, RTL, land, battery swap (about 20 s on
    /// the ground), again.
    pub auto_fly: bool,
    /// Seed of the noise generator: the same seed gives the same run.
    pub seed: u64,
}

impl CopterConfig {
    /// A configuration with the defaults: 10 Hz telemetry, auto_fly on, seed = sysid.
    pub fn new(sysid: u8, home: LatLon, field: Vec<LatLon>) -> Self {
        Self {
            sysid,
            home,
            field,
            telemetry_hz: 10.0,
            auto_fly: true,
            seed: u64::from(sysid),
        }
    }
}

/// The ArduCopter flight modes this simulator flies, with ArduCopter's mode numbers
/// (HEARTBEAT custom_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightMode {
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
    /// ArduCopter's number for the mode.
    pub fn number(self) -> u32 {
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
    pub fn from_number(n: u32) -> Option<Self> {
        Some(match n {
            0 => Self::Stabilize,
            2 => Self::AltHold,
            3 => Self::Auto,
            4 => Self::Guided,
            5 => Self::Loiter,
            6 => Self::Rtl,
            9 => Self::Land,
            17 => Self::Brake,
            _ => return None,
        })
    }

    /// The name ArduPilot uses in messages ("GUIDED", "RTL", ...).
    pub fn name(self) -> &'static str {
        arducopter_mode_name(self.number()).unwrap_or("?")
    }

    /// ArduCopter refuses to arm in modes that would fly off on their own.
    fn allows_arming(self) -> bool {
        !matches!(self, Self::Auto | Self::Rtl | Self::Land | Self::Brake)
    }

    /// Modes where the position controller is active: ArduCopter sets GUIDED_ENABLED in
    /// base_mode for those.
    fn position_controlled(self) -> bool {
        !matches!(self, Self::Stabilize | Self::AltHold)
    }
}

/// Every mode number ArduCopter 4.x knows, for telling "not simulated" from "no such mode".
fn arducopter_mode_name(n: u32) -> Option<&'static str> {
    Some(match n {
        0 => "STABILIZE",
        1 => "ACRO",
        2 => "ALT_HOLD",
        3 => "AUTO",
        4 => "GUIDED",
        5 => "LOITER",
        6 => "RTL",
        7 => "CIRCLE",
        9 => "LAND",
        11 => "DRIFT",
        13 => "SPORT",
        14 => "FLIP",
        15 => "AUTOTUNE",
        16 => "POSHOLD",
        17 => "BRAKE",
        18 => "THROW",
        19 => "AVOID_ADSB",
        20 => "GUIDED_NOGPS",
        21 => "SMART_RTL",
        22 => "FLOWHOLD",
        23 => "FOLLOW",
        24 => "ZIGZAG",
        25 => "SYSTEMID",
        26 => "AUTOROTATE",
        27 => "AUTO_RTL",
        28 => "TURTLE",
        _ => return None,
    })
}

/// xorshift64* — tiny, seeded, and good enough for sensor noise.
#[derive(Debug, Clone)]
struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // Mix the seed so that small seeds (sysids) give unrelated streams; never zero.
        let mixed = (seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        Self {
            state: if mixed == 0 {
                0x2545_F491_4F6C_DD1D
            } else {
                mixed
            },
        }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f64 {
        2.0 * self.uniform() - 1.0
    }
}

/// A bounded random walk: values that drift slowly (satellite count, RSSI, CPU load).
#[derive(Debug, Clone)]
struct Wander {
    value: f64,
    lo: f64,
    hi: f64,
    step: f64,
}

impl Wander {
    fn new(rng: &mut XorShift64, lo: f64, hi: f64, step: f64) -> Self {
        Self {
            value: lo + (hi - lo) * rng.uniform(),
            lo,
            hi,
            step,
        }
    }

    fn next(&mut self, rng: &mut XorShift64) -> f64 {
        self.value = (self.value + self.step * rng.signed()).clamp(self.lo, self.hi);
        self.value
    }
}

/// When a periodic stream is due, on simulated time. At most one message per call: a caller
/// stepping slower than the stream rate gets one per step rather than a burst.
#[derive(Debug, Clone, Copy)]
struct Rate {
    period_s: Option<f64>,
    next_s: f64,
}

impl Rate {
    fn hz(hz: f64, now: f64) -> Self {
        let mut r = Self {
            period_s: None,
            next_s: now,
        };
        r.set_hz(hz, now);
        r
    }

    /// A rate of 0 (or anything not positive and finite) turns the stream off, as SRn_* = 0
    /// does in ArduPilot.
    fn set_hz(&mut self, hz: f64, now: f64) {
        self.period_s = (hz.is_finite() && hz > 0.0).then(|| 1.0 / hz);
        self.next_s = now;
    }

    fn due(&mut self, now: f64) -> bool {
        let Some(period) = self.period_s else {
            return false;
        };
        if now + 1e-9 < self.next_s {
            return false;
        }
        self.next_s += period;
        if self.next_s <= now {
            self.next_s = now + period;
        }
        true
    }
}

/// One telemetry stream: which message, how often.
#[derive(Debug, Clone)]
struct Stream {
    msg_id: u32,
    rate: Rate,
}

/// Battery failsafe levels, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BatteryFailsafe {
    None,
    Low,
    Critical,
}

/// A 6S LiPo pack with coulomb counting, a discharge curve and load sag.
#[derive(Debug, Clone)]
struct Battery {
    consumed_mah: f64,
    consumed_wh: f64,
    current_a: f64,
    /// Filtered I·R drop, volts (sag recovers over a fraction of a second, not instantly).
    sag_v: f64,
    /// Fixed per-cell imbalance, volts, summing to zero.
    cell_offsets_v: [f64; CELLS],
    low_volt_timer_s: f64,
    crit_volt_timer_s: f64,
    failsafe: BatteryFailsafe,
}

impl Battery {
    fn new(rng: &mut XorShift64) -> Self {
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

    fn state_of_charge(&self, capacity_mah: f64) -> f64 {
        (1.0 - self.consumed_mah / capacity_mah).clamp(0.0, 1.0)
    }

    fn resting_cell_v(soc: f64) -> f64 {
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
    fn voltage(&self, capacity_mah: f64) -> f64 {
        CELLS as f64 * Self::resting_cell_v(self.state_of_charge(capacity_mah)) - self.sag_v
    }

    fn update(&mut self, dt: f64, current_a: f64, capacity_mah: f64) {
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
    fn remaining_pct(&self, capacity_mah: f64) -> f64 {
        100.0 * self.state_of_charge(capacity_mah)
    }

    fn cell_voltages_mv(&self, capacity_mah: f64) -> [u16; 10] {
        let mut cells = [u16::MAX; 10];
        let per_cell = self.voltage(capacity_mah) / CELLS as f64;
        for (c, off) in cells.iter_mut().zip(self.cell_offsets_v.iter()) {
            *c = ((per_cell + off) * 1000.0).round().clamp(0.0, 65534.0) as u16;
        }
        cells
    }

    fn swap(&mut self) {
        self.consumed_mah = 0.0;
        self.consumed_wh = 0.0;
        self.sag_v = 0.0;
        self.low_volt_timer_s = 0.0;
        self.crit_volt_timer_s = 0.0;
        self.failsafe = BatteryFailsafe::None;
    }
}

/// Kinematic state in a local frame around the configured home (east, north, up).
#[derive(Debug, Clone, Default)]
struct Kinematics {
    east: f64,
    north: f64,
    /// Height above the configured home, metres.
    alt: f64,
    ve: f64,
    vn: f64,
    /// Vertical speed, up positive.
    vz: f64,
    /// Horizontal acceleration applied in the last step, m/s².
    ae: f64,
    an: f64,
    /// Heading, radians from true north, clockwise, in [0, 2π).
    yaw: f64,
    yaw_rate: f64,
    roll: f64,
    pitch: f64,
    roll_rate: f64,
    pitch_rate: f64,
    landed: bool,
}

impl Kinematics {
    fn ground_speed(&self) -> f64 {
        self.ve.hypot(self.vn)
    }

    /// Where the copter would stop braking at `decel` from its current velocity; ArduCopter
    /// targets this point when entering LOITER, GUIDED, BRAKE and LAND.
    fn stopping_point(&self, decel: f64) -> (f64, f64) {
        let v = self.ground_speed();
        let d = v * v / (2.0 * decel);
        if v < 1e-6 {
            (self.east, self.north)
        } else {
            (self.east + self.ve / v * d, self.north + self.vn / v * d)
        }
    }
}

/// What the position controller is asked to do in one step.
#[derive(Debug, Clone, Copy)]
struct Setpoint {
    /// Horizontal target (east, north), or None to just decelerate.
    xy: Option<(f64, f64)>,
    speed: f64,
    accel: f64,
    vertical: Vertical,
}

#[derive(Debug, Clone, Copy)]
enum Vertical {
    /// Hold or go to this height above the configured home.
    Altitude(f64),
    /// Descend at this rate until touchdown.
    Descend(f64),
}

/// Stages of ArduCopter's RTL.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RtlStage {
    Climb,
    Return,
    Loiter { until_s: f64 },
    FinalHold,
    Descend,
}

/// The built-in mission: item 0 is home, items 1..=n the survey waypoints.
#[derive(Debug, Clone)]
struct Mission {
    plan: SurveyPlan,
    waypoints: Vec<LatLon>,
    /// Waypoints in the local frame.
    local: Vec<(f64, f64)>,
    /// Current item, 1-based; 0 before the mission has ever started.
    current: u16,
    complete: bool,
}

impl Mission {
    fn build(origin: LatLon, field: &[LatLon]) -> Self {
        let plan = SurveyPlan {
            row_spacing_m: SURVEY_ROW_SPACING_M,
            heading_deg: longest_edge_bearing(field),
            altitude_m: SURVEY_ALT_M,
            speed_mps: SURVEY_SPEED_MPS,
            overlap: 0.0,
            turnaround_m: 0.0,
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

/// One parameter: name, value (ArduPilot sends every type as a float), type.
#[derive(Debug, Clone)]
struct Param {
    name: &'static str,
    value: f32,
    kind: MavParamType,
}

/// A small but real ArduCopter parameter table, sorted by name.
#[derive(Debug, Clone)]
struct Params {
    list: Vec<Param>,
}

impl Params {
    fn defaults(sysid: u8, telemetry_hz: f64) -> Self {
        use MavParamType::{
            MAV_PARAM_TYPE_INT16 as I16, MAV_PARAM_TYPE_INT32 as I32, MAV_PARAM_TYPE_INT8 as I8,
            MAV_PARAM_TYPE_REAL32 as F32,
        };
        let hz = telemetry_hz as f32;
        let table: [(&'static str, f32, MavParamType); 43] = [
            ("ANGLE_MAX", 3000.0, I16),
            ("ARMING_CHECK", 1.0, I32),
            ("BATT_ARM_MAH", 0.0, I32),
            ("BATT_CAPACITY", 5000.0, I32),
            ("BATT_CRT_MAH", 500.0, I32),
            ("BATT_CRT_VOLT", 20.4, F32),
            ("BATT_FS_CRT_ACT", 1.0, I8),
            ("BATT_FS_LOW_ACT", 2.0, I8),
            ("BATT_LOW_MAH", 1250.0, I32),
            ("BATT_LOW_TIMER", 10.0, I8),
            ("BATT_LOW_VOLT", 21.0, F32),
            ("BATT_MONITOR", 4.0, I8),
            ("DISARM_DELAY", 10.0, I8),
            ("FENCE_ACTION", 1.0, I8),
            ("FENCE_ALT_MAX", 100.0, F32),
            ("FENCE_ENABLE", 0.0, I8),
            ("FENCE_RADIUS", 300.0, F32),
            ("FENCE_TYPE", 7.0, I8),
            ("FRAME_CLASS", 1.0, I8),
            ("FRAME_TYPE", 1.0, I8),
            ("FS_GCS_ENABLE", 0.0, I8),
            ("FS_GCS_TIMEOUT", 5.0, F32),
            ("FS_THR_ENABLE", 0.0, I8),
            ("GPS_TYPE", 1.0, I8),
            ("LAND_SPEED", 50.0, I16),
            ("LAND_SPEED_HIGH", 0.0, I16),
            ("MOT_THST_HOVER", 0.35, F32),
            ("RTL_ALT", 1500.0, I32),
            ("RTL_ALT_FINAL", 0.0, I16),
            ("RTL_LOIT_TIME", 5000.0, I32),
            ("RTL_SPEED", 0.0, I16),
            ("SR1_EXTRA1", hz, I16),
            ("SR1_EXTRA2", hz / 2.5, I16),
            ("SR1_EXT_STAT", 2.0, I16),
            ("SR1_POSITION", hz, I16),
            ("SYSID_ENFORCE", 0.0, I8),
            ("SYSID_MYGCS", 255.0, I16),
            ("SYSID_THISMAV", f32::from(sysid), I16),
            ("WPNAV_ACCEL", 200.0, F32),
            ("WPNAV_RADIUS", 200.0, F32),
            ("WPNAV_SPEED", (SURVEY_SPEED_MPS * 100.0) as f32, F32),
            ("WPNAV_SPEED_DN", 150.0, F32),
            ("WPNAV_SPEED_UP", 250.0, F32),
        ];
        Self {
            list: table
                .into_iter()
                .map(|(name, value, kind)| Param {
                    name,
                    value: round_for_type(value, kind),
                    kind,
                })
                .collect(),
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|p| p.name == name)
    }

    /// Value of a parameter; every name used by the simulator is in the table, so the
    /// fallback is never hit in practice.
    fn get(&self, name: &str) -> f64 {
        self.index_of(name)
            .map(|i| f64::from(self.list[i].value))
            .unwrap_or(0.0)
    }

    fn count(&self) -> u16 {
        u16::try_from(self.list.len()).unwrap_or(u16::MAX)
    }

    fn value_message(&self, index: usize) -> Option<MavMessage> {
        let p = self.list.get(index)?;
        Some(MavMessage::PARAM_VALUE(PARAM_VALUE_DATA {
            param_value: p.value,
            param_count: self.count(),
            param_index: u16::try_from(index).unwrap_or(u16::MAX),
            param_id: CharArray::from(p.name),
            param_type: p.kind,
        }))
    }
}

/// Integer parameters hold integers: round and clamp the way AP_Param stores them.
fn round_for_type(value: f32, kind: MavParamType) -> f32 {
    let (lo, hi) = match kind {
        MavParamType::MAV_PARAM_TYPE_INT8 => (f32::from(i8::MIN), f32::from(i8::MAX)),
        MavParamType::MAV_PARAM_TYPE_UINT8 => (0.0, f32::from(u8::MAX)),
        MavParamType::MAV_PARAM_TYPE_INT16 => (f32::from(i16::MIN), f32::from(i16::MAX)),
        MavParamType::MAV_PARAM_TYPE_UINT16 => (0.0, f32::from(u16::MAX)),
        MavParamType::MAV_PARAM_TYPE_INT32 => (i32::MIN as f32, i32::MAX as f32),
        MavParamType::MAV_PARAM_TYPE_UINT32 => (0.0, u32::MAX as f32),
        _ => return value,
    };
    value.round().clamp(lo, hi)
}

/// A COMMAND_LONG or COMMAND_INT, normalised. Positions keep full precision from
/// COMMAND_INT (degrees ×1e7 integers) instead of going through f32.
#[derive(Debug, Clone, Copy)]
struct Command {
    command: MavCmd,
    params: [f32; 4],
    lat: f64,
    lon: f64,
    z: f32,
    /// COMMAND_INT's frame as its number (COMMAND_LONG has none).
    frame: Option<u32>,
}

impl Command {
    fn from_long(c: &COMMAND_LONG_DATA) -> Self {
        Self {
            command: c.command,
            params: [c.param1, c.param2, c.param3, c.param4],
            lat: f64::from(c.param5),
            lon: f64::from(c.param6),
            z: c.param7,
            frame: None,
        }
    }

    fn from_int(c: &COMMAND_INT_DATA) -> Self {
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

/// One simulated ArduCopter.
#[derive(Debug, Clone)]
pub struct Copter {
    cfg: CopterConfig,
    rng: XorShift64,
    /// Simulated seconds since the autopilot booted.
    time_s: f64,
    last_unix_us: u64,
    /// Origin of the local frame: the configured home.
    origin: LatLon,
    /// Current home (ArduPilot resets it to the current position at arming), local frame.
    home_local: (f64, f64),
    kin: Kinematics,
    armed: bool,
    mode: FlightMode,
    hold_xy: (f64, f64),
    hold_alt: f64,
    rtl_stage: RtlStage,
    rtl_alt: f64,
    /// MAV_CMD_DO_CHANGE_SPEED override of WPNAV_SPEED, until the next mode change.
    speed_override: Option<f64>,
    mission: Mission,
    battery: Battery,
    params: Params,
    streams: Vec<Stream>,
    ground_idle_s: f64,
    gcs_failsafe: bool,
    last_gcs_heartbeat_s: Option<f64>,
    last_sender: Option<(u8, u8)>,
    // auto_fly script state
    ground_since_s: Option<f64>,
    script_takeoff: bool,
    mission_done_since_s: Option<f64>,
    // slowly varying noise
    sats: Wander,
    hdop: Wander,
    gps_err_e: Wander,
    gps_err_n: Wander,
    load: Wander,
    rssi: Wander,
    remrssi: Wander,
    noise: Wander,
    remnoise: Wander,
    txbuf: Wander,
    rx_errors: u16,
    fixed: u16,
}

impl Copter {
    pub fn new(cfg: CopterConfig) -> Self {
        let mut rng = XorShift64::new(cfg.seed);
        let hz = if cfg.telemetry_hz.is_finite() && cfg.telemetry_hz > 0.0 {
            cfg.telemetry_hz.min(50.0)
        } else {
            10.0
        };
        // The autopilot has been powered for a while when the simulation starts.
        let time_s = 20.0 + 40.0 * rng.uniform();
        let launch_delay_s = 5.0 + 10.0 * rng.uniform();
        let origin = cfg.home;
        let mission = Mission::build(origin, &cfg.field);
        let params = Params::defaults(cfg.sysid, hz);
        let streams = vec![
            (HEARTBEAT_DATA::ID, 1.0),
            (GLOBAL_POSITION_INT_DATA::ID, hz),
            (ATTITUDE_DATA::ID, hz),
            (VFR_HUD_DATA::ID, hz / 2.5),
            (GPS_RAW_INT_DATA::ID, hz / 2.0),
            (SYS_STATUS_DATA::ID, 2.0),
            (BATTERY_STATUS_DATA::ID, 1.0),
            (SYSTEM_TIME_DATA::ID, 1.0),
            (MISSION_CURRENT_DATA::ID, 1.0),
            (RADIO_STATUS_DATA::ID, 1.0),
            (HOME_POSITION_DATA::ID, 0.1),
        ]
        .into_iter()
        .map(|(msg_id, hz)| Stream {
            msg_id,
            rate: Rate::hz(hz, time_s),
        })
        .collect();
        let battery = Battery::new(&mut rng);
        let kin = Kinematics {
            landed: true,
            yaw: std::f64::consts::TAU * rng.uniform(),
            ..Kinematics::default()
        };
        let ground_since_s = cfg
            .auto_fly
            .then_some(time_s + launch_delay_s - GROUND_TURNAROUND_S);
        Self {
            sats: Wander::new(&mut rng, 14.0, 18.99, 0.15),
            hdop: Wander::new(&mut rng, 80.0, 120.0, 2.0),
            gps_err_e: Wander::new(&mut rng, -0.6, 0.6, 0.05),
            gps_err_n: Wander::new(&mut rng, -0.6, 0.6, 0.05),
            load: Wander::new(&mut rng, 180.0, 320.0, 10.0),
            rssi: Wander::new(&mut rng, 150.0, 200.0, 3.0),
            remrssi: Wander::new(&mut rng, 150.0, 200.0, 3.0),
            noise: Wander::new(&mut rng, 40.0, 60.0, 1.5),
            remnoise: Wander::new(&mut rng, 40.0, 60.0, 1.5),
            txbuf: Wander::new(&mut rng, 95.0, 100.0, 1.0),
            rx_errors: 0,
            fixed: 0,
            cfg,
            rng,
            time_s,
            last_unix_us: 0,
            origin,
            home_local: (0.0, 0.0),
            kin,
            armed: false,
            mode: FlightMode::Stabilize,
            hold_xy: (0.0, 0.0),
            hold_alt: 0.0,
            rtl_stage: RtlStage::Climb,
            rtl_alt: 0.0,
            speed_override: None,
            mission,
            battery,
            params,
            streams,
            ground_idle_s: 0.0,
            gcs_failsafe: false,
            last_gcs_heartbeat_s: None,
            last_sender: None,
            ground_since_s,
            script_takeoff: false,
            mission_done_since_s: None,
        }
    }

    pub fn sysid(&self) -> u8 {
        self.cfg.sysid
    }

    /// Current position.
    pub fn position(&self) -> LatLon {
        survey::from_local_m(self.origin, self.kin.east, self.kin.north)
    }

    /// Height above the configured home, metres.
    pub fn altitude_m(&self) -> f64 {
        self.kin.alt
    }

    /// ArduCopter mode number (HEARTBEAT custom_mode).
    pub fn mode(&self) -> u32 {
        self.mode.number()
    }

    pub fn flight_mode(&self) -> FlightMode {
        self.mode
    }

    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Battery remaining, percent of capacity.
    pub fn battery_pct(&self) -> f64 {
        self.battery.remaining_pct(self.capacity_mah())
    }

    /// The survey plan the copter built for its field.
    pub fn survey_plan(&self) -> &SurveyPlan {
        &self.mission.plan
    }

    /// The survey waypoints, mission items 1..=n (item 0 is home).
    pub fn mission(&self) -> &[LatLon] {
        &self.mission.waypoints
    }

    /// The system and component that last sent this vehicle a message: where ArduPilot would
    /// address COMMAND_ACK's target fields, which this build of the crate cannot carry.
    pub fn last_sender(&self) -> Option<(u8, u8)> {
        self.last_sender
    }

    fn capacity_mah(&self) -> f64 {
        self.params.get("BATT_CAPACITY").max(1.0)
    }

    fn home(&self) -> LatLon {
        survey::from_local_m(self.origin, self.home_local.0, self.home_local.1)
    }

    // ------------------------------------------------------------------------------------
    // Time
    // ------------------------------------------------------------------------------------

    /// Advance the simulation by `dt` seconds (called at e.g. 50 Hz) and append the telemetry
    /// messages that fall due in this step, as ArduPilot streams them, plus any event
    /// messages (STATUSTEXT, MISSION_ITEM_REACHED). `unix_us` is the wall time used for
    /// SYSTEM_TIME and GPS time. Steps longer than 20 ms are integrated in 20 ms slices; a
    /// stream emits at most one message per call.
    pub fn step(&mut self, dt: f64, unix_us: u64, out: &mut Vec<MavMessage>) {
        self.last_unix_us = unix_us;
        if !(dt.is_finite() && dt > 0.0) {
            return;
        }
        let slices = (dt / 0.02).ceil().clamp(1.0, 100_000.0);
        let h = dt / slices;
        for _ in 0..slices as u64 {
            self.time_s += h;
            self.physics_step(h, out);
        }
        self.emit_streams(out);
    }

    fn physics_step(&mut self, dt: f64, out: &mut Vec<MavMessage>) {
        if self.cfg.auto_fly {
            self.run_script(out);
        }
        let sp = self.guidance(out);
        let touched_down = self.fly(dt, sp);
        if touched_down && self.armed && matches!(self.mode, FlightMode::Land | FlightMode::Rtl) {
            // ArduCopter's LAND and RTL disarm as soon as the land detector triggers.
            self.disarm(out);
        }
        self.auto_disarm_check(dt, out);
        let current = self.current_draw();
        let capacity = self.capacity_mah();
        self.battery.update(dt, current, capacity);
        self.check_battery_failsafe(dt, out);
        self.check_gcs_failsafe(out);
    }

    // ------------------------------------------------------------------------------------
    // Guidance: what each mode asks of the position controller
    // ------------------------------------------------------------------------------------

    fn cruise_speed(&self) -> f64 {
        self.speed_override
            .unwrap_or_else(|| self.params.get("WPNAV_SPEED") / 100.0)
            .max(0.2)
    }

    fn wp_accel(&self) -> f64 {
        (self.params.get("WPNAV_ACCEL") / 100.0).max(0.5)
    }

    fn wp_radius(&self) -> f64 {
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

    fn guidance(&mut self, out: &mut Vec<MavMessage>) -> Setpoint {
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

    fn auto_guidance(&mut self, hold: Setpoint, out: &mut Vec<MavMessage>) -> Setpoint {
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

    // ------------------------------------------------------------------------------------
    // Physics
    // ------------------------------------------------------------------------------------

    /// Integrates one slice. Returns true on touchdown.
    fn fly(&mut self, dt: f64, sp: Setpoint) -> bool {
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

    /// Battery current for the present flight state, amps.
    fn current_draw(&mut self) -> f64 {
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

    // ------------------------------------------------------------------------------------
    // Arming, modes, failsafes
    // ------------------------------------------------------------------------------------

    fn arm(&mut self, force: bool, out: &mut Vec<MavMessage>) -> MavResult {
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

    fn disarm(&mut self, out: &mut Vec<MavMessage>) {
        if !self.armed {
            return;
        }
        self.armed = false;
        self.script_takeoff = false;
        self.text(out, MavSeverity::MAV_SEVERITY_INFO, "Disarming motors");
    }

    /// ArduCopter disarms by itself after DISARM_DELAY seconds armed on the ground.
    fn auto_disarm_check(&mut self, dt: f64, out: &mut Vec<MavMessage>) {
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

    /// ArduPilot's `_set_mode_common`: only custom modes are understood.
    fn set_mode_common(
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

    fn set_mode(&mut self, number: u32, out: &mut Vec<MavMessage>) -> MavResult {
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
                    "Mode change to AUTO failed: init failed",
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
                    "Mode change to AUTO failed: init failed",
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

    fn announce_mission_item(&mut self, out: &mut Vec<MavMessage>) {
        let seq = self.mission.current;
        self.text(
            out,
            MavSeverity::MAV_SEVERITY_INFO,
            &format!("Mission: {seq} WP"),
        );
    }

    fn takeoff(&mut self, alt: f64) -> MavResult {
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

    fn check_battery_failsafe(&mut self, dt: f64, out: &mut Vec<MavMessage>) {
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

    /// ArduCopter's failsafe actions (BATT_FS_*_ACT / FS_GCS_ENABLE numbering): 0 none,
    /// 1 land, 2 RTL, 3 SmartRTL or RTL, 4 SmartRTL or land, 5 terminate. On the ground a
    /// failsafe just disarms; a copter already landing keeps landing.
    fn failsafe_action(&mut self, action: i32, out: &mut Vec<MavMessage>) {
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
    fn check_gcs_failsafe(&mut self, out: &mut Vec<MavMessage>) {
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

    // ------------------------------------------------------------------------------------
    // auto_fly: what a field crew's script (or Lua on the autopilot) would do
    // ------------------------------------------------------------------------------------

    fn run_script(&mut self, out: &mut Vec<MavMessage>) {
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

    // ------------------------------------------------------------------------------------
    // Messages from the ground station
    // ------------------------------------------------------------------------------------

    /// Handle a message the ground station sent to this vehicle (already known to target it
    /// or to be broadcast) from `sender_sys`/`sender_comp`; append the replies.
    ///
    /// With SYSID_ENFORCE = 1, as in ArduPilot, only messages from SYSID_MYGCS (or from this
    /// system's own components) are accepted.
    pub fn handle(
        &mut self,
        sender_sys: u8,
        sender_comp: u8,
        msg: &MavMessage,
        out: &mut Vec<MavMessage>,
    ) {
        let my_gcs = self.params.get("SYSID_MYGCS") as i64;
        if self.params.get("SYSID_ENFORCE") != 0.0
            && i64::from(sender_sys) != my_gcs
            && sender_sys != self.cfg.sysid
        {
            return;
        }
        self.last_sender = Some((sender_sys, sender_comp));
        match msg {
            MavMessage::HEARTBEAT(_) if i64::from(sender_sys) == my_gcs => {
                self.last_gcs_heartbeat_s = Some(self.time_s);
            }
            MavMessage::COMMAND_LONG(c) => self.handle_command(Command::from_long(c), out),
            MavMessage::COMMAND_INT(c) => self.handle_command(Command::from_int(c), out),
            // SET_MODE is deprecated in favour of MAV_CMD_DO_SET_MODE, but ArduPilot still
            // honours it and many ground stations still send it.
            #[allow(deprecated)]
            MavMessage::SET_MODE(m) => {
                let result =
                    self.set_mode_common(u32::from(m.base_mode.bits()), m.custom_mode, out);
                ack(out, MavCmd::MAV_CMD_DO_SET_MODE, result, self.last_sender);
            }
            MavMessage::SET_POSITION_TARGET_GLOBAL_INT(t) => self.handle_position_target(t),
            MavMessage::PARAM_REQUEST_LIST(_) => {
                out.extend(
                    (0..self.params.list.len()).filter_map(|i| self.params.value_message(i)),
                );
            }
            MavMessage::PARAM_REQUEST_READ(r) => {
                let index = if r.param_index >= 0 {
                    Some(r.param_index as usize)
                } else {
                    r.param_id
                        .to_str()
                        .ok()
                        .and_then(|name| self.params.index_of(name))
                };
                // Unknown names and indices get no reply, as in ArduPilot.
                if let Some(m) = index.and_then(|i| self.params.value_message(i)) {
                    out.push(m);
                }
            }
            MavMessage::PARAM_SET(s) => {
                let Some(index) = s
                    .param_id
                    .to_str()
                    .ok()
                    .and_then(|n| self.params.index_of(n))
                else {
                    return;
                };
                if !s.param_value.is_finite() {
                    return;
                }
                self.set_param(index, s.param_value);
                if let Some(m) = self.params.value_message(index) {
                    out.push(m);
                }
            }
            _ => {}
        }
    }

    fn set_param(&mut self, index: usize, value: f32) {
        let Some(p) = self.params.list.get_mut(index) else {
            return;
        };
        p.value = round_for_type(value, p.kind);
        let (name, v) = (p.name, f64::from(p.value));
        let now = self.time_s;
        let mut retime = |id: u32, hz: f64| {
            for s in self.streams.iter_mut().filter(|s| s.msg_id == id) {
                s.rate.set_hz(hz, now);
            }
        };
        match name {
            "SR1_POSITION" => {
                retime(GLOBAL_POSITION_INT_DATA::ID, v);
                retime(GPS_RAW_INT_DATA::ID, v / 2.0);
            }
            "SR1_EXTRA1" => retime(ATTITUDE_DATA::ID, v),
            "SR1_EXTRA2" => retime(VFR_HUD_DATA::ID, v),
            "SR1_EXT_STAT" => retime(SYS_STATUS_DATA::ID, v),
            _ => {}
        }
    }

    /// GUIDED position targets; ArduCopter ignores them in other modes.
    fn handle_position_target(&mut self, t: &SET_POSITION_TARGET_GLOBAL_INT_DATA) {
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

    fn handle_command(&mut self, cmd: Command, out: &mut Vec<MavMessage>) {
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

    /// MAV_CMD_SET_MESSAGE_INTERVAL: param2 is the interval in µs, -1 disables, 0 restores
    /// the default. Messages this vehicle cannot stream are refused, as ArduPilot refuses
    /// ids it does not know.
    fn set_message_interval(&mut self, msg_id: u32, interval_us: f32) -> MavResult {
        let default_hz = self.default_rate_hz(msg_id);
        let now = self.time_s;
        let Some(stream) = self.streams.iter_mut().find(|s| s.msg_id == msg_id) else {
            return MavResult::MAV_RESULT_FAILED;
        };
        if !interval_us.is_finite() {
            return MavResult::MAV_RESULT_DENIED;
        }
        let hz = if interval_us == 0.0 {
            default_hz
        } else if interval_us < 0.0 {
            0.0
        } else {
            1e6 / f64::from(interval_us)
        };
        stream.rate.set_hz(hz.min(50.0), now);
        MavResult::MAV_RESULT_ACCEPTED
    }

    fn default_rate_hz(&self, msg_id: u32) -> f64 {
        let p = |n: &str| self.params.get(n);
        match msg_id {
            GLOBAL_POSITION_INT_DATA::ID => p("SR1_POSITION"),
            GPS_RAW_INT_DATA::ID => p("SR1_POSITION") / 2.0,
            ATTITUDE_DATA::ID => p("SR1_EXTRA1"),
            VFR_HUD_DATA::ID => p("SR1_EXTRA2"),
            SYS_STATUS_DATA::ID => p("SR1_EXT_STAT"),
            HOME_POSITION_DATA::ID => 0.1,
            _ => 1.0,
        }
    }

    // ------------------------------------------------------------------------------------
    // Telemetry
    // ------------------------------------------------------------------------------------

    fn emit_streams(&mut self, out: &mut Vec<MavMessage>) {
        for i in 0..self.streams.len() {
            let now = self.time_s;
            if self.streams[i].rate.due(now) {
                let id = self.streams[i].msg_id;
                if let Some(m) = self.build_message(id) {
                    out.push(m);
                }
            }
        }
    }

    fn time_boot_ms(&self) -> u32 {
        // Wraps after 49.7 days, like the autopilot's millisecond counter.
        (self.time_s * 1000.0) as u64 as u32
    }

    fn text(&self, out: &mut Vec<MavMessage>, severity: MavSeverity, text: &str) {
        out.push(MavMessage::STATUSTEXT(STATUSTEXT_DATA {
            severity,
            text: CharArray::from(text),
            ..Default::default()
        }));
    }

    /// Builds one telemetry message by MAVLink id (streams and MAV_CMD_REQUEST_MESSAGE).
    fn build_message(&mut self, msg_id: u32) -> Option<MavMessage> {
        Some(match msg_id {
            HEARTBEAT_DATA::ID => self.heartbeat(),
            GLOBAL_POSITION_INT_DATA::ID => self.global_position_int(),
            ATTITUDE_DATA::ID => self.attitude(),
            VFR_HUD_DATA::ID => self.vfr_hud(),
            GPS_RAW_INT_DATA::ID => self.gps_raw_int(),
            SYS_STATUS_DATA::ID => self.sys_status(),
            BATTERY_STATUS_DATA::ID => self.battery_status(),
            SYSTEM_TIME_DATA::ID => MavMessage::SYSTEM_TIME(SYSTEM_TIME_DATA {
                time_unix_usec: self.last_unix_us,
                time_boot_ms: self.time_boot_ms(),
            }),
            MISSION_CURRENT_DATA::ID => MavMessage::MISSION_CURRENT(MISSION_CURRENT_DATA {
                seq: self.mission.current,
                // Item 0 is home; the survey waypoints follow.
                total: self.mission.waypoints.len() as u16 + 1,
                ..Default::default()
            }),
            RADIO_STATUS_DATA::ID => self.radio_status(),
            HOME_POSITION_DATA::ID => self.home_position(),
            AUTOPILOT_VERSION_DATA::ID => self.autopilot_version(),
            _ => return None,
        })
    }

    fn system_status(&self) -> MavState {
        // ArduCopter: CRITICAL while any failsafe is active, STANDBY when landed.
        if self.battery.failsafe != BatteryFailsafe::None || self.gcs_failsafe {
            MavState::MAV_STATE_CRITICAL
        } else if self.kin.landed {
            MavState::MAV_STATE_STANDBY
        } else {
            MavState::MAV_STATE_ACTIVE
        }
    }

    fn heartbeat(&self) -> MavMessage {
        // ArduCopter: STABILIZE | MANUAL_INPUT | CUSTOM_MODE always, GUIDED when the position
        // controller runs, SAFETY_ARMED when armed: 81/89 disarmed, 209/217 armed.
        let mut base_mode = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
            | MavModeFlag::MAV_MODE_FLAG_STABILIZE_ENABLED
            | MavModeFlag::MAV_MODE_FLAG_MANUAL_INPUT_ENABLED;
        if self.mode.position_controlled() {
            base_mode |= MavModeFlag::MAV_MODE_FLAG_GUIDED_ENABLED;
        }
        if self.armed {
            base_mode |= MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED;
        }
        MavMessage::HEARTBEAT(HEARTBEAT_DATA {
            custom_mode: self.mode.number(),
            mavtype: MavType::MAV_TYPE_QUADROTOR,
            autopilot: MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
            base_mode,
            system_status: self.system_status(),
            mavlink_version: 3,
        })
    }

    fn heading_cdeg(&self) -> u16 {
        ((self.kin.yaw.to_degrees() * 100.0).round() as i64).rem_euclid(36000) as u16
    }

    fn global_position_int(&self) -> MavMessage {
        let p = self.position();
        let k = &self.kin;
        MavMessage::GLOBAL_POSITION_INT(GLOBAL_POSITION_INT_DATA {
            time_boot_ms: self.time_boot_ms(),
            lat: deg_e7(p.lat),
            lon: deg_e7(p.lon),
            alt: ((HOME_AMSL_M + k.alt) * 1000.0).round() as i32,
            relative_alt: (k.alt * 1000.0).round() as i32,
            vx: cm_i16(k.vn),
            vy: cm_i16(k.ve),
            vz: cm_i16(-k.vz),
            hdg: self.heading_cdeg(),
        })
    }

    fn attitude(&self) -> MavMessage {
        let k = &self.kin;
        let yaw = if k.yaw > std::f64::consts::PI {
            k.yaw - std::f64::consts::TAU
        } else {
            k.yaw
        };
        MavMessage::ATTITUDE(ATTITUDE_DATA {
            time_boot_ms: self.time_boot_ms(),
            roll: k.roll as f32,
            pitch: k.pitch as f32,
            yaw: yaw as f32,
            rollspeed: k.roll_rate as f32,
            pitchspeed: k.pitch_rate as f32,
            yawspeed: k.yaw_rate as f32,
        })
    }

    fn throttle_pct(&self) -> u16 {
        if !self.armed {
            return 0;
        }
        if self.kin.landed {
            return 8;
        }
        let hover = self.params.get("MOT_THST_HOVER") * 100.0;
        (hover * self.battery.current_a / HOVER_CURRENT_A).clamp(0.0, 100.0) as u16
    }

    fn vfr_hud(&self) -> MavMessage {
        let k = &self.kin;
        // No airspeed sensor and no wind: ArduCopter reports its airspeed estimate, which
        // then equals the ground speed. Altitude is AMSL, as ArduCopter sends it by default.
        MavMessage::VFR_HUD(VFR_HUD_DATA {
            airspeed: k.ground_speed() as f32,
            groundspeed: k.ground_speed() as f32,
            alt: (HOME_AMSL_M + k.alt) as f32,
            climb: k.vz as f32,
            heading: (self.heading_cdeg() / 100) as i16,
            throttle: self.throttle_pct(),
        })
    }

    fn gps_raw_int(&mut self) -> MavMessage {
        let err_e = self.gps_err_e.next(&mut self.rng);
        let err_n = self.gps_err_n.next(&mut self.rng);
        let sats = self.sats.next(&mut self.rng).floor() as u8;
        let hdop = self.hdop.next(&mut self.rng);
        let p = survey::from_local_m(self.origin, self.kin.east + err_e, self.kin.north + err_n);
        let k = &self.kin;
        let cog = if k.ground_speed() > 0.2 {
            ((k.ve.atan2(k.vn).to_degrees() * 100.0).round() as i64).rem_euclid(36000) as u16
        } else {
            self.heading_cdeg()
        };
        MavMessage::GPS_RAW_INT(GPS_RAW_INT_DATA {
            // ArduPilot sends GPS time as microseconds since the Unix epoch.
            time_usec: self.last_unix_us,
            lat: deg_e7(p.lat),
            lon: deg_e7(p.lon),
            alt: ((HOME_AMSL_M + k.alt + 0.5 * err_n) * 1000.0).round() as i32,
            eph: hdop.round() as u16,
            epv: (hdop * 1.5).round() as u16,
            vel: (k.ground_speed() * 100.0).round().clamp(0.0, 65534.0) as u16,
            cog,
            fix_type: GpsFixType::GPS_FIX_TYPE_3D_FIX,
            satellites_visible: sats,
            ..Default::default()
        })
    }

    fn sys_status(&mut self) -> MavMessage {
        type S = MavSysStatusSensor;
        let capacity = self.capacity_mah();
        let base = S::MAV_SYS_STATUS_SENSOR_3D_GYRO
            | S::MAV_SYS_STATUS_SENSOR_3D_ACCEL
            | S::MAV_SYS_STATUS_SENSOR_3D_MAG
            | S::MAV_SYS_STATUS_SENSOR_ABSOLUTE_PRESSURE
            | S::MAV_SYS_STATUS_SENSOR_GPS
            | S::MAV_SYS_STATUS_SENSOR_ANGULAR_RATE_CONTROL
            | S::MAV_SYS_STATUS_SENSOR_ATTITUDE_STABILIZATION
            | S::MAV_SYS_STATUS_SENSOR_YAW_POSITION
            | S::MAV_SYS_STATUS_SENSOR_Z_ALTITUDE_CONTROL
            | S::MAV_SYS_STATUS_SENSOR_XY_POSITION_CONTROL
            | S::MAV_SYS_STATUS_SENSOR_MOTOR_OUTPUTS
            | S::MAV_SYS_STATUS_AHRS
            | S::MAV_SYS_STATUS_LOGGING
            | S::MAV_SYS_STATUS_SENSOR_BATTERY
            | S::MAV_SYS_STATUS_PREARM_CHECK;
        let present = base | S::MAV_SYS_STATUS_GEOFENCE;
        let mut enabled = base;
        if !self.armed {
            enabled.remove(S::MAV_SYS_STATUS_SENSOR_MOTOR_OUTPUTS);
        }
        if !self.mode.position_controlled() {
            enabled.remove(S::MAV_SYS_STATUS_SENSOR_XY_POSITION_CONTROL);
        }
        if self.params.get("FENCE_ENABLE") != 0.0 {
            enabled |= S::MAV_SYS_STATUS_GEOFENCE;
        }
        let mut health = present;
        if self.battery.failsafe != BatteryFailsafe::None {
            health.remove(S::MAV_SYS_STATUS_SENSOR_BATTERY | S::MAV_SYS_STATUS_PREARM_CHECK);
        }
        let load = self.load.next(&mut self.rng);
        MavMessage::SYS_STATUS(SYS_STATUS_DATA {
            onboard_control_sensors_present: present,
            onboard_control_sensors_enabled: enabled,
            onboard_control_sensors_health: health,
            load: load.round() as u16,
            voltage_battery: (self.battery.voltage(capacity) * 1000.0)
                .round()
                .clamp(0.0, 65534.0) as u16,
            current_battery: (self.battery.current_a * 100.0).round().clamp(0.0, 32767.0) as i16,
            drop_rate_comm: 0,
            errors_comm: 0,
            errors_count1: 0,
            errors_count2: 0,
            errors_count3: 0,
            errors_count4: 0,
            battery_remaining: self.battery.remaining_pct(capacity).round() as i8,
            ..Default::default()
        })
    }

    fn battery_status(&self) -> MavMessage {
        let capacity = self.capacity_mah();
        let b = &self.battery;
        // Function and type UNKNOWN, temperature INT16_MAX: what ArduPilot sends for a
        // power module without a temperature sensor.
        MavMessage::BATTERY_STATUS(BATTERY_STATUS_DATA {
            current_consumed: b.consumed_mah.round() as i32,
            energy_consumed: (b.consumed_wh * 36.0).round() as i32,
            temperature: i16::MAX,
            voltages: b.cell_voltages_mv(capacity),
            current_battery: (b.current_a * 100.0).round().clamp(0.0, 32767.0) as i16,
            id: 0,
            battery_function: MavBatteryFunction::MAV_BATTERY_FUNCTION_UNKNOWN,
            mavtype: MavBatteryType::MAV_BATTERY_TYPE_UNKNOWN,
            battery_remaining: b.remaining_pct(capacity).round() as i8,
            ..Default::default()
        })
    }

    fn radio_status(&mut self) -> MavMessage {
        let rng = &mut self.rng;
        if rng.uniform() < 0.02 {
            self.rx_errors = self.rx_errors.wrapping_add(1);
        }
        if rng.uniform() < 0.05 {
            self.fixed = self.fixed.wrapping_add(1);
        }
        MavMessage::RADIO_STATUS(RADIO_STATUS_DATA {
            rxerrors: self.rx_errors,
            fixed: self.fixed,
            rssi: self.rssi.next(rng).round() as u8,
            remrssi: self.remrssi.next(rng).round() as u8,
            txbuf: self.txbuf.next(rng).round() as u8,
            noise: self.noise.next(rng).round() as u8,
            remnoise: self.remnoise.next(rng).round() as u8,
        })
    }

    fn home_position(&self) -> MavMessage {
        let home = self.home();
        MavMessage::HOME_POSITION(HOME_POSITION_DATA {
            latitude: deg_e7(home.lat),
            longitude: deg_e7(home.lon),
            altitude: (HOME_AMSL_M * 1000.0).round() as i32,
            // Local NED position of home relative to the EKF origin (the boot position).
            x: self.home_local.1 as f32,
            y: self.home_local.0 as f32,
            z: 0.0,
            q: [1.0, 0.0, 0.0, 0.0],
            approach_x: 0.0,
            approach_y: 0.0,
            approach_z: 0.0,
            ..Default::default()
        })
    }

    fn autopilot_version(&self) -> MavMessage {
        type C = MavProtocolCapability;
        // PARAM_FLOAT (bit 1) is deprecated in the crate but still what ArduPilot reports.
        let capabilities = C::MAV_PROTOCOL_CAPABILITY_MISSION_FLOAT
            | C::from_bits_retain(2)
            | C::MAV_PROTOCOL_CAPABILITY_MISSION_INT
            | C::MAV_PROTOCOL_CAPABILITY_COMMAND_INT
            | C::MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT
            | C::MAV_PROTOCOL_CAPABILITY_MAVLINK2;
        MavMessage::AUTOPILOT_VERSION(AUTOPILOT_VERSION_DATA {
            capabilities,
            uid: 0x5349_4D00_0000_0000 | u64::from(self.cfg.sysid),
            flight_sw_version: FLIGHT_SW_VERSION,
            middleware_sw_version: 0,
            os_sw_version: 0,
            board_version: 0,
            vendor_id: 0,
            product_id: 0,
            flight_custom_version: *b"sim00000",
            middleware_custom_version: [0; 8],
            os_custom_version: [0; 8],
            ..Default::default()
        })
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

fn deg_e7(deg: f64) -> i32 {
    (deg * 1e7).round() as i32
}

fn cm_i16(mps: f64) -> i16 {
    (mps * 100.0)
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(deprecated)]
    use mavlink::dialects::ardupilotmega::SET_MODE_DATA;
    use mavlink::dialects::ardupilotmega::{
        PARAM_REQUEST_LIST_DATA, PARAM_REQUEST_READ_DATA, PARAM_SET_DATA,
    };
    use mavlink::{MavlinkVersion, Message};

    const HOME: LatLon = LatLon {
        lat: 44.8378,
        lon: -0.5792,
    };
    const DT: f64 = 0.02;
    const GCS_SYS: u8 = 255;
    const GCS_COMP: u8 = 190;

    /// A 100 m × 60 m block starting 40 m east and 20 m north of home.
    fn field() -> Vec<LatLon> {
        [(40.0, 20.0), (140.0, 20.0), (140.0, 80.0), (40.0, 80.0)]
            .iter()
            .map(|&(e, n)| survey::from_local_m(HOME, e, n))
            .collect()
    }

    fn copter(auto_fly: bool) -> Copter {
        let mut cfg = CopterConfig::new(7, HOME, field());
        cfg.auto_fly = auto_fly;
        cfg.seed = 42;
        Copter::new(cfg)
    }

    /// Steps the copter for `seconds`, logging everything it sends.
    fn run(c: &mut Copter, seconds: f64, log: &mut Vec<MavMessage>) {
        let steps = (seconds / DT).round() as u64;
        for _ in 0..steps {
            let unix_us = 1_750_000_000_000_000 + (c.time_s * 1e6) as u64;
            c.step(DT, unix_us, log);
        }
    }

    /// Runs until `done` or `max_s` simulated seconds; returns the time it took.
    fn run_until(
        c: &mut Copter,
        max_s: f64,
        log: &mut Vec<MavMessage>,
        mut done: impl FnMut(&Copter) -> bool,
    ) -> Option<f64> {
        let mut t = 0.0;
        while t < max_s {
            if done(c) {
                return Some(t);
            }
            run(c, DT, log);
            t += DT;
        }
        None
    }

    fn send(c: &mut Copter, msg: MavMessage, log: &mut Vec<MavMessage>) -> Vec<MavMessage> {
        let mut out = Vec::new();
        c.handle(GCS_SYS, GCS_COMP, &msg, &mut out);
        log.extend(out.iter().cloned());
        out
    }

    fn command(cmd: MavCmd, p: [f32; 7]) -> MavMessage {
        MavMessage::COMMAND_LONG(COMMAND_LONG_DATA {
            param1: p[0],
            param2: p[1],
            param3: p[2],
            param4: p[3],
            param5: p[4],
            param6: p[5],
            param7: p[6],
            command: cmd,
            target_system: 7,
            target_component: 1,
            confirmation: 0,
        })
    }

    fn ack_result(out: &[MavMessage], cmd: MavCmd) -> Option<MavResult> {
        out.iter().find_map(|m| match m {
            MavMessage::COMMAND_ACK(a) if a.command == cmd => Some(a.result),
            _ => None,
        })
    }

    fn set_mode(c: &mut Copter, mode: FlightMode, log: &mut Vec<MavMessage>) -> Option<MavResult> {
        let out = send(
            c,
            command(
                MavCmd::MAV_CMD_DO_SET_MODE,
                [1.0, mode.number() as f32, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            log,
        );
        ack_result(&out, MavCmd::MAV_CMD_DO_SET_MODE)
    }

    fn arm(c: &mut Copter, log: &mut Vec<MavMessage>) -> Option<MavResult> {
        let out = send(
            c,
            command(
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            log,
        );
        ack_result(&out, MavCmd::MAV_CMD_COMPONENT_ARM_DISARM)
    }

    fn takeoff(c: &mut Copter, alt: f32, log: &mut Vec<MavMessage>) -> Option<MavResult> {
        let out = send(
            c,
            command(
                MavCmd::MAV_CMD_NAV_TAKEOFF,
                [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, alt],
            ),
            log,
        );
        ack_result(&out, MavCmd::MAV_CMD_NAV_TAKEOFF)
    }

    /// GUIDED, arm, take off to `alt` and wait until there.
    fn launch(c: &mut Copter, alt: f32, log: &mut Vec<MavMessage>) {
        assert_eq!(
            set_mode(c, FlightMode::Guided, log),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        assert_eq!(arm(c, log), Some(MavResult::MAV_RESULT_ACCEPTED));
        assert_eq!(takeoff(c, alt, log), Some(MavResult::MAV_RESULT_ACCEPTED));
        let reached = run_until(c, 60.0, log, |c| {
            (c.altitude_m() - f64::from(alt)).abs() < 0.2
        });
        assert!(
            reached.is_some(),
            "never reached {alt} m: {}",
            c.altitude_m()
        );
    }

    fn texts(log: &[MavMessage]) -> Vec<String> {
        log.iter()
            .filter_map(|m| match m {
                MavMessage::STATUSTEXT(t) => t.text.to_str().ok().map(str::to_owned),
                _ => None,
            })
            .collect()
    }

    fn count(log: &[MavMessage], id: u32) -> usize {
        log.iter().filter(|m| m.message_id() == id).count()
    }

    /// Every message serialises as MAVLink 2 and parses back to itself.
    fn assert_serialises(log: &[MavMessage]) {
        let mut buf = [0u8; 280];
        for m in log {
            let n = m.ser(MavlinkVersion::V2, &mut buf);
            let back = MavMessage::parse(MavlinkVersion::V2, m.message_id(), &buf[..n]);
            assert_eq!(back.as_ref().ok(), Some(m), "{m:?} did not round-trip");
        }
    }

    #[test]
    fn auto_fly_surveys_for_ten_minutes() {
        let mut c = copter(true);
        let mut log = Vec::new();
        let mut max_alt: f64 = 0.0;
        let mut saw_armed = false;
        let start_pct = c.battery_pct();
        for _ in 0..600 {
            run(&mut c, 1.0, &mut log);
            max_alt = max_alt.max(c.altitude_m());
            saw_armed |= c.armed();
        }
        assert!(saw_armed);
        assert!((29.0..=31.0).contains(&max_alt), "max alt {max_alt}");
        let reached = count(&log, MISSION_ITEM_REACHED_DATA::ID);
        assert!(reached >= 5, "{reached} waypoints reached");
        assert!(c.battery_pct() < start_pct || texts(&log).iter().any(|t| t == "Battery swap"));
        let heartbeats = count(&log, HEARTBEAT_DATA::ID);
        assert!((599..=601).contains(&heartbeats), "{heartbeats} heartbeats");
        let positions = count(&log, GLOBAL_POSITION_INT_DATA::ID);
        assert!((5990..=6010).contains(&positions), "{positions} positions");
        let attitudes = count(&log, ATTITUDE_DATA::ID);
        assert!((5990..=6010).contains(&attitudes), "{attitudes} attitudes");
        let huds = count(&log, VFR_HUD_DATA::ID);
        assert!((2390..=2410).contains(&huds), "{huds} VFR_HUD");
        let gps = count(&log, GPS_RAW_INT_DATA::ID);
        assert!((2990..=3010).contains(&gps), "{gps} GPS_RAW_INT");
        let sys = count(&log, SYS_STATUS_DATA::ID);
        assert!((1198..=1202).contains(&sys), "{sys} SYS_STATUS");
        let homes = count(&log, HOME_POSITION_DATA::ID);
        assert!((60..=64).contains(&homes), "{homes} HOME_POSITION");
        let t = texts(&log);
        for expected in [
            "Arming motors",
            "Mission: 1 WP",
            "Reached command #1",
            "Mission: 2 WP",
        ] {
            assert!(t.iter().any(|s| s == expected), "no {expected:?} in {t:?}");
        }
        // Battery telemetry fell while flying.
        let remaining: Vec<i8> = log
            .iter()
            .filter_map(|m| match m {
                MavMessage::SYS_STATUS(s) => Some(s.battery_remaining),
                _ => None,
            })
            .collect();
        assert_eq!(remaining.first(), Some(&100));
        assert!(remaining.iter().any(|&r| r < 90), "battery never fell");
        // Survey speed is respected.
        let max_speed = log
            .iter()
            .filter_map(|m| match m {
                MavMessage::VFR_HUD(h) => Some(h.groundspeed),
                _ => None,
            })
            .fold(0.0_f32, f32::max);
        assert!((5.5..=6.3).contains(&max_speed), "max speed {max_speed}");
        assert_serialises(&log);
    }

    #[test]
    fn auto_fly_completes_the_survey_lands_swaps_and_goes_again() {
        let mut c = copter(true);
        let mut log = Vec::new();
        let n = c.mission().len();
        assert!(n >= 24, "{n} waypoints");
        // Survey done, back home and disarmed.
        let landed = run_until(&mut c, 1200.0, &mut log, |c| {
            c.mission.complete && !c.armed() && c.kin.landed
        });
        assert!(landed.is_some(), "never finished the survey");
        let reached = count(&log, MISSION_ITEM_REACHED_DATA::ID);
        assert_eq!(reached, n);
        assert!(survey::distance_m(c.position(), HOME) < 2.0);
        assert!(texts(&log).iter().any(|t| t == "Disarming motors"));
        // Battery swap on the ground, then it launches again and restarts at item 1.
        let relaunched = run_until(&mut c, 40.0, &mut log, |c| c.armed());
        assert!(relaunched.is_some());
        assert!(texts(&log).iter().any(|t| t == "Battery swap"));
        assert!(c.battery_pct() > 99.0);
        run(&mut c, 40.0, &mut log);
        assert_eq!(c.mode(), FlightMode::Auto.number());
        assert!(c.mission.current <= 3);
        assert_serialises(&log);
    }

    #[test]
    fn heartbeat_reports_mode_and_arming_like_arducopter() {
        let mut c = copter(false);
        let mut log = Vec::new();
        run(&mut c, 1.0, &mut log);
        let hb = |log: &[MavMessage]| {
            log.iter()
                .rev()
                .find_map(|m| match m {
                    MavMessage::HEARTBEAT(h) => Some(h.clone()),
                    _ => None,
                })
                .expect("heartbeat")
        };
        let h = hb(&log);
        assert_eq!(h.custom_mode, 0);
        assert_eq!(h.mavtype, MavType::MAV_TYPE_QUADROTOR);
        assert_eq!(h.autopilot, MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA);
        assert_eq!(h.system_status, MavState::MAV_STATE_STANDBY);
        assert_eq!(h.mavlink_version, 3);
        assert_eq!(h.base_mode.bits(), 81);
        set_mode(&mut c, FlightMode::Guided, &mut log);
        arm(&mut c, &mut log);
        takeoff(&mut c, 10.0, &mut log);
        run(&mut c, 3.0, &mut log);
        let h = hb(&log);
        assert_eq!(h.custom_mode, 4);
        assert_eq!(h.base_mode.bits(), 217);
        assert_eq!(h.system_status, MavState::MAV_STATE_ACTIVE);
        assert_serialises(&log);
    }

    #[test]
    fn guided_takeoff_reposition_and_rtl() {
        let mut c = copter(false);
        let mut log = Vec::new();
        run(&mut c, 2.0, &mut log);
        assert_eq!(c.altitude_m(), 0.0);
        // Takeoff needs GUIDED and armed.
        assert_eq!(
            takeoff(&mut c, 20.0, &mut log),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        assert_eq!(
            set_mode(&mut c, FlightMode::Guided, &mut log),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        assert_eq!(
            takeoff(&mut c, 20.0, &mut log),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_ACCEPTED));
        assert!(c.armed());
        assert!(texts(&log).iter().any(|t| t == "Arming motors"));
        assert_eq!(
            takeoff(&mut c, 20.0, &mut log),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        // Climbs at about 2.5 m/s.
        let t = run_until(&mut c, 30.0, &mut log, |c| c.altitude_m() > 19.8).expect("climbs");
        assert!((7.5..=12.0).contains(&t), "took {t} s to 20 m");
        run(&mut c, 3.0, &mut log);
        assert!((c.altitude_m() - 20.0).abs() < 0.2);
        // Already flying: a second takeoff fails.
        assert_eq!(
            takeoff(&mut c, 30.0, &mut log),
            Some(MavResult::MAV_RESULT_FAILED)
        );

        // Fly 150 m north-east with DO_REPOSITION.
        let target = survey::from_local_m(HOME, 100.0, 110.0);
        let mut reposition = command(
            MavCmd::MAV_CMD_DO_REPOSITION,
            [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 25.0],
        );
        if let MavMessage::COMMAND_LONG(ref mut cl) = reposition {
            cl.param5 = target.lat as f32;
            cl.param6 = target.lon as f32;
        }
        let out = send(&mut c, reposition, &mut log);
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_DO_REPOSITION),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        let arrived = run_until(&mut c, 60.0, &mut log, |c| {
            survey::distance_m(c.position(), target) < 1.0 && (c.altitude_m() - 25.0).abs() < 0.3
        });
        assert!(arrived.is_some(), "never reached the reposition target");

        // And a GUIDED position target.
        let target2 = survey::from_local_m(HOME, 60.0, 30.0);
        let ignore_velocity_and_more =
            PositionTargetTypemask::from_bits_retain(0b0000_1111_1111_1000);
        send(
            &mut c,
            MavMessage::SET_POSITION_TARGET_GLOBAL_INT(SET_POSITION_TARGET_GLOBAL_INT_DATA {
                lat_int: deg_e7(target2.lat),
                lon_int: deg_e7(target2.lon),
                alt: 18.0,
                type_mask: ignore_velocity_and_more,
                target_system: 7,
                target_component: 1,
                coordinate_frame:
                    mavlink::dialects::ardupilotmega::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT,
                ..SET_POSITION_TARGET_GLOBAL_INT_DATA::default()
            }),
            &mut log,
        );
        let arrived = run_until(&mut c, 60.0, &mut log, |c| {
            survey::distance_m(c.position(), target2) < 1.0 && (c.altitude_m() - 18.0).abs() < 0.3
        });
        assert!(arrived.is_some(), "never reached the position target");

        // RTL: returns home, lands, disarms; ArduCopter stays in RTL.
        let out = send(
            &mut c,
            command(MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH, [0.0; 7]),
            &mut log,
        );
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        assert_eq!(c.mode(), 6);
        let mut max_alt_in_rtl: f64 = 0.0;
        let landed = run_until(&mut c, 180.0, &mut log, |c| {
            max_alt_in_rtl = max_alt_in_rtl.max(c.altitude_m());
            !c.armed()
        });
        assert!(landed.is_some(), "RTL never landed");
        // 18 m is above RTL_ALT (15 m): it came back at its own altitude.
        assert!((17.7..18.5).contains(&max_alt_in_rtl), "{max_alt_in_rtl}");
        assert!(survey::distance_m(c.position(), HOME) < 2.0);
        assert_eq!(c.altitude_m(), 0.0);
        assert_eq!(c.mode(), 6);
        assert!(texts(&log).iter().any(|t| t == "Disarming motors"));
        assert_serialises(&log);
    }

    #[test]
    fn rtl_climbs_to_rtl_alt_when_low() {
        let mut c = copter(false);
        let mut log = Vec::new();
        launch(&mut c, 5.0, &mut log);
        set_mode(&mut c, FlightMode::Rtl, &mut log);
        let climbed = run_until(&mut c, 30.0, &mut log, |c| c.altitude_m() > 14.4);
        assert!(climbed.is_some());
        let landed = run_until(&mut c, 120.0, &mut log, |c| !c.armed());
        assert!(landed.is_some());
    }

    #[test]
    fn disarm_in_flight_refused_unless_forced() {
        let mut c = copter(false);
        let mut log = Vec::new();
        launch(&mut c, 15.0, &mut log);
        let disarm = |force: f32| {
            command(
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                [0.0, force, 0.0, 0.0, 0.0, 0.0, 0.0],
            )
        };
        let out = send(&mut c, disarm(0.0), &mut log);
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_COMPONENT_ARM_DISARM),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        assert!(c.armed());
        let out = send(&mut c, disarm(21196.0), &mut log);
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_COMPONENT_ARM_DISARM),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        assert!(!c.armed());
        // Motors off at 15 m: it falls in under 2.5 s.
        let fell = run_until(&mut c, 5.0, &mut log, |c| c.altitude_m() == 0.0);
        assert!(fell.is_some_and(|t| t < 2.5), "{fell:?}");
        assert_serialises(&log);
    }

    #[test]
    fn arming_rules() {
        let mut c = copter(false);
        let mut log = Vec::new();
        // AUTO is not armable.
        assert_eq!(
            set_mode(&mut c, FlightMode::Auto, &mut log),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_FAILED));
        assert!(texts(&log).iter().any(|t| t == "Arm: Mode not armable"));
        // Armed on the ground, AUTO is refused: the mission has no takeoff item.
        set_mode(&mut c, FlightMode::Loiter, &mut log);
        assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_ACCEPTED));
        assert_eq!(
            set_mode(&mut c, FlightMode::Auto, &mut log),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        assert!(texts(&log).iter().any(|t| t == "Auto: Missing Takeoff Cmd"));
        // Left armed on the ground, it disarms itself after DISARM_DELAY (10 s).
        let t = run_until(&mut c, 20.0, &mut log, |c| !c.armed()).expect("auto-disarm");
        assert!((9.9..=10.1).contains(&t), "{t}");
        assert_serialises(&log);
    }

    #[test]
    fn unknown_commands_and_modes() {
        let mut c = copter(false);
        let mut log = Vec::new();
        let out = send(
            &mut c,
            command(MavCmd::MAV_CMD_PREFLIGHT_CALIBRATION, [0.0; 7]),
            &mut log,
        );
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_PREFLIGHT_CALIBRATION),
            Some(MavResult::MAV_RESULT_UNSUPPORTED)
        );
        // Exactly one ack per COMMAND_LONG.
        assert_eq!(
            out.iter()
                .filter(|m| matches!(m, MavMessage::COMMAND_ACK(_)))
                .count(),
            1
        );
        // ACRO exists in ArduCopter but is not simulated; 99 is no mode at all.
        let acro = send(
            &mut c,
            command(
                MavCmd::MAV_CMD_DO_SET_MODE,
                [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            &mut log,
        );
        assert_eq!(
            ack_result(&acro, MavCmd::MAV_CMD_DO_SET_MODE),
            Some(MavResult::MAV_RESULT_UNSUPPORTED)
        );
        let bad = send(
            &mut c,
            command(
                MavCmd::MAV_CMD_DO_SET_MODE,
                [1.0, 99.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            &mut log,
        );
        assert_eq!(
            ack_result(&bad, MavCmd::MAV_CMD_DO_SET_MODE),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        // Without the custom-mode flag ArduPilot does not know what is meant.
        let no_custom = send(
            &mut c,
            command(
                MavCmd::MAV_CMD_DO_SET_MODE,
                [0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            &mut log,
        );
        assert_eq!(
            ack_result(&no_custom, MavCmd::MAV_CMD_DO_SET_MODE),
            Some(MavResult::MAV_RESULT_DENIED)
        );
        assert_eq!(c.mode(), 0);
        // The SET_MODE message is acked with a COMMAND_ACK for DO_SET_MODE.
        #[allow(deprecated)]
        let set_mode_msg = MavMessage::SET_MODE(SET_MODE_DATA {
            custom_mode: 5,
            target_system: 7,
            base_mode: MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
        });
        let out = send(&mut c, set_mode_msg, &mut log);
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_DO_SET_MODE),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        assert_eq!(c.mode(), 5);
        // Speed changes need a positive speed.
        let out = send(
            &mut c,
            command(
                MavCmd::MAV_CMD_DO_CHANGE_SPEED,
                [1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            &mut log,
        );
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_DO_CHANGE_SPEED),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        assert_serialises(&log);
    }

    #[test]
    fn battery_failsafe_triggers_rtl() {
        let mut c = copter(false);
        let mut log = Vec::new();
        launch(&mut c, 20.0, &mut log);
        // Fly out, then pretend most of the pack is gone.
        let out_there = survey::from_local_m(HOME, 80.0, 50.0);
        let mut reposition = command(
            MavCmd::MAV_CMD_DO_REPOSITION,
            [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 20.0],
        );
        if let MavMessage::COMMAND_LONG(ref mut cl) = reposition {
            cl.param5 = out_there.lat as f32;
            cl.param6 = out_there.lon as f32;
        }
        send(&mut c, reposition, &mut log);
        run(&mut c, 20.0, &mut log);
        c.battery.consumed_mah = 3700.0;
        let t = run_until(&mut c, 30.0, &mut log, |c| c.mode() == 6).expect("failsafe RTL");
        assert!(t < 10.0);
        assert!(c.battery_pct() <= 25.0);
        let t_all = texts(&log);
        assert!(
            t_all
                .iter()
                .any(|t| t.starts_with("Battery 1 is low ") && t.ends_with(" mAh")),
            "{t_all:?}"
        );
        // System status goes CRITICAL while the failsafe is active.
        run(&mut c, 1.5, &mut log);
        assert!(log.iter().any(|m| matches!(m, MavMessage::HEARTBEAT(h) if h.system_status == MavState::MAV_STATE_CRITICAL)));
        let landed = run_until(&mut c, 120.0, &mut log, |c| !c.armed());
        assert!(landed.is_some());
        assert!(survey::distance_m(c.position(), HOME) < 2.0);
        // The failsafe is latched: re-arming is refused until the battery is replaced.
        set_mode(&mut c, FlightMode::Guided, &mut log);
        assert_eq!(arm(&mut c, &mut log), Some(MavResult::MAV_RESULT_FAILED));
        assert!(texts(&log).iter().any(|t| t == "PreArm: Battery failsafe"));
        assert_serialises(&log);
    }

    #[test]
    fn battery_voltage_and_cells_are_plausible() {
        let mut c = copter(false);
        let mut log = Vec::new();
        run(&mut c, 1.0, &mut log);
        let status = log
            .iter()
            .find_map(|m| match m {
                MavMessage::BATTERY_STATUS(b) => Some(b.clone()),
                _ => None,
            })
            .expect("battery status");
        assert!(
            status.voltages[..6]
                .iter()
                .all(|&v| (4150..=4210).contains(&v)),
            "{:?}",
            status.voltages
        );
        assert!(status.voltages[6..].iter().all(|&v| v == u16::MAX));
        assert_eq!(status.temperature, i16::MAX);
        assert_eq!(status.battery_remaining, 100);
        // Hover current and sag.
        launch(&mut c, 10.0, &mut log);
        run(&mut c, 5.0, &mut log);
        let cap = c.capacity_mah();
        let current = c.battery.current_a;
        assert!((16.0..=21.0).contains(&current), "{current} A");
        let loaded = c.battery.voltage(cap);
        let resting = CELLS as f64 * Battery::resting_cell_v(c.battery.state_of_charge(cap));
        assert!(
            resting - loaded > 0.25 && resting - loaded < 0.6,
            "sag {}",
            resting - loaded
        );
        // Empty is about 21 V, full 25.2 V.
        assert!((Battery::resting_cell_v(0.0) * 6.0 - 21.0).abs() < 0.01);
        assert!((Battery::resting_cell_v(1.0) * 6.0 - 25.2).abs() < 0.01);
        assert_serialises(&log);
    }

    #[test]
    fn parameters() {
        let mut c = copter(false);
        let mut log = Vec::new();
        let out = send(
            &mut c,
            MavMessage::PARAM_REQUEST_LIST(PARAM_REQUEST_LIST_DATA {
                target_system: 7,
                target_component: 1,
            }),
            &mut log,
        );
        let values: Vec<&PARAM_VALUE_DATA> = out
            .iter()
            .filter_map(|m| match m {
                MavMessage::PARAM_VALUE(v) => Some(v),
                _ => None,
            })
            .collect();
        assert!(values.len() >= 30);
        let n = values.len();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(usize::from(v.param_count), n);
            assert_eq!(usize::from(v.param_index), i);
        }
        let find = |name: &str| {
            values
                .iter()
                .find(|v| v.param_id.to_str() == Ok(name))
                .copied()
        };
        assert_eq!(find("SYSID_THISMAV").map(|v| v.param_value), Some(7.0));
        assert_eq!(
            find("BATT_CAPACITY").map(|v| v.param_type),
            Some(MavParamType::MAV_PARAM_TYPE_INT32)
        );
        assert_eq!(find("WPNAV_SPEED").map(|v| v.param_value), Some(600.0));

        // Read by name and by index.
        let read = |c: &mut Copter, log: &mut Vec<MavMessage>, name: &str, index: i16| {
            send(
                c,
                MavMessage::PARAM_REQUEST_READ(PARAM_REQUEST_READ_DATA {
                    param_index: index,
                    target_system: 7,
                    target_component: 1,
                    param_id: CharArray::from(name),
                }),
                log,
            )
        };
        let out = read(&mut c, &mut log, "RTL_ALT", -1);
        assert!(matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_value == 1500.0));
        let out = read(&mut c, &mut log, "", 0);
        assert!(matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_index == 0));
        assert!(read(&mut c, &mut log, "NO_SUCH_PARAM", -1).is_empty());

        // Set: echoed, integer types rounded, unknown names ignored.
        let set = |c: &mut Copter, log: &mut Vec<MavMessage>, name: &str, value: f32| {
            send(
                c,
                MavMessage::PARAM_SET(PARAM_SET_DATA {
                    param_value: value,
                    target_system: 7,
                    target_component: 1,
                    param_id: CharArray::from(name),
                    param_type: MavParamType::MAV_PARAM_TYPE_REAL32,
                }),
                log,
            )
        };
        let out = set(&mut c, &mut log, "WPNAV_SPEED", 800.0);
        assert!(
            matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_value == 800.0 && usize::from(v.param_count) == n)
        );
        let out = set(&mut c, &mut log, "RTL_ALT", 2000.4);
        assert!(matches!(out.as_slice(), [MavMessage::PARAM_VALUE(v)] if v.param_value == 2000.0));
        assert!(set(&mut c, &mut log, "NO_SUCH_PARAM", 1.0).is_empty());

        // WPNAV_SPEED 8 m/s is now the survey speed.
        launch(&mut c, 30.0, &mut log);
        assert_eq!(
            set_mode(&mut c, FlightMode::Auto, &mut log),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        let mut max_speed: f64 = 0.0;
        run_until(&mut c, 120.0, &mut log, |c| {
            max_speed = max_speed.max(c.kin.ground_speed());
            false
        });
        assert!((7.5..=8.2).contains(&max_speed), "{max_speed}");
        assert_serialises(&log);
    }

    #[test]
    fn stream_rates_follow_params_and_message_interval() {
        let mut c = copter(false);
        let mut log = Vec::new();
        let out = send(
            &mut c,
            command(
                MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL,
                [
                    GLOBAL_POSITION_INT_DATA::ID as f32,
                    50_000.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                ],
            ),
            &mut log,
        );
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL),
            Some(MavResult::MAV_RESULT_ACCEPTED)
        );
        let mut window = Vec::new();
        run(&mut c, 10.0, &mut window);
        let n = count(&window, GLOBAL_POSITION_INT_DATA::ID);
        assert!((199..=201).contains(&n), "{n} at 20 Hz");
        // -1 disables a stream.
        send(
            &mut c,
            command(
                MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL,
                [ATTITUDE_DATA::ID as f32, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            &mut log,
        );
        let mut window = Vec::new();
        run(&mut c, 5.0, &mut window);
        assert_eq!(count(&window, ATTITUDE_DATA::ID), 0);
        // REQUEST_MESSAGE: ack, then the message.
        let out = send(
            &mut c,
            command(
                MavCmd::MAV_CMD_REQUEST_MESSAGE,
                [
                    AUTOPILOT_VERSION_DATA::ID as f32,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                ],
            ),
            &mut log,
        );
        assert!(matches!(
            out.as_slice(),
            [MavMessage::COMMAND_ACK(a), MavMessage::AUTOPILOT_VERSION(v)]
                if a.result == MavResult::MAV_RESULT_ACCEPTED && v.flight_sw_version >> 24 == 4
        ));
        let out = send(
            &mut c,
            command(
                MavCmd::MAV_CMD_REQUEST_MESSAGE,
                [9999.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            &mut log,
        );
        assert_eq!(
            ack_result(&out, MavCmd::MAV_CMD_REQUEST_MESSAGE),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        log.extend(window);
        assert_serialises(&log);
    }

    #[test]
    fn gcs_failsafe_when_enabled() {
        let mut c = copter(false);
        let mut log = Vec::new();
        let hb = MavMessage::HEARTBEAT(HEARTBEAT_DATA {
            mavtype: MavType::MAV_TYPE_GCS,
            autopilot: MavAutopilot::MAV_AUTOPILOT_INVALID,
            ..HEARTBEAT_DATA::default()
        });
        send(
            &mut c,
            MavMessage::PARAM_SET(PARAM_SET_DATA {
                param_value: 1.0,
                target_system: 7,
                target_component: 1,
                param_id: CharArray::from("FS_GCS_ENABLE"),
                param_type: MavParamType::MAV_PARAM_TYPE_INT8,
            }),
            &mut log,
        );
        send(&mut c, hb.clone(), &mut log);
        launch(&mut c, 10.0, &mut log);
        // No more heartbeats: after FS_GCS_TIMEOUT it returns.
        let t = run_until(&mut c, 20.0, &mut log, |c| c.mode() == 6);
        assert!(t.is_some());
        assert!(texts(&log).iter().any(|t| t == "GCS Failsafe On"));
        send(&mut c, hb, &mut log);
        run(&mut c, 0.1, &mut log);
        assert!(texts(&log).iter().any(|t| t == "GCS Failsafe Cleared"));
    }

    #[test]
    fn sysid_enforce_ignores_other_senders() {
        let mut c = copter(false);
        let mut log = Vec::new();
        send(
            &mut c,
            MavMessage::PARAM_SET(PARAM_SET_DATA {
                param_value: 1.0,
                target_system: 7,
                target_component: 1,
                param_id: CharArray::from("SYSID_ENFORCE"),
                param_type: MavParamType::MAV_PARAM_TYPE_INT8,
            }),
            &mut log,
        );
        let mut out = Vec::new();
        c.handle(
            42,
            1,
            &command(
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
                [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
            &mut out,
        );
        assert!(out.is_empty());
        assert!(!c.armed());
        assert_eq!(c.last_sender(), Some((GCS_SYS, GCS_COMP)));
    }

    #[test]
    fn same_seed_same_run() {
        let mut a = copter(true);
        let mut b = copter(true);
        let (mut la, mut lb) = (Vec::new(), Vec::new());
        run(&mut a, 60.0, &mut la);
        run(&mut b, 60.0, &mut lb);
        assert_eq!(la, lb);
        let mut cfg = CopterConfig::new(7, HOME, field());
        cfg.seed = 43;
        let mut other = Copter::new(cfg);
        let mut lo = Vec::new();
        run(&mut other, 60.0, &mut lo);
        assert_ne!(la, lo);
    }

    #[test]
    fn degenerate_field_still_behaves() {
        let mut cfg = CopterConfig::new(3, HOME, vec![HOME]);
        cfg.telemetry_hz = f64::NAN;
        let mut c = Copter::new(cfg);
        let mut log = Vec::new();
        run(&mut c, 60.0, &mut log);
        assert!(!c.armed());
        assert!(c.mission().is_empty());
        assert_eq!(
            set_mode(&mut c, FlightMode::Auto, &mut log),
            Some(MavResult::MAV_RESULT_FAILED)
        );
        // NaN telemetry_hz falls back to 10 Hz.
        let n = count(&log, GLOBAL_POSITION_INT_DATA::ID);
        assert!((599..=601).contains(&n), "{n}");
        // Odd step sizes do not panic or stall.
        c.step(0.0, 0, &mut log);
        c.step(f64::NAN, 0, &mut log);
        c.step(3.0, 0, &mut log);
        assert_serialises(&log);
    }
}
