//! The raw MAVLink frame the router passes around, and the scanner that cuts frames out of a
//! byte stream.
//!
//! The router never decodes what it forwards: a [`Frame`] is the exact bytes that arrived
//! (v1 or v2, signed or not), so unknown message ids and other dialects pass through untouched.
//! Header fields are read straight from those bytes on demand.
//!
//! The [`FrameScanner`] is ours rather than the `mavlink` crate's reader because a ground station
//! must *count* what goes wrong on a link (bad bytes, CRC errors, truncated frames) and resync
//! after garbage without ever stalling; the crate's reader skips bad frames silently. CRC and
//! message definitions still come from the crate (see [`crate::dialect`]).

use bytes::{Buf, Bytes, BytesMut};

use crate::dialect;

/// MAVLink 1 start-of-frame marker.
pub const STX_V1: u8 = 0xFE;
/// MAVLink 2 start-of-frame marker.
pub const STX_V2: u8 = 0xFD;

const V1_HEADER: usize = 6; // STX, len, seq, sys, comp, msgid
const V2_HEADER: usize = 10; // STX, len, incompat, compat, seq, sys, comp, msgid(3)
const CRC_LEN: usize = 2;
const SIGNATURE_LEN: usize = 13;
const IFLAG_SIGNED: u8 = 0x01;

/// The MAVLink wire version of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One complete, validated MAVLink frame: the bytes exactly as they were received.
///
/// Cloning is cheap (reference counted), which is what fan-out to many links needs.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Wraps bytes already known to hold exactly one well-formed frame.
    fn from_validated(bytes: Bytes) -> Self {
        Frame(bytes)
    }

    /// Parses exactly one frame from `bytes` (a whole frame, nothing before or after it).
    pub fn parse(bytes: &[u8]) -> Option<Frame> {
        let mut scanner = FrameScanner::new();
        scanner.push(bytes);
        let frame = scanner.next_frame()?;
        (frame.len() == bytes.len()).then_some(frame)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn version(&self) -> Version {
        if self.0[0] == STX_V2 {
            Version::V2
        } else {
            Version::V1
        }
    }

    fn header_len(&self) -> usize {
        match self.version() {
            Version::V1 => V1_HEADER,
            Version::V2 => V2_HEADER,
        }
    }

    pub fn sequence(&self) -> u8 {
        match self.version() {
            Version::V1 => self.0[2],
            Version::V2 => self.0[4],
        }
    }

    pub fn system_id(&self) -> u8 {
        match self.version() {
            Version::V1 => self.0[3],
            Version::V2 => self.0[5],
        }
    }

    pub fn component_id(&self) -> u8 {
        match self.version() {
            Version::V1 => self.0[4],
            Version::V2 => self.0[6],
        }
    }

    pub fn message_id(&self) -> u32 {
        match self.version() {
            Version::V1 => u32::from(self.0[5]),
            Version::V2 => u32::from_le_bytes([self.0[7], self.0[8], self.0[9], 0]),
        }
    }

    /// Whether a MAVLink 2 signature trails the checksum.
    pub fn is_signed(&self) -> bool {
        self.version() == Version::V2 && self.0[2] & IFLAG_SIGNED != 0
    }

    /// The payload as sent (MAVLink 2 trims trailing zero bytes).
    pub fn payload(&self) -> &[u8] {
        let start = self.header_len();
        &self.0[start..start + usize::from(self.0[1])]
    }

    /// The system and component this frame is addressed to, if its message type carries
    /// `target_system`/`target_component` fields. `(0, 0)` means broadcast.
    pub fn target(&self) -> Option<(u8, u8)> {
        let offsets = dialect::target_offsets(self.message_id())?;
        let payload = self.payload();
        // MAVLink 2 trims trailing zeros, so a field past the end of the payload is zero.
        let byte = |ofs: Option<u8>| ofs.and_then(|o| payload.get(usize::from(o)).copied());
        Some((
            byte(Some(offsets.system)).unwrap_or(0),
            byte(offsets.component).unwrap_or(0),
        ))
    }

    /// Decodes the payload with the ardupilotmega dialect. Only state tracking calls this,
    /// and only for the handful of message types it needs.
    pub fn decode(&self) -> Option<dialect::MavMessage> {
        use mavlink::Message as _;
        let version = match self.version() {
            Version::V1 => mavlink::MavlinkVersion::V1,
            Version::V2 => mavlink::MavlinkVersion::V2,
        };
        dialect::MavMessage::parse(version, self.message_id(), self.payload()).ok()
    }

    /// The same MAVLink 2 message signed with `key`: the signed flag set, the checksum
    /// recomputed over the new header, and the 13-byte signature appended (`link_id`, the
    /// 48-bit `timestamp` in 10 µs since 2015-01-01, and the first six bytes of SHA-256 over
    /// the key, the frame and both). `None` for MAVLink 1, which has no signing, or a message
    /// the dialect does not define (its checksum cannot be made).
    pub fn signed(&self, key: &[u8; 32], link_id: u8, timestamp: u64) -> Option<Frame> {
        if self.version() != Version::V2 {
            return None;
        }
        let extra = dialect::extra_crc(self.message_id())?;
        let crc_at = V2_HEADER + usize::from(self.0[1]);
        let mut bytes = BytesMut::with_capacity(crc_at + CRC_LEN + SIGNATURE_LEN);
        bytes.extend_from_slice(&self.0[..crc_at]);
        bytes[2] |= IFLAG_SIGNED;
        let crc = mavlink::calculate_crc(&bytes[1..crc_at], extra);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&[link_id]);
        bytes.extend_from_slice(&timestamp.to_le_bytes()[..6]);
        let signature = signature_of(key, &bytes);
        bytes.extend_from_slice(&signature);
        Some(Frame(bytes.freeze()))
    }

    /// A signed frame's link id and timestamp.
    pub fn signature_stamp(&self) -> Option<(u8, u64)> {
        if !self.is_signed() {
            return None;
        }
        let at = self.0.len() - SIGNATURE_LEN;
        let mut ts = [0u8; 8];
        ts[..6].copy_from_slice(&self.0[at + 1..at + 7]);
        Some((self.0[at], u64::from_le_bytes(ts)))
    }

    /// Whether this frame carries a signature made with `key`.
    pub fn signature_matches(&self, key: &[u8; 32]) -> bool {
        if !self.is_signed() {
            return false;
        }
        let value_at = self.0.len() - 6;
        signature_of(key, &self.0[..value_at]) == self.0[value_at..]
    }

    /// Builds a frame from a dialect message, as the simulator and the daemon's own
    /// transmissions do. A message numbered above 255 (SETUP_SIGNING, …) exists only in
    /// MAVLink 2 and goes as MAVLink 2 whatever `version` asks: a MAVLink 1 peer ignores it.
    pub fn encode(
        version: Version,
        system_id: u8,
        component_id: u8,
        sequence: u8,
        message: &dialect::MavMessage,
    ) -> Frame {
        let header = mavlink::MavHeader {
            system_id: u32::from(system_id),
            component_id,
            sequence,
        };
        let version = if mavlink::Message::message_id(message) > 255 {
            Version::V2
        } else {
            version
        };
        let bytes = match version {
            Version::V2 => {
                let mut raw = mavlink::MAVLinkV2MessageRaw::new();
                raw.serialize_message(header, message);
                Bytes::copy_from_slice(raw.raw_bytes())
            }
            Version::V1 => {
                let mut raw = mavlink::MAVLinkV1MessageRaw::new();
                raw.serialize_message(header, message);
                Bytes::copy_from_slice(raw.raw_bytes())
            }
        };
        Frame(bytes)
    }
}

/// MAVLink 2's signature: the first six bytes of SHA-256(key ‖ frame up to the signature's
/// own six bytes, that is header, payload, checksum, link id and timestamp).
fn signature_of(key: &[u8; 32], signed_part: &[u8]) -> [u8; 6] {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    hash.update(key);
    hash.update(signed_part);
    let digest = hash.finish();
    let mut out = [0u8; 6];
    out.copy_from_slice(&digest.as_ref()[..6]);
    out
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("version", &self.version())
            .field("sys", &self.system_id())
            .field("comp", &self.component_id())
            .field("seq", &self.sequence())
            .field("msgid", &self.message_id())
            .field("len", &self.len())
            .finish()
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// What the scanner threw away, by cause. Counted, never fatal.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanErrors {
    /// Bytes skipped while looking for a start-of-frame marker.
    pub bad_bytes: u64,
    /// Frames whose checksum did not match (the marker byte is skipped and scanning resumes
    /// right after it, so a real frame hidden inside garbage is still found).
    pub crc_errors: u64,
    /// Frames cut short by the end of a datagram.
    pub truncated: u64,
}

impl ScanErrors {
    pub fn total(&self) -> u64 {
        self.bad_bytes + self.crc_errors + self.truncated
    }
}

/// Cuts MAVLink frames out of a byte stream.
///
/// Feed bytes with [`push`](Self::push), take frames with [`next_frame`](Self::next_frame) until
/// it returns `None` (more bytes needed). For datagram transports call
/// [`end_datagram`](Self::end_datagram) after draining: a frame cannot span datagrams, so what is
/// left is a truncated frame.
#[derive(Debug, Default)]
pub struct FrameScanner {
    buf: BytesMut,
    errors: ScanErrors,
}

enum Candidate {
    /// A frame of this many bytes starts at the head of the buffer.
    Frame(usize),
    /// The head could be a frame but more bytes are needed to tell.
    Incomplete,
    /// The marker at the head does not start a frame.
    Invalid { crc: bool },
}

impl FrameScanner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Errors counted since the last call; resets the counters.
    pub fn take_errors(&mut self) -> ScanErrors {
        std::mem::take(&mut self.errors)
    }

    /// Bytes buffered and not yet returned as a frame or counted as an error.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let start = match self.buf.iter().position(|&b| b == STX_V1 || b == STX_V2) {
                Some(i) => i,
                None => {
                    self.errors.bad_bytes += self.buf.len() as u64;
                    self.buf.clear();
                    return None;
                }
            };
            if start > 0 {
                self.errors.bad_bytes += start as u64;
                self.buf.advance(start);
            }
            match check_candidate(&self.buf) {
                Candidate::Frame(len) => {
                    return Some(Frame::from_validated(self.buf.split_to(len).freeze()));
                }
                Candidate::Incomplete => return None,
                Candidate::Invalid { crc } => {
                    if crc {
                        self.errors.crc_errors += 1;
                    } else {
                        self.errors.bad_bytes += 1;
                    }
                    self.buf.advance(1);
                }
            }
        }
    }

    /// Declares the end of a datagram: whatever is buffered can never complete.
    pub fn end_datagram(&mut self) {
        if !self.buf.is_empty() {
            self.errors.truncated += 1;
            self.buf.clear();
        }
    }
}

/// Decides whether a frame starts at `buf[0]` (which holds a marker byte).
fn check_candidate(buf: &[u8]) -> Candidate {
    match check_complete_candidate(buf) {
        // A stray marker in line noise can claim a length that reaches past the data received
        // so far; if a whole, valid frame is already visible inside that span, the marker was
        // noise, and the frame must not wait for bytes that may never come.
        Candidate::Incomplete if contains_checkable_frame(&buf[1..]) => {
            Candidate::Invalid { crc: false }
        }
        other => other,
    }
}

fn check_complete_candidate(buf: &[u8]) -> Candidate {
    let (len, msgid) = match extent(buf) {
        Extent::Complete { len, msgid } => (len, msgid),
        Extent::Incomplete => return Candidate::Incomplete,
        Extent::Invalid => return Candidate::Invalid { crc: false },
    };
    match dialect::extra_crc(msgid) {
        Some(extra) if crc_matches(buf, extra) => Candidate::Frame(len),
        Some(_) => Candidate::Invalid { crc: true },
        // An id outside our dialect cannot be checked, yet must still be routed (another
        // dialect, a newer autopilot). So that a stray marker in line noise cannot swallow the
        // good frames after it, such a frame is only believed if no checkable frame starts
        // inside it.
        None if contains_checkable_frame(&buf[1..len]) => Candidate::Invalid { crc: false },
        None => Candidate::Frame(len),
    }
}

/// How far the frame starting at `buf[0]` reaches, from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The whole frame, `len` bytes, is in `buf`.
    Complete { len: usize, msgid: u32 },
    /// More bytes are needed to tell, or to hold the whole frame.
    Incomplete,
    /// No frame starts here: not a marker, or flags this version does not know.
    Invalid,
}

pub fn extent(buf: &[u8]) -> Extent {
    let (header, signed) = match buf.first() {
        Some(&STX_V1) => (V1_HEADER, false),
        Some(&STX_V2) => match buf.get(2) {
            None => return Extent::Incomplete,
            // Unknown incompatibility flags: we could not even find the frame's end.
            Some(flags) if flags & !IFLAG_SIGNED != 0 => return Extent::Invalid,
            Some(flags) => (V2_HEADER, flags & IFLAG_SIGNED != 0),
        },
        _ => return Extent::Invalid,
    };
    if buf.len() < header {
        return Extent::Incomplete;
    }
    let len = header + usize::from(buf[1]) + CRC_LEN + if signed { SIGNATURE_LEN } else { 0 };
    if buf.len() < len {
        return Extent::Incomplete;
    }
    let msgid = if header == V1_HEADER {
        u32::from(buf[5])
    } else {
        u32::from_le_bytes([buf[7], buf[8], buf[9], 0])
    };
    Extent::Complete { len, msgid }
}

/// Whether the checksum of the complete frame at the head of `buf` matches.
fn crc_matches(buf: &[u8], extra_crc: u8) -> bool {
    let header = if buf[0] == STX_V1 {
        V1_HEADER
    } else {
        V2_HEADER
    };
    let crc_at = header + usize::from(buf[1]);
    let received = u16::from_le_bytes([buf[crc_at], buf[crc_at + 1]]);
    mavlink::calculate_crc(&buf[1..crc_at], extra_crc) == received
}

fn contains_checkable_frame(buf: &[u8]) -> bool {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == STX_V1 || b == STX_V2) {
        let at = i + pos;
        if let Extent::Complete { msgid, .. } = extent(&buf[at..]) {
            if dialect::extra_crc(msgid).is_some_and(|extra| crc_matches(&buf[at..], extra)) {
                return true;
            }
        }
        i = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MavMessage;
    use mavlink::dialects::ardupilotmega as apm;

    fn heartbeat(sys: u8, seq: u8, version: Version) -> Frame {
        let msg = MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA {
            custom_mode: 3,
            mavtype: apm::MavType::MAV_TYPE_QUADROTOR,
            autopilot: apm::MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
            base_mode: apm::MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
            system_status: apm::MavState::MAV_STATE_ACTIVE,
            mavlink_version: 3,
        });
        Frame::encode(version, sys, 1, seq, &msg)
    }

    #[test]
    fn a_mavlink_2_only_message_asked_for_as_mavlink_1_goes_as_mavlink_2() {
        // Found by the link_ingest fuzz target: signing a vehicle heard in MAVLink 1 panicked.
        let msg = MavMessage::SETUP_SIGNING(apm::SETUP_SIGNING_DATA {
            target_system: 1,
            target_component: 1,
            ..Default::default()
        });
        let frame = Frame::encode(Version::V1, 245, 190, 0, &msg);
        assert_eq!(frame.version(), Version::V2);
        assert_eq!(frame.message_id(), 256);
        assert!(matches!(frame.decode(), Some(MavMessage::SETUP_SIGNING(_))));
        assert_eq!(heartbeat(1, 0, Version::V1).version(), Version::V1);
    }

    fn command_long(target_sys: u8, target_comp: u8) -> Frame {
        let msg = MavMessage::COMMAND_LONG(apm::COMMAND_LONG_DATA {
            target_system: target_sys,
            target_component: target_comp,
            command: apm::MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            param1: 1.0,
            ..Default::default()
        });
        Frame::encode(Version::V2, 255, 190, 0, &msg)
    }

    #[test]
    fn header_fields_read_back_for_both_versions() {
        for version in [Version::V1, Version::V2] {
            let f = heartbeat(42, 7, version);
            assert_eq!(f.version(), version);
            assert_eq!(f.system_id(), 42);
            assert_eq!(f.component_id(), 1);
            assert_eq!(f.sequence(), 7);
            assert_eq!(f.message_id(), 0);
            assert!(matches!(f.decode(), Some(MavMessage::HEARTBEAT(_))));
            assert_eq!(Frame::parse(f.as_bytes()), Some(f));
        }
    }

    #[test]
    fn target_is_read_without_decoding() {
        assert_eq!(command_long(3, 1).target(), Some((3, 1)));
        assert_eq!(command_long(0, 0).target(), Some((0, 0)));
        assert_eq!(heartbeat(1, 0, Version::V2).target(), None);
    }

    #[test]
    fn frames_are_found_between_garbage_and_counted() {
        let good = heartbeat(1, 0, Version::V2);
        let mut corrupt = heartbeat(2, 1, Version::V2).as_bytes().to_vec();
        corrupt[12] ^= 0xFF;
        let mut s = FrameScanner::new();
        s.push(&[0x00, 0x13, 0x37]);
        s.push(good.as_bytes());
        s.push(&corrupt);
        s.push(good.as_bytes());
        let mut frames = Vec::new();
        while let Some(f) = s.next_frame() {
            frames.push(f);
        }
        assert_eq!(frames, vec![good.clone(), good]);
        let e = s.take_errors();
        assert_eq!(e.crc_errors, 1);
        assert!(e.bad_bytes >= 3, "{e:?}");
    }

    #[test]
    fn a_frame_split_across_reads_is_reassembled() {
        let f = command_long(1, 1);
        let (a, b) = f.as_bytes().split_at(7);
        let mut s = FrameScanner::new();
        s.push(a);
        assert!(s.next_frame().is_none());
        s.push(b);
        assert_eq!(s.next_frame(), Some(f));
        assert_eq!(s.take_errors(), ScanErrors::default());
    }

    #[test]
    fn truncated_datagram_is_counted() {
        let f = heartbeat(1, 0, Version::V1);
        let mut s = FrameScanner::new();
        s.push(&f.as_bytes()[..f.len() - 3]);
        assert!(s.next_frame().is_none());
        s.end_datagram();
        assert_eq!(s.take_errors().truncated, 1);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn unknown_message_ids_pass_through() {
        // A v2 frame with message id 0xABCDE, which no dialect of ours defines.
        let payload = [1u8, 2, 3, 4];
        let mut bytes = vec![STX_V2, payload.len() as u8, 0, 0, 9, 7, 1, 0xDE, 0xBC, 0x0A];
        bytes.extend_from_slice(&payload);
        let crc = mavlink::calculate_crc(&bytes[1..], 0);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let mut s = FrameScanner::new();
        s.push(&bytes);
        let f = s.next_frame().expect("unknown id frame is kept");
        assert_eq!(f.message_id(), 0xABCDE);
        assert_eq!(f.payload(), &payload);
    }

    #[test]
    fn a_stray_marker_cannot_swallow_a_good_frame() {
        // 0xFD then a length of 200 and an unknown id: if believed, it would eat the heartbeat.
        let good = heartbeat(1, 0, Version::V2);
        let mut s = FrameScanner::new();
        s.push(&[STX_V2, 200, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
        s.push(good.as_bytes());
        s.push(&[0u8; 200]);
        assert_eq!(s.next_frame(), Some(good));
    }

    #[test]
    fn a_stray_marker_at_the_end_does_not_hold_back_a_frame() {
        let good = heartbeat(1, 0, Version::V2);
        let mut s = FrameScanner::new();
        s.push(&[STX_V1, 250, 1, 2, 3]);
        s.push(good.as_bytes());
        assert_eq!(s.next_frame(), Some(good));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut s = FrameScanner::new();
        for _ in 0..2_000 {
            let mut chunk = [0u8; 64];
            for b in &mut chunk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
                if x.is_multiple_of(17) {
                    *b = STX_V2;
                }
            }
            s.push(&chunk);
            while s.next_frame().is_some() {}
        }
        assert!(s.pending() < 300);
    }
}
