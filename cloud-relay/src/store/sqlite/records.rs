//! Editable records in SQLite: one row per field, replaced only by a write with a larger
//! HLC timestamp — the SQL form of `sync_protocol::records::Replica::apply`, which the test
//! below checks it against.

use rusqlite::{params, Connection};
use sync_protocol::hlc::Timestamp;
use sync_protocol::records::FieldChange;
use sync_protocol::stream::Stream;

use crate::store::{Record, StoreError};

pub(super) const SCHEMA: &str = "
-- `rev` orders the org's changes as the relay applied them: an edge's downsync cursor.
-- `node` is below 2^63 (see sync_protocol::records::node_id), so the signed comparison
-- below orders exactly like the protocol's timestamps.
CREATE TABLE IF NOT EXISTS records (
    org     TEXT NOT NULL REFERENCES orgs (org),
    tbl     TEXT NOT NULL,
    key     TEXT NOT NULL,
    field   TEXT NOT NULL,
    value   TEXT NOT NULL,
    wall_us INTEGER NOT NULL,
    logical INTEGER NOT NULL,
    node    INTEGER NOT NULL,
    rev     INTEGER NOT NULL,
    PRIMARY KEY (org, tbl, key, field)
);
CREATE INDEX IF NOT EXISTS records_by_rev ON records (org, rev);
";

/// Applies `changes` in one transaction the caller commits; returns how many won.
pub(super) fn apply(
    conn: &Connection,
    org: &str,
    changes: &[FieldChange],
) -> rusqlite::Result<usize> {
    let mut rev: i64 = conn
        .prepare_cached("SELECT coalesce(max(rev), 0) FROM records WHERE org = ?1")?
        .query_row([org], |r| r.get(0))?;
    let mut won = 0;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO records (org, tbl, key, field, value, wall_us, logical, node, rev)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (org, tbl, key, field) DO UPDATE SET
            value = excluded.value, wall_us = excluded.wall_us, logical = excluded.logical,
            node = excluded.node, rev = excluded.rev
         WHERE (excluded.wall_us, excluded.logical, excluded.node)
             > (records.wall_us, records.logical, records.node)",
    )?;
    for c in changes {
        let n = upsert.execute(params![
            org,
            c.table,
            c.key,
            c.field,
            c.value,
            c.hlc.wall_us as i64,
            c.hlc.logical,
            c.hlc.node as i64,
            rev + 1
        ])?;
        if n > 0 {
            rev += 1;
            won += 1;
        }
    }
    Ok(won)
}

pub(super) fn since(
    conn: &Connection,
    org: &str,
    after: u64,
    limit: u32,
) -> rusqlite::Result<Vec<(u64, FieldChange)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT rev, tbl, key, field, value, wall_us, logical, node FROM records
         WHERE org = ?1 AND rev > ?2 ORDER BY rev LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![org, after as i64, limit], |r| {
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

pub(super) fn table(conn: &Connection, org: &str, table: &str) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, field, value FROM records WHERE org = ?1 AND tbl = ?2 ORDER BY key, field",
    )?;
    let rows = stmt.query_map(params![org, table], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(Record::from_fields(rows.collect::<Result<Vec<_>, _>>()?))
}

pub(super) fn advance(
    conn: &Connection,
    edge_id: i64,
    stream: Stream,
    seq: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO stream_cursors (edge_id, stream, acked_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (edge_id, stream) DO UPDATE SET
            acked_seq = max(acked_seq, excluded.acked_seq)",
        params![edge_id, stream.name(), seq as i64],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::RelayStore;
    use proptest::prelude::*;
    use sync_protocol::hlc::Timestamp;
    use sync_protocol::records::{FieldChange, Replica};

    fn change(key: u8, field: u8, value: u16, wall: u8, logical: u8, node: u8) -> FieldChange {
        FieldChange {
            table: "fields".into(),
            key: format!("k{key}"),
            field: format!("f{field}"),
            value: value.to_string(),
            hlc: Timestamp {
                wall_us: u64::from(wall),
                logical: u32::from(logical),
                // Both halves of the node range, to catch a signed comparison.
                node: u64::from(node) << 55,
            },
        }
    }

    proptest! {
        /// The SQL upsert keeps exactly what the protocol's model keeps, for any sequence of
        /// changes (small domains make equal walls, counters and conflicts common).
        #[test]
        fn sql_merge_equals_the_model(
            changes in prop::collection::vec((0..3u8, 0..2u8, any::<u16>(), 0..4u8, 0..3u8, 0..255u8), 1..60),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
            store.create_org("o").unwrap();
            let mut model = Replica::default();
            for (k, f, v, w, l, n) in changes {
                let c = change(k, f, v, w, l, n);
                let won_model = model.apply(&c);
                let won_sql = store.apply_changes("o", std::slice::from_ref(&c)).unwrap() == 1;
                prop_assert_eq!(won_model, won_sql, "{:?}", c);
            }
            for r in store.records("o", "fields").unwrap() {
                for (field, value) in &r.fields {
                    let text = value.to_string();
                    prop_assert_eq!(model.get("fields", &r.key, field), Some(text.as_str()));
                }
            }
            // Revisions replay the current state in the order it was reached.
            let since = store.changes_since("o", 0, 1000).unwrap();
            prop_assert!(since.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
