//! Orgs, their edges, and each edge's durable marks and recorded gaps, in SQLite.

use rusqlite::{params, Connection, OptionalExtension};
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::stream::Stream;

use crate::store::{EdgeStatus, StoreError};

pub(super) fn acked_in(conn: &Connection, edge_id: i64, stream: Stream) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT acked_seq FROM stream_cursors WHERE edge_id = ?1 AND stream = ?2")?
        .query_row(params![edge_id, stream.name()], |r| r.get::<_, i64>(0))
        .optional()
        .map(|v| v.unwrap_or(0) as u64)
}

/// The numeric id of an enrolled edge (0 if it was never enrolled: no rows refer to it).
pub(super) fn edge_id(conn: &Connection, edge: &EdgeIdentity) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT id FROM edges WHERE org = ?1 AND edge = ?2")?
        .query_row(params![edge.org, edge.edge], |r| r.get(0))
        .optional()
        .map(|id| id.unwrap_or(0))
}

pub(super) fn create_org(conn: &Connection, org: &str) -> Result<(), StoreError> {
    let n = conn.execute(
        "INSERT INTO orgs (org, created_us) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![org, crate::now_us()],
    )?;
    if n == 0 {
        return Err(StoreError::OrgExists(org.to_string()));
    }
    Ok(())
}

pub(super) fn orgs(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT org FROM orgs ORDER BY org")?;
    let orgs = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(orgs)
}

pub(super) fn enroll(conn: &Connection, edge: &EdgeIdentity) -> Result<(), StoreError> {
    let exists: Option<String> = conn
        .query_row("SELECT org FROM orgs WHERE org = ?1", [&edge.org], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::NoSuchOrg(edge.org.clone()));
    }
    // Re-enrolling a revoked edge issues a new certificate and makes it active again.
    conn.execute(
        "INSERT INTO edges (org, edge, enrolled_us, revoked_us) VALUES (?1, ?2, ?3, NULL)
         ON CONFLICT (org, edge) DO UPDATE SET enrolled_us = excluded.enrolled_us,
            revoked_us = NULL",
        params![edge.org, edge.edge, crate::now_us()],
    )?;
    Ok(())
}

/// Returns whether the edge was active.
pub(super) fn revoke(conn: &Connection, edge: &EdgeIdentity) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE edges SET revoked_us = ?3 WHERE org = ?1 AND edge = ?2 AND revoked_us IS NULL",
        params![edge.org, edge.edge, crate::now_us()],
    )?;
    Ok(n > 0)
}

pub(super) fn status(conn: &Connection, edge: &EdgeIdentity) -> Result<EdgeStatus, StoreError> {
    // Every open session asks once a second: keep the statement prepared.
    let revoked: Option<Option<i64>> = conn
        .prepare_cached("SELECT revoked_us FROM edges WHERE org = ?1 AND edge = ?2")?
        .query_row(params![edge.org, edge.edge], |r| r.get(0))
        .optional()?;
    Ok(match revoked {
        None => EdgeStatus::Unknown,
        Some(None) => EdgeStatus::Active,
        Some(Some(_)) => EdgeStatus::Revoked,
    })
}

pub(super) fn record_gap(
    conn: &Connection,
    edge: &EdgeIdentity,
    stream: Stream,
    from: u64,
    to: u64,
) -> Result<(), StoreError> {
    let id = edge_id(conn, edge)?;
    conn.execute(
        "INSERT INTO gaps (edge_id, stream, from_seq, to_seq, noted_us)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, stream.name(), from as i64, to as i64, crate::now_us()],
    )?;
    Ok(())
}
