//! Vehicle state, decoded from the frames the router passes by.
//!
//! A vehicle is a system id whose heartbeat names a real autopilot (not a GCS, not a gimbal or
//! companion with `MAV_AUTOPILOT_INVALID`). Only the handful of message types state needs are
//! decoded; everything else is only counted for link quality. Every GLOBAL_POSITION_INT becomes
//! a [`Sample`]: the vehicle's whole state at that moment, which the store keeps for history and
//! sync sends to the relay.

pub mod events;
pub mod geofence;
pub mod modes;
pub mod quality;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use mavlink::dialects::ardupilotmega as apm;

use crate::clock::{Clock, TimeSource};
use crate::dialect::MavMessage;
use crate::frame::Frame;
use crate::link::LinkId;
use crate::survey::LatLon;
pub use events::Event;
use quality::{RadioStatus, SeqTracker};
pub use view::{FleetSnapshot, SigningView, VehicleView};

/// `MAV_AUTOPILOT_INVALID`: the sender is not a flight controller.
const AUTOPILOT_INVALID: u8 = 8;

/// One telemetry sample: a vehicle's whole state when it reported its position. It is the
/// sync protocol's row type, so what the store keeps is exactly what crosses the wire; `seq`
/// is 0 until the store assigns the outbox sequence.
pub use sync_protocol::codec::TelemetryRow as Sample;

/// Something the store must record about a vehicle (not per frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VehicleRecord {
    pub sysid: u8,
    pub autopilot: u8,
    pub mav_type: u8,
    pub uid: Option<u64>,
    pub seen_us: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Position {
    pub lat_e7: i32,
    pub lon_e7: i32,
    pub alt_mm: i32,
    pub rel_alt_mm: i32,
}

#[derive(Debug, Clone)]
pub struct Vehicle {
    pub sysid: u8,
    pub compid: u8,
    pub name: String,
    pub autopilot: u8,
    pub mav_type: u8,
    pub base_mode: u8,
    pub custom_mode: u32,
    pub system_status: u8,
    pub uid: Option<u64>,
    /// AUTOPILOT_VERSION's `flight_sw_version` (major, minor, patch, release type by byte).
    pub firmware: Option<u32>,
    pub position: Option<Position>,
    /// Where it returns to (HOME_POSITION); none until the autopilot has set it.
    pub home: Option<Position>,
    pub velocity_cms: (i16, i16, i16),
    pub heading_cdeg: u16,
    pub groundspeed: f32,
    pub airspeed: f32,
    pub climb: f32,
    pub attitude: (f32, f32, f32),
    pub battery_mv: u16,
    pub battery_ca: i16,
    pub battery_pct: i8,
    pub battery_consumed_mah: Option<i32>,
    pub gps_fix: u8,
    pub satellites: u8,
    pub gps_eph: u16,
    pub mission_current: u16,
    pub mission_total: u16,
    /// The last item the vehicle reported reaching (MISSION_ITEM_REACHED).
    pub mission_reached: Option<u16>,
    /// The stored mission the station last uploaded to it, which tells whose field it flies.
    pub mission_key: Option<String>,
    /// MAVLink 2 signing: whether it has a key, and what the checks found.
    pub signing: view::SigningView,
    pub last_text: Option<(u8, String)>,
    pub first_heard: Instant,
    pub last_heard: Instant,
    pub last_heartbeat: Instant,
    pub links: Vec<VehicleLink>,
    pub samples: u64,
    /// Alerts raised and not yet cleared.
    pub raised: events::Raised,
}

/// How one vehicle is heard on one link.
#[derive(Debug, Clone)]
pub struct VehicleLink {
    pub link: LinkId,
    pub seq: SeqTracker,
    pub radio: Option<RadioStatus>,
    pub last_heard: Instant,
}

impl Vehicle {
    fn new(sysid: u8, compid: u8, name: String, at: Instant) -> Vehicle {
        Vehicle {
            sysid,
            compid,
            name,
            autopilot: 0,
            mav_type: 0,
            base_mode: 0,
            custom_mode: 0,
            system_status: 0,
            uid: None,
            firmware: None,
            position: None,
            home: None,
            velocity_cms: (0, 0, 0),
            heading_cdeg: Sample::HEADING_UNKNOWN,
            groundspeed: 0.0,
            airspeed: 0.0,
            climb: 0.0,
            attitude: (0.0, 0.0, 0.0),
            battery_mv: 0,
            battery_ca: Sample::BATTERY_CA_UNKNOWN,
            battery_pct: Sample::BATTERY_PCT_UNKNOWN,
            battery_consumed_mah: None,
            gps_fix: 0,
            satellites: 0,
            gps_eph: u16::MAX,
            mission_current: 0,
            mission_total: 0,
            mission_reached: None,
            mission_key: None,
            signing: view::SigningView::default(),
            last_text: None,
            first_heard: at,
            last_heard: at,
            last_heartbeat: at,
            links: Vec::new(),
            samples: 0,
            raised: events::Raised::default(),
        }
    }

    pub fn armed(&self) -> bool {
        modes::is_armed(self.base_mode)
    }

    pub fn mode_name(&self) -> String {
        modes::mode_name(
            self.autopilot,
            self.mav_type,
            self.base_mode,
            self.custom_mode,
        )
    }

    fn link_mut(&mut self, link: LinkId, at: Instant) -> &mut VehicleLink {
        let i = match self.links.iter().position(|l| l.link == link) {
            Some(i) => i,
            None => {
                self.links.push(VehicleLink {
                    link,
                    seq: SeqTracker::default(),
                    radio: None,
                    last_heard: at,
                });
                self.links.len() - 1
            }
        };
        &mut self.links[i]
    }

    fn sample(&self, t_us: i64, source: TimeSource) -> Sample {
        let p = self.position.clone().unwrap_or_default();
        Sample {
            seq: 0,
            vehicle: u32::from(self.sysid),
            t_us,
            time_source: source.code(),
            lat_e7: p.lat_e7,
            lon_e7: p.lon_e7,
            alt_mm: p.alt_mm,
            rel_alt_mm: p.rel_alt_mm,
            vx: self.velocity_cms.0,
            vy: self.velocity_cms.1,
            vz: self.velocity_cms.2,
            heading_cdeg: self.heading_cdeg,
            battery_mv: self.battery_mv,
            battery_ca: self.battery_ca,
            battery_pct: self.battery_pct,
            gps_fix: self.gps_fix,
            satellites: self.satellites,
            custom_mode: self.custom_mode,
            armed: self.armed(),
            mission_seq: self.mission_current,
        }
    }
}

/// Every vehicle the daemon has heard, by system id.
#[derive(Debug)]
pub struct Fleet {
    vehicles: BTreeMap<u8, Vehicle>,
    names: HashMap<u8, String>,
    /// Radio reports from radios that are not themselves a vehicle (a SiK radio on the
    /// ground-station side uses its own system id), by link.
    link_radio: HashMap<LinkId, RadioStatus>,
    link_lost_after: Duration,
    low_battery_pct: i8,
    geofences: geofence::Geofences,
    records: Vec<VehicleRecord>,
    events: Vec<Event>,
    /// Vehicles with a new position, and vehicles with another change of state, since
    /// [`Fleet::take_changes`] was last called.
    moved: BTreeSet<u8>,
    changed: BTreeSet<u8>,
    /// Vehicles with a signing key that have not been heard yet.
    signing_on: BTreeSet<u8>,
}

/// Battery percentage at or below which a low-battery alert is raised, unless configured.
pub const DEFAULT_LOW_BATTERY_PCT: i8 = 20;

impl Fleet {
    pub fn new(link_lost_after: Duration, names: HashMap<u8, String>) -> Fleet {
        Fleet {
            vehicles: BTreeMap::new(),
            names,
            link_radio: HashMap::new(),
            link_lost_after,
            low_battery_pct: DEFAULT_LOW_BATTERY_PCT,
            geofences: geofence::Geofences::default(),
            records: Vec::new(),
            events: Vec::new(),
            moved: BTreeSet::new(),
            changed: BTreeSet::new(),
            signing_on: BTreeSet::new(),
        }
    }

    /// Vehicles with a new position, and vehicles whose other state (mode, armed, battery,
    /// …) changed, since the last call.
    pub fn take_changes(&mut self) -> (BTreeSet<u8>, BTreeSet<u8>) {
        (
            std::mem::take(&mut self.moved),
            std::mem::take(&mut self.changed),
        )
    }

    /// One vehicle's view, as the API shows it.
    pub fn view_of(&self, sysid: u8, now: Instant) -> Option<VehicleView> {
        self.vehicles.get(&sysid).map(|v| view::view(self, v, now))
    }

    pub fn set_low_battery_pct(&mut self, pct: i8) {
        self.low_battery_pct = pct;
    }

    /// The geofences every armed vehicle's position is checked against from now on.
    pub fn set_geofences(&mut self, geofences: geofence::Geofences) {
        self.geofences = geofences;
    }

    pub fn get(&self, sysid: u8) -> Option<&Vehicle> {
        self.vehicles.get(&sysid)
    }

    pub fn len(&self) -> usize {
        self.vehicles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vehicles.is_empty()
    }

    /// Vehicle facts the store should persist since the last call.
    pub fn take_records(&mut self) -> Vec<VehicleRecord> {
        std::mem::take(&mut self.records)
    }

    /// Whether `sysid` has a signing key.
    pub fn set_signing(&mut self, sysid: u8, on: bool) {
        if let Some(v) = self.vehicles.get_mut(&sysid) {
            v.signing.on = on;
        } else if on {
            self.signing_on.insert(sysid);
        }
        if !on {
            self.signing_on.remove(&sysid);
        }
    }

    /// A frame to or from signing vehicle `sysid` was checked: let through or dropped.
    pub fn count_signing(&mut self, sysid: u8, verdict: crate::signing::Verdict, passed: bool) {
        use crate::signing::Verdict;
        let Some(v) = self.vehicles.get_mut(&sysid) else {
            return;
        };
        let s = &mut v.signing;
        match (verdict, passed) {
            (Verdict::Valid, _) => s.accepted += 1,
            (Verdict::Unsigned, true) => s.unsigned_from_vehicle += 1,
            (Verdict::Unsigned, false) => s.rejected_unsigned += 1,
            (Verdict::Bad, _) => s.rejected_bad += 1,
            (Verdict::Replayed, _) => s.rejected_replayed += 1,
        }
    }

    /// The station uploaded stored mission `key` to `sysid` (or cleared its mission: `None`).
    pub fn set_mission(&mut self, sysid: u8, key: Option<String>) {
        if let Some(v) = self.vehicles.get_mut(&sysid) {
            v.mission_key = key;
            v.mission_reached = None;
            self.changed.insert(sysid);
        }
    }

    /// A registry rename (from HQ or this station's API) for a vehicle heard here.
    pub fn rename(&mut self, sysid: u8, name: String) {
        if let Some(v) = self.vehicles.get_mut(&sysid) {
            tracing::info!(vehicle = sysid, from = %v.name, to = %name, "renamed");
            v.name = name.clone();
        }
        self.names.insert(sysid, name);
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Events since the last call, in the order they happened.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Raises link-lost alerts for vehicles silent longer than the configured limit. Called
    /// every tick; restoring is noticed by the next heartbeat.
    pub fn check_links(&mut self, now: Instant, clock: &Clock) {
        let limit = self.link_lost_after;
        for v in self.vehicles.values_mut() {
            let silent = now.duration_since(v.last_heartbeat);
            if !v.raised.link_lost && silent > limit {
                v.raised.link_lost = true;
                tracing::warn!(vehicle = v.sysid, "link lost");
                self.events.push(events::link_lost(
                    v,
                    silent.as_secs_f64(),
                    clock.wall_us(now),
                ));
            }
        }
    }

    /// Updates state from one frame heard on `link` at `at`; returns a sample for position
    /// reports.
    pub fn observe(
        &mut self,
        link: LinkId,
        frame: &Frame,
        at: Instant,
        clock: &mut Clock,
    ) -> Option<Sample> {
        let sysid = frame.system_id();
        let msgid = frame.message_id();
        if msgid == 0 {
            self.heartbeat(link, frame, at, clock);
        } else if msgid == 109 {
            self.radio_status(link, frame);
        }
        let vehicle = self.vehicles.get_mut(&sysid)?;
        if frame.component_id() != vehicle.compid {
            return None;
        }
        vehicle.last_heard = at;
        let vl = vehicle.link_mut(link, at);
        vl.last_heard = at;
        vl.seq.observe(frame.sequence());
        if msgid == 0 {
            self.changed.insert(sysid);
        }
        if !is_state_message(msgid) {
            return None;
        }
        if msgid == GLOBAL_POSITION_INT {
            self.moved.insert(sysid);
        } else {
            self.changed.insert(sysid);
        }
        let message = frame.decode()?;
        let mut sample = None;
        match message {
            MavMessage::GLOBAL_POSITION_INT(m) => {
                vehicle.position = Some(Position {
                    lat_e7: m.lat,
                    lon_e7: m.lon,
                    alt_mm: m.alt,
                    rel_alt_mm: m.relative_alt,
                });
                vehicle.velocity_cms = (m.vx, m.vy, m.vz);
                if m.hdg != Sample::HEADING_UNKNOWN {
                    vehicle.heading_cdeg = m.hdg;
                }
                vehicle.samples += 1;
                sample = Some(vehicle.sample(clock.wall_us(at), clock.source()));
                let breach = vehicle
                    .armed()
                    .then(|| {
                        let p = LatLon {
                            lat: f64::from(m.lat) / 1e7,
                            lon: f64::from(m.lon) / 1e7,
                        };
                        self.geofences.breach(p, f64::from(m.relative_alt) / 1e3)
                    })
                    .flatten();
                let t_us = clock.wall_us(at);
                self.events
                    .extend(raise(vehicle, |v, r| events::geofence(v, breach, r, t_us)));
            }
            MavMessage::SYS_STATUS(m) => {
                vehicle.battery_mv = m.voltage_battery;
                vehicle.battery_ca = m.current_battery;
                vehicle.battery_pct = m.battery_remaining;
                let (threshold, t_us) = (self.low_battery_pct, clock.wall_us(at));
                self.events.extend(raise(vehicle, |v, r| {
                    events::battery(v, r, threshold, t_us)
                }));
            }
            MavMessage::BATTERY_STATUS(m) if m.id == 0 => {
                if m.current_consumed >= 0 {
                    vehicle.battery_consumed_mah = Some(m.current_consumed);
                }
                if m.battery_remaining >= 0 {
                    vehicle.battery_pct = m.battery_remaining;
                }
            }
            MavMessage::GPS_RAW_INT(m) => {
                vehicle.gps_fix = m.fix_type as u8;
                vehicle.satellites = m.satellites_visible;
                vehicle.gps_eph = m.eph;
                let t_us = clock.wall_us(at);
                self.events
                    .extend(raise(vehicle, |v, r| events::gps(v, r, t_us)));
            }
            MavMessage::VFR_HUD(m) => {
                vehicle.groundspeed = m.groundspeed;
                vehicle.airspeed = m.airspeed;
                vehicle.climb = m.climb;
            }
            MavMessage::ATTITUDE(m) => vehicle.attitude = (m.roll, m.pitch, m.yaw),
            MavMessage::MISSION_CURRENT(m) => {
                vehicle.mission_current = m.seq;
                if m.total != u16::MAX {
                    vehicle.mission_total = m.total;
                }
            }
            MavMessage::MISSION_ITEM_REACHED(m) => vehicle.mission_reached = Some(m.seq),
            MavMessage::SYSTEM_TIME(m) => clock.observe_gps(m.time_unix_usec, at),
            MavMessage::AUTOPILOT_VERSION(m) => {
                if m.flight_sw_version != 0 {
                    vehicle.firmware = Some(m.flight_sw_version);
                }
                let uid = uid_of(m.uid, &m.uid2);
                if uid.is_some() && vehicle.uid != uid {
                    vehicle.uid = uid;
                    self.records.push(record(vehicle, clock.wall_us(at)));
                    self.events
                        .push(events::identity(vehicle, clock.wall_us(at)));
                }
            }
            MavMessage::HOME_POSITION(m) => {
                vehicle.home = Some(Position {
                    lat_e7: m.latitude,
                    lon_e7: m.longitude,
                    alt_mm: m.altitude,
                    rel_alt_mm: 0,
                });
            }
            MavMessage::STATUSTEXT(m) => {
                let text = String::from_utf8_lossy(m.text.as_ref())
                    .trim_end_matches('\0')
                    .to_string();
                let (severity, t_us) = (m.severity as u8, clock.wall_us(at));
                self.events.extend(raise(vehicle, |v, r| {
                    events::statustext(v, severity, &text, r, t_us)
                }));
                vehicle.last_text = Some((m.severity as u8, text));
            }
            _ => {}
        }
        sample
    }

    fn heartbeat(&mut self, link: LinkId, frame: &Frame, at: Instant, clock: &Clock) {
        let Some(MavMessage::HEARTBEAT(hb)) = frame.decode() else {
            return;
        };
        let autopilot = hb.autopilot as u8;
        if autopilot == AUTOPILOT_INVALID || hb.mavtype == apm::MavType::MAV_TYPE_GCS {
            return;
        }
        let sysid = frame.system_id();
        let compid = frame.component_id();
        let vehicle = self.vehicles.entry(sysid).or_insert_with(|| {
            let name = self
                .names
                .get(&sysid)
                .cloned()
                .unwrap_or_else(|| default_name(sysid));
            tracing::info!(vehicle = sysid, link, %name, "new vehicle");
            let mut v = Vehicle::new(sysid, compid, name, at);
            v.signing.on = self.signing_on.remove(&sysid);
            v
        });
        if vehicle.compid != compid {
            return; // another component of the same system reporting as an autopilot
        }
        let first = vehicle.autopilot == 0 && vehicle.mav_type == 0;
        let changed = vehicle.autopilot != autopilot || vehicle.mav_type != hb.mavtype as u8;
        let (was_armed, old_mode) = (vehicle.armed(), vehicle.mode_name());
        vehicle.autopilot = autopilot;
        vehicle.mav_type = hb.mavtype as u8;
        vehicle.base_mode = hb.base_mode.bits();
        vehicle.custom_mode = hb.custom_mode;
        vehicle.system_status = hb.system_status as u8;
        vehicle.last_heartbeat = at;
        let t_us = clock.wall_us(at);
        if first || changed {
            self.records.push(record(vehicle, t_us));
            self.events.push(events::identity(vehicle, t_us));
        }
        if !first {
            events::state_changes(vehicle, was_armed, &old_mode, t_us, &mut self.events);
        }
        if vehicle.raised.link_lost {
            vehicle.raised.link_lost = false;
            tracing::info!(vehicle = sysid, "link restored");
            self.events.push(events::link_restored(vehicle, t_us));
        }
    }

    fn radio_status(&mut self, link: LinkId, frame: &Frame) {
        let Some(MavMessage::RADIO_STATUS(m)) = frame.decode() else {
            return;
        };
        let status = RadioStatus {
            rssi: m.rssi,
            remrssi: m.remrssi,
            noise: m.noise,
            remnoise: m.remnoise,
            txbuf: m.txbuf,
            rxerrors: m.rxerrors,
            fixed: m.fixed,
        };
        match self.vehicles.get_mut(&frame.system_id()) {
            Some(v) => v.link_mut(link, Instant::now()).radio = Some(status),
            None => {
                self.link_radio.insert(link, status);
            }
        }
    }

    /// A vehicle is "link lost" when no heartbeat arrived for the configured silence.
    pub fn link_lost(&self, vehicle: &Vehicle, now: Instant) -> bool {
        now.duration_since(vehicle.last_heartbeat) > self.link_lost_after
    }

    pub fn snapshot(&self, now: Instant, clock: &Clock) -> FleetSnapshot {
        view::snapshot(self, now, clock)
    }

    fn radio_for(&self, vl: &VehicleLink) -> Option<RadioStatus> {
        vl.radio.or_else(|| self.link_radio.get(&vl.link).copied())
    }

    /// The system ids of every vehicle known.
    pub fn ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.vehicles.keys().copied()
    }

    fn iter(&self) -> impl Iterator<Item = &Vehicle> {
        self.vehicles.values()
    }
}

pub fn default_name(sysid: u8) -> String {
    format!("V-{sysid:02}")
}

fn record(v: &Vehicle, seen_us: i64) -> VehicleRecord {
    VehicleRecord {
        sysid: v.sysid,
        autopilot: v.autopilot,
        mav_type: v.mav_type,
        uid: v.uid,
        seen_us,
    }
}

const GLOBAL_POSITION_INT: u32 = 33;

/// Runs an alert check that reads the vehicle and updates which of its alerts are raised.
fn raise(
    vehicle: &mut Vehicle,
    check: impl FnOnce(&Vehicle, &mut events::Raised) -> Option<Event>,
) -> Option<Event> {
    let mut raised = vehicle.raised;
    let alert = check(vehicle, &mut raised);
    vehicle.raised = raised;
    alert
}

/// A vehicle's fleet identity from AUTOPILOT_VERSION: `uid`, or, when the autopilot leaves
/// that 0 and gives its board's id in `uid2` (ArduPilot does), the first eight bytes of that
/// id's SHA-256, so that the same board always gets the same identity.
fn uid_of(uid: u64, uid2: &[u8]) -> Option<u64> {
    if uid != 0 {
        return Some(uid);
    }
    if uid2.iter().all(|b| *b == 0) {
        return None;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, uid2);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    Some(u64::from_be_bytes(first))
}

/// Message ids that change vehicle state (besides HEARTBEAT and RADIO_STATUS).
fn is_state_message(msgid: u32) -> bool {
    matches!(
        msgid,
        1 | 2 | 24 | 30 | 33 | 42 | 46 | 74 | 147 | 148 | 242 | 253
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Version;

    fn frame(message: &MavMessage) -> Frame {
        Frame::encode(Version::V2, 3, 1, 0, message)
    }

    fn heartbeat(armed: bool, custom_mode: u32) -> Frame {
        let mut base_mode = apm::MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED;
        if armed {
            base_mode |= apm::MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED;
        }
        frame(&MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA {
            custom_mode,
            mavtype: apm::MavType::MAV_TYPE_QUADROTOR,
            autopilot: apm::MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
            base_mode,
            system_status: apm::MavState::MAV_STATE_ACTIVE,
            mavlink_version: 3,
        }))
    }

    fn battery(pct: i8) -> Frame {
        frame(&MavMessage::SYS_STATUS(apm::SYS_STATUS_DATA {
            battery_remaining: pct,
            voltage_battery: 15_000,
            ..Default::default()
        }))
    }

    fn codes(fleet: &mut Fleet) -> Vec<String> {
        fleet.take_events().into_iter().map(|e| e.code).collect()
    }

    #[test]
    fn alerts_fire_once_per_episode_and_state_changes_are_events() {
        let mut fleet = Fleet::new(Duration::from_secs(2), HashMap::new());
        let mut clock = Clock::default();
        let t0 = Instant::now();
        fleet.observe(0, &heartbeat(false, 0), t0, &mut clock);
        assert_eq!(codes(&mut fleet), ["identity"]);

        fleet.observe(0, &heartbeat(true, 3), t0, &mut clock);
        assert_eq!(codes(&mut fleet), ["armed", "mode"]);

        // Low battery fires once, not on every report below the threshold or around it.
        for pct in [40, 20, 19, 21, 18, 24] {
            fleet.observe(0, &battery(pct), t0, &mut clock);
        }
        assert_eq!(codes(&mut fleet), ["low_battery"]);
        // A fresh pack (5 points above the threshold) clears it; the next drop fires again.
        fleet.observe(0, &battery(95), t0, &mut clock);
        fleet.observe(0, &battery(15), t0, &mut clock);
        assert_eq!(codes(&mut fleet), ["low_battery"]);

        // Silence beyond the limit: link lost, once; the next heartbeat restores it.
        fleet.check_links(t0 + Duration::from_secs(3), &clock);
        fleet.check_links(t0 + Duration::from_secs(4), &clock);
        assert_eq!(codes(&mut fleet), ["link_lost"]);
        fleet.observe(
            0,
            &heartbeat(true, 3),
            t0 + Duration::from_secs(5),
            &mut clock,
        );
        assert_eq!(codes(&mut fleet), ["link_restored"]);
        let e = fleet.take_events();
        assert!(e.is_empty());
    }

    fn gps(fix: apm::GpsFixType, eph: u16) -> Frame {
        frame(&MavMessage::GPS_RAW_INT(apm::GPS_RAW_INT_DATA {
            fix_type: fix,
            eph,
            satellites_visible: 9,
            ..Default::default()
        }))
    }

    fn text(severity: apm::MavSeverity, text: &str) -> Frame {
        let mut m = apm::STATUSTEXT_DATA {
            severity,
            ..Default::default()
        };
        m.text = text.into();
        frame(&MavMessage::STATUSTEXT(m))
    }

    #[test]
    fn a_gps_that_degrades_and_autopilot_warnings_are_alerts_once() {
        use apm::GpsFixType::*;
        use apm::MavSeverity::*;
        let mut fleet = Fleet::new(Duration::from_secs(2), HashMap::new());
        let mut clock = Clock::default();
        let t0 = Instant::now();
        let mut hear = |fleet: &mut Fleet, secs: u64, f: Frame| {
            fleet.observe(0, &f, t0 + Duration::from_secs(secs), &mut clock);
        };
        hear(&mut fleet, 0, heartbeat(false, 0));
        codes(&mut fleet);
        // No fix on the bench is no degradation; a fix lost after a good one is, once.
        hear(&mut fleet, 0, gps(GPS_FIX_TYPE_NO_FIX, u16::MAX));
        hear(&mut fleet, 0, gps(GPS_FIX_TYPE_3D_FIX, 120));
        assert!(codes(&mut fleet).is_empty());
        hear(&mut fleet, 1, gps(GPS_FIX_TYPE_2D_FIX, 300));
        hear(&mut fleet, 1, gps(GPS_FIX_TYPE_NO_FIX, 900));
        hear(&mut fleet, 1, gps(GPS_FIX_TYPE_3D_FIX, 350));
        assert_eq!(codes(&mut fleet), ["gps_degraded"]);
        // Good again (3D, HDOP 1.5), then bad (HDOP 6): a new episode.
        hear(&mut fleet, 2, gps(GPS_FIX_TYPE_3D_FIX, 150));
        hear(&mut fleet, 2, gps(GPS_FIX_TYPE_3D_FIX, 600));
        assert_eq!(codes(&mut fleet), ["gps_degraded"]);

        // Failsafe and EKF warnings, each once however often repeated; info is not an alert.
        for s in 3..6 {
            hear(&mut fleet, s, text(MAV_SEVERITY_CRITICAL, "Radio Failsafe"));
        }
        hear(&mut fleet, 6, text(MAV_SEVERITY_WARNING, "EKF variance"));
        hear(
            &mut fleet,
            6,
            text(MAV_SEVERITY_INFO, "EKF3 IMU0 is using GPS"),
        );
        hear(
            &mut fleet,
            7,
            text(MAV_SEVERITY_CRITICAL, "PreArm: Compass not calibrated"),
        );
        assert_eq!(codes(&mut fleet), ["failsafe", "ekf", "autopilot"]);
        hear(
            &mut fleet,
            60,
            text(MAV_SEVERITY_CRITICAL, "PreArm: Compass not calibrated"),
        );
        assert_eq!(
            codes(&mut fleet),
            ["autopilot"],
            "30 s later it is a new alert"
        );
    }
}
