//! The station as a ground-control component of its own.
//!
//! Real autopilots send little until a ground station asks: a fresh ArduPilot sends HEARTBEAT
//! and SYS_STATUS only, and gives its uid only in AUTOPILOT_VERSION on request. So the station
//! speaks MAVLink itself, under its own system and component id (never 255, which
//! QGroundControl and MAVProxy use, so that a vehicle's answers to each reach the right one):
//!
//! - a GCS HEARTBEAT at 1 Hz on every link a vehicle is heard on, so a vehicle's GCS failsafe
//!   behaves as configured whether or not QGroundControl is connected;
//! - for every vehicle, the data it needs ([`asks`]): data streams, AUTOPILOT_VERSION and
//!   HOME_POSITION, asked again after a reboot or a link that came back;
//! - the commands people send ([`command`]), until the vehicle answers or they time out;
//! - the transfers of its missions, fences and rally points ([`mission`]) and of its
//!   parameters ([`params`]).
//!
//! It lives inside the ingest loop (one task, no locks): ingest shows it every frame after
//! routing and the fleet's update, and sends what it queues through the router to the links
//! its vehicle is heard on. Frames addressed to the station's own system id are the answers
//! it waits for; the router keeps them from other links.

mod asks;
mod command;
mod mission;
mod params;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mavlink::dialects::ardupilotmega as apm;

use crate::config::GcsSection;
use crate::dialect::MavMessage;
use crate::frame::{Frame, Version};
use crate::vehicle::Fleet;
use asks::Asks;
pub use asks::Rates;
use command::Commands;
pub use command::{Command, CommandUpdate, Outcome};
use mission::Transfers;
pub use mission::{MissionItem, MissionKind, Operation, Progress};
use params::Params;
pub use params::{ParamOp, ParamUpdate, ParamValue};

/// How often the station's heartbeat goes out.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Where a frame the station sends goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// The links one vehicle is heard on.
    Vehicle(u8),
    /// Every link any vehicle is heard on, once each.
    EveryVehicleLink,
}

/// What a person asks of a vehicle: a command, or a transfer of one of its lists.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Command(Command),
    Mission {
        kind: MissionKind,
        op: Operation,
        /// The stored mission an upload comes from.
        mission: Option<String>,
    },
    Params(ParamOp),
    Signing(SigningOp),
}

/// Installing a MAVLink 2 signing key on a vehicle (SETUP_SIGNING), or turning signing off
/// (an all-zero key). Done when the vehicle's frames show it: signed with the new key, or
/// unsigned again.
#[derive(Debug, Clone, PartialEq)]
pub enum SigningOp {
    Install(crate::signing::Key),
    Remove,
}

/// SETUP_SIGNING has no answer; it is sent this often until the vehicle's frames show it took.
const SIGNING_RESEND: Duration = Duration::from_millis(1_500);
const SIGNING_SENDS: u8 = 4;

#[derive(Debug)]
struct SigningJob {
    id: i64,
    key: Option<crate::signing::Key>,
    sends: u8,
    next: Instant,
}

impl Action {
    /// `arm`, `mode`, …, `upload_mission`, `download_mission`, `clear_mission`, `set_current`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Command(c) => c.name(),
            Action::Params(op) => op.name(),
            Action::Signing(SigningOp::Install(_)) => "setup_signing",
            Action::Signing(SigningOp::Remove) => "remove_signing",
            Action::Mission { op, .. } => match op {
                Operation::Upload(_) => "upload_mission",
                Operation::Download => "download_mission",
                Operation::Clear => "clear_mission",
                Operation::SetCurrent(_) => "set_current",
            },
        }
    }

    /// For people: "mode LOITER", "upload mission block-3 (42 items)".
    pub fn describe(&self) -> String {
        match self {
            Action::Command(c) => c.describe(),
            Action::Params(op) => op.describe(),
            Action::Signing(SigningOp::Install(_)) => "install a signing key".into(),
            Action::Signing(SigningOp::Remove) => "turn signing off".into(),
            Action::Mission { kind, op, mission } => {
                let list = match kind {
                    MissionKind::Mission => "mission",
                    MissionKind::Fence => "fence",
                    MissionKind::Rally => "rally points",
                };
                match op {
                    Operation::Upload(items) => format!(
                        "upload {list} {}({} items)",
                        mission
                            .as_ref()
                            .map(|m| format!("{m} "))
                            .unwrap_or_default(),
                        items.len()
                    ),
                    Operation::Download => format!("download {list}"),
                    Operation::Clear => format!("clear {list}"),
                    Operation::SetCurrent(seq) => format!("set current item {seq}"),
                }
            }
        }
    }

    /// Its arguments as stored with it.
    pub fn args(&self) -> serde_json::Value {
        match self {
            Action::Command(c) => serde_json::to_value(c).unwrap_or_default(),
            Action::Params(op) => op.args(),
            // Never the key.
            Action::Signing(_) => serde_json::json!({ "command": self.name() }),
            Action::Mission { kind, op, mission } => {
                let mut args = serde_json::json!({ "command": self.name(), "kind": kind });
                match op {
                    Operation::Upload(items) => {
                        args["mission"] = serde_json::json!(mission);
                        args["items"] = serde_json::json!(items.len());
                    }
                    Operation::SetCurrent(seq) => args["seq"] = serde_json::json!(seq),
                    Operation::Download | Operation::Clear => {}
                }
                args
            }
        }
    }
}

/// A stored command or transfer for the ingest loop to carry out.
#[derive(Debug, Clone)]
pub struct SendCommand {
    pub id: i64,
    pub vehicle: u8,
    pub action: Action,
}

/// The station's MAVLink address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub system: u8,
    pub component: u8,
}

pub struct Gcs {
    address: Address,
    heartbeat: bool,
    request_data: bool,
    rates: Rates,
    link_lost_after: Duration,
    sequence: u8,
    next_heartbeat: Option<Instant>,
    vehicles: BTreeMap<u8, Asks>,
    commands: Commands,
    transfers: Transfers,
    params: Params,
    /// Uploads and clears of a vehicle's mission list under way: id → (vehicle, the stored
    /// mission uploaded, or `None` for a clear).
    mission_changes: BTreeMap<i64, (u8, Option<String>)>,
    /// Those that succeeded, for the fleet.
    missions_changed: Vec<(u8, Option<String>)>,
    signing_jobs: BTreeMap<u8, SigningJob>,
    signing_updates: Vec<CommandUpdate>,
    outbox: Vec<(To, Frame)>,
}

impl Gcs {
    pub fn new(config: &GcsSection, link_lost_after: Duration) -> Gcs {
        Gcs {
            address: Address {
                system: config.system_id,
                component: config.component_id,
            },
            heartbeat: config.heartbeat,
            request_data: config.request_data,
            rates: config.rates,
            link_lost_after,
            sequence: 0,
            next_heartbeat: None,
            vehicles: BTreeMap::new(),
            commands: Commands::default(),
            transfers: Transfers::default(),
            params: Params::default(),
            mission_changes: BTreeMap::new(),
            missions_changed: Vec::new(),
            signing_jobs: BTreeMap::new(),
            signing_updates: Vec::new(),
            outbox: Vec::new(),
        }
    }

    /// Learns from one frame, after the fleet has seen it: a vehicle's data arriving, its
    /// answers to the station, or what another ground station asked of it.
    pub fn observe(&mut self, frame: &Frame, at: Instant, fleet: &Fleet) {
        let system = frame.system_id();
        if system == self.address.system {
            return;
        }
        if let Some(vehicle) = fleet.get(system) {
            if frame.component_id() == vehicle.compid {
                let asks = self
                    .vehicles
                    .entry(system)
                    .or_insert_with(|| Asks::new(system, vehicle.autopilot, frame.version(), at));
                asks.observe(frame, at, self.link_lost_after);
                match frame.message_id() {
                    22 => {
                        if let Some(MavMessage::PARAM_VALUE(m)) = frame.decode() {
                            self.params.set_firmware(system, vehicle);
                            self.params.observe(system, &m, at);
                            let version = asks.version();
                            for (vehicle, mut m) in self.params.take_out() {
                                address_to(&mut m, (vehicle, frame.component_id()));
                                self.send(To::Vehicle(vehicle), version, &m);
                            }
                        }
                    }
                    77 => {
                        if let Some(MavMessage::COMMAND_ACK(ack)) = frame.decode() {
                            let me = self.address;
                            let to_me = (ack.target_system == me.system || ack.target_system == 0)
                                && (ack.target_component == me.component
                                    || ack.target_component == 0);
                            if to_me {
                                asks.acked(&ack);
                                self.commands.acked(system, &ack, at);
                            }
                        }
                    }
                    // MISSION_REQUEST, MISSION_CURRENT, MISSION_COUNT, MISSION_ACK,
                    // MISSION_REQUEST_INT, MISSION_ITEM_INT: only those addressed to the
                    // station (MISSION_CURRENT is broadcast) belong to its transfers.
                    40 | 42 | 44 | 47 | 51 | 73 => {
                        let to_me = frame.target().is_none_or(|(s, _)| s == self.address.system);
                        if let (true, Some(message)) = (to_me, frame.decode()) {
                            let to = (system, vehicle.compid);
                            self.transfers.observe(system, to, &message, at);
                            let version = asks.version();
                            for (vehicle, m) in self.transfers.take_out() {
                                self.send(To::Vehicle(vehicle), version, &m);
                            }
                        }
                    }
                    _ => {}
                }
                return;
            }
        }
        // Another ground station's request to a vehicle: remembered so that the station never
        // asks that vehicle for less than it did.
        if matches!(frame.message_id(), 66 | 76) {
            if let Some((target, _)) = frame.target() {
                if let Some(asks) = self.vehicles.get_mut(&target) {
                    asks.observe_other_gcs(frame);
                }
            }
        }
    }

    /// Sends the heartbeat when due and whatever each vehicle still has to be asked. `now_us`
    /// is `now` on the station's clock (signing timestamps; a Pi's system clock may be years
    /// behind a vehicle's signing time).
    pub fn tick(&mut self, now: Instant, now_us: i64, fleet: &Fleet) {
        self.vehicles.retain(|id, _| fleet.get(*id).is_some());
        if self.heartbeat && !self.vehicles.is_empty() {
            let due = self.next_heartbeat.is_none_or(|t| now >= t);
            if due {
                self.next_heartbeat = Some(now + HEARTBEAT_EVERY);
                self.send_heartbeat();
            }
        }
        self.send_commands(now, now_us, fleet);
        if !self.request_data {
            return;
        }
        let mut requests = Vec::new();
        for (&system, asks) in &mut self.vehicles {
            let Some(vehicle) = fleet.get(system) else {
                continue;
            };
            asks.set_autopilot(vehicle.autopilot);
            for message in asks.due(now, &self.rates, self.link_lost_after) {
                requests.push((system, vehicle.compid, asks.version(), message));
            }
        }
        for (system, component, version, mut message) in requests {
            address_to(&mut message, (system, component));
            self.send(To::Vehicle(system), version, &message);
        }
    }

    /// Carries out command or transfer `id` (stored already) with `vehicle`, starting `now`
    /// (`now_us` on the station's clock); its outcomes follow as [`CommandUpdate`]s.
    pub fn command(
        &mut self,
        id: i64,
        vehicle: u8,
        action: Action,
        now: Instant,
        now_us: i64,
        fleet: &Fleet,
    ) {
        tracing::info!(vehicle, command = id, what = %action.describe(), "sending a command");
        match action {
            Action::Command(command) => self.commands.start(id, vehicle, command),
            Action::Mission { kind, op, mission } => {
                if kind == MissionKind::Mission {
                    match &op {
                        Operation::Upload(_) => {
                            self.mission_changes.insert(id, (vehicle, mission));
                        }
                        Operation::Clear => {
                            self.mission_changes.insert(id, (vehicle, None));
                        }
                        Operation::Download | Operation::SetCurrent(_) => {}
                    }
                }
                self.transfers.start(id, vehicle, kind, op)
            }
            Action::Signing(op) => {
                let key = match op {
                    SigningOp::Install(key) => Some(key),
                    SigningOp::Remove => None,
                };
                let job = SigningJob {
                    id,
                    key,
                    sends: 0,
                    next: now,
                };
                if let Some(old) = self.signing_jobs.insert(vehicle, job) {
                    self.signing_updates.push(CommandUpdate::of(
                        old.id,
                        vehicle,
                        Outcome::Failed,
                        old.sends,
                        None,
                    ));
                }
            }
            Action::Params(op) => {
                if let Some(v) = fleet.get(vehicle) {
                    self.params.set_firmware(vehicle, v);
                }
                self.params.start(id, vehicle, op);
            }
        }
        self.send_commands(now, now_us, fleet);
    }

    fn send_commands(&mut self, now: Instant, now_us: i64, fleet: &Fleet) {
        let address = |system: u8| fleet.get(system).map(|v| (system, v.compid));
        for (system, message) in self.transfers.due(now, address) {
            let version = self.version_of(system);
            self.send(To::Vehicle(system), version, &message);
        }
        let target = |system: u8| {
            let v = fleet.get(system)?;
            let px4 = crate::vehicle::modes::firmware(v.autopilot, v.mav_type)
                == crate::vehicle::modes::Firmware::Px4;
            Some(command::Addressee {
                address: (system, v.compid),
                px4,
                home_msl_m: v.home.as_ref().map(|h| f64::from(h.alt_mm) / 1000.0),
            })
        };
        self.send_signing(now, now_us, fleet);
        self.params.due(now, |system| fleet.get(system).is_some());
        for (system, mut message) in self.params.take_out() {
            let Some(v) = fleet.get(system) else {
                continue;
            };
            address_to(&mut message, (system, v.compid));
            let version = self.version_of(system);
            self.send(To::Vehicle(system), version, &message);
        }
        for (system, message) in self.commands.due(now, target) {
            let version = self.version_of(system);
            self.send(To::Vehicle(system), version, &message);
        }
    }

    /// Command and transfer outcomes since the last call, for the store.
    pub fn take_command_updates(&mut self) -> Vec<CommandUpdate> {
        let mut updates = self.commands.take_updates();
        updates.extend(self.params.take_outcomes());
        updates.append(&mut self.signing_updates);
        updates.extend(self.transfers.take_updates().into_iter().map(|u| {
            let (outcome, progress, detail) = match u.progress {
                // The items moved replace a `waiting` note the transfer may have had.
                Progress::Working { done, total } => (
                    Outcome::InProgress,
                    Some((u32::from(done) * 100 / u32::from(total.max(1))) as u8),
                    Some(serde_json::json!({ "done": done, "total": total })),
                ),
                Progress::Waiting(why) => (
                    Outcome::InProgress,
                    Some(0),
                    Some(serde_json::json!({ "waiting": why })),
                ),
                Progress::Done(items) => (
                    Outcome::Accepted,
                    None,
                    items.map(|i| serde_json::json!({ "items": i })),
                ),
                Progress::Failed(why) => (
                    Outcome::Failed,
                    None,
                    Some(serde_json::json!({ "error": why })),
                ),
            };
            CommandUpdate {
                id: u.id,
                vehicle: u.vehicle,
                outcome,
                result: None,
                progress,
                sends: 0,
                detail,
            }
        }));
        for u in updates.iter().filter(|u| u.outcome.is_final()) {
            if let Some(change) = self.mission_changes.remove(&u.id) {
                if u.outcome == Outcome::Accepted {
                    self.missions_changed.push(change);
                }
            }
        }
        updates
    }

    pub fn has_command_updates(&self) -> bool {
        self.commands.has_updates()
            || self.transfers.has_updates()
            || self.params.has_outcomes()
            || !self.signing_updates.is_empty()
    }

    /// Whether a signing key is being installed on (or removed from) `vehicle`.
    pub fn is_setting_up_signing(&self, vehicle: u8) -> bool {
        self.signing_jobs.contains_key(&vehicle)
    }

    /// A frame from `vehicle` while its signing is being set up: signed with the key being
    /// installed (`valid`), or unsigned. Either ends the job when it is what was asked for.
    pub fn signing_seen(&mut self, vehicle: u8, valid: bool, unsigned: bool) {
        let Some(job) = self.signing_jobs.get(&vehicle) else {
            return;
        };
        let took = job.sends > 0 && if job.key.is_some() { valid } else { unsigned };
        if took {
            tracing::info!(vehicle, command = job.id, "signing set up");
            self.signing_updates.push(CommandUpdate::of(
                job.id,
                vehicle,
                Outcome::Accepted,
                job.sends,
                None,
            ));
            self.signing_jobs.remove(&vehicle);
        }
    }

    fn send_signing(&mut self, now: Instant, now_us: i64, fleet: &Fleet) {
        let mut out = Vec::new();
        self.signing_jobs.retain(|&vehicle, job| {
            if now < job.next {
                return true;
            }
            let Some(v) = fleet.get(vehicle).filter(|_| job.sends < SIGNING_SENDS) else {
                self.signing_updates.push(CommandUpdate::of(
                    job.id,
                    vehicle,
                    Outcome::TimedOut,
                    job.sends,
                    None,
                ));
                return false;
            };
            job.sends += 1;
            job.next = now + SIGNING_RESEND;
            out.push((
                vehicle,
                MavMessage::SETUP_SIGNING(apm::SETUP_SIGNING_DATA {
                    // ArduPilot turns signing off only for a zero key with a zero timestamp.
                    initial_timestamp: if job.key.is_some() {
                        crate::signing::timestamp(now_us)
                    } else {
                        0
                    },
                    target_system: vehicle,
                    target_component: v.compid,
                    secret_key: job.key.as_ref().map_or([0; 32], |k| k.0),
                }),
            ));
            true
        });
        for (vehicle, message) in out {
            let version = self.version_of(vehicle);
            self.send(To::Vehicle(vehicle), version, &message);
        }
    }

    /// Vehicles whose mission list the station replaced or cleared since the last call.
    pub fn take_missions_changed(&mut self) -> Vec<(u8, Option<String>)> {
        std::mem::take(&mut self.missions_changed)
    }

    /// What the vehicles reported of their parameters since the last call, for the store.
    /// Taken before the command updates of the same moment, so that a job's outcome is
    /// committed with (or after) the values it read.
    pub fn take_param_updates(&mut self) -> Vec<ParamUpdate> {
        self.params.take_updates()
    }

    /// Frames queued since the last call, with where each goes.
    pub fn take_outbox(&mut self) -> Vec<(To, Frame)> {
        std::mem::take(&mut self.outbox)
    }

    pub fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// The MAVLink version `system` speaks (2 until heard otherwise).
    fn version_of(&self, system: u8) -> Version {
        self.vehicles
            .get(&system)
            .map_or(Version::V2, Asks::version)
    }

    fn send_heartbeat(&mut self) {
        // MAVLink 1 if any vehicle speaks only that (an old APM): every autopilot reads it.
        let version = if self.vehicles.values().any(|a| a.version() == Version::V1) {
            Version::V1
        } else {
            Version::V2
        };
        let heartbeat = MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA {
            custom_mode: 0,
            mavtype: apm::MavType::MAV_TYPE_GCS,
            autopilot: apm::MavAutopilot::MAV_AUTOPILOT_INVALID,
            base_mode: apm::MavModeFlag::empty(),
            system_status: apm::MavState::MAV_STATE_ACTIVE,
            mavlink_version: 3,
        });
        self.send(To::EveryVehicleLink, version, &heartbeat);
    }

    fn send(&mut self, to: To, version: Version, message: &MavMessage) {
        let frame = Frame::encode(
            version,
            self.address.system,
            self.address.component,
            self.sequence,
            message,
        );
        self.sequence = self.sequence.wrapping_add(1);
        self.outbox.push((to, frame));
    }
}

/// Fills in the target of a message built without one (requests, parameter messages).
fn address_to(message: &mut MavMessage, (system, component): (u8, u8)) {
    use mavlink::Message as _;
    if let Some(s) = message.target_system_id_mut() {
        *s = system;
    }
    if let Some(c) = message.target_component_id_mut() {
        *c = component;
    }
}

#[cfg(test)]
mod tests;
