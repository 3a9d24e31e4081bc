//! What the daemon knows about message definitions, computed once from the `mavlink` crate's
//! ardupilotmega dialect (a superset of common).
//!
//! Two facts per message id are needed on the hot path, without decoding the payload:
//! the CRC_EXTRA byte that validates a frame, and where `target_system`/`target_component` sit
//! in the payload so the router can address a frame. The crate does not publish field offsets,
//! so they are found by serialising each targeted message twice with different target values
//! and seeing which payload byte changed: the crate's own wire layout is the source of truth.

use std::sync::OnceLock;

use mavlink::{MavlinkVersion, Message};

pub use mavlink::dialects::ardupilotmega::MavMessage;

/// Highest message id the table covers; ardupilotmega's largest is in the 50,000s.
const MAX_ID: usize = 65_535;

/// Byte offsets of the addressing fields inside a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetOffsets {
    pub system: u8,
    pub component: Option<u8>,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    known: bool,
    extra_crc: u8,
    target: Option<TargetOffsets>,
}

fn table() -> &'static [Entry] {
    static TABLE: OnceLock<Vec<Entry>> = OnceLock::new();
    TABLE.get_or_init(build)
}

fn build() -> Vec<Entry> {
    let mut table = vec![Entry::default(); MAX_ID + 1];
    for (id, entry) in table.iter_mut().enumerate() {
        let id = id as u32;
        let Some(message) = MavMessage::default_message_from_id(id) else {
            continue;
        };
        *entry = Entry {
            known: true,
            extra_crc: MavMessage::extra_crc(id),
            target: find_target_offsets(message),
        };
    }
    table
}

fn find_target_offsets(message: MavMessage) -> Option<TargetOffsets> {
    message.target_system_id()?;
    let system = changed_byte(&message, |m, v| {
        if let Some(t) = m.target_system_id_mut() {
            *t = v
        }
    })?;
    let component = match message.target_component_id() {
        Some(_) => changed_byte(&message, |m, v| {
            if let Some(t) = m.target_component_id_mut() {
                *t = v
            }
        }),
        None => None,
    };
    Some(TargetOffsets { system, component })
}

/// Serialises `message` with a field set to 0x55 and then 0xAA and returns the one payload
/// offset that differs.
fn changed_byte(message: &MavMessage, set: impl Fn(&mut MavMessage, u8)) -> Option<u8> {
    let encode = |value: u8| {
        let mut m = message.clone();
        set(&mut m, value);
        let mut buf = [0u8; 255];
        // V1 never trims the payload, so every field is at its full-layout offset.
        let n = m.ser(MavlinkVersion::V1, &mut buf);
        (buf, n)
    };
    let (a, n) = encode(0x55);
    let (b, _) = encode(0xAA);
    let mut diffs = (0..n).filter(|&i| a[i] != b[i]);
    let first = diffs.next()?;
    diffs.next().is_none().then(|| u8::try_from(first).ok())?
}

fn entry(id: u32) -> Option<&'static Entry> {
    table().get(id as usize).filter(|e| e.known)
}

/// The CRC_EXTRA byte of a message id, or `None` if the dialect does not define it.
pub fn extra_crc(id: u32) -> Option<u8> {
    entry(id).map(|e| e.extra_crc)
}

/// Where the addressing fields of a message id are, if it has any.
pub fn target_offsets(id: u32) -> Option<TargetOffsets> {
    entry(id).and_then(|e| e.target)
}

/// Builds the table now rather than on the first frame (it takes a few milliseconds).
pub fn warm_up() {
    table();
}

/// Message ids a slow link may coalesce to the latest copy: periodic telemetry. Everything
/// else (commands, acks, missions, parameters, text, files, logs) is delivered in full.
pub fn is_coalescable(id: u32) -> bool {
    !matches!(
        id,
        11 // SET_MODE
        | 20..=23 // PARAM_REQUEST_READ, PARAM_REQUEST_LIST, PARAM_VALUE, PARAM_SET
        | 37..=51 // MISSION_* (write partial list .. request int)
        | 66 // REQUEST_DATA_STREAM
        | 73 // MISSION_ITEM_INT
        | 75..=77 // COMMAND_INT, COMMAND_LONG, COMMAND_ACK
        | 110 // FILE_TRANSFER_PROTOCOL
        | 117..=122 // LOG_*
        | 126 // SERIAL_CONTROL
        | 148 // AUTOPILOT_VERSION
        | 253 // STATUSTEXT
        | 256 // SETUP_SIGNING
        | 320..=324 // PARAM_EXT_*
        | 385 // TUNNEL
        | 410..=413 // EVENT, CURRENT_EVENT_SEQUENCE, REQUEST_EVENT, RESPONSE_EVENT_ERROR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_have_crc_extra() {
        assert_eq!(extra_crc(0), Some(50)); // HEARTBEAT
        assert_eq!(extra_crc(33), Some(104)); // GLOBAL_POSITION_INT
        assert_eq!(extra_crc(76), Some(152)); // COMMAND_LONG
        assert_eq!(extra_crc(0xABCDE), None);
        assert_eq!(extra_crc(u32::MAX), None);
    }

    #[test]
    fn target_offsets_match_the_wire_layout() {
        // COMMAND_LONG: 7 floats, command u16, then target_system, target_component.
        assert_eq!(
            target_offsets(76),
            Some(TargetOffsets {
                system: 30,
                component: Some(31)
            })
        );
        // MISSION_COUNT: count u16, target_system, target_component.
        assert_eq!(
            target_offsets(44),
            Some(TargetOffsets {
                system: 2,
                component: Some(3)
            })
        );
        assert_eq!(target_offsets(0), None); // HEARTBEAT is never addressed
    }

    #[test]
    fn commands_are_never_coalesced() {
        assert!(!is_coalescable(76));
        assert!(!is_coalescable(77));
        assert!(!is_coalescable(73));
        assert!(is_coalescable(33));
        assert!(is_coalescable(0));
    }
}
