//! Events: what happened to a vehicle, as opposed to what it looks like now.
//!
//! The fleet turns state transitions into [`Event`]s (the sync protocol's type): an alert
//! when the battery runs low, the link goes silent, an armed vehicle leaves its geofences,
//! the GPS degrades, or the autopilot warns
//! of a failsafe, EKF trouble or anything critical; a state change when a vehicle arms or
//! changes mode, an identity record when it is first heard or reports its autopilot uid. The
//! store commits them durably at once, and sync sends them on the events lane, ahead of any
//! telemetry backlog. Each alert is raised once per episode: it has to clear (battery back
//! above the threshold plus a margin, heartbeats back) before it can be raised again, so a
//! reading that wobbles around the threshold does not flood the lane.

use sync_protocol::proto::event::{Kind, Severity};
pub use sync_protocol::proto::Event;
use sync_protocol::proto::VehicleIdentity;

use super::Vehicle;

/// Battery must climb this far above the threshold before a new low-battery alert can fire.
const BATTERY_HYSTERESIS_PCT: i8 = 5;

/// A GPS is degraded below a 3D fix or above this HDOP (× 100, as GPS_RAW_INT gives it) …
const GPS_DEGRADED_EPH: u16 = 500;
/// … and good again at a 3D fix and at most this HDOP.
const GPS_GOOD_EPH: u16 = 200;
/// The same autopilot warning within this long is the same alert (ArduPilot repeats some
/// every second while the condition lasts).
const TEXT_REPEAT_US: i64 = 30_000_000;

/// Which alerts are currently raised for one vehicle.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raised {
    pub low_battery: bool,
    pub link_lost: bool,
    pub gps_degraded: bool,
    /// The vehicle has had a good fix: losing it from here on is a degradation (a vehicle
    /// that never had one, on a bench indoors, is not).
    pub gps_seen_good: bool,
    /// The last autopilot warning raised (a hash of its text) and when.
    pub last_text: Option<(u64, i64)>,
    pub geofence: bool,
}

fn event(
    v: &Vehicle,
    t_us: i64,
    kind: Kind,
    code: &str,
    severity: Severity,
    message: String,
) -> Event {
    Event {
        seq: 0,
        t_us,
        vehicle: u32::from(v.sysid),
        kind: kind as i32,
        code: code.into(),
        severity: severity as i32,
        message,
        identity: None,
        acknowledgement: None,
        command: None,
    }
}

pub fn identity(v: &Vehicle, t_us: i64) -> Event {
    let mut e = event(
        v,
        t_us,
        Kind::Identity,
        "identity",
        Severity::Info,
        format!("{} heard (system {})", v.name, v.sysid),
    );
    e.identity = Some(VehicleIdentity {
        name: v.name.clone(),
        uid: v.uid.map(|u| format!("{u:016x}")).unwrap_or_default(),
        autopilot: u32::from(v.autopilot),
        mav_type: u32::from(v.mav_type),
    });
    e
}

/// A low-battery alert if `v` just crossed below `threshold`; clears the raised flag once
/// the battery is back above the threshold plus the hysteresis margin (a swapped pack).
pub fn battery(v: &Vehicle, raised: &mut Raised, threshold: i8, t_us: i64) -> Option<Event> {
    let pct = v.battery_pct;
    if pct < 0 {
        return None; // not reported
    }
    if raised.low_battery {
        if pct >= threshold.saturating_add(BATTERY_HYSTERESIS_PCT) {
            raised.low_battery = false;
        }
        return None;
    }
    if pct > threshold {
        return None;
    }
    raised.low_battery = true;
    Some(event(
        v,
        t_us,
        Kind::Alert,
        "low_battery",
        Severity::Critical,
        format!("{} battery {pct} %", v.name),
    ))
}

/// A GPS-degraded alert when the fix drops below 3D or the HDOP grows past 5, once per
/// episode: it clears at a 3D fix with an HDOP of 2 or better.
pub fn gps(v: &Vehicle, raised: &mut Raised, t_us: i64) -> Option<Event> {
    let good = v.gps_fix >= 3 && v.gps_eph <= GPS_GOOD_EPH;
    let degraded = v.gps_fix < 3 || (v.gps_eph != u16::MAX && v.gps_eph > GPS_DEGRADED_EPH);
    if good {
        raised.gps_seen_good = true;
        raised.gps_degraded = false;
        return None;
    }
    if !degraded || raised.gps_degraded || !raised.gps_seen_good {
        return None;
    }
    raised.gps_degraded = true;
    let hdop = if v.gps_eph == u16::MAX {
        "unknown".to_string()
    } else {
        format!("{:.1}", f64::from(v.gps_eph) / 100.0)
    };
    Some(event(
        v,
        t_us,
        Kind::Alert,
        "gps_degraded",
        Severity::Warning,
        format!(
            "{} GPS degraded: fix type {}, {} satellites, HDOP {hdop}",
            v.name, v.gps_fix, v.satellites
        ),
    ))
}

/// An alert for an autopilot's STATUSTEXT a person must see: failsafes and EKF (navigation
/// filter) trouble at warning severity or worse, and anything critical or worse; the same
/// text again within 30 s is the same alert.
pub fn statustext(
    v: &Vehicle,
    severity: u8,
    text: &str,
    raised: &mut Raised,
    t_us: i64,
) -> Option<Event> {
    // MAV_SEVERITY: 0 emergency, 1 alert, 2 critical, 3 error, 4 warning, 5 notice, 6 info.
    let lower = text.to_ascii_lowercase();
    let code = if severity <= 4 && lower.contains("failsafe") {
        "failsafe"
    } else if severity <= 4 && lower.contains("ekf") {
        "ekf"
    } else if severity <= 2 {
        "autopilot"
    } else {
        return None;
    };
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        h.finish()
    };
    if raised
        .last_text
        .is_some_and(|(last, at)| last == hash && t_us.saturating_sub(at) < TEXT_REPEAT_US)
    {
        return None;
    }
    raised.last_text = Some((hash, t_us));
    let level = if severity <= 2 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(event(
        v,
        t_us,
        Kind::Alert,
        code,
        level,
        format!("{}: {text}", v.name),
    ))
}

/// A geofence-breach alert when an armed vehicle leaves its fences or passes a ceiling
/// (`breach` says how), once per episode; back inside (or disarmed), a `geofence_clear`
/// tells the pilot so, and the next breach fires again.
pub fn geofence(
    v: &Vehicle,
    breach: Option<String>,
    raised: &mut Raised,
    t_us: i64,
) -> Option<Event> {
    let Some(why) = breach else {
        if !std::mem::take(&mut raised.geofence) {
            return None;
        }
        return Some(event(
            v,
            t_us,
            Kind::Alert,
            "geofence_clear",
            Severity::Info,
            format!("{} back inside its geofences", v.name),
        ));
    };
    if raised.geofence {
        return None;
    }
    raised.geofence = true;
    Some(event(
        v,
        t_us,
        Kind::Alert,
        "geofence_breach",
        Severity::Critical,
        format!("{} geofence breach: {why}", v.name),
    ))
}

pub fn link_lost(v: &Vehicle, silent_s: f64, t_us: i64) -> Event {
    event(
        v,
        t_us,
        Kind::Alert,
        "link_lost",
        Severity::Critical,
        format!("{} link lost: no heartbeat for {silent_s:.1} s", v.name),
    )
}

pub fn link_restored(v: &Vehicle, t_us: i64) -> Event {
    event(
        v,
        t_us,
        Kind::Alert,
        "link_restored",
        Severity::Info,
        format!("{} link restored", v.name),
    )
}

/// State changes between two heartbeats: arming, disarming, a new flight mode.
pub fn state_changes(
    v: &Vehicle,
    was_armed: bool,
    old_mode: &str,
    t_us: i64,
    out: &mut Vec<Event>,
) {
    let armed = v.armed();
    if armed != was_armed {
        let (code, word) = if armed {
            ("armed", "armed")
        } else {
            ("disarmed", "disarmed")
        };
        out.push(event(
            v,
            t_us,
            Kind::State,
            code,
            Severity::Info,
            format!("{} {word}", v.name),
        ));
    }
    let mode = v.mode_name();
    if mode != old_mode {
        out.push(event(
            v,
            t_us,
            Kind::State,
            "mode",
            Severity::Info,
            format!("{} mode {old_mode} → {mode}", v.name),
        ));
    }
}
