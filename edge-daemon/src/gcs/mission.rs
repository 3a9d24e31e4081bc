//! The MAVLink mission protocol, from the ground station's side: upload, download, clear and
//! set current, for missions, fences and rally points.
//!
//! Upload: the station sends MISSION_COUNT; the vehicle asks for each item
//! (MISSION_REQUEST_INT, or the older MISSION_REQUEST) and the station answers with that item;
//! the vehicle ends with MISSION_ACK. Download is the reverse, driven by the station:
//! MISSION_REQUEST_LIST, the vehicle's MISSION_COUNT, one MISSION_REQUEST_INT per item, and
//! the station's MISSION_ACK. An upload is read back and compared before it counts.
//!
//! Loss is the normal case on a radio: whoever waits for an answer repeats its last message
//! after a timeout, doubling each time, up to [`TRIES`] times for one step (a vehicle
//! re-requests on its own too, and an item sent twice is harmless: the vehicle takes the one
//! it asked for, and the `INVALID_SEQUENCE` ack ArduPilot may answer a stale one with is not
//! a refusal). The first timeout follows the link: four times the smoothed round trip of
//! answered steps (as TCP measures it, never from a repeated step), between [`MIN_TIMEOUT`]
//! and [`MAX_TIMEOUT`], so a loss costs a few round trips, not a fixed second, on a fast
//! link and a slow radio alike. An upload counts only once the vehicle's list, read back,
//! is the one sent: a lost closing ack is settled by reading it back, and a vehicle still
//! waiting for its last item (it answers a read-back with its old list, or asks again) is
//! given the item again.
//! Every message of a transfer is addressed between the vehicle and the station's own id, so
//! a QGroundControl doing mission traffic with the same vehicle through the router never mixes
//! in. An autopilot takes one upload at a time and refuses a second ground station's
//! MISSION_COUNT while the first is under way (ArduPilot answers DENIED, PX4 ERROR), and
//! ArduPilot refuses to list a list meanwhile too: a count refused so before any item was
//! asked for, or a list request refused, is sent again every [`BUSY_RETRY`], for up to
//! [`BUSY_WAIT`], so the station's transfer follows the other's instead of failing; any
//! other refusal fails the transfer with its reason.
//!
//! One transfer per vehicle at a time; others wait behind it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use mavlink::dialects::ardupilotmega as apm;
use num_traits::FromPrimitive as _;
use serde::{Deserialize, Serialize};

use crate::dialect::MavMessage;

/// Bounds of the time one step waits for its answer before repeating itself; it starts at
/// the largest until a round trip has been measured.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Tries per step, each repeat waiting twice as long as the last up to [`MAX_TIMEOUT`]
/// (about 18 s in all): at 20 % loss each way a round trip fails 36 % of the time, and 15
/// tries all fail once in five million steps.
pub const TRIES: u8 = 15;
/// How often a MISSION_COUNT or MISSION_REQUEST_LIST refused as busy is sent again, and for
/// how long: a QGroundControl uploading a few hundred items over a 57600-baud radio takes
/// about this long.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);
pub const BUSY_WAIT: Duration = Duration::from_secs(30);

/// What a list on the vehicle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissionKind {
    Mission,
    Fence,
    Rally,
}

impl MissionKind {
    fn mav(self) -> apm::MavMissionType {
        match self {
            MissionKind::Mission => apm::MavMissionType::MAV_MISSION_TYPE_MISSION,
            MissionKind::Fence => apm::MavMissionType::MAV_MISSION_TYPE_FENCE,
            MissionKind::Rally => apm::MavMissionType::MAV_MISSION_TYPE_RALLY,
        }
    }
}

/// One mission item, as MISSION_ITEM_INT carries it (positions in degrees × 10⁷).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MissionItem {
    /// MAV_CMD: 16 waypoint, 22 takeoff, 20 return to launch, 178 change speed, …
    pub command: u16,
    /// MAV_FRAME: 3 global, altitude relative to home; 0 global (MSL); 2 mission.
    pub frame: u8,
    pub params: [f32; 4],
    pub x: i32,
    pub y: i32,
    pub z: f32,
    pub autocontinue: bool,
}

impl MissionItem {
    /// The item as MISSION_ITEM_INT number `seq`; `None` for a command or frame the dialect
    /// does not know (refused when the mission is stored, so never on the wire).
    fn to_int(
        self,
        seq: u16,
        kind: MissionKind,
        (system, component): (u8, u8),
    ) -> Option<MavMessage> {
        Some(MavMessage::MISSION_ITEM_INT(apm::MISSION_ITEM_INT_DATA {
            param1: self.params[0],
            param2: self.params[1],
            param3: self.params[2],
            param4: self.params[3],
            x: self.x,
            y: self.y,
            z: self.z,
            seq,
            command: apm::MavCmd::from_u16(self.command)?,
            target_system: system,
            target_component: component,
            frame: apm::MavFrame::from_u8(self.frame)?,
            current: u8::from(seq == 0),
            autocontinue: u8::from(self.autocontinue),
            mission_type: kind.mav(),
        }))
    }

    fn from_int(m: &apm::MISSION_ITEM_INT_DATA) -> MissionItem {
        MissionItem {
            command: m.command as u16,
            frame: m.frame as u8,
            params: [m.param1, m.param2, m.param3, m.param4],
            x: m.x,
            y: m.y,
            z: m.z,
            autocontinue: m.autocontinue != 0,
        }
    }

    /// Whether a vehicle reading back `self` holds the `sent` item: the same, but for what
    /// autopilots normalise. A command without a position (DO_*, CONDITION_*, or a NAV_*
    /// sent with none, as RTL is) comes back in whatever frame they store it in (ArduPilot:
    /// 0) with its position unused; altitudes come back to the centimetre; a frame may come
    /// back as its `_INT` twin, which means the same (PX4 answers 6 for 3).
    pub fn holds(&self, sent: &MissionItem) -> bool {
        // NAV_* commands, and fence and rally points, with a place are where they are.
        let nav = sent.command < 100 || (5000..5200).contains(&sent.command);
        let positional = nav && (sent.x, sent.y) != (0, 0);
        let place = !positional
            || (same_frame(self.frame, sent.frame)
                && self.x == sent.x
                && self.y == sent.y
                && (self.z - sent.z).abs() <= 0.011);
        self.command == sent.command
            && self.params == sent.params
            && self.autocontinue == sent.autocontinue
            && place
    }

    /// Whether the dialect can put it on the wire.
    pub fn is_sendable(&self) -> bool {
        apm::MavCmd::from_u16(self.command).is_some()
            && apm::MavFrame::from_u8(self.frame).is_some()
    }
}

/// Whether two MAV_FRAMEs mean the same: the deprecated `GLOBAL_INT` (5),
/// `GLOBAL_RELATIVE_ALT_INT` (6) and `GLOBAL_TERRAIN_ALT_INT` (11) are 0, 3 and 10 under
/// another name.
fn same_frame(a: u8, b: u8) -> bool {
    let plain = |f: u8| match f {
        5 => 0,
        6 => 3,
        11 => 10,
        f => f,
    };
    plain(a) == plain(b)
}

/// What to do with a vehicle's list.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Replace it with these items, then read it back and compare.
    Upload(Vec<MissionItem>),
    Download,
    Clear,
    /// Make item `seq` the current one (missions only).
    SetCurrent(u16),
}

/// How a transfer ended, or how far it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Items moved so far of the total.
    Working {
        done: u16,
        total: u16,
    },
    /// Not started: the vehicle refused the count or list request, as it does while another
    /// ground station uploads to it; asking again.
    Waiting(String),
    /// Done; for a download or a verified upload, what the vehicle holds.
    Done(Option<Vec<MissionItem>>),
    Failed(String),
}

/// A transfer's new state, for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferUpdate {
    pub id: i64,
    pub vehicle: u8,
    pub progress: Progress,
}

#[derive(Debug)]
enum Step {
    /// Sent MISSION_COUNT; answering requests until the vehicle's MISSION_ACK.
    Uploading {
        items: Vec<MissionItem>,
        highest: Option<u16>,
    },
    /// Sent MISSION_REQUEST_LIST (count unknown) or MISSION_REQUEST_INT for `items.len()`.
    Downloading {
        count: Option<u16>,
        items: Vec<MissionItem>,
        verify: Option<Vec<MissionItem>>,
    },
    Clearing,
    SettingCurrent(u16),
}

#[derive(Debug)]
struct Transfer {
    id: i64,
    kind: MissionKind,
    step: Step,
    /// What to repeat when the answer does not come.
    last: Option<MavMessage>,
    deadline: Option<Instant>,
    tries: u8,
    /// When `last` went out.
    sent_at: Instant,
    /// Read-backs after an upload that found the vehicle without the new list.
    readbacks: u8,
    /// When the vehicle first refused this transfer's count or list request as busy.
    denied_since: Option<Instant>,
}

/// Every vehicle's transfer in progress and those waiting behind it.
#[derive(Debug, Default)]
pub struct Transfers {
    active: BTreeMap<u8, Transfer>,
    /// Smoothed round trip per vehicle.
    rtt: BTreeMap<u8, Duration>,
    waiting: BTreeMap<u8, VecDeque<(i64, MissionKind, Operation)>>,
    out: Vec<(u8, MavMessage)>,
    updates: Vec<TransferUpdate>,
}

/// How long try number `tries` of a step waits for its answer from a vehicle whose smoothed
/// round trip is `rtt`: four round trips, doubling with each repeat, within
/// [`MIN_TIMEOUT`]..[`MAX_TIMEOUT`]. Parameter jobs wait the same way.
pub(super) fn wait_for_answer(rtt: Option<Duration>, tries: u8) -> Duration {
    let base = rtt.map_or(MAX_TIMEOUT, |r| (r * 4).clamp(MIN_TIMEOUT, MAX_TIMEOUT));
    (base * 2u32.pow(u32::from(tries.saturating_sub(1)).min(4))).min(MAX_TIMEOUT)
}

/// A smoothed round trip with one more sample folded in, as TCP does.
pub(super) fn smooth(srtt: Option<Duration>, sample: Duration) -> Duration {
    srtt.map_or(sample, |s| (s * 7 + sample) / 8)
}

impl Transfers {
    /// Queues transfer `id` (already stored) for `vehicle`.
    pub fn start(&mut self, id: i64, vehicle: u8, kind: MissionKind, op: Operation) {
        self.waiting
            .entry(vehicle)
            .or_default()
            .push_back((id, kind, op));
    }

    /// A mission message from `vehicle`'s autopilot, addressed to the station (checked by
    /// the caller); `to` is the vehicle's address.
    pub fn observe(&mut self, vehicle: u8, to: (u8, u8), message: &MavMessage, now: Instant) {
        let Some(t) = self.active.get_mut(&vehicle) else {
            return;
        };
        let mut reply = None;
        let mut finished = None;
        // The vehicle asks for an item while its list is being read back: it is still
        // receiving (the last item was lost, not its ack). Back to answering it.
        let asks = match message {
            MavMessage::MISSION_REQUEST_INT(r) => Some(r.mission_type),
            MavMessage::MISSION_REQUEST(r) => Some(r.mission_type),
            _ => None,
        };
        if let (
            Step::Downloading {
                verify: Some(sent), ..
            },
            Some(kind),
        ) = (&mut t.step, asks)
        {
            if kind == t.kind.mav() {
                let items = std::mem::take(sent);
                let highest = Some(items.len().saturating_sub(1) as u16);
                t.step = Step::Uploading { items, highest };
            }
        }
        let mut not_taken = None;
        let mut busy = false;
        let waited_out = t
            .denied_since
            .is_some_and(|since| now.saturating_duration_since(since) >= BUSY_WAIT);
        match (&mut t.step, message) {
            (Step::Uploading { items, highest }, MavMessage::MISSION_REQUEST_INT(r))
                if r.mission_type == t.kind.mav() =>
            {
                reply = items
                    .get(usize::from(r.seq))
                    .and_then(|i| i.to_int(r.seq, t.kind, to));
                *highest = Some(highest.map_or(r.seq, |h| h.max(r.seq)));
            }
            // ArduPilot asks with the older MISSION_REQUEST, and takes MISSION_ITEM_INT in
            // answer; the float MISSION_ITEM would cost positions their last decimetre.
            (Step::Uploading { items, highest }, MavMessage::MISSION_REQUEST(r))
                if r.mission_type == t.kind.mav() =>
            {
                reply = items
                    .get(usize::from(r.seq))
                    .and_then(|i| i.to_int(r.seq, t.kind, to));
                *highest = Some(highest.map_or(r.seq, |h| h.max(r.seq)));
            }
            (Step::Uploading { .. }, MavMessage::MISSION_ACK(a))
                if a.mavtype == apm::MavMissionResult::MAV_MISSION_INVALID_SEQUENCE =>
            {
                return; // a repeated item the vehicle no longer wanted
            }
            (Step::Uploading { items, highest }, MavMessage::MISSION_ACK(a))
                if a.mission_type == t.kind.mav() =>
            {
                if a.mavtype == apm::MavMissionResult::MAV_MISSION_ACCEPTED {
                    // Read back what the vehicle now holds.
                    let verify = Some(std::mem::take(items));
                    t.step = Step::Downloading {
                        count: None,
                        items: Vec::new(),
                        verify,
                    };
                    reply = Some(request_list(t.kind, to));
                } else if is_busy(a.mavtype) && highest.is_none() && !waited_out {
                    busy = true;
                } else {
                    let waited = if is_busy(a.mavtype) && highest.is_none() {
                        busy_for()
                    } else {
                        String::new()
                    };
                    finished = Some(Progress::Failed(format!(
                        "the vehicle refused the upload: {}{waited}",
                        mission_result(a.mavtype)
                    )));
                }
            }
            (
                Step::Downloading {
                    count,
                    items,
                    verify,
                },
                MavMessage::MISSION_COUNT(c),
            ) if c.mission_type == t.kind.mav() && count.is_none() => {
                *count = Some(c.count);
                if let Some(sent) = verify.as_mut().filter(|s| s.len() != usize::from(c.count)) {
                    // Not the list just sent: the vehicle is still waiting for its last item.
                    not_taken = Some((std::mem::take(sent), c.count));
                } else if c.count == 0 {
                    finished = Some(downloaded(items, verify));
                    reply = Some(ack(t.kind, to));
                } else {
                    reply = Some(request_item(0, t.kind, to));
                }
            }
            (
                Step::Downloading {
                    count: Some(n),
                    items,
                    verify,
                },
                MavMessage::MISSION_ITEM_INT(m),
            ) if m.mission_type == t.kind.mav() && usize::from(m.seq) == items.len() => {
                items.push(MissionItem::from_int(m));
                if items.len() == usize::from(*n) {
                    finished = Some(downloaded(items, verify));
                    reply = Some(ack(t.kind, to));
                } else {
                    reply = Some(request_item(items.len() as u16, t.kind, to));
                }
            }
            // Not listed while another ground station uploads (ArduPilot: DENIED).
            (Step::Downloading { count: None, .. }, MavMessage::MISSION_ACK(a))
                if a.mission_type == t.kind.mav() && is_busy(a.mavtype) =>
            {
                if waited_out {
                    finished = Some(Progress::Failed(format!(
                        "the vehicle refused to list it: {}{}",
                        mission_result(a.mavtype),
                        busy_for()
                    )));
                } else {
                    busy = true;
                }
            }
            (Step::Clearing, MavMessage::MISSION_ACK(a)) if a.mission_type == t.kind.mav() => {
                finished = Some(match a.mavtype {
                    apm::MavMissionResult::MAV_MISSION_ACCEPTED => Progress::Done(None),
                    other => Progress::Failed(format!("clear refused: {}", mission_result(other))),
                });
            }
            (Step::SettingCurrent(seq), MavMessage::MISSION_CURRENT(c)) if c.seq == *seq => {
                finished = Some(Progress::Done(None));
            }
            _ => return,
        }
        if let Some((items, holds)) = not_taken {
            t.readbacks += 1;
            if t.readbacks >= 3 {
                finished = Some(Progress::Failed(format!(
                    "the vehicle holds {holds} items after the upload, not {}",
                    items.len()
                )));
            } else {
                let last = items.len().saturating_sub(1) as u16;
                reply = items
                    .get(usize::from(last))
                    .and_then(|i| i.to_int(last, t.kind, to));
                t.step = Step::Uploading {
                    items,
                    highest: Some(last),
                };
            }
        }
        if busy {
            // The count or list request goes again (as `last`) when this deadline passes; the
            // tries start over, since the vehicle answered.
            if t.denied_since.is_none() {
                t.denied_since = Some(now);
                self.updates.push(TransferUpdate {
                    id: t.id,
                    vehicle,
                    progress: Progress::Waiting(
                        "the vehicle is busy; another ground station may be uploading to it: \
                         asking again"
                            .into(),
                    ),
                });
            }
            t.tries = 1;
            t.deadline = Some(now + BUSY_RETRY);
            return;
        }
        let progress = match &t.step {
            Step::Uploading { items, highest } => Some((highest.map_or(0, |h| h + 1), items.len())),
            Step::Downloading {
                count: Some(n),
                items,
                ..
            } => Some((items.len() as u16, usize::from(*n))),
            _ => None,
        };
        if t.tries == 1 {
            // An answer to a step sent once: a clean round-trip sample.
            let sample = now.saturating_duration_since(t.sent_at);
            let srtt = smooth(self.rtt.get(&vehicle).copied(), sample);
            self.rtt.insert(vehicle, srtt);
        }
        if let Some(message) = reply {
            self.out.push((vehicle, message.clone()));
            t.last = Some(message);
            t.tries = 1;
            t.sent_at = now;
            t.deadline = Some(now + wait_for_answer(self.rtt.get(&vehicle).copied(), 1));
        }
        let id = t.id;
        if let Some(progress) = finished {
            self.active.remove(&vehicle);
            self.updates.push(TransferUpdate {
                id,
                vehicle,
                progress,
            });
        } else if let Some((done, total)) = progress {
            let total = total as u16;
            if done % 10 == 0 || done == total {
                self.updates.push(TransferUpdate {
                    id,
                    vehicle,
                    progress: Progress::Working { done, total },
                });
            }
        }
    }

    /// Starts waiting transfers, repeats unanswered steps and fails exhausted ones; returns
    /// every message to send, `(vehicle, message)`.
    pub fn due(
        &mut self,
        now: Instant,
        target: impl Fn(u8) -> Option<(u8, u8)>,
    ) -> Vec<(u8, MavMessage)> {
        for (&vehicle, queue) in &mut self.waiting {
            if self.active.contains_key(&vehicle) {
                continue;
            }
            let Some((id, kind, op)) = queue.pop_front() else {
                continue;
            };
            let Some(to) = target(vehicle) else {
                self.updates.push(TransferUpdate {
                    id,
                    vehicle,
                    progress: Progress::Failed("the vehicle is not heard".into()),
                });
                continue;
            };
            let (step, first) = match op {
                Operation::Upload(items) => {
                    let count = MavMessage::MISSION_COUNT(apm::MISSION_COUNT_DATA {
                        count: items.len() as u16,
                        target_system: to.0,
                        target_component: to.1,
                        mission_type: kind.mav(),
                        opaque_id: 0,
                    });
                    (
                        Step::Uploading {
                            items,
                            highest: None,
                        },
                        count,
                    )
                }
                Operation::Download => (
                    Step::Downloading {
                        count: None,
                        items: Vec::new(),
                        verify: None,
                    },
                    request_list(kind, to),
                ),
                Operation::Clear => (
                    Step::Clearing,
                    MavMessage::MISSION_CLEAR_ALL(apm::MISSION_CLEAR_ALL_DATA {
                        target_system: to.0,
                        target_component: to.1,
                        mission_type: kind.mav(),
                    }),
                ),
                Operation::SetCurrent(seq) => (
                    Step::SettingCurrent(seq),
                    MavMessage::MISSION_SET_CURRENT(apm::MISSION_SET_CURRENT_DATA {
                        seq,
                        target_system: to.0,
                        target_component: to.1,
                    }),
                ),
            };
            self.out.push((vehicle, first.clone()));
            self.active.insert(
                vehicle,
                Transfer {
                    id,
                    kind,
                    step,
                    last: Some(first),
                    deadline: Some(now + wait_for_answer(self.rtt.get(&vehicle).copied(), 1)),
                    tries: 1,
                    sent_at: now,
                    readbacks: 0,
                    denied_since: None,
                },
            );
        }
        self.waiting.retain(|_, q| !q.is_empty());
        let mut failed = Vec::new();
        for (&vehicle, t) in &mut self.active {
            if t.deadline.is_none_or(|d| now < d) {
                continue;
            }
            // Every item was asked for and the vehicle's closing ack is overdue: it may have
            // been lost. Reading the list back tells.
            // (After the last item went out three times: a vehicle still waiting for it would
            // have asked again by then.)
            if let Step::Uploading { items, highest } = &mut t.step {
                if t.tries >= 3 && highest.is_some_and(|h| usize::from(h) + 1 == items.len()) {
                    if let Some(to) = target(vehicle) {
                        let verify = Some(std::mem::take(items));
                        t.step = Step::Downloading {
                            count: None,
                            items: Vec::new(),
                            verify,
                        };
                        let list = request_list(t.kind, to);
                        self.out.push((vehicle, list.clone()));
                        t.last = Some(list);
                        t.tries = 1;
                        t.sent_at = now;
                        t.deadline =
                            Some(now + wait_for_answer(self.rtt.get(&vehicle).copied(), 1));
                        continue;
                    }
                }
            }
            if t.tries >= TRIES {
                failed.push((vehicle, t.id));
                continue;
            }
            if let Some(last) = &t.last {
                self.out.push((vehicle, last.clone()));
            }
            t.tries += 1;
            t.sent_at = now;
            // Each repeat waits twice as long as the one before, up to the longest wait: a
            // vehicle asks again on its own timer (ArduPilot's is slower than a fast link's
            // round trip), and a silent one is given about 18 s before the transfer fails.
            t.deadline = Some(now + wait_for_answer(self.rtt.get(&vehicle).copied(), t.tries));
        }
        for (vehicle, id) in failed {
            self.active.remove(&vehicle);
            self.updates.push(TransferUpdate {
                id,
                vehicle,
                progress: Progress::Failed(format!("no answer after {TRIES} tries")),
            });
        }
        std::mem::take(&mut self.out)
    }

    /// Replies made while observing, to send now.
    pub fn take_out(&mut self) -> Vec<(u8, MavMessage)> {
        std::mem::take(&mut self.out)
    }

    pub fn take_updates(&mut self) -> Vec<TransferUpdate> {
        std::mem::take(&mut self.updates)
    }

    pub fn has_updates(&self) -> bool {
        !self.updates.is_empty()
    }
}

fn request_list(kind: MissionKind, (system, component): (u8, u8)) -> MavMessage {
    MavMessage::MISSION_REQUEST_LIST(apm::MISSION_REQUEST_LIST_DATA {
        target_system: system,
        target_component: component,
        mission_type: kind.mav(),
    })
}

fn request_item(seq: u16, kind: MissionKind, (system, component): (u8, u8)) -> MavMessage {
    MavMessage::MISSION_REQUEST_INT(apm::MISSION_REQUEST_INT_DATA {
        seq,
        target_system: system,
        target_component: component,
        mission_type: kind.mav(),
    })
}

fn ack(kind: MissionKind, (system, component): (u8, u8)) -> MavMessage {
    MavMessage::MISSION_ACK(apm::MISSION_ACK_DATA {
        target_system: system,
        target_component: component,
        mavtype: apm::MavMissionResult::MAV_MISSION_ACCEPTED,
        mission_type: kind.mav(),
        opaque_id: 0,
    })
}

/// A finished download: the items, or, after an upload, whether they match what was sent.
fn downloaded(items: &mut Vec<MissionItem>, verify: &mut Option<Vec<MissionItem>>) -> Progress {
    let items = std::mem::take(items);
    let Some(sent) = verify.take() else {
        return Progress::Done(Some(items));
    };
    if items.len() != sent.len() {
        return Progress::Failed(format!(
            "read back {} items, sent {}",
            items.len(),
            sent.len()
        ));
    }
    // ArduPilot keeps its home in item 0, whatever was sent there.
    match (1..items.len()).find(|&i| !items[i].holds(&sent[i])) {
        Some(i) => Progress::Failed(format!(
            "read back differs at item {i}: sent {}, the vehicle holds {}",
            serde_json::to_string(&sent[i]).unwrap_or_default(),
            serde_json::to_string(&items[i]).unwrap_or_default()
        )),
        None => Progress::Done(Some(items)),
    }
}

/// An answer that means "not now": ArduPilot's DENIED, or PX4's ERROR, to a count or a list
/// request while another ground station uploads.
fn is_busy(r: apm::MavMissionResult) -> bool {
    matches!(
        r,
        apm::MavMissionResult::MAV_MISSION_DENIED | apm::MavMissionResult::MAV_MISSION_ERROR
    )
}

/// Said of a transfer that gave up on a busy vehicle.
fn busy_for() -> String {
    format!(
        " (for {} s; another ground station may be uploading to it)",
        BUSY_WAIT.as_secs()
    )
}

fn mission_result(r: apm::MavMissionResult) -> String {
    format!("{r:?}")
        .trim_start_matches("MAV_MISSION_")
        .to_ascii_lowercase()
        .replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: (u8, u8) = (1, 1);

    /// A vehicle's side of the protocol, as ArduPilot plays it: it drives uploads, asking
    /// again for an item that does not come within 300 ms.
    #[derive(Default)]
    struct Vehicle {
        list: Vec<MissionItem>,
        receiving: Option<(u16, Vec<MissionItem>, Instant)>,
        current: u16,
    }

    impl Vehicle {
        fn request(&self, seq: u16) -> MavMessage {
            MavMessage::MISSION_REQUEST_INT(apm::MISSION_REQUEST_INT_DATA {
                seq,
                target_system: 245,
                target_component: 190,
                mission_type: apm::MavMissionType::MAV_MISSION_TYPE_MISSION,
            })
        }

        fn ack(&self, result: apm::MavMissionResult) -> MavMessage {
            MavMessage::MISSION_ACK(apm::MISSION_ACK_DATA {
                target_system: 245,
                target_component: 190,
                mavtype: result,
                mission_type: apm::MavMissionType::MAV_MISSION_TYPE_MISSION,
                opaque_id: 0,
            })
        }

        fn handle(&mut self, m: &MavMessage, now: Instant) -> Vec<MavMessage> {
            match m {
                MavMessage::MISSION_COUNT(c) => {
                    if c.count == 0 {
                        self.list.clear();
                        return vec![self.ack(apm::MavMissionResult::MAV_MISSION_ACCEPTED)];
                    }
                    self.receiving = Some((c.count, Vec::new(), now));
                    vec![self.request(0)]
                }
                MavMessage::MISSION_ITEM_INT(i) => {
                    let Some((count, got, asked)) = &mut self.receiving else {
                        return vec![];
                    };
                    if usize::from(i.seq) != got.len() {
                        return vec![]; // not the one asked for
                    }
                    got.push(MissionItem::from_int(i));
                    *asked = now;
                    let next = got.len() as u16;
                    if usize::from(next) == usize::from(*count) {
                        self.list = std::mem::take(got);
                        self.receiving = None;
                        return vec![self.ack(apm::MavMissionResult::MAV_MISSION_ACCEPTED)];
                    }
                    vec![self.request(next)]
                }
                MavMessage::MISSION_REQUEST_LIST(_) => {
                    vec![MavMessage::MISSION_COUNT(apm::MISSION_COUNT_DATA {
                        count: self.list.len() as u16,
                        target_system: 245,
                        target_component: 190,
                        mission_type: apm::MavMissionType::MAV_MISSION_TYPE_MISSION,
                        opaque_id: 0,
                    })]
                }
                MavMessage::MISSION_REQUEST_INT(r) => self
                    .list
                    .get(usize::from(r.seq))
                    .and_then(|i| i.to_int(r.seq, MissionKind::Mission, (245, 190)))
                    .into_iter()
                    .collect(),
                MavMessage::MISSION_CLEAR_ALL(_) => {
                    self.list.clear();
                    vec![self.ack(apm::MavMissionResult::MAV_MISSION_ACCEPTED)]
                }
                MavMessage::MISSION_SET_CURRENT(c) => {
                    self.current = c.seq;
                    vec![MavMessage::MISSION_CURRENT(apm::MISSION_CURRENT_DATA {
                        seq: c.seq,
                        ..Default::default()
                    })]
                }
                _ => vec![],
            }
        }

        fn tick(&mut self, now: Instant) -> Vec<MavMessage> {
            let seq = match &mut self.receiving {
                Some((_, got, asked))
                    if now.duration_since(*asked) > Duration::from_millis(300) =>
                {
                    *asked = now;
                    got.len() as u16
                }
                _ => return vec![],
            };
            vec![self.request(seq)]
        }
    }

    /// Runs `op` between the station and `vehicle`, dropping each message with probability
    /// `loss` (a fixed-seed generator), in 5 ms steps; the final progress and the simulated
    /// time it took.
    fn run(vehicle: &mut Vehicle, op: Operation, loss: f64) -> (Progress, Duration) {
        let mut station = Transfers::default();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut lost = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 10_000) as f64 / 10_000.0 < loss
        };
        let t0 = Instant::now();
        station.start(7, 1, MissionKind::Mission, op);
        let mut now = t0;
        loop {
            let mut to_vehicle = station.due(now, |_| Some(TO));
            let mut to_station = vehicle.tick(now);
            for _ in 0..1000 {
                for (_, m) in std::mem::take(&mut to_vehicle) {
                    if !lost() {
                        to_station.extend(vehicle.handle(&m, now));
                    }
                }
                for m in std::mem::take(&mut to_station) {
                    if !lost() {
                        station.observe(1, TO, &m, now);
                    }
                }
                to_vehicle = station.take_out();
                if to_vehicle.is_empty() {
                    break;
                }
            }
            for u in station.take_updates() {
                assert_eq!((u.id, u.vehicle), (7, 1));
                if !matches!(u.progress, Progress::Working { .. }) {
                    return (u.progress, now - t0);
                }
            }
            now += Duration::from_millis(5);
            assert!(
                now - t0 < Duration::from_secs(600),
                "the transfer never ended"
            );
        }
    }

    fn items(n: u16) -> Vec<MissionItem> {
        (0..n)
            .map(|i| MissionItem {
                command: 16,
                frame: 3,
                params: [0.0, 2.0, 0.0, f32::from(i)],
                x: 382_900_000 + i32::from(i) * 17,
                y: -1_224_500_000 - i32::from(i) * 13,
                z: 30.0 + f32::from(i % 7),
                autocontinue: true,
            })
            .collect()
    }

    #[test]
    fn a_200_item_upload_is_read_back_identical_even_with_a_fifth_of_messages_lost() {
        for loss in [0.0, 0.2] {
            let mut vehicle = Vehicle::default();
            let (progress, took) = run(&mut vehicle, Operation::Upload(items(200)), loss);
            assert_eq!(progress, Progress::Done(Some(items(200))), "loss {loss}");
            assert_eq!(vehicle.list, items(200));
            assert!(took < Duration::from_secs(120), "{took:?} at loss {loss}");
        }
    }

    #[test]
    fn a_lost_last_item_or_closing_ack_still_ends_in_a_verified_upload() {
        // The last item lost `lost` times, then the vehicle's closing ack lost once; the
        // vehicle answers a list request with its old list while it still waits.
        for lost in [1, 3, 5] {
            let mut station = Transfers::default();
            let mut vehicle = Vehicle::default();
            let t0 = Instant::now();
            let mut now = t0;
            station.start(9, 1, MissionKind::Mission, Operation::Upload(items(3)));
            let (mut items_dropped, mut acks_dropped) = (0, 0);
            let progress = 'run: loop {
                let mut to_vehicle = station.due(now, |_| Some(TO));
                let mut to_station = vehicle.tick(now);
                while !to_vehicle.is_empty() || !to_station.is_empty() {
                    for (_, m) in std::mem::take(&mut to_vehicle) {
                        if matches!(&m, MavMessage::MISSION_ITEM_INT(i) if i.seq == 2)
                            && items_dropped < lost
                        {
                            items_dropped += 1;
                            continue;
                        }
                        to_station.extend(vehicle.handle(&m, now));
                    }
                    for m in std::mem::take(&mut to_station) {
                        if matches!(m, MavMessage::MISSION_ACK(_)) && acks_dropped == 0 {
                            acks_dropped += 1;
                            continue;
                        }
                        station.observe(1, TO, &m, now);
                    }
                    to_vehicle = station.take_out();
                }
                for u in station.take_updates() {
                    if !matches!(u.progress, Progress::Working { .. }) {
                        break 'run u.progress;
                    }
                }
                now += Duration::from_millis(5);
                assert!(
                    now - t0 < Duration::from_secs(60),
                    "never ended ({lost} lost)"
                );
            };
            assert_eq!(progress, Progress::Done(Some(items(3))), "{lost} lost");
            assert_eq!(vehicle.list, items(3));
        }
    }

    #[test]
    fn an_item_read_back_as_an_autopilot_normalises_it_still_counts() {
        let sent = MissionItem {
            command: 178, // DO_CHANGE_SPEED: no position
            frame: 2,
            params: [1.0, 4.0, -1.0, 0.0],
            x: 0,
            y: 0,
            z: 0.0,
            autocontinue: true,
        };
        assert!(MissionItem { frame: 0, ..sent }.holds(&sent));
        assert!(!MissionItem {
            params: [1.0, 5.0, -1.0, 0.0],
            ..sent
        }
        .holds(&sent));
        let waypoint = MissionItem {
            command: 16,
            frame: 3,
            params: [0.0; 4],
            x: -353_630_296,
            y: 1_491_650_000,
            z: 12.34,
            autocontinue: true,
        };
        assert!(
            MissionItem {
                z: 12.34 + 0.009,
                ..waypoint
            }
            .holds(&waypoint),
            "cm"
        );
        // A waypoint moved by the float message's rounding (10 cm) is not the one sent.
        assert!(!MissionItem {
            x: -353_630_304,
            ..waypoint
        }
        .holds(&waypoint));
        assert!(!MissionItem {
            frame: 0,
            ..waypoint
        }
        .holds(&waypoint));
        // PX4 gives frame 3 back as its _INT twin, 6: the same frame.
        assert!(MissionItem {
            frame: 6,
            ..waypoint
        }
        .holds(&waypoint));
        assert!(!MissionItem {
            frame: 5,
            ..waypoint
        }
        .holds(&waypoint));
        // RTL has no place: ArduPilot gives it back in frame 0.
        let rtl = MissionItem {
            command: 20,
            x: 0,
            y: 0,
            z: 0.0,
            ..waypoint
        };
        assert!(MissionItem { frame: 0, ..rtl }.holds(&rtl));
    }

    #[test]
    fn an_item_asked_for_with_mission_request_goes_as_mission_item_int() {
        let mut t = Transfers::default();
        let now = Instant::now();
        let item = MissionItem {
            command: 16,
            frame: 3,
            params: [0.0; 4],
            x: -353_630_296,
            y: 1_491_650_000,
            z: 20.0,
            autocontinue: true,
        };
        t.start(
            1,
            1,
            MissionKind::Mission,
            Operation::Upload(vec![item, item]),
        );
        t.due(now, |_| Some(TO));
        let ask = MavMessage::MISSION_REQUEST(apm::MISSION_REQUEST_DATA {
            seq: 1,
            target_system: 245,
            target_component: 190,
            mission_type: apm::MavMissionType::MAV_MISSION_TYPE_MISSION,
        });
        t.observe(1, TO, &ask, now);
        let out = t.take_out();
        assert!(
            matches!(&out[..], [(1, MavMessage::MISSION_ITEM_INT(m))] if m.x == -353_630_296),
            "{out:?}"
        );
    }

    #[test]
    fn download_clear_and_set_current() {
        let mut vehicle = Vehicle {
            list: items(12),
            ..Default::default()
        };
        assert_eq!(
            run(&mut vehicle, Operation::Download, 0.2).0,
            Progress::Done(Some(items(12)))
        );
        assert_eq!(
            run(&mut vehicle, Operation::SetCurrent(5), 0.2).0,
            Progress::Done(None)
        );
        assert_eq!(vehicle.current, 5);
        assert_eq!(
            run(&mut vehicle, Operation::Clear, 0.2).0,
            Progress::Done(None)
        );
        assert!(vehicle.list.is_empty());
        assert_eq!(
            run(&mut vehicle, Operation::Download, 0.0).0,
            Progress::Done(Some(vec![]))
        );
    }

    #[test]
    fn a_refusal_or_silence_fails_with_the_reason() {
        let mut station = Transfers::default();
        let now = Instant::now();
        station.start(1, 1, MissionKind::Fence, Operation::Upload(items(3)));
        let sent = station.due(now, |_| Some(TO));
        assert!(
            matches!(&sent[..], [(1, MavMessage::MISSION_COUNT(c))] if c.mission_type == apm::MavMissionType::MAV_MISSION_TYPE_FENCE)
        );
        // An ack for another list type is not this transfer's.
        let ack = |mission_type| {
            MavMessage::MISSION_ACK(apm::MISSION_ACK_DATA {
                mavtype: apm::MavMissionResult::MAV_MISSION_NO_SPACE,
                mission_type,
                ..Default::default()
            })
        };
        station.observe(
            1,
            TO,
            &ack(apm::MavMissionType::MAV_MISSION_TYPE_MISSION),
            now,
        );
        assert!(station.take_updates().is_empty());
        station.observe(
            1,
            TO,
            &ack(apm::MavMissionType::MAV_MISSION_TYPE_FENCE),
            now,
        );
        let updates = station.take_updates();
        assert_eq!(
            updates[0].progress,
            Progress::Failed("the vehicle refused the upload: no space".into())
        );

        // Nobody answers: the count is repeated, then the transfer fails.
        station.start(2, 1, MissionKind::Mission, Operation::Download);
        let mut t = now;
        let mut sends = 0;
        let progress = loop {
            sends += station.due(t, |_| Some(TO)).len();
            if let Some(u) = station.take_updates().pop() {
                break u.progress;
            }
            t += MAX_TIMEOUT;
        };
        assert_eq!(sends, usize::from(TRIES));
        assert!(matches!(progress, Progress::Failed(m) if m.contains("no answer")));
    }

    fn denied(kind: MissionKind) -> MavMessage {
        MavMessage::MISSION_ACK(apm::MISSION_ACK_DATA {
            mavtype: apm::MavMissionResult::MAV_MISSION_DENIED,
            mission_type: kind.mav(),
            ..Default::default()
        })
    }

    /// Runs `op` with `vehicle`, which answers every message `refused` picks out with DENIED
    /// until `busy` after `start`, as while another ground station uploads. The outcome, how
    /// many messages it picked out, and what the station said while waiting.
    fn while_busy(
        station: &mut Transfers,
        vehicle: &mut Vehicle,
        op: Operation,
        (start, busy, refused): (Instant, Duration, fn(&MavMessage) -> bool),
    ) -> (Progress, usize, Vec<String>) {
        station.start(1, 1, MissionKind::Mission, op);
        let mut now = start;
        let mut to_vehicle = station.due(now, |_| Some(TO));
        let (mut picked, mut waiting) = (0, Vec::new());
        loop {
            let mut answers = Vec::new();
            for (_, m) in to_vehicle.drain(..) {
                if refused(&m) {
                    picked += 1;
                    if now < start + busy {
                        answers.push(denied(MissionKind::Mission));
                        continue;
                    }
                }
                answers.extend(vehicle.handle(&m, now));
            }
            for m in answers {
                station.observe(1, TO, &m, now);
            }
            for u in station.take_updates() {
                match u.progress {
                    Progress::Waiting(why) => waiting.push(why),
                    Progress::Working { .. } => {}
                    other => return (other, picked, waiting),
                }
            }
            to_vehicle = station.take_out();
            now += Duration::from_millis(50);
            to_vehicle.extend(station.due(now, |_| Some(TO)));
            assert!(now < start + BUSY_WAIT, "never finished");
        }
    }

    #[test]
    fn an_upload_denied_while_another_station_uploads_goes_when_the_vehicle_is_free() {
        let mut station = Transfers::default();
        let start = Instant::now();
        // Busy with another ground station's upload for the first 4.5 s.
        let busy = Duration::from_millis(4_500);
        let is_count = |m: &MavMessage| matches!(m, MavMessage::MISSION_COUNT(_));
        let (progress, counts, waiting) = while_busy(
            &mut station,
            &mut Vehicle::default(),
            Operation::Upload(items(5)),
            (start, busy, is_count),
        );
        assert!(
            matches!(progress, Progress::Done(Some(ref i)) if i.len() == 5),
            "{progress:?}"
        );
        assert_eq!(
            counts, 6,
            "the first count and one a second until the vehicle was free"
        );
        assert_eq!(waiting.len(), 1, "said once: {waiting:?}");

        // A vehicle that stays busy (PX4 says ERROR): the upload fails, saying why, after
        // BUSY_WAIT.
        station.start(2, 1, MissionKind::Mission, Operation::Upload(items(5)));
        let mut now = start;
        let busy = MavMessage::MISSION_ACK(apm::MISSION_ACK_DATA {
            mavtype: apm::MavMissionResult::MAV_MISSION_ERROR,
            mission_type: MissionKind::Mission.mav(),
            ..Default::default()
        });
        let progress = loop {
            for (_, m) in station.due(now, |_| Some(TO)) {
                if matches!(m, MavMessage::MISSION_COUNT(_)) {
                    station.observe(1, TO, &busy, now);
                }
            }
            if let Some(u) = station
                .take_updates()
                .into_iter()
                .find(|u| !matches!(u.progress, Progress::Waiting(_)))
            {
                break u.progress;
            }
            now += Duration::from_millis(100);
            assert!(now < start + BUSY_WAIT * 2, "never gave up");
        };
        assert!(
            matches!(&progress, Progress::Failed(m) if m.contains("(for 30 s; another ground station")),
            "{progress:?}"
        );
        assert!(now >= start + BUSY_WAIT);
    }

    #[test]
    fn a_list_refused_while_another_station_uploads_is_asked_for_again() {
        // ArduPilot, receiving another station's upload for 2.5 s, DENIES a list request.
        let is_list = |m: &MavMessage| matches!(m, MavMessage::MISSION_REQUEST_LIST(_));
        let (progress, _, _) = while_busy(
            &mut Transfers::default(),
            &mut Vehicle {
                list: items(4),
                ..Vehicle::default()
            },
            Operation::Download,
            (Instant::now(), Duration::from_millis(2_500), is_list),
        );
        assert_eq!(progress, Progress::Done(Some(items(4))));
    }
}
