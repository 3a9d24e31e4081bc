//! Editable records at the station: the SQL form of `sync_protocol::records::Replica`,
//! which the test below checks it against. The writer thread calls these inside its
//! transaction; readers list records for the API and find this station's own edits for
//! sync to send.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use sync_protocol::hlc::{Hlc, Timestamp};
use sync_protocol::records::FieldChange;

/// How far ahead of this station's clock a remote timestamp may be before the clock refuses
/// to follow it (the change itself still merges, so both sides converge).
const MAX_DRIFT_US: u64 = 5 * 60 * 1_000_000;

/// This station's HLC node id, created once and kept in `meta` (below 2^63, like
/// `sync_protocol::records::node_id`).
pub(super) fn clock(conn: &Connection) -> rusqlite::Result<Hlc> {
    let node: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'node_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let node = match node {
        Some(n) => n as u64,
        None => {
            let mut bytes = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| rusqlite::Error::InvalidQuery)?;
            let n = u64::from_be_bytes(bytes) >> 1;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('node_id', ?1)",
                [n as i64],
            )?;
            n
        }
    };
    Ok(Hlc::new(node, MAX_DRIFT_US))
}

/// Merges one change, giving it sequence `seq` if it wins; returns whether it did. A
/// registry rename that wins also renames the vehicle itself, and is returned so the
/// running fleet can follow.
pub(super) fn apply(
    conn: &Connection,
    c: &FieldChange,
    seq: i64,
    renames: &mut Vec<(u8, String)>,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO records (tbl, key, field, value, wall_us, logical, node, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (tbl, key, field) DO UPDATE SET
                value = excluded.value, wall_us = excluded.wall_us,
                logical = excluded.logical, node = excluded.node, seq = excluded.seq
             WHERE (excluded.wall_us, excluded.logical, excluded.node)
                 > (records.wall_us, records.logical, records.node)",
        )?
        .execute(params![
            c.table,
            c.key,
            c.field,
            c.value,
            c.hlc.wall_us as i64,
            c.hlc.logical,
            c.hlc.node as i64,
            seq
        ])?;
    if n == 0 {
        return Ok(false);
    }
    if c.table == "vehicles" && c.field == "name" {
        if let (Some(uid), Ok(serde_json::Value::String(name))) = (
            c.key.strip_prefix("uid:"),
            serde_json::from_str::<serde_json::Value>(&c.value),
        ) {
            let mut stmt = conn
                .prepare_cached("UPDATE vehicles SET name = ?2 WHERE uid = ?1 RETURNING sysid")?;
            let sysids = stmt.query_map(params![uid, name], |r| r.get::<_, u8>(0))?;
            for sysid in sysids {
                renames.push((sysid?, name.clone()));
            }
        }
    }
    Ok(true)
}

/// This station's own edits after `after`, in the order it made them.
pub(super) fn own_since(
    conn: &Connection,
    node: u64,
    after: u64,
    limit: u32,
) -> rusqlite::Result<Vec<(u64, FieldChange)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, tbl, key, field, value, wall_us, logical, node FROM records
         WHERE node = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![node as i64, after as i64, limit], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            FieldChange {
                table: r.get(1)?,
                key: r.get(2)?,
                field: r.get(3)?,
                value: r.get(4)?,
                hlc: Timestamp {
                    wall_us: r.get::<_, i64>(5)? as u64,
                    logical: r.get(6)?,
                    node: r.get::<_, i64>(7)? as u64,
                },
            },
        ))
    })?;
    rows.collect()
}

type Fields = BTreeMap<String, serde_json::Value>;

/// Every record of `table`: key → field → JSON value.
pub(super) fn table(conn: &Connection, table: &str) -> rusqlite::Result<Vec<(String, Fields)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, field, value FROM records WHERE tbl = ?1 ORDER BY key, field",
    )?;
    let rows = stmt.query_map([table], key_field_value)?;
    grouped(rows)
}

/// Up to `limit` records of `table` whose keys sort after `after` (every key does after
/// the empty string), in key order: one page of a list, read through the primary key.
pub(super) fn page(
    conn: &Connection,
    table: &str,
    after: &str,
    limit: u32,
) -> rusqlite::Result<Vec<(String, Fields)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, field, value FROM records
         WHERE tbl = ?1 AND key IN (
             SELECT DISTINCT key FROM records WHERE tbl = ?1 AND key > ?2 ORDER BY key LIMIT ?3)
         ORDER BY key, field",
    )?;
    let rows = stmt.query_map(rusqlite::params![table, after, limit], key_field_value)?;
    grouped(rows)
}

fn key_field_value(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// Rows of (key, field, value) in key order, as one map of fields per key.
fn grouped(
    rows: impl Iterator<Item = rusqlite::Result<(String, String, String)>>,
) -> rusqlite::Result<Vec<(String, Fields)>> {
    let mut out: Vec<(String, Fields)> = Vec::new();
    for row in rows {
        let (key, field, value) = row?;
        let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::Null);
        match out.last_mut() {
            Some((k, fields)) if *k == key => {
                fields.insert(field, value);
            }
            _ => out.push((key, BTreeMap::from([(field, value)]))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sync_protocol::records::Replica;

    proptest! {
        /// The station's SQL merge keeps exactly what the protocol's model keeps.
        #[test]
        fn sql_merge_equals_the_model(
            changes in prop::collection::vec((0..3u8, 0..2u8, any::<u16>(), 0..4u8, 0..3u8, 0..255u8), 1..60),
        ) {
            let mut conn = Connection::open_in_memory().unwrap();
            crate::store::schema::migrate(&mut conn).unwrap();
            let mut model = Replica::default();
            let mut renames = Vec::new();
            for (i, (k, f, v, w, l, n)) in changes.into_iter().enumerate() {
                let c = FieldChange {
                    table: "fields".into(),
                    key: format!("k{k}"),
                    field: format!("f{f}"),
                    value: v.to_string(),
                    hlc: Timestamp { wall_us: u64::from(w), logical: u32::from(l), node: u64::from(n) << 55 },
                };
                prop_assert_eq!(model.apply(&c), apply(&conn, &c, i as i64 + 1, &mut renames).unwrap());
            }
            for (key, fields) in table(&conn, "fields").unwrap() {
                for (field, value) in fields {
                    let text = value.to_string();
                    prop_assert_eq!(model.get("fields", &key, &field), Some(text.as_str()));
                }
            }
        }
    }
}
