//! The events stream in SQLite, and the org's vehicle registry that identity events build.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::Event;
use sync_protocol::stream::Stream;

use super::edges::{acked_in, edge_id};
use crate::store::registry::{registration, Registration};
use crate::store::{already_held, StoreError};

/// Stores events `first..=last` of one edge and folds identities into the registry, in one
/// transaction (see `RelayStore::apply_events`).
pub(super) fn apply(
    conn: &mut Connection,
    edge: &EdgeIdentity,
    first: u64,
    last: u64,
    events: &[Event],
) -> Result<u64, StoreError> {
    if first > last || events.iter().any(|e| e.seq < first || e.seq > last) {
        return Err(StoreError::BadRange { first, last });
    }
    // IMMEDIATE: the group-commit writer writes on its own connection; a deferred
    // transaction that reads first could not upgrade to a write (SQLITE_BUSY), an
    // immediate one waits its turn under the busy timeout.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = edge_id(&tx, edge)?;
    let acked = acked_in(&tx, id, Stream::Events)?;
    if already_held(Stream::Events, acked, first, last)? {
        return Ok(acked);
    }
    let received = crate::now_us();
    for e in events.iter().filter(|e| e.seq > acked) {
        tx.prepare_cached(
            "INSERT INTO events (edge_id, seq, t_us, vehicle, kind, code, severity, message,
                received_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            id,
            e.seq as i64,
            e.t_us,
            e.vehicle,
            e.kind,
            e.code,
            e.severity,
            e.message,
            received
        ])?;
        if let Some(identity) = &e.identity {
            register_vehicle(&tx, &edge.org, id, e.vehicle, identity)?;
        }
        if let Some(ack) = &e.acknowledgement {
            tx.prepare_cached(
                "INSERT INTO alert_acks (edge_id, alert_seq, t_us, by) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![id, ack.alert_seq as i64, e.t_us, ack.by])?;
        }
    }
    tx.execute(
        "INSERT INTO stream_cursors (edge_id, stream, acked_seq) VALUES (?1, 'events', ?2)
         ON CONFLICT (edge_id, stream) DO UPDATE SET acked_seq = excluded.acked_seq",
        params![id, last as i64],
    )?;
    tx.commit()?;
    Ok(last)
}

/// Folds one identity report into the org's registry. The same uid from any edge of the org
/// is the same vehicle; a sighting without a uid stays its own vehicle until one arrives, and
/// is then merged into the vehicle that uid already names (if any).
fn register_vehicle(
    conn: &Connection,
    org: &str,
    edge_id: i64,
    sysid: u32,
    identity: &sync_protocol::proto::VehicleIdentity,
) -> rusqlite::Result<()> {
    let uid = (!identity.uid.is_empty()).then_some(identity.uid.as_str());
    let current: Option<(i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT v.id, v.uid FROM sightings s JOIN vehicles v ON v.id = s.vehicle_id
             WHERE s.edge_id = ?1 AND s.sysid = ?2",
        )?
        .query_row(params![edge_id, sysid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let by_uid: Option<i64> = match uid {
        Some(uid) => conn
            .prepare_cached("SELECT id FROM vehicles WHERE org = ?1 AND uid = ?2")?
            .query_row(params![org, uid], |r| r.get(0))
            .optional()?,
        None => None,
    };
    let current = current.map(|(id, uid)| (id, uid.is_some()));
    let vehicle_id = match registration(current, by_uid, uid.is_some()) {
        Registration::Keep(id) => id,
        Registration::Repoint { from, to } => {
            repoint(conn, edge_id, sysid, from, to)?;
            to
        }
        Registration::TakeUid(id) => {
            conn.execute(
                "UPDATE vehicles SET uid = ?2 WHERE id = ?1",
                params![id, uid],
            )?;
            id
        }
        Registration::Replace { from } => {
            let new = insert_vehicle(conn, org, uid, identity)?;
            repoint(conn, edge_id, sysid, from, new)?;
            new
        }
        Registration::Sight(known) => {
            insert_sighting(conn, edge_id, sysid, known)?;
            known
        }
        Registration::New => {
            let new = insert_vehicle(conn, org, uid, identity)?;
            insert_sighting(conn, edge_id, sysid, new)?;
            new
        }
    };
    conn.prepare_cached(
        "UPDATE vehicles SET name = ?2, autopilot = ?3, mav_type = ?4 WHERE id = ?1",
    )?
    .execute(params![
        vehicle_id,
        identity.name,
        identity.autopilot,
        identity.mav_type
    ])?;
    Ok(())
}

fn insert_vehicle(
    conn: &Connection,
    org: &str,
    uid: Option<&str>,
    identity: &sync_protocol::proto::VehicleIdentity,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO vehicles (org, uid, name, autopilot, mav_type) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        org,
        uid,
        identity.name,
        identity.autopilot,
        identity.mav_type
    ])?;
    Ok(conn.last_insert_rowid())
}

fn insert_sighting(
    conn: &Connection,
    edge_id: i64,
    sysid: u32,
    vehicle: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO sightings (edge_id, sysid, vehicle_id) VALUES (?1, ?2, ?3)")?
        .execute(params![edge_id, sysid, vehicle])?;
    Ok(())
}

fn repoint(
    conn: &Connection,
    edge_id: i64,
    sysid: u32,
    old: i64,
    new: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sightings SET vehicle_id = ?3 WHERE edge_id = ?1 AND sysid = ?2",
        params![edge_id, sysid, new],
    )?;
    conn.execute(
        "DELETE FROM vehicles WHERE id = ?1
           AND NOT EXISTS (SELECT 1 FROM sightings WHERE vehicle_id = ?1)",
        [old],
    )?;
    Ok(())
}
