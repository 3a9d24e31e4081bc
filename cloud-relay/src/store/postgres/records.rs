//! Editable records in PostgreSQL: one row per field, replaced only by a write with a larger
//! HLC timestamp (the rule of `sync_protocol::records`, as in `store/sqlite/records.rs`).

use postgres::{Client, GenericClient};
use sync_protocol::hlc::Timestamp;
use sync_protocol::records::FieldChange;

use crate::store::{Record, StoreError};

/// Applies `changes` in one transaction; returns how many won.
pub(super) fn apply(
    client: &mut Client,
    org: &str,
    changes: &[FieldChange],
) -> Result<usize, StoreError> {
    let mut tx = client.transaction()?;
    // Revisions are numbered per org in commit order: one writer of an org's records at a
    // time, across relay instances.
    if tx
        .query_opt("SELECT 1 FROM orgs WHERE org = $1 FOR UPDATE", &[&org])?
        .is_none()
    {
        return Err(StoreError::NoSuchOrg(org.to_string()));
    }
    let mut rev: i64 = tx
        .query_one(
            "SELECT coalesce(max(rev), 0)::BIGINT FROM records WHERE org = $1",
            &[&org],
        )?
        .get(0);
    let upsert = tx.prepare(
        "INSERT INTO records (org, tbl, key, field, value, wall_us, logical, node, rev)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (org, tbl, key, field) DO UPDATE SET
            value = excluded.value, wall_us = excluded.wall_us, logical = excluded.logical,
            node = excluded.node, rev = excluded.rev
         WHERE (excluded.wall_us, excluded.logical, excluded.node)
             > (records.wall_us, records.logical, records.node)",
    )?;
    let mut won = 0;
    for c in changes {
        let n = tx.execute(
            &upsert,
            &[
                &org,
                &c.table,
                &c.key,
                &c.field,
                &c.value,
                &(c.hlc.wall_us as i64),
                &i64::from(c.hlc.logical),
                &(c.hlc.node as i64),
                &(rev + 1),
            ],
        )?;
        if n > 0 {
            rev += 1;
            won += 1;
        }
    }
    tx.commit()?;
    Ok(won)
}

pub(super) fn since(
    c: &mut impl GenericClient,
    org: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<(u64, FieldChange)>, StoreError> {
    let rows = c.query(
        "SELECT rev, tbl, key, field, value, wall_us, logical, node FROM records
         WHERE org = $1 AND rev > $2 ORDER BY rev LIMIT $3",
        &[&org, &(after as i64), &i64::from(limit)],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0) as u64,
                FieldChange {
                    table: r.get(1),
                    key: r.get(2),
                    field: r.get(3),
                    value: r.get(4),
                    hlc: Timestamp {
                        wall_us: r.get::<_, i64>(5) as u64,
                        logical: r.get::<_, i64>(6) as u32,
                        node: r.get::<_, i64>(7) as u64,
                    },
                },
            )
        })
        .collect())
}

pub(super) fn table(
    c: &mut impl GenericClient,
    org: &str,
    table: &str,
) -> Result<Vec<Record>, StoreError> {
    let rows = c.query(
        "SELECT key, field, value FROM records WHERE org = $1 AND tbl = $2 ORDER BY key, field",
        &[&org, &table],
    )?;
    Ok(Record::from_fields(
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))),
    ))
}
