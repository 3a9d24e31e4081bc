//! The events stream in PostgreSQL, and the org's vehicle registry that identity events
//! build (the rules are SQLite's, `store/sqlite/events.rs`).

use postgres::{Client, GenericClient};
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{Event, VehicleIdentity};
use sync_protocol::stream::Stream;

use super::edges::{acked_in, advance, edge_id};
use crate::store::registry::{registration, Registration};
use crate::store::{already_held, StoreError};

/// Stores events `first..=last` of one edge and folds identities into the registry, in one
/// transaction (see `RelayStore::apply_events`).
pub(super) fn apply(
    client: &mut Client,
    edge: &EdgeIdentity,
    first: u64,
    last: u64,
    events: &[Event],
) -> Result<u64, StoreError> {
    if first > last || events.iter().any(|e| e.seq < first || e.seq > last) {
        return Err(StoreError::BadRange { first, last });
    }
    let mut tx = client.transaction()?;
    let id = edge_id(&mut tx, edge)?;
    // The mark is locked until commit: another relay instance applying the same range
    // waits, then finds it held.
    let acked = acked_in(&mut tx, id, Stream::Events, true)?;
    if already_held(Stream::Events, acked, first, last)? {
        return Ok(acked);
    }
    if events.iter().any(|e| e.identity.is_some()) {
        // The registry is per org: one writer of it at a time across instances.
        tx.execute("SELECT 1 FROM orgs WHERE org = $1 FOR UPDATE", &[&edge.org])?;
    }
    let received = crate::now_us();
    for e in events.iter().filter(|e| e.seq > acked) {
        tx.execute(
            "INSERT INTO events (edge_id, seq, t_us, vehicle, kind, code, severity, message,
                received_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING",
            &[
                &id,
                &(e.seq as i64),
                &e.t_us,
                &i64::from(e.vehicle),
                &e.kind,
                &e.code,
                &e.severity,
                &e.message,
                &received,
            ],
        )?;
        if let Some(identity) = &e.identity {
            register_vehicle(&mut tx, &edge.org, id, e.vehicle, identity)?;
        }
        if let Some(ack) = &e.acknowledgement {
            tx.execute(
                "INSERT INTO alert_acks (edge_id, alert_seq, t_us, by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&id, &(ack.alert_seq as i64), &e.t_us, &ack.by],
            )?;
        }
    }
    advance(&mut tx, id, Stream::Events, last)?;
    tx.commit()?;
    Ok(last)
}

/// Folds one identity report into the org's registry: the same uid from any edge of the org
/// is the same vehicle; a sighting without a uid stays its own vehicle until one arrives.
fn register_vehicle(
    c: &mut impl GenericClient,
    org: &str,
    edge_id: i64,
    sysid: u32,
    identity: &VehicleIdentity,
) -> Result<(), StoreError> {
    let sysid = i64::from(sysid);
    let uid = (!identity.uid.is_empty()).then_some(identity.uid.as_str());
    let current: Option<(i64, Option<String>)> = c
        .query_opt(
            "SELECT v.id, v.uid FROM sightings s JOIN vehicles v ON v.id = s.vehicle_id
             WHERE s.edge_id = $1 AND s.sysid = $2",
            &[&edge_id, &sysid],
        )?
        .map(|r| (r.get(0), r.get(1)));
    let by_uid: Option<i64> = match uid {
        Some(uid) => c
            .query_opt(
                "SELECT id FROM vehicles WHERE org = $1 AND uid = $2",
                &[&org, &uid],
            )?
            .map(|r| r.get(0)),
        None => None,
    };
    let current = current.map(|(id, uid)| (id, uid.is_some()));
    let vehicle_id = match registration(current, by_uid, uid.is_some()) {
        Registration::Keep(id) => id,
        Registration::Repoint { from, to } => {
            repoint(c, edge_id, sysid, from, to)?;
            to
        }
        Registration::TakeUid(id) => {
            c.execute("UPDATE vehicles SET uid = $2 WHERE id = $1", &[&id, &uid])?;
            id
        }
        Registration::Replace { from } => {
            let new = insert_vehicle(c, org, uid, identity)?;
            repoint(c, edge_id, sysid, from, new)?;
            new
        }
        Registration::Sight(known) => {
            insert_sighting(c, edge_id, sysid, known)?;
            known
        }
        Registration::New => {
            let new = insert_vehicle(c, org, uid, identity)?;
            insert_sighting(c, edge_id, sysid, new)?;
            new
        }
    };
    c.execute(
        "UPDATE vehicles SET name = $2, autopilot = $3, mav_type = $4 WHERE id = $1",
        &[
            &vehicle_id,
            &identity.name,
            &i64::from(identity.autopilot),
            &i64::from(identity.mav_type),
        ],
    )?;
    Ok(())
}

fn insert_vehicle(
    c: &mut impl GenericClient,
    org: &str,
    uid: Option<&str>,
    identity: &VehicleIdentity,
) -> Result<i64, StoreError> {
    Ok(c.query_one(
        "INSERT INTO vehicles (org, uid, name, autopilot, mav_type)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        &[
            &org,
            &uid,
            &identity.name,
            &i64::from(identity.autopilot),
            &i64::from(identity.mav_type),
        ],
    )?
    .get(0))
}

fn insert_sighting(
    c: &mut impl GenericClient,
    edge_id: i64,
    sysid: i64,
    vehicle: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO sightings (edge_id, sysid, vehicle_id) VALUES ($1, $2, $3)",
        &[&edge_id, &sysid, &vehicle],
    )?;
    Ok(())
}

fn repoint(
    c: &mut impl GenericClient,
    edge_id: i64,
    sysid: i64,
    old: i64,
    new: i64,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE sightings SET vehicle_id = $3 WHERE edge_id = $1 AND sysid = $2",
        &[&edge_id, &sysid, &new],
    )?;
    c.execute(
        "DELETE FROM vehicles WHERE id = $1
           AND NOT EXISTS (SELECT 1 FROM sightings WHERE vehicle_id = $1)",
        &[&old],
    )?;
    Ok(())
}
