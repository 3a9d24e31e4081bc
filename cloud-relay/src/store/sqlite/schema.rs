//! The relay database's tables, and the migrations that bring an older file up to them.
//!
//! `PRAGMA user_version` says which schema a file holds: 0, telemetry as one row per sample
//! (until 2026-11); 1, telemetry as chunks. Opening a file migrates it in one transaction,
//! so a relay killed mid-migration finds its file as it was.

use rusqlite::{Connection, TransactionBehavior};
use sync_protocol::codec::TelemetryRow;

use crate::store::chunk::{level_of, Chunk};
use crate::store::StoreError;

/// The schema this code reads and writes.
pub const VERSION: i64 = 1;

pub const CORE: &str = "
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
-- Telemetry as the chunks stations send (store/chunk.rs): one row per acknowledged batch,
-- its codec payload as it arrived. `level`: 0, small (few rows per vehicle), to be compacted
-- once `received_us` (relay time) is old enough; 1, compact (a compaction's output, or a
-- batch that arrived with many rows per vehicle); 2, unreadable, left for an operator.
CREATE TABLE IF NOT EXISTS telemetry_chunks (
    id          INTEGER PRIMARY KEY,
    edge_id     INTEGER NOT NULL REFERENCES edges (id),
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    t_min_us    INTEGER NOT NULL,
    t_max_us    INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    level       INTEGER NOT NULL,
    received_us INTEGER NOT NULL,
    payload     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_chunks_by_edge ON telemetry_chunks (edge_id, level, id);
CREATE INDEX IF NOT EXISTS telemetry_chunks_to_compact ON telemetry_chunks (level, received_us);
-- Each vehicle's samples in each chunk: what a history query seeks on.
CREATE TABLE IF NOT EXISTS chunk_vehicles (
    edge_id  INTEGER NOT NULL,
    vehicle  INTEGER NOT NULL,
    t_min_us INTEGER NOT NULL,
    t_max_us INTEGER NOT NULL,
    chunk_id INTEGER NOT NULL REFERENCES telemetry_chunks (id),
    rows     INTEGER NOT NULL,
    PRIMARY KEY (edge_id, vehicle, t_min_us, chunk_id)
) WITHOUT ROWID;
-- The longest time any chunk holds of one vehicle: a chunk overlapping a query's start began
-- at most this long before it, which bounds the index range the query scans.
CREATE TABLE IF NOT EXISTS chunk_spans (
    edge_id     INTEGER NOT NULL,
    vehicle     INTEGER NOT NULL,
    max_span_us INTEGER NOT NULL,
    PRIMARY KEY (edge_id, vehicle)
) WITHOUT ROWID;
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

/// Creates what is missing and migrates what is old, in one transaction.
pub fn migrate(conn: &mut Connection, parts: &[&str]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database has schema {version}, newer than this relay's {VERSION}: \
             run the newer relay, or restore a backup"
        )));
    }
    for part in parts {
        tx.execute_batch(part)?;
    }
    let rows_table: bool = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'telemetry'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if rows_table {
        rows_to_chunks(&tx)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Rows per chunk when migrating: a catch-up batch's size.
const MIGRATED_ROWS: usize = 16_384;

/// Schema 0 → 1: each edge's rows, in sequence order, become chunks of [`MIGRATED_ROWS`].
fn rows_to_chunks(tx: &Connection) -> Result<(), StoreError> {
    let edges: Vec<i64> = tx
        .prepare("SELECT DISTINCT edge_id FROM telemetry")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut moved = 0u64;
    for edge_id in edges {
        let mut stmt = tx.prepare(
            "SELECT seq, vehicle, t_us, time_source, lat_e7, lon_e7, alt_mm, rel_alt_mm, vx, vy,
                vz, heading_cdeg, battery_mv, battery_ca, battery_pct, gps_fix, satellites,
                custom_mode, armed, mission_seq
             FROM telemetry WHERE edge_id = ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query([edge_id])?;
        let mut chunk = Vec::with_capacity(MIGRATED_ROWS);
        loop {
            let row = rows.next()?;
            if let Some(r) = row {
                chunk.push(TelemetryRow {
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
                });
            }
            if chunk.len() == MIGRATED_ROWS || (row.is_none() && !chunk.is_empty()) {
                moved += chunk.len() as u64;
                let encoded = Chunk::encode(&chunk)?;
                super::telemetry::insert_chunk(tx, edge_id, &encoded, level_of(&encoded), 0)?;
                chunk.clear();
            }
            if row.is_none() {
                break;
            }
        }
    }
    tx.execute_batch("DROP TABLE telemetry")?;
    tracing::info!(rows = moved, "telemetry rows migrated into chunks");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    #[test]
    fn a_newer_schema_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("relay.db")).unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, &[CORE]).unwrap_err();
        assert!(err.to_string().contains("newer than this relay"), "{err}");
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing created in a file it cannot read");
    }

    #[test]
    fn rows_of_the_old_schema_become_chunks_holding_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("relay.db")).unwrap();
        // The old file's tables, edges among them, then its row-per-sample telemetry.
        conn.execute_batch(CORE).unwrap();
        conn.execute_batch(
            "INSERT INTO orgs VALUES ('vineyard-co', 0);
             INSERT INTO edges VALUES (1, 'vineyard-co', 'pi-north', 0, NULL),
                (2, 'vineyard-co', 'pi-south', 0, NULL);",
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE telemetry (
                edge_id INTEGER NOT NULL, seq INTEGER NOT NULL, vehicle INTEGER NOT NULL,
                t_us INTEGER NOT NULL, time_source INTEGER NOT NULL, lat_e7 INTEGER NOT NULL,
                lon_e7 INTEGER NOT NULL, alt_mm INTEGER NOT NULL, rel_alt_mm INTEGER NOT NULL,
                vx INTEGER NOT NULL, vy INTEGER NOT NULL, vz INTEGER NOT NULL,
                heading_cdeg INTEGER NOT NULL, battery_mv INTEGER NOT NULL,
                battery_ca INTEGER NOT NULL, battery_pct INTEGER NOT NULL,
                gps_fix INTEGER NOT NULL, satellites INTEGER NOT NULL,
                custom_mode INTEGER NOT NULL, armed INTEGER NOT NULL,
                mission_seq INTEGER NOT NULL, PRIMARY KEY (edge_id, seq)) WITHOUT ROWID;",
        )
        .unwrap();
        let mut held = std::collections::BTreeMap::<i64, Vec<TelemetryRow>>::new();
        for edge_id in [1i64, 2] {
            for seq in 1..=(MIGRATED_ROWS as u64 + 5) {
                let r = TelemetryRow {
                    seq,
                    vehicle: (seq % 3) as u32 + 1,
                    t_us: seq as i64 * 100_000 + edge_id,
                    lat_e7: seq as i32 * 7,
                    heading_cdeg: u16::MAX,
                    battery_pct: -1,
                    armed: seq % 2 == 0,
                    ..Default::default()
                };
                conn.execute(
                    "INSERT INTO telemetry VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                        ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                    params![
                        edge_id,
                        r.seq as i64,
                        r.vehicle,
                        r.t_us,
                        r.time_source,
                        r.lat_e7,
                        r.lon_e7,
                        r.alt_mm,
                        r.rel_alt_mm,
                        r.vx,
                        r.vy,
                        r.vz,
                        r.heading_cdeg,
                        r.battery_mv,
                        r.battery_ca,
                        r.battery_pct,
                        r.gps_fix,
                        r.satellites,
                        r.custom_mode,
                        r.armed,
                        r.mission_seq
                    ],
                )
                .unwrap();
                held.entry(edge_id).or_default().push(r);
            }
        }
        migrate(&mut conn, &[CORE]).unwrap();
        for (edge_id, rows) in held {
            let payloads: Vec<Vec<u8>> = conn
                .prepare("SELECT payload FROM telemetry_chunks WHERE edge_id = ?1 ORDER BY id")
                .unwrap()
                .query_map([edge_id], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(payloads.len(), 2);
            let back: Vec<TelemetryRow> = payloads
                .iter()
                .flat_map(|p| sync_protocol::codec::decode(p).unwrap())
                .collect();
            assert_eq!(back, rows);
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        // Opening it again changes nothing.
        migrate(&mut conn, &[CORE]).unwrap();
        let chunks: i64 = conn
            .query_row("SELECT count(*) FROM telemetry_chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(chunks, 4);
    }
}
