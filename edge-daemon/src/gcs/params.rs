//! The MAVLink parameter protocol, from the ground station's side: read the whole list, read
//! one, set with read-back, and apply a profile.
//!
//! Reading the list: PARAM_REQUEST_LIST makes the vehicle stream every parameter as
//! PARAM_VALUE, each with its index and the total count. On a radio some are lost; once the
//! stream has gone quiet the station asks for each missing index with PARAM_REQUEST_READ, a
//! few at a time, repeating an unanswered one after a timeout that doubles (the same adaptive
//! timeout as missions: four smoothed round trips, [`MIN_TIMEOUT`] to [`MAX_TIMEOUT`],
//! [`TRIES`] tries).
//!
//! Setting: PARAM_SET with the parameter's own type; the vehicle answers with PARAM_VALUE
//! holding what it now has. A value counts as set only when that answer equals it as a
//! 32-bit float; an answer with another value (the vehicle clamped or refused it) is asked
//! again a few times, since a PARAM_VALUE from before the set may still be on its way, then
//! reported as refused. A name the vehicle does not have is never sent blind: the station
//! knows the vehicle's list, or reads the name first.
//!
//! Values: ArduPilot carries integer parameters as the float of their value; PX4 puts the
//! integer's bytes in the float's place (MAV_PROTOCOL_CAPABILITY_PARAM_ENCODE_BYTEWISE).
//! Both are decoded to the number itself.
//!
//! Every PARAM_VALUE the vehicle's autopilot sends is learnt, also those QGroundControl asked
//! for or a change made on the vehicle: the station's copy follows the vehicle, and the store
//! keeps each change with its time.
//!
//! One job per vehicle at a time, others waiting behind it, like mission transfers.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use mavlink::dialects::ardupilotmega as apm;
use num_traits::FromPrimitive as _;
use serde::Serialize;

use super::mission::{smooth, wait_for_answer, MAX_TIMEOUT, TRIES};
use super::{CommandUpdate, Outcome};
use crate::dialect::MavMessage;
use crate::profile::{self, Family, Profile};

/// Missing indices asked for at once while filling the gaps of a list.
const WINDOW: usize = 8;
/// Tries for reading a name the vehicle may not have (ArduPilot ignores unknown names).
const READ_TRIES: u8 = 4;
/// Answers holding another value before a set counts as refused.
const MISMATCHES: u8 = 3;
/// The list stream counts as over after this many times its usual gap in silence.
const QUIET_GAPS: u32 = 8;

/// What a person asks of a vehicle's parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamOp {
    /// Read the whole list.
    Fetch,
    /// Read these names from the vehicle.
    Read(Vec<String>),
    /// Set each, in order, reading each back.
    Set(Vec<(String, f64)>),
    /// Read the list, set what differs from the profile in its order (reading the list again
    /// after an `*_ENABLE` change), and record that the vehicle follows it.
    Apply(Profile),
}

impl ParamOp {
    pub fn name(&self) -> &'static str {
        match self {
            ParamOp::Fetch => "fetch_params",
            ParamOp::Read(_) => "read_params",
            ParamOp::Set(_) => "set_params",
            ParamOp::Apply(_) => "apply_profile",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ParamOp::Fetch => "read all parameters".into(),
            ParamOp::Read(names) => format!("read {}", names.join(", ")),
            ParamOp::Set(values) if values.len() <= 3 => {
                let each: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v}")).collect();
                format!("set {}", each.join(", "))
            }
            ParamOp::Set(values) => format!("set {} parameters", values.len()),
            ParamOp::Apply(p) => format!("apply profile {}", p.name),
        }
    }

    pub fn args(&self) -> serde_json::Value {
        let mut args = serde_json::json!({ "command": self.name() });
        match self {
            ParamOp::Fetch => {}
            ParamOp::Read(names) => args["names"] = serde_json::json!(names),
            ParamOp::Set(values) => {
                args["params"] = values
                    .iter()
                    .map(|(n, v)| (n.clone(), serde_json::json!(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            ParamOp::Apply(p) => args["profile"] = serde_json::json!(p.name),
        }
        args
    }
}

/// A parameter as the vehicle reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamValue {
    pub value: f64,
    /// MAV_PARAM_TYPE: 1–8 integers, 9 REAL32.
    pub kind: u8,
    /// Its index in the vehicle's list, when the answer gave one.
    pub index: Option<u16>,
}

/// What the store keeps of a vehicle's parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamUpdate {
    /// A value the vehicle reported; `command` when it answers the station's set.
    Value {
        vehicle: u8,
        name: String,
        value: ParamValue,
        command: Option<i64>,
    },
    /// The vehicle says it has this many parameters (a new count: first heard, or changed).
    Count { vehicle: u8, count: u16 },
    /// The whole list was read: the vehicle has exactly these names.
    Listed { vehicle: u8, names: Vec<String> },
    /// The vehicle now follows this profile (applied to it): its name and text.
    Follows {
        vehicle: u8,
        profile: String,
        text: String,
    },
}

/// One thing a job does on the wire.
#[derive(Debug, Clone, PartialEq)]
enum Task {
    List,
    Read(String),
    Set(String, f64),
}

#[derive(Debug)]
enum Step {
    Idle,
    Listing {
        count: Option<u16>,
        /// The name heard at each index so far.
        got: Vec<Option<String>>,
        /// The vehicle is still streaming the list.
        streaming: bool,
        last_heard: Instant,
        /// Smoothed gap between values of the stream.
        gap: Duration,
        /// Indices asked for again: when, and how many times.
        asked: BTreeMap<u16, (Instant, u8)>,
        list_sent: Instant,
        list_tries: u8,
    },
    Reading {
        name: String,
        sent: Instant,
        tries: u8,
    },
    Setting {
        name: String,
        value: f64,
        /// Its MAV_PARAM_TYPE, which every repeat sends with it.
        kind: u8,
        previous: f64,
        sent: Instant,
        tries: u8,
        mismatches: u8,
    },
}

/// What a job has done, for its outcome's detail.
#[derive(Debug, Default, Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u16>,
    #[serde(skip_serializing_if = "is_zero")]
    re_requested: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    read: Vec<Named>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    set: Vec<Changed>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unchanged: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<profile::Difference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reboot: Option<Reboot>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
struct Named {
    name: String,
    value: f64,
}

#[derive(Debug, Serialize)]
struct Changed {
    name: String,
    value: f64,
    previous: f64,
}

#[derive(Debug, Serialize)]
struct Failure {
    name: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct Reboot {
    /// Set parameters that take effect at the next boot.
    takes_effect: Vec<String>,
    /// Profile parameters still missing after an enable parameter changed: they may appear
    /// after a reboot; apply the profile again then.
    may_appear: Vec<String>,
}

#[derive(Debug)]
struct Job {
    id: i64,
    op: ParamOp,
    tasks: VecDeque<Task>,
    step: Step,
    report: Report,
    /// Apply: enable parameters it changed.
    enabled: Vec<String>,
    /// Tenths of the list read so far, as last reported.
    tenths: u8,
}

fn values(table: &BTreeMap<String, ParamValue>) -> BTreeMap<String, f64> {
    table.iter().map(|(n, v)| (n.clone(), v.value)).collect()
}

/// One vehicle's parameters as the station knows them, and its jobs.
#[derive(Debug, Default)]
struct Vehicle {
    table: BTreeMap<String, ParamValue>,
    count: Option<u16>,
    /// Whether every index below `count` has been heard since the list was last read.
    complete: bool,
    /// PX4's byte-wise encoding of integers.
    bytewise: bool,
    version: Option<(u8, u8)>,
    /// Smoothed round trip of answered requests.
    rtt: Option<Duration>,
    job: Option<Job>,
    waiting: VecDeque<(i64, ParamOp)>,
}

/// Every vehicle's parameters and parameter jobs.
#[derive(Debug, Default)]
pub struct Params {
    vehicles: BTreeMap<u8, Vehicle>,
    out: Vec<(u8, MavMessage)>,
    updates: Vec<ParamUpdate>,
    outcomes: Vec<CommandUpdate>,
}

impl Params {
    /// Queues job `id` (already stored) for `vehicle`.
    pub fn start(&mut self, id: i64, vehicle: u8, op: ParamOp) {
        self.vehicles
            .entry(vehicle)
            .or_default()
            .waiting
            .push_back((id, op));
    }

    /// What the station knows of `vehicle`'s firmware (`heard`, the fleet's): PX4 encodes
    /// integers byte-wise, and renamed parameters follow the version.
    pub fn set_firmware(&mut self, vehicle: u8, heard: &crate::vehicle::Vehicle) {
        use crate::vehicle::modes;
        let v = self.vehicles.entry(vehicle).or_default();
        v.bytewise = modes::firmware(heard.autopilot, heard.mav_type) == modes::Firmware::Px4;
        v.version = heard.firmware.map(|f| {
            let [major, minor, ..] = f.to_be_bytes();
            (major, minor)
        });
    }

    /// A PARAM_VALUE from `vehicle`'s autopilot.
    pub fn observe(&mut self, vehicle: u8, m: &apm::PARAM_VALUE_DATA, now: Instant) {
        let Ok(name) = m.param_id.to_str() else {
            return;
        };
        let name = name.to_string();
        let v = self.vehicles.entry(vehicle).or_default();
        let kind = m.param_type as u8;
        let value = decode(m.param_value, kind, v.bytewise);
        // 65535 (-1): an answer to a set or a change announced, not a place in the list.
        let index = (m.param_index < m.param_count).then_some(m.param_index);
        let reported = ParamValue { value, kind, index };
        if v.count != Some(m.param_count) && index.is_some() {
            v.count = Some(m.param_count);
            v.complete = false;
            self.updates.push(ParamUpdate::Count {
                vehicle,
                count: m.param_count,
            });
        }
        let known = v.table.get(&name).copied();
        let index = index.or(known.and_then(|k| k.index));
        let reported = ParamValue { index, ..reported };
        let mut command = None;
        let mut finished = false;
        if let Some(job) = v.job.as_mut() {
            match &mut job.step {
                Step::Listing {
                    count,
                    got,
                    last_heard,
                    gap,
                    asked,
                    list_sent,
                    list_tries,
                    ..
                } => {
                    if let Some(i) = reported.index {
                        if *count != Some(m.param_count) {
                            *count = Some(m.param_count);
                            got.clear();
                            got.resize(usize::from(m.param_count), None);
                            if *list_tries == 1 {
                                v.rtt =
                                    Some(smooth(v.rtt, now.saturating_duration_since(*list_sent)));
                            }
                        } else {
                            let since = now.saturating_duration_since(*last_heard);
                            *gap = (*gap * 7 + since) / 8;
                        }
                        if let Some((sent, 1)) = asked.remove(&i) {
                            v.rtt = Some(smooth(v.rtt, now.saturating_duration_since(sent)));
                        }
                        if let Some(slot) = got.get_mut(usize::from(i)) {
                            *slot = Some(name.clone());
                        }
                        *last_heard = now;
                        finished = got.iter().all(Option::is_some);
                    }
                }
                Step::Reading { name: wanted, .. } if *wanted == name => {
                    job.report.read.push(Named {
                        name: name.clone(),
                        value,
                    });
                    finished = true;
                }
                Step::Setting {
                    name: wanted,
                    value: target,
                    previous,
                    mismatches,
                    sent,
                    tries,
                    ..
                } if *wanted == name => {
                    command = Some(job.id);
                    if profile::same_value(value, *target) {
                        if *tries == 1 {
                            v.rtt = Some(smooth(v.rtt, now.saturating_duration_since(*sent)));
                        }
                        job.report.set.push(Changed {
                            name: name.clone(),
                            value: profile::tidy(value),
                            previous: profile::tidy(*previous),
                        });
                        if profile::is_enable(&name) && matches!(job.op, ParamOp::Apply(_)) {
                            job.enabled.push(name.clone());
                            // The feature's own parameters may appear now.
                            job.tasks.push_front(Task::List);
                        }
                        finished = true;
                    } else {
                        *mismatches += 1;
                        if *mismatches >= MISMATCHES {
                            job.report.failed.push(Failure {
                                name: name.clone(),
                                error: format!(
                                    "the vehicle keeps {} after being set to {}",
                                    show(value),
                                    show(*target)
                                ),
                            });
                            finished = true;
                        }
                    }
                }
                _ => {}
            }
        }
        v.table.insert(name.clone(), reported);
        if known.map(|k| k.value) != Some(value) || command.is_some() {
            self.updates.push(ParamUpdate::Value {
                vehicle,
                name,
                value: reported,
                command,
            });
        }
        if finished {
            self.step_done(vehicle, now);
        }
    }

    /// The current step of `vehicle`'s job is done: on to the next task.
    fn step_done(&mut self, vehicle: u8, now: Instant) {
        let Some(v) = self.vehicles.get_mut(&vehicle) else {
            return;
        };
        let Some(job) = v.job.as_mut() else {
            return;
        };
        if let Step::Listing { count, got, .. } = &job.step {
            v.complete = true;
            job.report.count = *count;
            let mut names: Vec<String> = got.iter().flatten().cloned().collect();
            names.sort();
            names.dedup();
            // Names the vehicle no longer lists (a reboot after a change) are forgotten.
            v.table.retain(|n, _| names.binary_search(n).is_ok());
            self.updates.push(ParamUpdate::Listed { vehicle, names });
            if let ParamOp::Apply(profile) = &job.op {
                // (Re)plan from the list just read: what still differs, in the profile's order.
                let comparison = profile::compare(profile, &values(&v.table), v.version);
                job.tasks.retain(|t| !matches!(t, Task::Set(..)));
                for d in &comparison.differences {
                    if d.state == profile::DifferenceKind::Differs {
                        job.tasks
                            .push_back(Task::Set(d.target().to_string(), d.profile));
                    }
                }
            }
        }
        job.step = Step::Idle;
        self.next_task(vehicle, now);
    }

    /// Starts `vehicle`'s next task, or finishes its job.
    fn next_task(&mut self, vehicle: u8, now: Instant) {
        let Some(v) = self.vehicles.get_mut(&vehicle) else {
            return;
        };
        let Some(job) = v.job.as_mut() else {
            return;
        };
        while let Some(task) = job.tasks.pop_front() {
            match task {
                Task::List => {
                    job.step = Step::Listing {
                        count: None,
                        got: Vec::new(),
                        streaming: true,
                        last_heard: now,
                        gap: Duration::ZERO,
                        asked: BTreeMap::new(),
                        list_sent: now,
                        list_tries: 1,
                    };
                    v.complete = false;
                    self.out.push((vehicle, request_list()));
                    return;
                }
                Task::Read(name) => {
                    job.step = Step::Reading {
                        name: name.clone(),
                        sent: now,
                        tries: 1,
                    };
                    self.out.push((vehicle, request_read(&name, -1)));
                    return;
                }
                Task::Set(name, value) => {
                    let Some(known) = v.table.get(&name).copied() else {
                        if job.report.failed.iter().any(|f| f.name == name) {
                            continue; // its read failed, and said so
                        }
                        if v.complete {
                            job.report.failed.push(Failure {
                                error: "the vehicle has no such parameter".into(),
                                name,
                            });
                            continue;
                        }
                        // Its type is needed to send it: read it first.
                        job.tasks.push_front(Task::Set(name.clone(), value));
                        job.tasks.push_front(Task::Read(name));
                        continue;
                    };
                    let value = if known.kind == 9 || known.kind == 10 {
                        profile::round_to_f32(value)
                    } else if value.fract() != 0.0 {
                        job.report.failed.push(Failure {
                            error: format!("{name} holds whole numbers; {value} is not one"),
                            name,
                        });
                        continue;
                    } else {
                        value
                    };
                    if profile::same_value(known.value, value) && !matches!(job.op, ParamOp::Set(_))
                    {
                        continue;
                    }
                    job.step = Step::Setting {
                        name: name.clone(),
                        value,
                        kind: known.kind,
                        previous: known.value,
                        sent: now,
                        tries: 1,
                        mismatches: 0,
                    };
                    let m = set(&name, encode(value, known.kind, v.bytewise), known.kind);
                    self.out.push((vehicle, m));
                    return;
                }
            }
        }
        let (id, outcome, detail) = {
            let Some(job) = v.job.take() else {
                return;
            };
            let mut report = job.report;
            if let ParamOp::Apply(profile) = &job.op {
                let comparison = profile::compare(profile, &values(&v.table), v.version);
                report.profile = Some(profile.name.clone());
                report.unchanged = Some(comparison.matching.saturating_sub(report.set.len()));
                report.warnings = comparison.warnings;
                let not_set: Vec<profile::Difference> = comparison
                    .differences
                    .into_iter()
                    .filter(|d| !report.failed.iter().any(|f| f.name == d.target()))
                    .collect();
                let takes_effect: Vec<String> = report
                    .set
                    .iter()
                    .filter(|c| profile::needs_reboot(profile.family, &c.name))
                    .map(|c| c.name.clone())
                    .collect();
                let may_appear: Vec<String> = if job.enabled.is_empty() {
                    Vec::new()
                } else {
                    not_set
                        .iter()
                        .filter(|d| d.state == profile::DifferenceKind::Missing)
                        .map(|d| d.name.clone())
                        .collect()
                };
                if !takes_effect.is_empty() || !may_appear.is_empty() {
                    report.reboot = Some(Reboot {
                        takes_effect,
                        may_appear,
                    });
                }
                report.missing = not_set;
                self.updates.push(ParamUpdate::Follows {
                    vehicle,
                    profile: profile.name.clone(),
                    text: profile.text.clone(),
                });
            }
            let outcome = if report.failed.is_empty() {
                Outcome::Accepted
            } else {
                Outcome::Failed
            };
            (job.id, outcome, serde_json::to_value(&report).ok())
        };
        self.outcomes
            .push(CommandUpdate::of(id, vehicle, outcome, 0, detail));
        self.start_waiting(vehicle, now);
    }

    fn start_waiting(&mut self, vehicle: u8, now: Instant) {
        let Some(v) = self.vehicles.get_mut(&vehicle) else {
            return;
        };
        if v.job.is_some() {
            return;
        }
        let Some((id, op)) = v.waiting.pop_front() else {
            return;
        };
        let tasks: VecDeque<Task> = match &op {
            ParamOp::Fetch | ParamOp::Apply(_) => [Task::List].into(),
            ParamOp::Read(names) => names.iter().cloned().map(Task::Read).collect(),
            ParamOp::Set(values) => values
                .iter()
                .map(|(n, x)| Task::Set(n.clone(), *x))
                .collect(),
        };
        if let ParamOp::Apply(p) = &op {
            let px4 = p.family == Family::Px4;
            if px4 != v.bytewise {
                self.outcomes.push(CommandUpdate::failed(
                    id,
                    vehicle,
                    "the profile is for other firmware than the vehicle runs",
                ));
                return self.start_waiting(vehicle, now);
            }
        }
        v.job = Some(Job {
            id,
            op,
            tasks,
            step: Step::Idle,
            report: Report::default(),
            enabled: Vec::new(),
            tenths: 0,
        });
        self.outcomes.push(CommandUpdate::working(id, vehicle, 0));
        self.next_task(vehicle, now);
    }

    /// Starts waiting jobs, asks again for what did not come, fails what never will; the
    /// vehicles that are not heard (`heard` false) fail their jobs.
    pub fn due(&mut self, now: Instant, heard: impl Fn(u8) -> bool) {
        let ids: Vec<u8> = self.vehicles.keys().copied().collect();
        for vehicle in ids {
            if !heard(vehicle) {
                self.fail_all(vehicle, "the vehicle is not heard");
                continue;
            }
            self.start_waiting(vehicle, now);
            self.repeat(vehicle, now);
        }
    }

    fn repeat(&mut self, vehicle: u8, now: Instant) {
        let Some(v) = self.vehicles.get_mut(&vehicle) else {
            return;
        };
        let rtt = v.rtt;
        let timeout = |tries: u8| wait_for_answer(rtt, tries);
        let Some(job) = v.job.as_mut() else {
            return;
        };
        let mut failed = None;
        let mut next = false;
        let mut progress = None;
        match &mut job.step {
            Step::Idle => {}
            Step::Listing {
                count,
                got,
                streaming,
                last_heard,
                gap,
                asked,
                list_sent,
                list_tries,
            } => {
                if count.is_none() {
                    if now.saturating_duration_since(*list_sent) >= timeout(*list_tries) {
                        if *list_tries >= TRIES {
                            failed = Some("the vehicle never sent its parameter list".into());
                        } else {
                            *list_tries += 1;
                            *list_sent = now;
                            self.out.push((vehicle, request_list()));
                        }
                    }
                } else {
                    let quiet = (*gap * QUIET_GAPS).clamp(Duration::from_millis(300), MAX_TIMEOUT);
                    if *streaming && now.saturating_duration_since(*last_heard) >= quiet {
                        *streaming = false;
                    }
                    if !*streaming {
                        for (&i, (sent, tries)) in asked.iter_mut() {
                            if now.saturating_duration_since(*sent) < timeout(*tries) {
                                continue;
                            }
                            if *tries >= TRIES {
                                failed = Some(format!("parameter #{i} never came"));
                                break;
                            }
                            *tries += 1;
                            *sent = now;
                            self.out.push((vehicle, request_read("", i as i16)));
                        }
                        let missing = got.iter().enumerate().filter(|(_, g)| g.is_none());
                        for (i, _) in missing {
                            if asked.len() >= WINDOW {
                                break;
                            }
                            let i = i as u16;
                            if let std::collections::btree_map::Entry::Vacant(e) = asked.entry(i) {
                                e.insert((now, 1));
                                job.report.re_requested += 1;
                                self.out.push((vehicle, request_read("", i as i16)));
                            }
                        }
                    }
                    let have = got.iter().filter(|g| g.is_some()).count();
                    progress = Some((have * 100 / got.len().max(1)) as u8);
                }
            }
            Step::Reading { name, sent, tries } => {
                if now.saturating_duration_since(*sent) >= timeout(*tries) {
                    if *tries >= READ_TRIES {
                        job.report.failed.push(Failure {
                            name: name.clone(),
                            error: "the vehicle did not answer: it has no such parameter, or \
                                    is out of reach"
                                .into(),
                        });
                        next = true;
                    } else {
                        *tries += 1;
                        *sent = now;
                        self.out.push((vehicle, request_read(name, -1)));
                    }
                }
            }
            Step::Setting {
                name,
                value,
                kind,
                sent,
                tries,
                ..
            } => {
                if now.saturating_duration_since(*sent) >= timeout(*tries) {
                    if *tries >= TRIES {
                        job.report.failed.push(Failure {
                            name: name.clone(),
                            error: "the vehicle did not answer".into(),
                        });
                        next = true;
                    } else {
                        *tries += 1;
                        *sent = now;
                        let m = set(name, encode(*value, *kind, v.bytewise), *kind);
                        self.out.push((vehicle, m));
                    }
                }
            }
        }
        if let Some(why) = failed {
            let id = job.id;
            v.job = None;
            self.outcomes.push(CommandUpdate::failed(id, vehicle, why));
            self.start_waiting(vehicle, now);
            return;
        }
        if next {
            job.step = Step::Idle;
            self.next_task(vehicle, now);
            return;
        }
        if let Some(p) = progress {
            let id = job.id;
            // Progress once per tenth, not per tick.
            if p / 10 != job.tenths {
                job.tenths = p / 10;
                self.outcomes.push(CommandUpdate::working(id, vehicle, p));
            }
        }
    }

    fn fail_all(&mut self, vehicle: u8, why: &str) {
        let Some(v) = self.vehicles.get_mut(&vehicle) else {
            return;
        };
        let ids: Vec<i64> = v
            .job
            .take()
            .map(|j| j.id)
            .into_iter()
            .chain(v.waiting.drain(..).map(|(id, _)| id))
            .collect();
        for id in ids {
            self.outcomes.push(CommandUpdate::failed(id, vehicle, why));
        }
    }

    pub fn take_out(&mut self) -> Vec<(u8, MavMessage)> {
        std::mem::take(&mut self.out)
    }

    pub fn take_updates(&mut self) -> Vec<ParamUpdate> {
        std::mem::take(&mut self.updates)
    }

    pub fn take_outcomes(&mut self) -> Vec<CommandUpdate> {
        std::mem::take(&mut self.outcomes)
    }

    pub fn has_outcomes(&self) -> bool {
        !self.outcomes.is_empty()
    }
}

/// A value for people: `21.6`, `600`.
fn show(v: f64) -> String {
    profile::round_to_f32(v).to_string()
}

fn request_list() -> MavMessage {
    MavMessage::PARAM_REQUEST_LIST(apm::PARAM_REQUEST_LIST_DATA {
        target_system: 0,
        target_component: 0,
    })
}

fn request_read(name: &str, index: i16) -> MavMessage {
    MavMessage::PARAM_REQUEST_READ(apm::PARAM_REQUEST_READ_DATA {
        param_index: index,
        target_system: 0,
        target_component: 0,
        param_id: name.into(),
    })
}

fn set(name: &str, raw: f32, kind: u8) -> MavMessage {
    MavMessage::PARAM_SET(apm::PARAM_SET_DATA {
        param_value: raw,
        target_system: 0,
        target_component: 0,
        param_id: name.into(),
        param_type: apm::MavParamType::from_u8(kind)
            .unwrap_or(apm::MavParamType::MAV_PARAM_TYPE_REAL32),
    })
}

/// The number a PARAM_VALUE carries, by its type and the vehicle's encoding.
pub fn decode(raw: f32, kind: u8, bytewise: bool) -> f64 {
    if !bytewise || kind >= 9 {
        return f64::from(raw);
    }
    let bits = raw.to_bits();
    match kind {
        1 => f64::from(bits as u8),
        2 => f64::from(bits as u8 as i8),
        3 => f64::from(bits as u16),
        4 => f64::from(bits as u16 as i16),
        5 => f64::from(bits),
        _ => f64::from(bits as i32),
    }
}

/// The float a PARAM_SET carries for `value` (a whole number for integer types).
pub fn encode(value: f64, kind: u8, bytewise: bool) -> f32 {
    if !bytewise || kind >= 9 {
        return value as f32;
    }
    let bits = match kind {
        1 => u32::from(value as u8),
        2 => u32::from(value as i8 as u8),
        3 => u32::from(value as u16),
        4 => u32::from(value as i16 as u16),
        5 => value as u32,
        _ => value as i32 as u32,
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: u8 = 1;

    fn value(name: &str, v: f32, kind: u8, index: u16, count: u16) -> apm::PARAM_VALUE_DATA {
        apm::PARAM_VALUE_DATA {
            param_value: v,
            param_count: count,
            param_index: index,
            param_id: name.into(),
            param_type: apm::MavParamType::from_u8(kind).unwrap(),
        }
    }

    fn reads(out: &[(u8, MavMessage)]) -> Vec<i16> {
        out.iter()
            .filter_map(|(_, m)| match m {
                MavMessage::PARAM_REQUEST_READ(r) => Some(r.param_index),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn integers_round_trip_in_both_encodings() {
        for bytewise in [false, true] {
            for (v, kind) in [
                (-3.0, 2),
                (200.0, 1),
                (-30000.0, 4),
                (65000.0, 3),
                (-2e9, 6),
            ] {
                assert_eq!(decode(encode(v, kind, bytewise), kind, bytewise), v);
            }
            assert_eq!(
                decode(encode(21.6, 9, bytewise), 9, bytewise) as f32,
                21.6f32
            );
        }
        // PX4 puts the integer's bytes in the float: 1 is not 1.0.
        assert_eq!(encode(1.0, 6, true).to_bits(), 1);
    }

    #[test]
    fn a_list_with_gaps_is_completed_by_index() {
        let mut p = Params::default();
        let t0 = Instant::now();
        p.start(7, V, ParamOp::Fetch);
        p.due(t0, |_| true);
        assert!(matches!(
            p.take_out()[..],
            [(V, MavMessage::PARAM_REQUEST_LIST(_))]
        ));
        // Ten parameters; 3 and 7 are lost.
        for i in (0..10).filter(|i| *i != 3 && *i != 7) {
            let t = t0 + Duration::from_millis(10 * u64::from(i));
            p.observe(V, &value(&format!("P{i}"), i as f32, 9, i, 10), t);
        }
        // Still streaming: nothing asked yet.
        p.due(t0 + Duration::from_millis(150), |_| true);
        assert!(reads(&p.take_out()).is_empty());
        p.due(t0 + Duration::from_secs(1), |_| true);
        assert_eq!(reads(&p.take_out()), vec![3, 7]);
        p.observe(
            V,
            &value("P3", 3.0, 9, 3, 10),
            t0 + Duration::from_millis(1_050),
        );
        // 7 is lost again: asked again after its timeout, not before.
        p.due(t0 + Duration::from_millis(1_060), |_| true);
        assert!(reads(&p.take_out()).is_empty());
        p.due(t0 + Duration::from_secs(3), |_| true);
        assert_eq!(reads(&p.take_out()), vec![7]);
        p.observe(V, &value("P7", 7.0, 9, 7, 10), t0 + Duration::from_secs(3));
        let outcomes = p.take_outcomes();
        let last = outcomes.last().unwrap();
        assert_eq!(last.outcome, Outcome::Accepted);
        assert_eq!(last.detail.as_ref().unwrap()["count"], 10);
        assert_eq!(last.detail.as_ref().unwrap()["re_requested"], 2);
        let listed = p.take_updates().into_iter().find_map(|u| match u {
            ParamUpdate::Listed { names, .. } => Some(names),
            _ => None,
        });
        assert_eq!(listed.unwrap().len(), 10);
    }

    #[test]
    fn a_name_the_vehicle_no_longer_lists_is_forgotten() {
        let mut p = Params::default();
        let t0 = Instant::now();
        let listed = |p: &mut Params| {
            p.take_updates().into_iter().find_map(|u| match u {
                ParamUpdate::Listed { names, .. } => Some(names),
                _ => None,
            })
        };
        p.start(1, V, ParamOp::Fetch);
        p.due(t0, |_| true);
        for (i, name) in ["A", "SPRAY_RATE", "Z"].iter().enumerate() {
            p.observe(V, &value(name, 1.0, 9, i as u16, 3), t0);
        }
        assert_eq!(listed(&mut p).unwrap(), ["A", "SPRAY_RATE", "Z"]);
        // After a reboot the vehicle lists two; the old index 1 now holds another name.
        p.start(2, V, ParamOp::Fetch);
        p.due(t0, |_| true);
        p.observe(V, &value("A", 1.0, 9, 0, 2), t0);
        p.observe(V, &value("Z", 1.0, 9, 1, 2), t0);
        assert_eq!(listed(&mut p).unwrap(), ["A", "Z"]);
    }

    #[test]
    fn a_set_counts_only_when_the_vehicle_holds_the_value() {
        let mut p = Params::default();
        let t0 = Instant::now();
        p.observe(V, &value("RTL_ALT", 1500.0, 4, 0, 2), t0);
        p.observe(V, &value("BATT_LOW_VOLT", 21.0, 9, 1, 2), t0);
        p.take_updates();
        p.start(
            8,
            V,
            ParamOp::Set(vec![
                ("RTL_ALT".into(), 4000.0),
                ("BATT_LOW_VOLT".into(), 21.6),
            ]),
        );
        p.due(t0, |_| true);
        let out = p.take_out();
        let MavMessage::PARAM_SET(s) = &out[0].1 else {
            panic!("{out:?}")
        };
        assert_eq!(
            (s.param_id.to_str().unwrap(), s.param_value),
            ("RTL_ALT", 4000.0)
        );
        assert_eq!(s.param_type, apm::MavParamType::MAV_PARAM_TYPE_INT16);
        // The vehicle clamps it to 3000: asked again, then refused.
        for i in 1..=3 {
            p.observe(V, &value("RTL_ALT", 3000.0, 4, 65535, 2), t0);
            if i < 3 {
                p.due(t0 + Duration::from_secs(2 * i), |_| true);
            }
        }
        let out = p.take_out();
        let MavMessage::PARAM_SET(s) = &out.last().unwrap().1 else {
            panic!("{out:?}")
        };
        assert_eq!(s.param_id.to_str().unwrap(), "BATT_LOW_VOLT");
        p.observe(V, &value("BATT_LOW_VOLT", 21.6, 9, 65535, 2), t0);
        let done = p.take_outcomes().pop().unwrap();
        assert_eq!(done.outcome, Outcome::Failed);
        let detail = done.detail.unwrap();
        assert_eq!(detail["set"][0]["name"], "BATT_LOW_VOLT");
        assert_eq!(detail["set"][0]["previous"], 21.0);
        assert!(detail["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("keeps 3000"));
        // The store hears both answers, tied to the command.
        let commands: Vec<Option<i64>> = p
            .take_updates()
            .into_iter()
            .filter_map(|u| match u {
                ParamUpdate::Value { command, .. } => Some(command),
                _ => None,
            })
            .collect();
        assert!(commands.iter().all(|c| *c == Some(8)), "{commands:?}");
    }

    #[test]
    fn an_unknown_name_is_read_first_and_reported_missing() {
        let mut p = Params::default();
        let t0 = Instant::now();
        p.start(9, V, ParamOp::Set(vec![("NOPE".into(), 1.0)]));
        p.due(t0, |_| true);
        let mut t = t0;
        for _ in 0..READ_TRIES {
            assert_eq!(reads(&p.take_out()), vec![-1]);
            t += MAX_TIMEOUT;
            p.due(t, |_| true);
        }
        let done = p.take_outcomes().pop().unwrap();
        assert_eq!(done.outcome, Outcome::Failed);
        assert_eq!(done.detail.unwrap()["failed"][0]["name"], "NOPE");
    }
}
