//! The PostgreSQL side of [`HqStore`]: the same queries as `store/sqlite/hq.rs`, every one
//! naming the org.

use postgres::IsolationLevel;
use sync_protocol::proto::{event_kind_name, severity_name};
use trellis_web::auth::hash;

use super::telemetry::Chunks;
use super::PgStore;
use crate::now_us;
use crate::store::history::{self, Sighting};
use crate::store::hq::{
    Acknowledged, EdgeRecord, EventCursor, EventRecord, FleetVehicle, HqStore, Role, Share,
    TokenInfo,
};
use crate::store::StoreError;

fn share_row(r: &postgres::Row) -> Share {
    let vehicles: String = r.get(3);
    Share {
        id: r.get(0),
        from_org: r.get(1),
        to_org: r.get(2),
        vehicles: serde_json::from_str(&vehicles).unwrap_or_default(),
        area: r.get(4),
        coarsen_m: r.get(5),
        created_us: r.get(6),
    }
}

impl HqStore for PgStore {
    fn create_token(&self, org: &str, role: Role, name: &str) -> Result<String, StoreError> {
        if !self.org_exists(org)? {
            return Err(StoreError::NoSuchOrg(org.into()));
        }
        let mut c = self.conn()?;
        let secret = trellis_web::auth::new_secret("trellis_").map_err(|_| StoreError::Random)?;
        c.execute(
            "INSERT INTO tokens (hash, org, role, name, created_us) VALUES ($1, $2, $3, $4, $5)",
            &[&hash(&secret), &org, &role.as_str(), &name, &now_us()],
        )?;
        Ok(secret)
    }

    fn token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT org, role, name FROM tokens WHERE hash = $1",
            &[&hash(secret)],
        )?;
        Ok(row.and_then(|r| {
            Some(TokenInfo {
                org: r.get(0),
                role: Role::parse(r.get(1))?,
                name: r.get(2),
            })
        }))
    }

    fn org_exists(&self, org: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()?
            .query_opt("SELECT 1 FROM orgs WHERE org = $1", &[&org])?
            .is_some())
    }

    fn fleet(&self, org: &str) -> Result<Vec<FleetVehicle>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT v.id, v.name, v.uid, v.autopilot, v.mav_type, e.edge, s.sysid
             FROM vehicles v
             JOIN sightings s ON s.vehicle_id = v.id
             JOIN edges e ON e.id = s.edge_id
             WHERE v.org = $1 AND e.org = $1
             ORDER BY v.name, v.id, e.edge",
            &[&org],
        )?;
        Ok(FleetVehicle::group(rows.iter().map(|r| {
            let vehicle = FleetVehicle {
                id: r.get(0),
                name: r.get(1),
                uid: r.get(2),
                autopilot: r.get::<_, i64>(3) as u32,
                mav_type: r.get::<_, i64>(4) as u32,
                sightings: Vec::new(),
            };
            (vehicle, (r.get::<_, String>(5), r.get::<_, i64>(6) as u32))
        })))
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
        let mut c = self.conn()?;
        // One snapshot for every page: a compaction committing meanwhile is not seen half done.
        let mut tx = c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let sightings: Vec<Sighting> = tx
            .query(
                "SELECT s.edge_id, s.sysid FROM sightings s JOIN edges e ON e.id = s.edge_id
                 WHERE s.vehicle_id = $1 AND e.org = $2",
                &[&vehicle_id, &org],
            )?
            .iter()
            .map(|r| Sighting {
                edge_id: r.get(0),
                sysid: r.get::<_, i64>(1) as u32,
            })
            .collect();
        let rows = history::merged(
            &mut Chunks(&mut tx),
            &sightings,
            from_us,
            to_us,
            after,
            limit as usize,
        )?;
        tx.commit()?;
        Ok(rows)
    }

    fn events(
        &self,
        org: &str,
        kind: Option<i32>,
        before: Option<&EventCursor>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let (paged, t_us, edge, seq) = match before {
            Some(c) => (true, c.t_us, c.edge.as_str(), c.seq as i64),
            None => (false, 0, "", 0),
        };
        let rows = self.conn()?.query(
            "SELECT e.edge, ev.seq, ev.t_us, s.vehicle_id, ev.vehicle, ev.kind, ev.code,
                ev.severity, ev.message, ev.received_us, a.by, a.t_us
             FROM events ev
             JOIN edges e ON e.id = ev.edge_id
             LEFT JOIN sightings s ON s.edge_id = ev.edge_id AND s.sysid = ev.vehicle
             LEFT JOIN alert_acks a ON a.edge_id = ev.edge_id AND a.alert_seq = ev.seq
                AND ev.kind = 1
             WHERE e.org = $1 AND ($2::INTEGER IS NULL OR ev.kind = $2)
                AND (NOT $4 OR (ev.t_us, e.edge, ev.seq) < ($5, $6, $7))
             ORDER BY ev.t_us DESC, e.edge DESC, ev.seq DESC
             LIMIT $3",
            &[&org, &kind, &i64::from(limit), &paged, &t_us, &edge, &seq],
        )?;
        Ok(rows
            .iter()
            .map(|r| EventRecord {
                edge: r.get(0),
                seq: r.get::<_, i64>(1) as u64,
                t_us: r.get(2),
                vehicle_id: r.get(3),
                sysid: r.get::<_, i64>(4) as u32,
                kind: event_kind_name(r.get(5)),
                code: r.get(6),
                severity: severity_name(r.get(7)),
                message: r.get(8),
                received_us: r.get(9),
                acknowledged: r.get::<_, Option<String>>(10).map(|by| Acknowledged {
                    by,
                    t_us: r.get(11),
                }),
            })
            .collect())
    }

    fn edges(&self, org: &str) -> Result<Vec<EdgeRecord>, StoreError> {
        let mut c = self.conn()?;
        let rows = c.query(
            "SELECT e.id, e.edge, e.enrolled_us, e.revoked_us IS NOT NULL,
                coalesce((SELECT acked_seq FROM stream_cursors
                          WHERE edge_id = e.id AND stream = 'telemetry'), 0),
                coalesce((SELECT acked_seq FROM stream_cursors
                          WHERE edge_id = e.id AND stream = 'events'), 0)
             FROM edges e WHERE e.org = $1 ORDER BY e.edge",
            &[&org],
        )?;
        let mut edges = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.get(0);
            let gaps = c
                .query(
                    "SELECT stream, from_seq, to_seq FROM gaps WHERE edge_id = $1
                     ORDER BY noted_us",
                    &[&id],
                )?
                .iter()
                .map(|g| {
                    (
                        g.get(0),
                        g.get::<_, i64>(1) as u64,
                        g.get::<_, i64>(2) as u64,
                    )
                })
                .collect();
            edges.push(EdgeRecord {
                edge: r.get(1),
                enrolled_us: r.get(2),
                revoked: r.get(3),
                telemetry_acked: r.get::<_, i64>(4) as u64,
                events_acked: r.get::<_, i64>(5) as u64,
                gaps,
            });
        }
        Ok(edges)
    }

    fn grant_share(&self, share: &Share) -> Result<i64, StoreError> {
        for org in [&share.from_org, &share.to_org] {
            if !self.org_exists(org)? {
                return Err(StoreError::NoSuchOrg(org.clone()));
            }
        }
        let vehicles = serde_json::to_string(&share.vehicles).unwrap_or_else(|_| "[]".into());
        Ok(self
            .conn()?
            .query_one(
                "INSERT INTO shares (from_org, to_org, vehicles, area, coarsen_m, created_us)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &share.from_org,
                    &share.to_org,
                    &vehicles,
                    &share.area,
                    &share.coarsen_m,
                    &now_us(),
                ],
            )?
            .get(0))
    }

    fn revoke_share(&self, from: &str, to: &str) -> Result<usize, StoreError> {
        Ok(self.conn()?.execute(
            "UPDATE shares SET revoked_us = $3
             WHERE from_org = $1 AND to_org = $2 AND revoked_us IS NULL",
            &[&from, &to, &now_us()],
        )? as usize)
    }

    fn shares_to(&self, org: &str) -> Result<Vec<Share>, StoreError> {
        Ok(self
            .conn()?
            .query(
                "SELECT id, from_org, to_org, vehicles, area, coarsen_m, created_us FROM shares
                 WHERE to_org = $1 AND revoked_us IS NULL ORDER BY id",
                &[&org],
            )?
            .iter()
            .map(share_row)
            .collect())
    }
}
