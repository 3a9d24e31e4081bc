//! Events: what happened to a vehicle, as opposed to what it looks like now.
//!
//! The fleet turns state transitions into [`Event`]s (the sync protocol's type): an alert
//! when the battery runs low or the link goes silent, a state change when a vehicle arms or
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

/// Which alerts are currently raised for one vehicle.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raised {
    pub low_battery: bool,
    pub link_lost: bool,
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
