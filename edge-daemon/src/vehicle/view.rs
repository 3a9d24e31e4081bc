//! The vehicle state the API and live stream show: plain units, names instead of numbers.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::quality::RadioStatus;
use super::{modes, Fleet, Vehicle};
use crate::clock::{Clock, TimeSource};
use crate::link::LinkId;

/// The whole fleet at one moment; published ~10 times a second by the ingest loop.
#[derive(Debug, Clone, Serialize)]
pub struct FleetSnapshot {
    pub time_us: i64,
    pub time_source: TimeSource,
    pub vehicles: Vec<Arc<VehicleView>>,
}

impl Default for FleetSnapshot {
    fn default() -> Self {
        FleetSnapshot {
            time_us: 0,
            time_source: TimeSource::SystemUnsynced,
            vehicles: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct VehicleView {
    pub id: u8,
    pub sysid: u8,
    pub compid: u8,
    pub name: String,
    /// Fleet-wide identity (AUTOPILOT_VERSION uid, or a hash of the board id ArduPilot sends
    /// in uid2 instead), as 16 hex digits.
    pub uid: Option<String>,
    pub autopilot: &'static str,
    /// The autopilot's firmware version ("4.5.7"), from AUTOPILOT_VERSION.
    pub firmware_version: Option<String>,
    pub vehicle_type: u8,
    pub mode: String,
    /// The raw `custom_mode` the mode name was decoded from.
    pub custom_mode: u32,
    pub armed: bool,
    pub system_status: u8,
    pub position: Option<PositionView>,
    /// Where it returns to; none until the autopilot has set it (a GPS fix).
    pub home: Option<PositionView>,
    pub heading_deg: Option<f64>,
    pub groundspeed_mps: f64,
    pub airspeed_mps: f64,
    pub climb_mps: f64,
    pub attitude_deg: AttitudeView,
    pub battery: BatteryView,
    pub gps: GpsView,
    pub mission: MissionView,
    pub link: LinkQualityView,
    pub signing: SigningView,
    pub last_text: Option<String>,
    pub samples: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PositionView {
    pub lat: f64,
    pub lon: f64,
    pub alt_msl_m: f64,
    pub alt_rel_m: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AttitudeView {
    pub roll: f64,
    pub pitch: f64,
    pub yaw: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BatteryView {
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    pub remaining_pct: Option<u8>,
    pub consumed_mah: Option<i32>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GpsView {
    pub fix_type: u8,
    pub fix: &'static str,
    pub satellites: u8,
    pub hdop: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MissionView {
    pub current: u16,
    pub total: u16,
    /// The last item it reported reaching.
    pub reached: Option<u16>,
    /// The stored mission (`/api/v1/missions`) the station uploaded to it last; its `field`
    /// is the block it is flying.
    pub key: Option<String>,
}

/// MAVLink 2 signing: whether the vehicle has a key, and what the station's checks of the
/// frames to and from it found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SigningView {
    pub on: bool,
    /// Frames with a valid signature.
    pub accepted: u64,
    /// Unsigned frames from the vehicle itself, let through (before it takes its key).
    pub unsigned_from_vehicle: u64,
    /// Unsigned frames addressed to it by others, dropped.
    pub rejected_unsigned: u64,
    /// Frames signed with another key (or altered), dropped.
    pub rejected_bad: u64,
    /// Frames whose signature was replayed, dropped.
    pub rejected_replayed: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LinkQualityView {
    /// "ok" or "lost" (no heartbeat for the configured silence).
    pub state: &'static str,
    pub since_heartbeat_s: f64,
    pub since_heard_s: f64,
    /// Loss over the recent window on the best link.
    pub loss_pct: f32,
    pub links: Vec<VehicleLinkView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct VehicleLinkView {
    pub link: LinkId,
    pub received: u64,
    pub lost: u64,
    pub loss_pct: f32,
    pub since_heard_s: f64,
    pub radio: Option<RadioStatus>,
}

pub(super) fn snapshot(fleet: &Fleet, now: Instant, clock: &Clock) -> FleetSnapshot {
    FleetSnapshot {
        time_us: clock.wall_us(now),
        time_source: clock.source(),
        vehicles: fleet
            .iter()
            .map(|v| Arc::new(view(fleet, v, now)))
            .collect(),
    }
}

fn secs(now: Instant, then: Instant) -> f64 {
    round(now.saturating_duration_since(then).as_secs_f64(), 3)
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

pub(super) fn view(fleet: &Fleet, v: &Vehicle, now: Instant) -> VehicleView {
    let links: Vec<VehicleLinkView> = v
        .links
        .iter()
        .map(|l| VehicleLinkView {
            link: l.link,
            received: l.seq.received(),
            lost: l.seq.lost(),
            loss_pct: l.seq.loss_pct(),
            since_heard_s: secs(now, l.last_heard),
            radio: fleet.radio_for(l),
        })
        .collect();
    let loss_pct = links
        .iter()
        .map(|l| l.loss_pct)
        .fold(None, |best: Option<f32>, x| {
            Some(best.map_or(x, |b| b.min(x)))
        })
        .unwrap_or(0.0);
    // The vehicle's state as a sample, read through the sample's accessors like history.
    let sample = v.sample(0, TimeSource::SystemUnsynced);
    VehicleView {
        id: v.sysid,
        sysid: v.sysid,
        compid: v.compid,
        name: v.name.clone(),
        uid: v.uid.map(|u| format!("{u:016x}")),
        autopilot: match modes::firmware(v.autopilot, v.mav_type) {
            modes::Firmware::Px4 => "px4",
            modes::Firmware::Other => "other",
            _ => "ardupilot",
        },
        firmware_version: v.firmware.map(|f| {
            // FIRMWARE_VERSION_TYPE in the low byte: a development build says so.
            let [major, minor, patch, kind] = f.to_be_bytes();
            let kind = match kind {
                0..=63 => "-dev",
                64..=127 => "-alpha",
                128..=191 => "-beta",
                192..=254 => "-rc",
                255 => "",
            };
            format!("{major}.{minor}.{patch}{kind}")
        }),
        vehicle_type: v.mav_type,
        mode: v.mode_name(),
        custom_mode: v.custom_mode,
        armed: v.armed(),
        system_status: v.system_status,
        position: v.position.as_ref().map(position),
        home: v.home.as_ref().map(position),
        heading_deg: sample.heading_deg(),
        groundspeed_mps: round(f64::from(v.groundspeed), 2),
        airspeed_mps: round(f64::from(v.airspeed), 2),
        climb_mps: round(f64::from(v.climb), 2),
        attitude_deg: AttitudeView {
            roll: round(f64::from(v.attitude.0).to_degrees(), 1),
            pitch: round(f64::from(v.attitude.1).to_degrees(), 1),
            yaw: round(f64::from(v.attitude.2).to_degrees(), 1),
        },
        battery: BatteryView {
            voltage_v: sample.battery_v(),
            current_a: sample.battery_a(),
            remaining_pct: sample.battery_pct(),
            consumed_mah: v.battery_consumed_mah,
        },
        gps: GpsView {
            fix_type: v.gps_fix,
            fix: fix_name(v.gps_fix),
            satellites: v.satellites,
            hdop: (v.gps_eph != u16::MAX).then(|| f64::from(v.gps_eph) / 100.0),
        },
        mission: MissionView {
            current: v.mission_current,
            total: v.mission_total,
            reached: v.mission_reached,
            key: v.mission_key.clone(),
        },
        link: LinkQualityView {
            state: if fleet.link_lost(v, now) {
                "lost"
            } else {
                "ok"
            },
            since_heartbeat_s: secs(now, v.last_heartbeat),
            since_heard_s: secs(now, v.last_heard),
            loss_pct,
            links,
        },
        signing: v.signing.clone(),
        last_text: v.last_text.as_ref().map(|(_, t)| t.clone()),
        samples: v.samples,
    }
}

fn position(p: &super::Position) -> PositionView {
    PositionView {
        lat: f64::from(p.lat_e7) / 1e7,
        lon: f64::from(p.lon_e7) / 1e7,
        alt_msl_m: f64::from(p.alt_mm) / 1e3,
        alt_rel_m: f64::from(p.rel_alt_mm) / 1e3,
    }
}

fn fix_name(fix: u8) -> &'static str {
    match fix {
        0 => "no-gps",
        1 => "no-fix",
        2 => "2d",
        3 => "3d",
        4 => "dgps",
        5 => "rtk-float",
        6 => "rtk-fixed",
        7 => "static",
        8 => "ppp",
        _ => "unknown",
    }
}
