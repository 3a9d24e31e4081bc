//! Telemetry: the periodic streams at ArduPilot's usual rates, their scheduler, and the
//! builders of every message the copter sends on its own (HEARTBEAT, positions, battery,
//! STATUSTEXT, ...), with the field encodings ArduPilot uses.

use mavlink::dialects::ardupilotmega::{
    GpsFixType, MavAutopilot, MavBatteryFunction, MavBatteryType, MavMessage, MavModeFlag,
    MavProtocolCapability, MavResult, MavSeverity, MavState, MavSysStatusSensor, MavType,
    ATTITUDE_DATA, AUTOPILOT_VERSION_DATA, BATTERY_STATUS_DATA, GLOBAL_POSITION_INT_DATA,
    GPS_RAW_INT_DATA, HEARTBEAT_DATA, HOME_POSITION_DATA, MISSION_CURRENT_DATA, RADIO_STATUS_DATA,
    STATUSTEXT_DATA, SYSTEM_TIME_DATA, SYS_STATUS_DATA, VFR_HUD_DATA,
};
use mavlink::types::CharArray;
use mavlink::MessageData;

use super::battery::{BatteryFailsafe, HOVER_CURRENT_A};
use super::physics::Kinematics;
use super::{Copter, HOME_AMSL_M};
use crate::survey::{self, LatLon};

/// Firmware reported in AUTOPILOT_VERSION: ArduCopter 4.5.7 official.
const FLIGHT_SW_VERSION: u32 = (4 << 24) | (5 << 16) | (7 << 8) | 255;

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
pub(super) struct Stream {
    msg_id: u32,
    rate: Rate,
}

/// The streams a freshly booted copter sends, at ArduPilot's usual rates with the position
/// class at `hz`.
pub(super) fn default_streams(hz: f64, now: f64) -> Vec<Stream> {
    [
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
        rate: Rate::hz(hz, now),
    })
    .collect()
}

impl Copter {
    fn home(&self) -> LatLon {
        survey::from_local_m(self.origin, self.home_local.0, self.home_local.1)
    }

    /// Restarts the stream of `msg_id` at `hz` (an `SRn_*` parameter changed).
    pub(super) fn retime_stream(&mut self, msg_id: u32, hz: f64) {
        let now = self.time_s;
        for s in self.streams.iter_mut().filter(|s| s.msg_id == msg_id) {
            s.rate.set_hz(hz, now);
        }
    }

    /// MAV_CMD_SET_MESSAGE_INTERVAL: param2 is the interval in µs, -1 disables, 0 restores
    /// the default. Messages this vehicle cannot stream are refused, as ArduPilot refuses
    /// ids it does not know.
    pub(super) fn set_message_interval(&mut self, msg_id: u32, interval_us: f32) -> MavResult {
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

    pub(super) fn emit_streams(&mut self, out: &mut Vec<MavMessage>) {
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

    pub(super) fn text(&self, out: &mut Vec<MavMessage>, severity: MavSeverity, text: &str) {
        out.push(MavMessage::STATUSTEXT(STATUSTEXT_DATA {
            severity,
            text: CharArray::from(text),
            ..Default::default()
        }));
    }

    /// Builds one telemetry message by MAVLink id (streams and MAV_CMD_REQUEST_MESSAGE).
    pub(super) fn build_message(&mut self, msg_id: u32) -> Option<MavMessage> {
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

    /// Position and velocity as the copter reports them: its track, plus GPS noise when
    /// that is on (the EKF follows the receiver, so the estimate carries its error).
    fn reported(&self) -> Kinematics {
        let mut k = self.kin.clone();
        if let Some(gps) = &self.gps_noise {
            let e = gps.error();
            k.east += e.east;
            k.north += e.north;
            k.alt += e.up;
            k.ve += e.ve;
            k.vn += e.vn;
            k.vz += e.vz;
        }
        k
    }

    fn global_position_int(&self) -> MavMessage {
        let k = &self.reported();
        let p = survey::from_local_m(self.origin, k.east, k.north);
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
        let k = &self.reported();
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
        // With GPS noise on, the receiver's error is the one the position reports carry;
        // without, a mild wander keeps GPS_RAW_INT from matching them exactly.
        let (k, err_e, err_n, err_up) = match &self.gps_noise {
            Some(_) => (self.reported(), 0.0, 0.0, 0.0),
            None => (self.kin.clone(), err_e, err_n, 0.5 * err_n),
        };
        let p = survey::from_local_m(self.origin, k.east + err_e, k.north + err_n);
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
            alt: ((HOME_AMSL_M + k.alt + err_up) * 1000.0).round() as i32,
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

    pub(super) fn home_position(&self) -> MavMessage {
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

pub(super) fn deg_e7(deg: f64) -> i32 {
    (deg * 1e7).round() as i32
}

fn cm_i16(mps: f64) -> i16 {
    (mps * 100.0)
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}
