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
//! - GPS noise, when asked for (`gps_noise`): what a receiver without corrections adds to the
//!   reported position, altitude and velocity (a slow wandering error of about 0.4 m
//!   horizontally and 0.7 m vertically, white noise on each fix and on velocity), on
//!   GLOBAL_POSITION_INT, GPS_RAW_INT and VFR_HUD. Off, the copter reports its exact track.
//! - A parameter table of about 40 real ArduCopter parameters, several of which change the
//!   behaviour (`WPNAV_SPEED`, `RTL_ALT`, `BATT_*`, `DISARM_DELAY`, `SR1_*`, `SYSID_ENFORCE`).
//!
//! One protocol detail differs from a real ArduPilot because of the `mavlink` crate:
//! ArduPilot acks the SET_MODE *message* with `command = 11` (the SET_MODE message id), a
//! value `MavCmd` cannot represent (the crate would fail to parse such an ack with
//! `InvalidEnum`), so this simulator acks it with `MAV_CMD_DO_SET_MODE` instead.
//!
//! This file holds the public API ([`CopterConfig`], [`Copter`]), the state, the simulation
//! step and the dispatch of incoming messages. Each `impl Copter` block elsewhere is one
//! part of the autopilot:
//! - `mode.rs`: the flight modes simulated and mode changes (names come from
//!   [`crate::vehicle::modes`]).
//! - `arming.rs`: arming, takeoff, disarming and auto-disarm.
//! - `guidance.rs`: what each mode asks of the position controller, including RTL and
//!   landing.
//! - `physics.rs`: kinematics, the position controller, attitude and falling.
//! - `mission.rs`: the built-in survey mission and how AUTO flies it.
//! - `battery.rs`: the LiPo model, current draw and the battery failsafe.
//! - `failsafe.rs`: failsafe actions and the GCS failsafe.
//! - `auto_fly.rs`: the launch, survey, RTL, battery swap loop of `auto_fly`.
//! - `commands.rs`: COMMAND_LONG/COMMAND_INT, SET_MODE, GUIDED targets and COMMAND_ACK.
//! - `params.rs`: the parameter table and the PARAM_* protocol.
//! - `telemetry.rs`: stream scheduling and rates (MAV_CMD_SET_MESSAGE_INTERVAL) and every
//!   message builder.
//! - `noise.rs`: the seeded PRNG, slow random walks and GPS noise.
//! - `tests.rs`: whole flights driven through `step` and `handle`.

mod arming;
mod auto_fly;
mod battery;
mod commands;
mod failsafe;
mod guidance;
mod mission;
mod mode;
mod noise;
mod params;
mod physics;
mod telemetry;
#[cfg(test)]
mod tests;

use mavlink::dialects::ardupilotmega::MavMessage;

use self::auto_fly::GROUND_TURNAROUND_S;
use self::battery::Battery;
use self::commands::Command;
use self::guidance::RtlStage;
use self::mission::Mission;
use self::mode::FlightMode;
use self::noise::{GpsNoise, Wander, XorShift64};
use self::params::Params;
use self::physics::Kinematics;
use self::telemetry::{default_streams, Stream};
use crate::survey::{self, LatLon};

/// Altitude of home above mean sea level, metres (a valley-floor vineyard).
const HOME_AMSL_M: f64 = 48.0;

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
    /// Report positions and velocities with GPS noise, as a real receiver gives them (the
    /// copter still flies its exact track); off, it reports the track itself.
    pub gps_noise: bool,
}

impl CopterConfig {
    /// A configuration with the defaults: 10 Hz telemetry, auto_fly on, seed = sysid, no GPS
    /// noise.
    pub fn new(sysid: u8, home: LatLon, field: Vec<LatLon>) -> Self {
        Self {
            sysid,
            home,
            field,
            telemetry_hz: 10.0,
            auto_fly: true,
            seed: u64::from(sysid),
            gps_noise: false,
        }
    }
}

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
    /// The system and component that last sent this vehicle a message: where ArduPilot
    /// addresses COMMAND_ACK's target fields.
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
    /// What GPS adds to the reported position and velocity, when `gps_noise` is on.
    gps_noise: Option<GpsNoise>,
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
        let streams = default_streams(hz, time_s);
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
            gps_noise: cfg.gps_noise.then(|| GpsNoise::new(cfg.seed)),
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

    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Battery remaining, percent of capacity.
    pub fn battery_pct(&self) -> f64 {
        self.battery.remaining_pct(self.capacity_mah())
    }

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
            if let Some(gps) = &mut self.gps_noise {
                gps.advance(h);
            }
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
            MavMessage::SET_MODE(m) => self.handle_set_mode(m.base_mode.bits(), m.custom_mode, out),
            MavMessage::SET_POSITION_TARGET_GLOBAL_INT(t) => self.handle_position_target(t),
            MavMessage::PARAM_REQUEST_LIST(_) => self.send_param_list(out),
            MavMessage::PARAM_REQUEST_READ(r) => self.handle_param_read(r, out),
            MavMessage::PARAM_SET(s) => self.handle_param_set(s, out),
            _ => {}
        }
    }
}
