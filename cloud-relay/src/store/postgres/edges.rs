//! Orgs, their edges, and each edge's durable marks and recorded gaps, in PostgreSQL.

use postgres::GenericClient;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::stream::Stream;

use crate::store::{EdgeStatus, StoreError};

/// The edge's durable mark of `stream`, locked until the transaction ends when `lock`: the
/// check-then-write of a batch must not interleave with another relay instance's.
pub(super) fn acked_in(
    c: &mut impl GenericClient,
    edge_id: i64,
    stream: Stream,
    lock: bool,
) -> Result<u64, StoreError> {
    if lock {
        c.execute(
            "INSERT INTO stream_cursors (edge_id, stream, acked_seq) VALUES ($1, $2, 0)
             ON CONFLICT DO NOTHING",
            &[&edge_id, &stream.name()],
        )?;
    }
    let sql = if lock {
        "SELECT acked_seq FROM stream_cursors WHERE edge_id = $1 AND stream = $2 FOR UPDATE"
    } else {
        "SELECT acked_seq FROM stream_cursors WHERE edge_id = $1 AND stream = $2"
    };
    Ok(c.query_opt(sql, &[&edge_id, &stream.name()])?
        .map_or(0, |r| r.get::<_, i64>(0) as u64))
}

/// Moves a mark forward (never back).
pub(super) fn advance(
    c: &mut impl GenericClient,
    edge_id: i64,
    stream: Stream,
    seq: u64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO stream_cursors (edge_id, stream, acked_seq) VALUES ($1, $2, $3)
         ON CONFLICT (edge_id, stream) DO UPDATE SET
            acked_seq = GREATEST(stream_cursors.acked_seq, excluded.acked_seq)",
        &[&edge_id, &stream.name(), &(seq as i64)],
    )?;
    Ok(())
}

/// The numeric id of an enrolled edge (0 if it was never enrolled: no rows refer to it).
pub(super) fn edge_id(c: &mut impl GenericClient, edge: &EdgeIdentity) -> Result<i64, StoreError> {
    Ok(c.query_opt(
        "SELECT id FROM edges WHERE org = $1 AND edge = $2",
        &[&edge.org, &edge.edge],
    )?
    .map_or(0, |r| r.get(0)))
}

pub(super) fn create_org(c: &mut impl GenericClient, org: &str) -> Result<(), StoreError> {
    let n = c.execute(
        "INSERT INTO orgs (org, created_us) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&org, &crate::now_us()],
    )?;
    if n == 0 {
        return Err(StoreError::OrgExists(org.to_string()));
    }
    Ok(())
}

pub(super) fn orgs(c: &mut impl GenericClient) -> Result<Vec<String>, StoreError> {
    Ok(c.query("SELECT org FROM orgs ORDER BY org", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub(super) fn enroll(c: &mut impl GenericClient, edge: &EdgeIdentity) -> Result<(), StoreError> {
    if c.query_opt("SELECT 1 FROM orgs WHERE org = $1", &[&edge.org])?
        .is_none()
    {
        return Err(StoreError::NoSuchOrg(edge.org.clone()));
    }
    // Re-enrolling a revoked edge issues a new certificate and makes it active again.
    c.execute(
        "INSERT INTO edges (org, edge, enrolled_us, revoked_us) VALUES ($1, $2, $3, NULL)
         ON CONFLICT (org, edge) DO UPDATE SET enrolled_us = excluded.enrolled_us,
            revoked_us = NULL",
        &[&edge.org, &edge.edge, &crate::now_us()],
    )?;
    Ok(())
}

pub(super) fn revoke(c: &mut impl GenericClient, edge: &EdgeIdentity) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE edges SET revoked_us = $3 WHERE org = $1 AND edge = $2 AND revoked_us IS NULL",
        &[&edge.org, &edge.edge, &crate::now_us()],
    )?;
    Ok(n > 0)
}

pub(super) fn status(
    c: &mut impl GenericClient,
    edge: &EdgeIdentity,
) -> Result<EdgeStatus, StoreError> {
    let row = c.query_opt(
        "SELECT revoked_us FROM edges WHERE org = $1 AND edge = $2",
        &[&edge.org, &edge.edge],
    )?;
    Ok(match row.map(|r| r.get::<_, Option<i64>>(0)) {
        None => EdgeStatus::Unknown,
        Some(None) => EdgeStatus::Active,
        Some(Some(_)) => EdgeStatus::Revoked,
    })
}

/// One query for all of them: a relay asks this every second about its connected edges.
pub(super) fn inactive_among(
    c: &mut impl GenericClient,
    edges: &[EdgeIdentity],
) -> Result<Vec<EdgeIdentity>, StoreError> {
    let orgs: Vec<&str> = edges.iter().map(|e| e.org.as_str()).collect();
    let names: Vec<&str> = edges.iter().map(|e| e.edge.as_str()).collect();
    let rows = c.query(
        "SELECT w.org, w.edge FROM unnest($1::text[], $2::text[]) AS w (org, edge)
         WHERE NOT EXISTS (SELECT 1 FROM edges e
                           WHERE e.org = w.org AND e.edge = w.edge AND e.revoked_us IS NULL)",
        &[&orgs, &names],
    )?;
    rows.iter()
        .map(|r| {
            EdgeIdentity::new(r.get(0), r.get(1))
                .map_err(|e| StoreError::Corrupt(format!("an edge's identity: {e}")))
        })
        .collect()
}

pub(super) fn record_gap(
    c: &mut impl GenericClient,
    edge: &EdgeIdentity,
    stream: Stream,
    from: u64,
    to: u64,
) -> Result<(), StoreError> {
    let id = edge_id(c, edge)?;
    c.execute(
        "INSERT INTO gaps (edge_id, stream, from_seq, to_seq, noted_us)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &id,
            &stream.name(),
            &(from as i64),
            &(to as i64),
            &crate::now_us(),
        ],
    )?;
    Ok(())
}
