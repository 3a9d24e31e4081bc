//! What the station asks one vehicle for, and when it asks again.
//!
//! Three things, each asked until answered, with backoff (1, 2, 4 … 30 s between tries, so a
//! vehicle that cannot answer costs one small frame per half-minute):
//!
//! - **data streams**, answered when positions arrive. ArduPilot gets REQUEST_DATA_STREAM for
//!   its stream groups; other autopilots (PX4) get MAV_CMD_SET_MESSAGE_INTERVAL per message,
//!   and REQUEST_DATA_STREAM if they answer that they do not support it. Positions that stop
//!   while heartbeats go on (a reboot that lost the rates, another ground station stopping
//!   them) make the station ask for everything again.
//! - **AUTOPILOT_VERSION** (the uid that keys the fleet registry), by MAV_CMD_REQUEST_MESSAGE,
//!   or MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES on firmware that does not support that.
//! - **HOME_POSITION**, by MAV_CMD_REQUEST_MESSAGE or MAV_CMD_GET_HOME_POSITION. ArduPilot has
//!   no home before its first GPS fix and then says nothing, so this one simply keeps asking.
//!
//! Everything is asked again after a reboot (the vehicle's boot time goes backwards) or when
//! heartbeats return after the link-lost silence.
//!
//! Stream rates are per radio port on the vehicle, shared by every ground station on it: the
//! last request wins. So the station never asks for less than another ground station (a
//! QGroundControl through the router) asked that vehicle for, and it asks only when it needs
//! to, never on a timer that would undo what the other asked later.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mavlink::dialects::ardupilotmega as apm;
use serde::{Deserialize, Serialize};

use crate::dialect::MavMessage;
use crate::frame::{Frame, Version};

/// `MAV_AUTOPILOT_ARDUPILOTMEGA`.
const ARDUPILOT: u8 = 3;
/// Positions silent this long, with heartbeats still arriving, mean the streams stopped.
const STREAM_SILENCE: Duration = Duration::from_secs(3);
/// A boot time this far behind the last one is a reboot, not a reordered frame.
const REBOOT_SLACK_MS: u32 = 2_000;
const LONGEST_BACKOFF: Duration = Duration::from_secs(30);

/// The rates (Hz) at which the station asks each vehicle for its data; 0 leaves a group as it
/// is. ArduPilot's stream groups, and the messages the station reads from each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rates {
    /// GLOBAL_POSITION_INT (ArduPilot's POSITION group): the map and the history.
    pub position_hz: u16,
    /// SYS_STATUS, GPS_RAW_INT, MISSION_CURRENT (EXTENDED_STATUS): battery, fix, mission.
    pub status_hz: u16,
    /// ATTITUDE (EXTRA1).
    pub attitude_hz: u16,
    /// VFR_HUD (EXTRA2): speeds and climb.
    pub hud_hz: u16,
    /// SYSTEM_TIME, BATTERY_STATUS (EXTRA3): GPS time for the clock, energy used.
    pub extra_hz: u16,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            position_hz: 5,
            status_hz: 2,
            attitude_hz: 4,
            hud_hz: 4,
            extra_hz: 1,
        }
    }
}

impl Rates {
    /// ArduPilot stream groups and the rate for each.
    fn streams(&self) -> [(apm::MavDataStream, u16); 5] {
        use apm::MavDataStream::*;
        [
            (MAV_DATA_STREAM_POSITION, self.position_hz),
            (MAV_DATA_STREAM_EXTENDED_STATUS, self.status_hz),
            (MAV_DATA_STREAM_EXTRA1, self.attitude_hz),
            (MAV_DATA_STREAM_EXTRA2, self.hud_hz),
            (MAV_DATA_STREAM_EXTRA3, self.extra_hz),
        ]
    }

    /// Message ids and the rate for each, for autopilots that take message intervals.
    fn messages(&self) -> [(u32, u16); 8] {
        [
            (33, self.position_hz),
            (1, self.status_hz),
            (24, self.status_hz),
            (42, self.status_hz),
            (30, self.attitude_hz),
            (74, self.hud_hz),
            (2, self.extra_hz),
            (147, self.extra_hz),
        ]
    }
}

/// One request, repeated with backoff until it is answered.
#[derive(Debug, Default, Clone, Copy)]
struct Ask {
    answered: bool,
    attempts: u32,
    next: Option<Instant>,
    asked: bool,
}

impl Ask {
    fn due(&self, now: Instant) -> bool {
        !self.answered && self.next.is_none_or(|t| now >= t)
    }

    fn sent(&mut self, now: Instant) {
        self.attempts += 1;
        self.asked = true;
        let backoff = Duration::from_secs(1 << self.attempts.min(6).saturating_sub(1));
        self.next = Some(now + backoff.min(LONGEST_BACKOFF));
    }

    /// Try the next way of asking at once.
    fn retry_now(&mut self) {
        self.next = None;
    }
}

/// How a vehicle refused a way of asking (COMMAND_ACK `UNSUPPORTED`), so the next try takes
/// another.
#[derive(Debug, Default, Clone, Copy)]
struct Refused {
    message_interval: bool,
    request_message: bool,
    capabilities: bool,
    get_home: bool,
}

/// What the station has asked one vehicle for.
#[derive(Debug)]
pub struct Asks {
    system: u8,
    autopilot: u8,
    version: Version,
    last_heartbeat: Instant,
    last_position: Option<Instant>,
    boot_ms: Option<u32>,
    streams: Ask,
    autopilot_version: Ask,
    home: Ask,
    refused: Refused,
    /// ArduPilot stream groups and message ids that other ground stations asked this vehicle
    /// for, at the rate (Hz) they asked.
    other_streams: BTreeMap<u8, u16>,
    other_messages: BTreeMap<u32, u16>,
}

impl Asks {
    pub fn new(system: u8, autopilot: u8, version: Version, at: Instant) -> Asks {
        Asks {
            system,
            autopilot,
            version,
            last_heartbeat: at,
            last_position: None,
            boot_ms: None,
            streams: Ask::default(),
            autopilot_version: Ask::default(),
            home: Ask::default(),
            refused: Refused::default(),
            other_streams: BTreeMap::new(),
            other_messages: BTreeMap::new(),
        }
    }

    /// The wire version the vehicle speaks (its latest frame's), which the station answers in.
    pub fn version(&self) -> Version {
        self.version
    }

    pub fn set_autopilot(&mut self, autopilot: u8) {
        self.autopilot = autopilot;
    }

    /// Ask for everything again: the vehicle rebooted or came back.
    fn ask_again(&mut self) {
        self.streams = Ask::default();
        self.autopilot_version = Ask::default();
        self.home = Ask::default();
        self.boot_ms = None;
    }

    /// A frame from the vehicle's autopilot component.
    pub fn observe(&mut self, frame: &Frame, at: Instant, link_lost_after: Duration) {
        self.version = frame.version();
        match frame.message_id() {
            0 => {
                if at.duration_since(self.last_heartbeat) > link_lost_after {
                    tracing::info!(vehicle = self.system, "heard again: asking for its data");
                    self.ask_again();
                }
                self.last_heartbeat = at;
            }
            // GLOBAL_POSITION_INT, ATTITUDE: both start with the vehicle's boot time.
            33 | 30 => {
                let boot_ms = time_boot_ms(frame);
                if self
                    .boot_ms
                    .is_some_and(|last| boot_ms.saturating_add(REBOOT_SLACK_MS) < last)
                {
                    tracing::info!(vehicle = self.system, "rebooted: asking for its data");
                    self.ask_again();
                }
                self.boot_ms = Some(boot_ms);
                if frame.message_id() == 33 {
                    self.last_position = Some(at);
                    if self.streams.asked {
                        self.streams.answered = true;
                    }
                }
            }
            148 => self.autopilot_version.answered = true,
            242 => self.home.answered = true,
            _ => {}
        }
    }

    /// The vehicle's answer to one of the station's commands.
    pub fn acked(&mut self, ack: &apm::COMMAND_ACK_DATA) {
        use apm::MavCmd::*;
        if ack.result != apm::MavResult::MAV_RESULT_UNSUPPORTED {
            return; // accepted: the answer is the message itself; anything else: try later
        }
        match ack.command {
            MAV_CMD_SET_MESSAGE_INTERVAL => {
                self.refused.message_interval = true;
                self.streams.retry_now();
            }
            MAV_CMD_REQUEST_MESSAGE => {
                self.refused.request_message = true;
                self.autopilot_version.retry_now();
                self.home.retry_now();
            }
            MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES => {
                self.refused.capabilities = true;
                self.autopilot_version.answered = true; // no way left to ask
            }
            MAV_CMD_GET_HOME_POSITION => {
                self.refused.get_home = true;
                self.home.answered = true;
            }
            _ => {}
        }
    }

    /// Another ground station's REQUEST_DATA_STREAM or SET_MESSAGE_INTERVAL to this vehicle.
    pub fn observe_other_gcs(&mut self, frame: &Frame) {
        match frame.decode() {
            Some(MavMessage::REQUEST_DATA_STREAM(m)) => {
                let ids: Vec<u8> = if m.req_stream_id == apm::MavDataStream::MAV_DATA_STREAM_ALL {
                    Rates::default()
                        .streams()
                        .iter()
                        .map(|(s, _)| *s as u8)
                        .collect()
                } else {
                    vec![m.req_stream_id as u8]
                };
                for id in ids {
                    if m.start_stop == 1 && m.req_message_rate > 0 {
                        self.other_streams.insert(id, m.req_message_rate);
                    } else {
                        self.other_streams.remove(&id);
                    }
                }
            }
            Some(MavMessage::COMMAND_LONG(m))
                if m.command == apm::MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL =>
            {
                let id = m.param1 as u32;
                if m.param2 > 0.0 {
                    let hz = (1e6 / m.param2).round().clamp(1.0, f32::from(u16::MAX));
                    self.other_messages.insert(id, hz as u16);
                } else {
                    self.other_messages.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// The requests due now (addressed by the caller), marking each as sent.
    pub fn due(
        &mut self,
        now: Instant,
        rates: &Rates,
        link_lost_after: Duration,
    ) -> Vec<MavMessage> {
        let mut out = Vec::new();
        if now.duration_since(self.last_heartbeat) > link_lost_after {
            return out; // not heard: asked again when it is
        }
        let silent = self
            .last_position
            .is_some_and(|t| now.duration_since(t) > STREAM_SILENCE);
        if self.streams.answered && silent {
            // Most often a reboot that lost the rates, which only ever asking again shows.
            tracing::info!(
                vehicle = self.system,
                "positions stopped: asking for its data again"
            );
            self.ask_again();
        }
        if self.streams.due(now) {
            self.streams.sent(now);
            if self.autopilot == ARDUPILOT || self.refused.message_interval {
                for (stream, hz) in rates.streams() {
                    let hz = hz.max(
                        self.other_streams
                            .get(&(stream as u8))
                            .copied()
                            .unwrap_or(0),
                    );
                    if hz > 0 {
                        out.push(MavMessage::REQUEST_DATA_STREAM(
                            apm::REQUEST_DATA_STREAM_DATA {
                                req_message_rate: hz,
                                target_system: 0,
                                target_component: 0,
                                req_stream_id: stream,
                                start_stop: 1,
                            },
                        ));
                    }
                }
            } else {
                for (id, hz) in rates.messages() {
                    let hz = hz.max(self.other_messages.get(&id).copied().unwrap_or(0));
                    if hz > 0 {
                        out.push(command(
                            apm::MavCmd::MAV_CMD_SET_MESSAGE_INTERVAL,
                            [id as f32, 1e6 / f32::from(hz)],
                        ));
                    }
                }
            }
        }
        if self.autopilot_version.due(now) {
            self.autopilot_version.sent(now);
            out.push(if self.refused.request_message {
                command(
                    apm::MavCmd::MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES,
                    [1.0, 0.0],
                )
            } else {
                command(apm::MavCmd::MAV_CMD_REQUEST_MESSAGE, [148.0, 0.0])
            });
        }
        if self.home.due(now) {
            self.home.sent(now);
            out.push(if self.refused.request_message {
                command(apm::MavCmd::MAV_CMD_GET_HOME_POSITION, [0.0, 0.0])
            } else {
                command(apm::MavCmd::MAV_CMD_REQUEST_MESSAGE, [242.0, 0.0])
            });
        }
        out
    }
}

fn command(command: apm::MavCmd, [param1, param2]: [f32; 2]) -> MavMessage {
    MavMessage::COMMAND_LONG(apm::COMMAND_LONG_DATA {
        command,
        param1,
        param2,
        ..Default::default()
    })
}

/// The `time_boot_ms` that GLOBAL_POSITION_INT and ATTITUDE start with, read without decoding
/// (MAVLink 2 drops trailing zero bytes, so a short payload is zero-padded).
fn time_boot_ms(frame: &Frame) -> u32 {
    let mut bytes = [0u8; 4];
    let payload = frame.payload();
    let n = payload.len().min(4);
    bytes[..n].copy_from_slice(&payload[..n]);
    u32::from_le_bytes(bytes)
}
