//! MAVLink 2 signing: a secret key per vehicle, what the station signs, and which frames it
//! lets through.
//!
//! A vehicle with a key (installed with SETUP_SIGNING, `edge-daemon signing enable`) gets
//! every frame the station sends it signed with that key. Frames arriving for it are checked
//! before anything else sees them:
//!
//! - addressed to the vehicle by anyone else (a ground station through the router, a script
//!   on the Wi-Fi): passed only with a valid signature by its key, so unsigned or forged
//!   commands, parameter sets and mission traffic never reach it;
//! - from the vehicle itself: a frame signed with another key, or replayed, is dropped (it is
//!   not the vehicle); an unsigned one passes and is counted, since a vehicle signs only once
//!   it has processed SETUP_SIGNING.
//!
//! A broadcast addressed to no vehicle in particular (target system 0) still reaches the
//! signing vehicles' links only if it is signed with that vehicle's key; elsewhere it goes as
//! it came.
//!
//! Replay: each signing stream (link id, system, component) must carry rising timestamps, as
//! the MAVLink signing specification says; a new stream may start at most a minute behind the
//! newest timestamp seen. Frames passing through unaddressed (broadcasts, other vehicles) are
//! not this module's business.

use std::collections::{BTreeMap, HashMap};

use crate::frame::Frame;

/// SETUP_SIGNING's message id: sent with the vehicle's previous key, which it still holds.
pub const SETUP_SIGNING: u32 = 256;
/// The link id the station signs with.
const LINK_ID: u8 = 0;
/// How far behind the newest timestamp a new stream may start: one minute, in 10 µs.
const NEW_STREAM_SLACK: u64 = 60 * 100_000;

/// A 32-byte signing key. Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// A fresh random key.
    pub fn random() -> Result<Key, ring::error::Unspecified> {
        use ring::rand::SecureRandom as _;
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut key)?;
        Ok(Key(key))
    }

    /// The key a passphrase stands for: its SHA-256, as MAVProxy's `signing setup` and
    /// QGroundControl derive it, so the same passphrase configures them.
    pub fn from_passphrase(passphrase: &str) -> Key {
        let digest = ring::digest::digest(&ring::digest::SHA256, passphrase.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        Key(key)
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a frame's signature says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Unsigned,
    /// Signed with another key, or altered.
    Bad,
    /// A timestamp not newer than its stream's last.
    Replayed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Unsigned => "unsigned",
            Verdict::Bad => "bad",
            Verdict::Replayed => "replayed",
        }
    }
}

/// What to do with an arriving frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not addressed to or from a signing vehicle: none of this module's business.
    Unchecked,
    /// From or to signing vehicle `vehicle`, with this verdict, let through.
    Admitted { vehicle: u8, verdict: Verdict },
    /// From or to signing vehicle `vehicle`, dropped for this verdict.
    Dropped { vehicle: u8, verdict: Verdict },
}

/// The station's keys and the state of every signing stream it has seen.
#[derive(Debug, Default)]
pub struct Signing {
    keys: BTreeMap<u8, Key>,
    /// The key a vehicle held before the last change, which SETUP_SIGNING is signed with.
    previous: BTreeMap<u8, Option<Key>>,
    /// Newest timestamp per (link id, system, component).
    streams: HashMap<(u8, u8, u8), u64>,
    newest: u64,
    /// The last timestamp the station signed with.
    signed_at: u64,
}

impl Signing {
    /// Every vehicle's key, as stored.
    pub fn load(&mut self, keys: impl IntoIterator<Item = (u8, Key)>) {
        self.keys = keys.into_iter().collect();
    }

    /// `vehicle` gets `key` (or none: signing off) from now on.
    pub fn install(&mut self, vehicle: u8, key: Option<Key>) {
        let before = match key {
            Some(k) => self.keys.insert(vehicle, k),
            None => self.keys.remove(&vehicle),
        };
        self.previous.insert(vehicle, before);
    }

    pub fn is_on(&self, vehicle: u8) -> bool {
        self.keys.contains_key(&vehicle)
    }

    pub fn vehicles(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.keys().copied()
    }

    /// Checks an arriving frame against the keys.
    pub fn inbound(&mut self, frame: &Frame, now: u64) -> Admission {
        // The common case, on every frame: nobody signs.
        if self.keys.is_empty() {
            return Admission::Unchecked;
        }
        let source = frame.system_id();
        let (vehicle, from_vehicle) = if self.keys.contains_key(&source) {
            (source, true)
        } else {
            match frame.target() {
                Some((target, _)) if self.keys.contains_key(&target) => (target, false),
                _ => return Admission::Unchecked,
            }
        };
        let verdict = self.verdict(frame, vehicle, now);
        let pass = match verdict {
            Verdict::Valid => true,
            Verdict::Unsigned => from_vehicle,
            Verdict::Bad | Verdict::Replayed => false,
        };
        if pass {
            Admission::Admitted { vehicle, verdict }
        } else {
            Admission::Dropped { vehicle, verdict }
        }
    }

    /// The signing vehicles a broadcast request (a frame with a target field, addressed to
    /// system 0) must not reach, with why: those whose key did not sign it. A signing vehicle
    /// sending it is not asked.
    pub fn broadcast_refused(&self, frame: &Frame) -> Vec<(u8, Verdict)> {
        if self.keys.is_empty() || !matches!(frame.target(), Some((0, _))) {
            return Vec::new();
        }
        let source = frame.system_id();
        self.keys
            .iter()
            .filter(|(&vehicle, _)| vehicle != source)
            .filter_map(|(&vehicle, key)| {
                if !frame.is_signed() {
                    Some((vehicle, Verdict::Unsigned))
                } else if !frame.signature_matches(&key.0) {
                    Some((vehicle, Verdict::Bad))
                } else {
                    None
                }
            })
            .collect()
    }

    fn verdict(&mut self, frame: &Frame, vehicle: u8, now: u64) -> Verdict {
        let Some(key) = self.keys.get(&vehicle) else {
            return Verdict::Unsigned;
        };
        let Some((link, timestamp)) = frame.signature_stamp() else {
            return Verdict::Unsigned;
        };
        if !frame.signature_matches(&key.0) {
            return Verdict::Bad;
        }
        self.newest = self.newest.max(now);
        let stream = (link, frame.system_id(), frame.component_id());
        let fresh = match self.streams.get(&stream) {
            Some(&last) => timestamp > last,
            None => timestamp + NEW_STREAM_SLACK >= self.newest,
        };
        if !fresh {
            return Verdict::Replayed;
        }
        self.streams.insert(stream, timestamp);
        self.newest = self.newest.max(timestamp);
        Verdict::Valid
    }

    /// `frame` as the station sends it to `vehicle`: signed with its key when it has one
    /// (SETUP_SIGNING with the key it replaces). Timestamps never repeat.
    pub fn outbound(&mut self, frame: &Frame, vehicle: u8, now: u64) -> Frame {
        let key = if frame.message_id() == SETUP_SIGNING {
            match self.previous.get(&vehicle) {
                Some(before) => before.as_ref(),
                None => self.keys.get(&vehicle),
            }
        } else {
            self.keys.get(&vehicle)
        };
        let Some(key) = key else {
            return frame.clone();
        };
        self.signed_at = (self.signed_at + 1).max(now);
        frame
            .signed(&key.0, LINK_ID, self.signed_at)
            .unwrap_or_else(|| frame.clone())
    }
}

/// A wall time (Unix µs, the station's clock: a Pi's system clock may be years behind the
/// vehicle's signing time) as a signing timestamp: 10 µs units since 2015-01-01 00:00 UTC.
pub fn timestamp(unix_us: i64) -> u64 {
    const EPOCH_2015_US: i64 = 1_420_070_400_000_000;
    (unix_us.saturating_sub(EPOCH_2015_US).max(0) / 10) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MavMessage;
    use crate::frame::Version;
    use mavlink::dialects::ardupilotmega as apm;

    fn command(from: u8, to: u8) -> Frame {
        let m = MavMessage::COMMAND_LONG(apm::COMMAND_LONG_DATA {
            target_system: to,
            target_component: 1,
            command: apm::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            param1: 1.0,
            ..Default::default()
        });
        Frame::encode(Version::V2, from, 190, 0, &m)
    }

    #[test]
    fn a_signed_frame_parses_and_verifies_only_with_its_key() {
        let key = Key::from_passphrase("vineyard");
        let signed = command(255, 3).signed(&key.0, 7, 123_456).expect("v2");
        let parsed = Frame::parse(signed.as_bytes()).expect("a valid frame, checksum and all");
        assert!(parsed.is_signed());
        assert_eq!(parsed.signature_stamp(), Some((7, 123_456)));
        assert!(parsed.signature_matches(&key.0));
        assert!(!parsed.signature_matches(&Key::from_passphrase("other").0));
        let mut tampered = signed.as_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(!Frame::parse(&tampered)
            .expect("frame")
            .signature_matches(&key.0));
    }

    #[test]
    fn commands_to_a_signing_vehicle_need_its_key_and_fresh_timestamps() {
        let key = Key::from_passphrase("vineyard");
        let mut s = Signing::default();
        s.load([(3, key.clone())]);
        let now = timestamp(crate::clock::system_now_us());
        let to_3 = command(255, 3);
        assert_eq!(
            s.inbound(&to_3, now),
            Admission::Dropped {
                vehicle: 3,
                verdict: Verdict::Unsigned
            }
        );
        let wrong = to_3
            .signed(&Key::from_passphrase("guess").0, 0, now)
            .expect("v2");
        assert_eq!(
            s.inbound(&wrong, now),
            Admission::Dropped {
                vehicle: 3,
                verdict: Verdict::Bad
            }
        );
        let right = to_3.signed(&key.0, 0, now).expect("v2");
        assert_eq!(
            s.inbound(&right, now),
            Admission::Admitted {
                vehicle: 3,
                verdict: Verdict::Valid
            }
        );
        assert_eq!(
            s.inbound(&right, now),
            Admission::Dropped {
                vehicle: 3,
                verdict: Verdict::Replayed
            },
            "the same frame again is a replay"
        );
        let stale = command(254, 3)
            .signed(&key.0, 0, now - NEW_STREAM_SLACK - 1)
            .expect("v2");
        assert!(matches!(s.inbound(&stale, now), Admission::Dropped { .. }));
        // Other vehicles' traffic is not checked.
        assert_eq!(s.inbound(&command(255, 4), now), Admission::Unchecked);
        // A broadcast request reaches a signing vehicle only signed with its key.
        let broadcast = command(255, 0);
        assert_eq!(s.broadcast_refused(&broadcast), [(3, Verdict::Unsigned)]);
        let signed = broadcast.signed(&key.0, 0, now + 10).expect("v2");
        assert!(s.broadcast_refused(&signed).is_empty());
        assert!(
            s.broadcast_refused(&command(3, 0)).is_empty(),
            "the vehicle's own"
        );
        // The vehicle's own unsigned frames pass (it may not have the key yet), counted.
        let from_3 = Frame::encode(
            Version::V2,
            3,
            1,
            0,
            &MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA::default()),
        );
        assert_eq!(
            s.inbound(&from_3, now),
            Admission::Admitted {
                vehicle: 3,
                verdict: Verdict::Unsigned
            }
        );
    }

    #[test]
    fn the_station_signs_with_the_vehicles_key_and_setup_with_the_one_it_replaces() {
        let (old, new) = (Key::from_passphrase("old"), Key::from_passphrase("new"));
        let mut s = Signing::default();
        s.load([(3, old.clone())]);
        s.install(3, Some(new.clone()));
        let now = timestamp(crate::clock::system_now_us());
        let a = s.outbound(&command(245, 3), 3, now);
        let b = s.outbound(&command(245, 3), 3, now);
        assert!(a.signature_matches(&new.0));
        let (ta, tb) = (
            a.signature_stamp().unwrap().1,
            b.signature_stamp().unwrap().1,
        );
        assert!(tb > ta, "timestamps rise: {ta} {tb}");
        let setup = Frame::encode(
            Version::V2,
            245,
            190,
            0,
            &MavMessage::SETUP_SIGNING(apm::SETUP_SIGNING_DATA {
                target_system: 3,
                secret_key: new.0,
                ..Default::default()
            }),
        );
        assert!(s.outbound(&setup, 3, now).signature_matches(&old.0));
        assert!(!s.outbound(&command(245, 4), 4, now).is_signed());
    }
}
