//! Editable records (the fleet registry, fields, geofences, mission proposals) and the one
//! rule that merges edits made on both sides while they could not talk: per field, the
//! write with the larger HLC timestamp wins.
//!
//! A record is `(table, key)`; each field of it is a JSON value with the timestamp of the
//! write that set it. Applying a change keeps whichever of the two timestamps is larger, so
//! applying the same set of changes in any order, any number of times, gives the same
//! state: edge and relay converge whatever the network did. [`Replica`] is that rule in
//! memory; the edge's and the relay's SQL stores implement the same comparison
//! (`(wall_us, logical, node) > stored`) and are tested against it.

use std::collections::BTreeMap;

use crate::hlc::Timestamp;
use crate::proto;

/// One field of one record, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub table: String,
    pub key: String,
    pub field: String,
    /// The value as JSON text.
    pub value: String,
    pub hlc: Timestamp,
}

/// The tables downsync carries; anything else is refused as a protocol error.
pub const TABLES: [&str; 5] = ["vehicles", "fields", "geofences", "proposals", "missions"];

/// Bounds a hostile or broken peer cannot push past.
pub const MAX_KEY: usize = 200;
pub const MAX_VALUE: usize = 256 << 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown table {0:?}")]
    Table(String),
    #[error("key or field name empty or over {MAX_KEY} bytes")]
    Name,
    #[error("value over {MAX_VALUE} bytes")]
    TooLarge,
    #[error("value is not JSON: {0}")]
    NotJson(String),
    #[error("change without a timestamp")]
    NoTimestamp,
    #[error("no fields to set")]
    NoFields,
}

/// Checks an edit made through an API (a record key and fields with JSON values) against
/// the limits a peer enforces on the wire, and returns each field with its value as JSON
/// text, ready to be stamped and merged.
pub fn edit_fields(
    key: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, RecordError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(RecordError::Name);
    }
    if fields.is_empty() {
        return Err(RecordError::NoFields);
    }
    fields
        .into_iter()
        .map(|(field, value)| {
            let value = value.to_string();
            if field.is_empty() || field.len() > MAX_KEY {
                Err(RecordError::Name)
            } else if value.len() > MAX_VALUE {
                Err(RecordError::TooLarge)
            } else {
                Ok((field, value))
            }
        })
        .collect()
}

impl FieldChange {
    /// Checks a change from the wire; `seq` is the sender's sequence for acknowledgement.
    pub fn from_proto(c: &proto::Change) -> Result<(u64, FieldChange), RecordError> {
        if !TABLES.contains(&c.table.as_str()) {
            return Err(RecordError::Table(c.table.clone()));
        }
        for name in [&c.key, &c.field] {
            if name.is_empty() || name.len() > MAX_KEY {
                return Err(RecordError::Name);
            }
        }
        if c.value.len() > MAX_VALUE {
            return Err(RecordError::TooLarge);
        }
        let value =
            String::from_utf8(c.value.clone()).map_err(|e| RecordError::NotJson(e.to_string()))?;
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&value) {
            return Err(RecordError::NotJson(e.to_string()));
        }
        let hlc = c.hlc.as_ref().ok_or(RecordError::NoTimestamp)?;
        Ok((
            c.seq,
            FieldChange {
                table: c.table.clone(),
                key: c.key.clone(),
                field: c.field.clone(),
                value,
                hlc: Timestamp {
                    wall_us: hlc.wall_us,
                    logical: hlc.logical,
                    node: hlc.node,
                },
            },
        ))
    }

    pub fn to_proto(&self, seq: u64) -> proto::Change {
        proto::Change {
            seq,
            table: self.table.clone(),
            key: self.key.clone(),
            field: self.field.clone(),
            value: self.value.clone().into_bytes(),
            hlc: Some(proto::Hlc {
                wall_us: self.hlc.wall_us,
                logical: self.hlc.logical,
                node: self.hlc.node,
            }),
        }
    }
}

/// A node id for HLC timestamps, stable for a name ("org/edge", "relay/org"). Below 2^63,
/// so SQL stores can keep it in a signed 64-bit column and still compare it in the same
/// order as [`Timestamp`] does.
pub fn node_id(name: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(id) >> 1
}

/// Records in memory under the merge rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replica {
    fields: BTreeMap<(String, String, String), (Timestamp, String)>,
}

impl Replica {
    /// Applies `c` if it is newer than what the field holds; returns whether it was.
    pub fn apply(&mut self, c: &FieldChange) -> bool {
        let slot = (c.table.clone(), c.key.clone(), c.field.clone());
        match self.fields.get(&slot) {
            Some((hlc, _)) if *hlc >= c.hlc => false,
            _ => {
                self.fields.insert(slot, (c.hlc, c.value.clone()));
                true
            }
        }
    }

    pub fn get(&self, table: &str, key: &str, field: &str) -> Option<&str> {
        self.fields
            .get(&(table.into(), key.into(), field.into()))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use proptest::prelude::*;

    /// One step of a run: a side edits a field while offline, or a change travels.
    #[derive(Debug, Clone)]
    enum Step {
        Edit {
            side: usize,
            key: u8,
            field: u8,
            value: u16,
            advance_us: u16,
        },
        Deliver {
            from: usize,
            to: usize,
            pick: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize, 0..3u8, 0..3u8, any::<u16>(), 0..3u16).prop_map(
                |(side, key, field, value, advance_us)| Step::Edit {
                    side,
                    key,
                    field,
                    value,
                    advance_us,
                }
            ),
            (0..3usize, 0..3usize, any::<usize>()).prop_map(|(from, to, pick)| Step::Deliver {
                from,
                to,
                pick
            }),
        ]
    }

    proptest! {
        /// Three replicas (two edges and the relay; the clocks tick slowly so equal wall
        /// times and logical counters are common) edit offline and exchange changes in any
        /// order, with duplicates; once everything has reached everyone, all agree.
        #[test]
        fn any_interleaving_of_offline_edits_converges(steps in prop::collection::vec(step(), 1..120)) {
            let mut clocks: Vec<Hlc> = (0..3).map(|n| Hlc::new(node_id(&format!("n{n}")), u64::MAX)).collect();
            let mut physical = [1_000u64; 3];
            let mut replicas = vec![Replica::default(); 3];
            // Everything each side has applied, in the order it did: what it would forward.
            let mut logs: Vec<Vec<FieldChange>> = vec![Vec::new(); 3];
            for s in &steps {
                match *s {
                    Step::Edit { side, key, field, value, advance_us } => {
                        physical[side] += u64::from(advance_us);
                        let hlc = clocks[side].now(physical[side]).unwrap();
                        let c = FieldChange {
                            table: "fields".into(),
                            key: format!("block-{key}"),
                            field: format!("f{field}"),
                            value: value.to_string(),
                            hlc,
                        };
                        replicas[side].apply(&c);
                        logs[side].push(c);
                    }
                    Step::Deliver { from, to, pick } => {
                        if from == to || logs[from].is_empty() {
                            continue;
                        }
                        let c = logs[from][pick % logs[from].len()].clone();
                        clocks[to].observe(c.hlc, physical[to]).unwrap();
                        if replicas[to].apply(&c) {
                            logs[to].push(c);
                        }
                    }
                }
            }
            // The network heals: every change reaches every replica, newest first (the
            // worst order for a naive "last applied wins").
            let mut all: Vec<FieldChange> = logs.concat();
            all.sort_by_key(|c| std::cmp::Reverse(c.hlc));
            for r in &mut replicas {
                for c in &all {
                    r.apply(c);
                }
            }
            prop_assert_eq!(&replicas[0], &replicas[1]);
            prop_assert_eq!(&replicas[1], &replicas[2]);
        }
    }

    #[test]
    fn an_edit_is_checked_against_the_wire_limits() {
        let fields = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert_eq!(
            edit_fields("block-7", fields(serde_json::json!({ "rows": 40 }))),
            Ok(vec![("rows".to_string(), "40".to_string())])
        );
        assert_eq!(
            edit_fields("", fields(serde_json::json!({ "a": 1 }))),
            Err(RecordError::Name)
        );
        assert_eq!(
            edit_fields("k", fields(serde_json::json!({}))),
            Err(RecordError::NoFields)
        );
        let huge = "x".repeat(MAX_VALUE);
        assert_eq!(
            edit_fields("k", fields(serde_json::json!({ "a": huge }))),
            Err(RecordError::TooLarge)
        );
    }

    #[test]
    fn a_change_from_the_wire_is_checked() {
        let good = FieldChange {
            table: "fields".into(),
            key: "block-7".into(),
            field: "name".into(),
            value: "\"Block 7\"".into(),
            hlc: Timestamp {
                wall_us: 5,
                logical: 0,
                node: 1,
            },
        };
        let wire = good.to_proto(9);
        assert_eq!(FieldChange::from_proto(&wire), Ok((9, good.clone())));
        let mut bad = wire.clone();
        bad.table = "edges".into();
        assert!(matches!(
            FieldChange::from_proto(&bad),
            Err(RecordError::Table(_))
        ));
        let mut bad = wire.clone();
        bad.value = b"not json".to_vec();
        assert!(matches!(
            FieldChange::from_proto(&bad),
            Err(RecordError::NotJson(_))
        ));
        let mut bad = wire;
        bad.hlc = None;
        assert_eq!(FieldChange::from_proto(&bad), Err(RecordError::NoTimestamp));
    }
}
