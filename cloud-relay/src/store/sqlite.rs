//! The embedded SQLite store, WAL with `synchronous=FULL` so an acknowledgement is never sent
//! for data a power cut could take back. Two connections: telemetry is written only by the
//! group-commit writer's own (`writer.rs`); everything else (reads, which WAL lets run beside
//! the writer, and the rare admin writes) shares the other.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::Event;
use sync_protocol::records::FieldChange;

use super::writer::{ApplyGroup, GroupFailure, GroupWriter, Pending, TelemetryBatch, WriterStats};
use super::{EdgeStatus, RelayStore, StoreError};

mod gate;
mod hq;
mod records;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orgs (
    org        TEXT PRIMARY KEY,
    created_us INTEGER NOT NULL
);
-- Rows everywhere else refer to an edge by `id`: integer keys keep the hot tables compact and
-- their B-trees free of string comparisons.
CREATE TABLE IF NOT EXISTS edges (
    id          INTEGER PRIMARY KEY,
    org         TEXT NOT NULL REFERENCES orgs (org),
    edge        TEXT NOT NULL,
    enrolled_us INTEGER NOT NULL,
    revoked_us  INTEGER,
    UNIQUE (org, edge)
);
CREATE TABLE IF NOT EXISTS stream_cursors (
    edge_id   INTEGER NOT NULL REFERENCES edges (id),
    stream    TEXT NOT NULL,
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (edge_id, stream)
);
CREATE TABLE IF NOT EXISTS gaps (
    edge_id   INTEGER NOT NULL REFERENCES edges (id),
    stream    TEXT NOT NULL,
    from_seq  INTEGER NOT NULL,
    to_seq    INTEGER NOT NULL,
    noted_us  INTEGER NOT NULL
);
-- Clustered by (edge, seq), the sync protocol's idempotence key: a batch appends at the end of
-- its edge's run of rows (measured faster than a rowid table with a separate key index).
CREATE TABLE IF NOT EXISTS telemetry (
    edge_id      INTEGER NOT NULL REFERENCES edges (id),
    seq          INTEGER NOT NULL,
    vehicle      INTEGER NOT NULL,
    t_us         INTEGER NOT NULL,
    time_source  INTEGER NOT NULL,
    lat_e7       INTEGER NOT NULL,
    lon_e7       INTEGER NOT NULL,
    alt_mm       INTEGER NOT NULL,
    rel_alt_mm   INTEGER NOT NULL,
    vx           INTEGER NOT NULL,
    vy           INTEGER NOT NULL,
    vz           INTEGER NOT NULL,
    heading_cdeg INTEGER NOT NULL,
    battery_mv   INTEGER NOT NULL,
    battery_ca   INTEGER NOT NULL,
    battery_pct  INTEGER NOT NULL,
    gps_fix      INTEGER NOT NULL,
    satellites   INTEGER NOT NULL,
    custom_mode  INTEGER NOT NULL,
    armed        INTEGER NOT NULL,
    mission_seq  INTEGER NOT NULL,
    PRIMARY KEY (edge_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS telemetry_by_vehicle_time ON telemetry (edge_id, vehicle, t_us);
-- The events stream: alerts, state changes, identity. `vehicle` is the system id at the edge.
CREATE TABLE IF NOT EXISTS events (
    edge_id     INTEGER NOT NULL REFERENCES edges (id),
    seq         INTEGER NOT NULL,
    t_us        INTEGER NOT NULL,
    vehicle     INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    code        TEXT NOT NULL,
    severity    INTEGER NOT NULL,
    message     TEXT NOT NULL,
    received_us INTEGER NOT NULL,
    PRIMARY KEY (edge_id, seq)
);
CREATE INDEX IF NOT EXISTS events_by_kind_time ON events (kind, t_us);
-- Alerts acknowledged at their station: the first ACK event for an alert, by who.
CREATE TABLE IF NOT EXISTS alert_acks (
    edge_id   INTEGER NOT NULL REFERENCES edges (id),
    alert_seq INTEGER NOT NULL,
    t_us      INTEGER NOT NULL,
    by        TEXT NOT NULL,
    PRIMARY KEY (edge_id, alert_seq)
) WITHOUT ROWID;
-- The org's fleet: one row per vehicle, however many edges hear it. A vehicle is known by
-- its autopilot uid when it reported one; until then each edge's sighting is its own vehicle.
CREATE TABLE IF NOT EXISTS vehicles (
    id        INTEGER PRIMARY KEY,
    org       TEXT NOT NULL REFERENCES orgs (org),
    uid       TEXT,
    name      TEXT NOT NULL,
    autopilot INTEGER NOT NULL,
    mav_type  INTEGER NOT NULL,
    UNIQUE (org, uid)
);
-- Which edge hears which vehicle under which system id.
CREATE TABLE IF NOT EXISTS sightings (
    edge_id    INTEGER NOT NULL REFERENCES edges (id),
    sysid      INTEGER NOT NULL,
    vehicle_id INTEGER NOT NULL REFERENCES vehicles (id),
    PRIMARY KEY (edge_id, sysid)
);
CREATE INDEX IF NOT EXISTS sightings_by_vehicle ON sightings (vehicle_id);
";

pub struct SqliteStore {
    conn: Mutex<Connection>,
    writer: GroupWriter,
    gate: std::sync::Arc<gate::WriteGate>,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = connect(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(hq::SCHEMA)?;
        conn.execute_batch(records::SCHEMA)?;
        let gate = std::sync::Arc::new(gate::WriteGate::default());
        let writer = GroupWriter::start(TelemetryWriter::open(path, gate.clone())?)
            .map_err(|e| StoreError::WriterStart(e.to_string()))?;
        Ok(SqliteStore {
            gate,
            conn: Mutex::new(conn),
            writer,
        })
    }

    /// What the group-commit writer has done so far.
    pub fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Every use is a single transaction that either committed or rolled back, so a
        // panic elsewhere cannot have left the connection half-way.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn acked_in(conn: &Connection, edge_id: i64, stream: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT acked_seq FROM stream_cursors WHERE edge_id = ?1 AND stream = ?2")?
        .query_row(params![edge_id, stream], |r| r.get::<_, i64>(0))
        .optional()
        .map(|v| v.unwrap_or(0) as u64)
}

/// The numeric id of an enrolled edge (0 if it was never enrolled: no rows refer to it).
fn edge_id(conn: &Connection, edge: &EdgeIdentity) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT id FROM edges WHERE org = ?1 AND edge = ?2")?
        .query_row(params![edge.org, edge.edge], |r| r.get(0))
        .optional()
        .map(|id| id.unwrap_or(0))
}

impl RelayStore for SqliteStore {
    fn create_org(&self, org: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "INSERT INTO orgs (org, created_us) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![org, crate::now_us()],
        )?;
        if n == 0 {
            return Err(StoreError::OrgExists(org.to_string()));
        }
        Ok(())
    }

    fn orgs(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT org FROM orgs ORDER BY org")?;
        let orgs = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(orgs)
    }

    fn enroll_edge(&self, edge: &EdgeIdentity) -> Result<(), StoreError> {
        let conn = self.conn();
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

    fn revoke_edge(&self, edge: &EdgeIdentity) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE edges SET revoked_us = ?3 WHERE org = ?1 AND edge = ?2 AND revoked_us IS NULL",
            params![edge.org, edge.edge, crate::now_us()],
        )?;
        Ok(n > 0)
    }

    fn edge_status(&self, edge: &EdgeIdentity) -> Result<EdgeStatus, StoreError> {
        // Every open session asks once a second: keep the statement prepared.
        let revoked: Option<Option<i64>> = self
            .conn()
            .prepare_cached("SELECT revoked_us FROM edges WHERE org = ?1 AND edge = ?2")?
            .query_row(params![edge.org, edge.edge], |r| r.get(0))
            .optional()?;
        Ok(match revoked {
            None => EdgeStatus::Unknown,
            Some(None) => EdgeStatus::Active,
            Some(Some(_)) => EdgeStatus::Revoked,
        })
    }

    fn acked(&self, edge: &EdgeIdentity, stream: &str) -> Result<u64, StoreError> {
        let conn = self.conn();
        let id = edge_id(&conn, edge)?;
        Ok(acked_in(&conn, id, stream)?)
    }

    fn apply_telemetry(
        &self,
        edge: &EdgeIdentity,
        first: u64,
        last: u64,
        rows: &[TelemetryRow],
    ) -> Result<u64, StoreError> {
        self.submit_telemetry(TelemetryBatch {
            edge: edge.clone(),
            first,
            last,
            rows: rows.to_vec(),
        })
        .wait()
    }

    fn submit_telemetry(&self, batch: TelemetryBatch) -> Pending {
        self.writer.submit(batch)
    }

    fn apply_events(
        &self,
        edge: &EdgeIdentity,
        first: u64,
        last: u64,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        if first > last || events.iter().any(|e| e.seq < first || e.seq > last) {
            return Err(StoreError::BadRange { first, last });
        }
        let _turn = self.gate.urgent();
        let mut conn = self.conn();
        // IMMEDIATE: the group-commit writer writes on its own connection; a deferred
        // transaction that reads first could not upgrade to a write (SQLITE_BUSY), an
        // immediate one waits its turn under the busy timeout.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = edge_id(&tx, edge)?;
        let acked = acked_in(&tx, id, "events")?;
        if last <= acked {
            return Ok(acked);
        }
        if first > acked + 1 {
            return Err(StoreError::Gap {
                stream: "events".into(),
                first,
                acked,
            });
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

    fn apply_changes(&self, org: &str, changes: &[FieldChange]) -> Result<usize, StoreError> {
        let _turn = self.gate.urgent();
        let mut conn = self.conn();
        // IMMEDIATE: the group-commit writer writes on its own connection; a deferred
        // transaction that reads first could not upgrade to a write (SQLITE_BUSY), an
        // immediate one waits its turn under the busy timeout.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let won = records::apply(&tx, org, changes)?;
        tx.commit()?;
        Ok(won)
    }

    fn changes_since(
        &self,
        org: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, FieldChange)>, StoreError> {
        Ok(records::since(&self.conn(), org, after, limit)?)
    }

    fn records(&self, org: &str, table: &str) -> Result<Vec<super::Record>, StoreError> {
        records::table(&self.conn(), org, table)
    }

    fn advance_cursor(
        &self,
        edge: &EdgeIdentity,
        stream: &str,
        seq: u64,
    ) -> Result<(), StoreError> {
        let _turn = self.gate.urgent();
        let conn = self.conn();
        let id = edge_id(&conn, edge)?;
        Ok(records::advance(&conn, id, stream, seq)?)
    }

    fn record_gap(
        &self,
        edge: &EdgeIdentity,
        stream: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        let _turn = self.gate.urgent();
        let conn = self.conn();
        let id = edge_id(&conn, edge)?;
        conn.execute(
            "INSERT INTO gaps (edge_id, stream, from_seq, to_seq, noted_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, stream, from as i64, to as i64, crate::now_us()],
        )?;
        Ok(())
    }

    fn telemetry_count(&self, org: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM telemetry JOIN edges ON edges.id = telemetry.edge_id
             WHERE edges.org = ?1",
            [org],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
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
    let vehicle_id = match (current, by_uid) {
        // Already the right vehicle.
        (Some((id, _)), Some(known)) if id == known => id,
        // This sighting had no uid (or another one); the uid names a vehicle another edge
        // registered: move the sighting there, and drop the old vehicle if nothing sees it.
        (Some((old, _)), Some(known)) => {
            repoint(conn, edge_id, sysid, old, known)?;
            known
        }
        // The uid is new to the org: a uid-less vehicle takes it, a vehicle with a different
        // uid (a swapped flight controller) gives way to a new one.
        (Some((id, None)), None) => {
            conn.execute(
                "UPDATE vehicles SET uid = ?2 WHERE id = ?1",
                params![id, uid],
            )?;
            id
        }
        (Some((id, Some(_))), None) if uid.is_none() => id,
        (Some((old, Some(_))), None) => {
            let new = insert_vehicle(conn, org, uid, identity)?;
            repoint(conn, edge_id, sysid, old, new)?;
            new
        }
        (None, Some(known)) => {
            insert_sighting(conn, edge_id, sysid, known)?;
            known
        }
        (None, None) => {
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

/// The group-commit writer's connection: the only one that writes telemetry.
struct TelemetryWriter {
    conn: Connection,
    gate: std::sync::Arc<gate::WriteGate>,
}

impl TelemetryWriter {
    fn open(
        path: &Path,
        gate: std::sync::Arc<gate::WriteGate>,
    ) -> Result<TelemetryWriter, StoreError> {
        let conn = connect(path)?;
        // The writer takes each batch's edge id from `edges` inside its own transaction, so
        // the foreign key holds by construction; checking it again per row costs a lookup in
        // `edges` for every row and makes SQLite journal each multi-row statement.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        // Room for an INSERT of every row count besides the few other statements.
        conn.set_prepared_statement_cache_capacity(ROWS_PER_INSERT + 16);
        // Every connected edge keeps a few hot pages (the end of its run of rows, one index
        // position per vehicle): a few thousand edges need tens of megabytes, not SQLite's
        // default 2 MB, or each batch reads its pages back (fanin, 3,000 edges: p99 3.7 s
        // with 2 MB, 1.3 s with 32 MB; catch-up unchanged within the noise).
        conn.pragma_update(None, "cache_size", -32_768)?;
        Ok(TelemetryWriter { conn, gate })
    }
}

impl ApplyGroup for TelemetryWriter {
    fn apply_group(
        &mut self,
        batches: &[TelemetryBatch],
    ) -> Result<Vec<Result<u64, StoreError>>, GroupFailure> {
        let whole = |e: rusqlite::Error| GroupFailure {
            culprit: None,
            error: e.into(),
        };
        // IMMEDIATE: take the write lock before reading marks, so another process's write
        // (an admin revoking an edge) makes this wait its turn instead of failing the group.
        let _turn = self.gate.bulk();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(whole)?;
        let mut verdicts = Vec::with_capacity(batches.len());
        for (i, batch) in batches.iter().enumerate() {
            let verdict = apply_batch(&tx, batch).map_err(|e| GroupFailure {
                culprit: Some(i),
                error: e.into(),
            })?;
            verdicts.push(verdict);
        }
        tx.commit().map_err(whole)?;
        Ok(verdicts)
    }
}

/// One batch inside the group's transaction. The outer error is the database failing; the
/// inner one a refusal, decided before anything is written.
fn apply_batch(
    tx: &Connection,
    batch: &TelemetryBatch,
) -> rusqlite::Result<Result<u64, StoreError>> {
    let TelemetryBatch {
        edge,
        first,
        last,
        rows,
    } = batch;
    let (first, last) = (*first, *last);
    if first > last || rows.iter().any(|r| r.seq < first || r.seq > last) {
        return Ok(Err(StoreError::BadRange { first, last }));
    }
    let enrolled: Option<(i64, Option<i64>)> = tx
        .prepare_cached("SELECT id, revoked_us FROM edges WHERE org = ?1 AND edge = ?2")?
        .query_row(params![edge.org, edge.edge], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, None)) = enrolled else {
        return Ok(Err(StoreError::NotActive(edge.to_string())));
    };
    let acked = acked_in(tx, id, "telemetry")?;
    if last <= acked {
        return Ok(Ok(acked)); // a resend of what is already durable
    }
    if first > acked + 1 {
        return Ok(Err(StoreError::Gap {
            stream: "telemetry".into(),
            first,
            acked,
        }));
    }
    if rows.iter().all(|r| r.seq > acked) {
        insert_rows(tx, id, rows)?;
    } else {
        let fresh: Vec<TelemetryRow> = rows.iter().filter(|r| r.seq > acked).copied().collect();
        insert_rows(tx, id, &fresh)?;
    }
    tx.prepare_cached(
        "INSERT INTO stream_cursors (edge_id, stream, acked_seq) VALUES (?1, 'telemetry', ?2)
         ON CONFLICT (edge_id, stream) DO UPDATE SET acked_seq = excluded.acked_seq",
    )?
    .execute(params![id, last as i64])?;
    Ok(Ok(last))
}

/// Rows per INSERT statement. A statement per row spends about as much on starting and
/// finishing statements and on binding through `params!` as on the rows themselves; with many
/// rows per statement SQLite also keeps its B-tree cursors open between rows (catch-up: the
/// writer's CPU per row fell from about 2.9 to 1.9 µs, with the two changes noted in
/// `insert_sql` and `TelemetryWriter::open`).
const ROWS_PER_INSERT: usize = 64;
/// The columns of `telemetry`, in the order [`bind_row`] binds them.
const TELEMETRY_COLUMNS: usize = 21;

/// `OR IGNORE` (SQLite's spelling) where the rest of this file says `ON CONFLICT DO NOTHING`:
/// that one ignores only key conflicts and lets a NULL abort the statement, so SQLite keeps a
/// statement journal for every multi-row INSERT in case it must undo part of one, which cost
/// more than the multi-row statements saved. Every value here is bound and never NULL, so
/// what is ignored is the same as before: rows already held.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; TELEMETRY_COLUMNS].join(", "));
    format!(
        "INSERT OR IGNORE INTO telemetry (edge_id, seq, vehicle, t_us, time_source, lat_e7,
            lon_e7, alt_mm, rel_alt_mm, vx, vy, vz, heading_cdeg, battery_mv, battery_ca,
            battery_pct, gps_fix, satellites, custom_mode, armed, mission_seq)
         VALUES {}",
        vec![row; rows].join(", ")
    )
}

fn insert_rows(tx: &Connection, edge_id: i64, rows: &[TelemetryRow]) -> rusqlite::Result<()> {
    // One statement text per row count, 1..=ROWS_PER_INSERT: a live batch of 50 rows is one
    // statement too (the writer's connection caches them all, see `TelemetryWriter::open`).
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| (1..=ROWS_PER_INSERT).map(insert_sql).collect());
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = tx.prepare_cached(&sql[chunk.len() - 1])?;
        for (i, row) in chunk.iter().enumerate() {
            bind_row(&mut insert, i * TELEMETRY_COLUMNS, edge_id, row)?;
        }
        insert.raw_execute()?;
    }
    Ok(())
}

/// Binds one row's values after parameter `offset` (0-based).
fn bind_row(
    stmt: &mut rusqlite::Statement<'_>,
    offset: usize,
    edge_id: i64,
    r: &TelemetryRow,
) -> rusqlite::Result<()> {
    let values: [i64; TELEMETRY_COLUMNS] = [
        edge_id,
        r.seq as i64,
        i64::from(r.vehicle),
        r.t_us,
        i64::from(r.time_source),
        i64::from(r.lat_e7),
        i64::from(r.lon_e7),
        i64::from(r.alt_mm),
        i64::from(r.rel_alt_mm),
        i64::from(r.vx),
        i64::from(r.vy),
        i64::from(r.vz),
        i64::from(r.heading_cdeg),
        i64::from(r.battery_mv),
        i64::from(r.battery_ca),
        i64::from(r.battery_pct),
        i64::from(r.gps_fix),
        i64::from(r.satellites),
        i64::from(r.custom_mode),
        i64::from(r.armed),
        i64::from(r.mission_seq),
    ];
    for (i, v) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(offset + i + 1, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(range: std::ops::RangeInclusive<u64>) -> Vec<TelemetryRow> {
        range
            .map(|seq| TelemetryRow {
                seq,
                vehicle: 1,
                t_us: seq as i64 * 100_000,
                ..Default::default()
            })
            .collect()
    }

    fn setup() -> (tempfile::TempDir, SqliteStore, EdgeIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
        store.create_org("vineyard-co").unwrap();
        let edge = EdgeIdentity::new("vineyard-co", "pi-north").unwrap();
        store.enroll_edge(&edge).unwrap();
        (dir, store, edge)
    }

    #[test]
    fn applying_is_idempotent_and_refuses_gaps() {
        let (_dir, store, edge) = setup();
        assert_eq!(
            store.apply_telemetry(&edge, 1, 10, &rows(1..=10)).unwrap(),
            10
        );
        // The same batch again (its ack was lost): nothing new, same mark.
        assert_eq!(
            store.apply_telemetry(&edge, 1, 10, &rows(1..=10)).unwrap(),
            10
        );
        // Overlapping resend.
        assert_eq!(
            store.apply_telemetry(&edge, 5, 15, &rows(5..=15)).unwrap(),
            15
        );
        assert_eq!(store.telemetry_count("vineyard-co").unwrap(), 15);
        // A range may have holes the edge never wrote; the mark still moves.
        assert_eq!(
            store
                .apply_telemetry(&edge, 16, 20, &rows(18..=20))
                .unwrap(),
            20
        );
        assert!(matches!(
            store.apply_telemetry(&edge, 30, 31, &rows(30..=31)),
            Err(StoreError::Gap { .. })
        ));
        assert!(matches!(
            store.apply_telemetry(&edge, 21, 22, &rows(21..=25)),
            Err(StoreError::BadRange { .. })
        ));
    }

    fn batch(edge: &EdgeIdentity, range: std::ops::RangeInclusive<u64>) -> TelemetryBatch {
        TelemetryBatch {
            edge: edge.clone(),
            first: *range.start(),
            last: *range.end(),
            rows: rows(range),
        }
    }

    #[test]
    fn one_group_judges_each_batch_on_its_own() {
        let (dir, store, edge) = setup();
        let other = EdgeIdentity::new("vineyard-co", "pi-south").unwrap();
        store.enroll_edge(&other).unwrap();
        let revoked = EdgeIdentity::new("vineyard-co", "pi-lost").unwrap();
        store.enroll_edge(&revoked).unwrap();
        store.revoke_edge(&revoked).unwrap();
        let mut writer =
            TelemetryWriter::open(&dir.path().join("relay.db"), Default::default()).unwrap();
        let verdicts = writer
            .apply_group(&[
                batch(&edge, 1..=10),
                batch(&other, 5..=6), // a gap: refused, writes nothing
                batch(&edge, 11..=20),
                batch(&edge, 1..=10), // a resend inside the same group
                batch(&other, 1..=4),
                batch(&revoked, 1..=3),
            ])
            .unwrap_or_else(|f| panic!("group failed: {}", f.error));
        assert!(matches!(verdicts[0], Ok(10)));
        assert!(matches!(verdicts[1], Err(StoreError::Gap { acked: 0, .. })));
        assert!(matches!(verdicts[2], Ok(20)));
        assert!(matches!(verdicts[3], Ok(20)));
        assert!(matches!(verdicts[4], Ok(4)));
        assert!(matches!(verdicts[5], Err(StoreError::NotActive(_))));
        assert_eq!(store.telemetry_count("vineyard-co").unwrap(), 24);
        assert_eq!(store.acked(&edge, "telemetry").unwrap(), 20);
        assert_eq!(store.acked(&other, "telemetry").unwrap(), 4);
        assert_eq!(store.acked(&revoked, "telemetry").unwrap(), 0);
    }

    #[test]
    fn batches_submitted_together_are_stored_in_order_per_edge() {
        let (_dir, store, edge) = setup();
        let other = EdgeIdentity::new("vineyard-co", "pi-south").unwrap();
        store.enroll_edge(&other).unwrap();
        let pending: Vec<_> = (0..50u64)
            .flat_map(|k| {
                let range = k * 100 + 1..=(k + 1) * 100;
                [
                    store.submit_telemetry(batch(&edge, range.clone())),
                    store.submit_telemetry(batch(&other, range)),
                ]
            })
            .collect();
        let marks: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
        let expected: Vec<u64> = (1..=50u64).flat_map(|k| [k * 100, k * 100]).collect();
        assert_eq!(marks, expected);
        assert_eq!(store.telemetry_count("vineyard-co").unwrap(), 10_000);
        let stats = store.writer_stats();
        assert_eq!(
            stats.batches.load(std::sync::atomic::Ordering::Relaxed),
            100
        );
    }

    #[test]
    fn every_column_lands_where_it_belongs() {
        let (_dir, store, edge) = setup();
        // Distinct values in every column, over more rows than one INSERT statement takes.
        let sent: Vec<TelemetryRow> = (1..=150u64)
            .map(|seq| {
                let n = seq as i64;
                TelemetryRow {
                    seq,
                    vehicle: 1_000 + seq as u32,
                    t_us: 2_000 + n,
                    time_source: 3,
                    lat_e7: 4_000 + n as i32,
                    lon_e7: 5_000 + n as i32,
                    alt_mm: 6_000 + n as i32,
                    rel_alt_mm: 7_000 + n as i32,
                    vx: 8,
                    vy: 9,
                    vz: 10,
                    heading_cdeg: 11,
                    battery_mv: 12,
                    battery_ca: 13,
                    battery_pct: 14,
                    gps_fix: 15,
                    satellites: 16,
                    custom_mode: 17,
                    armed: true,
                    mission_seq: 19,
                }
            })
            .collect();
        assert_eq!(
            store.apply_telemetry(&edge, 1, 100, &sent[..100]).unwrap(),
            100
        );
        // Overlapping the rows already held: only 101..=150 are new.
        assert_eq!(store.apply_telemetry(&edge, 1, 150, &sent).unwrap(), 150);
        let conn = store.conn();
        let held: Vec<TelemetryRow> = conn
            .prepare(
                "SELECT seq, vehicle, t_us, time_source, lat_e7, lon_e7, alt_mm, rel_alt_mm,
                    vx, vy, vz, heading_cdeg, battery_mv, battery_ca, battery_pct, gps_fix,
                    satellites, custom_mode, armed, mission_seq
                 FROM telemetry ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| {
                Ok(TelemetryRow {
                    seq: r.get::<_, i64>(0)? as u64,
                    vehicle: r.get(1)?,
                    t_us: r.get(2)?,
                    time_source: r.get(3)?,
                    lat_e7: r.get(4)?,
                    lon_e7: r.get(5)?,
                    alt_mm: r.get(6)?,
                    rel_alt_mm: r.get(7)?,
                    vx: r.get(8)?,
                    vy: r.get(9)?,
                    vz: r.get(10)?,
                    heading_cdeg: r.get(11)?,
                    battery_mv: r.get(12)?,
                    battery_ca: r.get(13)?,
                    battery_pct: r.get(14)?,
                    gps_fix: r.get(15)?,
                    satellites: r.get(16)?,
                    custom_mode: r.get(17)?,
                    armed: r.get(18)?,
                    mission_seq: r.get(19)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(held, sent);
    }

    #[test]
    fn a_revoked_edge_stores_nothing() {
        let (_dir, store, edge) = setup();
        store.revoke_edge(&edge).unwrap();
        assert!(matches!(
            store.apply_telemetry(&edge, 1, 10, &rows(1..=10)),
            Err(StoreError::NotActive(_))
        ));
        assert_eq!(store.telemetry_count("vineyard-co").unwrap(), 0);
    }

    #[test]
    fn edges_are_enrolled_into_existing_orgs_and_can_be_revoked() {
        let (_dir, store, edge) = setup();
        assert_eq!(store.edge_status(&edge).unwrap(), EdgeStatus::Active);
        assert!(store.revoke_edge(&edge).unwrap());
        assert_eq!(store.edge_status(&edge).unwrap(), EdgeStatus::Revoked);
        let stranger = EdgeIdentity::new("other-org", "pi").unwrap();
        assert!(matches!(
            store.enroll_edge(&stranger),
            Err(StoreError::NoSuchOrg(_))
        ));
        assert_eq!(store.edge_status(&stranger).unwrap(), EdgeStatus::Unknown);
        assert!(matches!(
            store.create_org("vineyard-co"),
            Err(StoreError::OrgExists(_))
        ));
    }
}
