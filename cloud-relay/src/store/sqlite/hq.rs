//! The SQLite side of [`HqStore`]. Every query names the org in its `WHERE` clause (through
//! `edges.org` or the table's own `org`): tenancy is enforced in SQL, not left to callers.

use rusqlite::{params, Connection, OptionalExtension};
use sync_protocol::proto::{event_kind_name, severity_name};

use super::telemetry::Chunks;
use super::SqliteStore;
use crate::now_us;
use crate::store::history::{self, Sighting};
use crate::store::hq::{
    Acknowledged, EdgeRecord, EventCursor, EventRecord, FleetVehicle, HqStore, Role, Share,
    TokenInfo,
};
use crate::store::StoreError;

pub(super) const SCHEMA: &str = "
-- HQ bearer tokens, stored as SHA-256 of the secret: a copied database grants nothing.
CREATE TABLE IF NOT EXISTS tokens (
    hash       TEXT PRIMARY KEY,
    org        TEXT NOT NULL REFERENCES orgs (org),
    role       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shares (
    id         INTEGER PRIMARY KEY,
    from_org   TEXT NOT NULL REFERENCES orgs (org),
    to_org     TEXT NOT NULL REFERENCES orgs (org),
    vehicles   TEXT NOT NULL,
    area       TEXT,
    coarsen_m  REAL,
    created_us INTEGER NOT NULL,
    revoked_us INTEGER
);
";

use trellis_web::auth::hash;

fn share_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Share> {
    let vehicles: String = r.get(3)?;
    Ok(Share {
        id: r.get(0)?,
        from_org: r.get(1)?,
        to_org: r.get(2)?,
        vehicles: serde_json::from_str(&vehicles).unwrap_or_default(),
        area: r.get(4)?,
        coarsen_m: r.get(5)?,
        created_us: r.get(6)?,
    })
}

fn exists(conn: &Connection, org: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM orgs WHERE org = ?1", [org], |_| Ok(()))
        .optional()?
        .is_some())
}

impl HqStore for SqliteStore {
    fn create_token(&self, org: &str, role: Role, name: &str) -> Result<String, StoreError> {
        let conn = self.conn();
        if !exists(&conn, org)? {
            return Err(StoreError::NoSuchOrg(org.into()));
        }
        let secret = trellis_web::auth::new_secret("trellis_").map_err(|_| StoreError::Random)?;
        conn.execute(
            "INSERT INTO tokens (hash, org, role, name, created_us) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash(&secret), org, role.as_str(), name, now_us()],
        )?;
        Ok(secret)
    }

    fn token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row: Option<(String, String, String)> = self
            .conn()
            .prepare_cached("SELECT org, role, name FROM tokens WHERE hash = ?1")?
            .query_row([hash(secret)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(row.and_then(|(org, role, name)| {
            Some(TokenInfo {
                org,
                role: Role::parse(&role)?,
                name,
            })
        }))
    }

    fn org_exists(&self, org: &str) -> Result<bool, StoreError> {
        Ok(exists(&self.conn(), org)?)
    }

    fn fleet(&self, org: &str) -> Result<Vec<FleetVehicle>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT v.id, v.name, v.uid, v.autopilot, v.mav_type, e.edge, s.sysid
             FROM vehicles v
             JOIN sightings s ON s.vehicle_id = v.id
             JOIN edges e ON e.id = s.edge_id
             WHERE v.org = ?1 AND e.org = ?1
             ORDER BY v.name, v.id, e.edge",
        )?;
        let rows = stmt.query_map([org], |r| {
            Ok((
                FleetVehicle {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    uid: r.get(2)?,
                    autopilot: r.get(3)?,
                    mav_type: r.get(4)?,
                    sightings: Vec::new(),
                },
                (r.get::<_, String>(5)?, r.get::<_, u32>(6)?),
            ))
        })?;
        Ok(FleetVehicle::group(
            rows.collect::<Result<Vec<_>, rusqlite::Error>>()?,
        ))
    }

    fn vehicle_telemetry(
        &self,
        org: &str,
        vehicle_id: i64,
        from_us: i64,
        to_us: i64,
        after: Option<&history::HistoryCursor>,
        limit: u32,
    ) -> Result<history::HistoryPage, StoreError> {
        let mut conn = self.conn();
        // One read transaction, one snapshot: a compaction committing between two pages of
        // chunks would otherwise be seen half done (rows moved to a chunk already passed).
        let conn = conn.transaction()?;
        let sightings: Vec<Sighting> = conn
            .prepare_cached(
                "SELECT s.edge_id, s.sysid FROM sightings s JOIN edges e ON e.id = s.edge_id
                 WHERE s.vehicle_id = ?1 AND e.org = ?2",
            )?
            .query_map(params![vehicle_id, org], |r| {
                Ok(Sighting {
                    edge_id: r.get(0)?,
                    sysid: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        history::merged(
            &mut Chunks(&conn),
            &sightings,
            from_us,
            to_us,
            after,
            limit as usize,
        )
    }

    fn events(
        &self,
        org: &str,
        kind: Option<i32>,
        before: Option<&EventCursor>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT e.edge, ev.seq, ev.t_us, s.vehicle_id, ev.vehicle, ev.kind, ev.code,
                ev.severity, ev.message, ev.received_us, a.by, a.t_us
             FROM events ev
             JOIN edges e ON e.id = ev.edge_id
             LEFT JOIN sightings s ON s.edge_id = ev.edge_id AND s.sysid = ev.vehicle
             LEFT JOIN alert_acks a ON a.edge_id = ev.edge_id AND a.alert_seq = ev.seq
                AND ev.kind = 1
             WHERE e.org = ?1 AND (?2 IS NULL OR ev.kind = ?2)
                AND (?4 = 0 OR (ev.t_us, e.edge, ev.seq) < (?5, ?6, ?7))
             ORDER BY ev.t_us DESC, e.edge DESC, ev.seq DESC
             LIMIT ?3",
        )?;
        let (paged, t_us, edge, seq) = match before {
            Some(c) => (true, c.t_us, c.edge.as_str(), c.seq as i64),
            None => (false, 0, "", 0),
        };
        let rows = stmt.query_map(params![org, kind, limit, paged, t_us, edge, seq], |r| {
            Ok(EventRecord {
                edge: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                t_us: r.get(2)?,
                vehicle_id: r.get(3)?,
                sysid: r.get(4)?,
                kind: event_kind_name(r.get(5)?),
                code: r.get(6)?,
                severity: severity_name(r.get(7)?),
                message: r.get(8)?,
                received_us: r.get(9)?,
                acknowledged: match r.get::<_, Option<String>>(10)? {
                    Some(by) => Some(Acknowledged {
                        by,
                        t_us: r.get(11)?,
                    }),
                    None => None,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn edges(&self, org: &str) -> Result<Vec<EdgeRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT e.id, e.edge, e.enrolled_us, e.revoked_us IS NOT NULL,
                coalesce((SELECT acked_seq FROM stream_cursors
                          WHERE edge_id = e.id AND stream = 'telemetry'), 0),
                coalesce((SELECT acked_seq FROM stream_cursors
                          WHERE edge_id = e.id AND stream = 'events'), 0)
             FROM edges e WHERE e.org = ?1 ORDER BY e.edge",
        )?;
        let rows: Vec<(i64, EdgeRecord)> = stmt
            .query_map([org], |r| {
                Ok((
                    r.get(0)?,
                    EdgeRecord {
                        edge: r.get(1)?,
                        enrolled_us: r.get(2)?,
                        revoked: r.get(3)?,
                        telemetry_acked: r.get::<_, i64>(4)? as u64,
                        events_acked: r.get::<_, i64>(5)? as u64,
                        gaps: Vec::new(),
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut gaps = conn.prepare_cached(
            "SELECT stream, from_seq, to_seq FROM gaps WHERE edge_id = ?1 ORDER BY noted_us",
        )?;
        let mut edges = Vec::with_capacity(rows.len());
        for (id, mut edge) in rows {
            edge.gaps = gaps
                .query_map([id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            edges.push(edge);
        }
        Ok(edges)
    }

    fn grant_share(&self, share: &Share) -> Result<i64, StoreError> {
        let conn = self.conn();
        for org in [&share.from_org, &share.to_org] {
            if !exists(&conn, org)? {
                return Err(StoreError::NoSuchOrg(org.clone()));
            }
        }
        conn.execute(
            "INSERT INTO shares (from_org, to_org, vehicles, area, coarsen_m, created_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                share.from_org,
                share.to_org,
                serde_json::to_string(&share.vehicles).unwrap_or_else(|_| "[]".into()),
                share.area,
                share.coarsen_m,
                now_us()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn revoke_share(&self, from: &str, to: &str) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "UPDATE shares SET revoked_us = ?3
             WHERE from_org = ?1 AND to_org = ?2 AND revoked_us IS NULL",
            params![from, to, now_us()],
        )?)
    }

    fn shares_to(&self, org: &str) -> Result<Vec<Share>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, from_org, to_org, vehicles, area, coarsen_m, created_us FROM shares
             WHERE to_org = ?1 AND revoked_us IS NULL ORDER BY id",
        )?;
        let shares = stmt.query_map([org], share_row)?;
        Ok(shares.collect::<Result<_, _>>()?)
    }
}
