//! The embedded SQLite store, WAL with `synchronous=FULL` so an acknowledgement is never sent
//! for data a power cut could take back. Two connections: telemetry is written only by the
//! group-commit writer's own (`writer.rs`); everything else (reads, which WAL lets run beside
//! the writer, and the rare admin writes) shares the other.
//!
//! One file per responsibility: `schema.rs` (tables and migrations), `edges.rs` (orgs, edges,
//! marks, gaps), `telemetry.rs` (chunks: the writer and history reads), `events.rs` (events
//! and the vehicle registry), `records.rs` (editable records), `hq.rs` (what HQ reads),
//! `gate.rs` (who writes next).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, TransactionBehavior};
use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::Event;
use sync_protocol::records::FieldChange;
use sync_protocol::stream::Stream;

use super::writer::{Compacted, GroupWriter, Pending, TelemetryBatch, WriterStats};
use super::{EdgeStatus, RelayStore, StoreError};

mod edges;
mod events;
mod gate;
mod hq;
mod records;
mod schema;
mod telemetry;

/// SQLite's errors, in the backend-neutral type the traits speak.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(e.to_string())
    }
}

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
        let mut conn = connect(path)?;
        schema::migrate(&mut conn, &[schema::CORE, hq::SCHEMA, records::SCHEMA])?;
        let gate = std::sync::Arc::new(gate::WriteGate::default());
        let writer = GroupWriter::start(telemetry::TelemetryWriter::open(path, gate.clone())?)
            .map_err(|e| StoreError::WriterStart(e.to_string()))?;
        Ok(SqliteStore {
            gate,
            conn: Mutex::new(conn),
            writer,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Every use is a single transaction that either committed or rolled back, so a
        // panic elsewhere cannot have left the connection half-way.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RelayStore for SqliteStore {
    fn create_org(&self, org: &str) -> Result<(), StoreError> {
        edges::create_org(&self.conn(), org)
    }

    fn orgs(&self) -> Result<Vec<String>, StoreError> {
        edges::orgs(&self.conn())
    }

    fn enroll_edge(&self, edge: &EdgeIdentity) -> Result<(), StoreError> {
        edges::enroll(&self.conn(), edge)
    }

    fn revoke_edge(&self, edge: &EdgeIdentity) -> Result<bool, StoreError> {
        edges::revoke(&self.conn(), edge)
    }

    fn edge_status(&self, edge: &EdgeIdentity) -> Result<EdgeStatus, StoreError> {
        edges::status(&self.conn(), edge)
    }

    fn acked(&self, edge: &EdgeIdentity, stream: Stream) -> Result<u64, StoreError> {
        let conn = self.conn();
        let id = edges::edge_id(&conn, edge)?;
        Ok(edges::acked_in(&conn, id, stream)?)
    }

    fn apply_telemetry(
        &self,
        edge: &EdgeIdentity,
        first: u64,
        last: u64,
        rows: &[TelemetryRow],
    ) -> Result<u64, StoreError> {
        self.submit_telemetry(TelemetryBatch::new(edge.clone(), first, last, rows)?)
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
        let _turn = self.gate.urgent();
        events::apply(&mut self.conn(), edge, first, last, events)
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
        stream: Stream,
        seq: u64,
    ) -> Result<(), StoreError> {
        let _turn = self.gate.urgent();
        let conn = self.conn();
        let id = edges::edge_id(&conn, edge)?;
        Ok(records::advance(&conn, id, stream, seq)?)
    }

    fn record_gap(
        &self,
        edge: &EdgeIdentity,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        let _turn = self.gate.urgent();
        edges::record_gap(&self.conn(), edge, stream, from, to)
    }

    fn compact_telemetry(&self, stored_before_us: i64) -> Result<Compacted, StoreError> {
        self.writer.compact_now(stored_before_us)
    }

    fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    fn telemetry_count(&self, org: &str) -> Result<u64, StoreError> {
        Ok(telemetry::count(&self.conn(), org)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ApplyGroup;

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

    fn batch(edge: &EdgeIdentity, range: std::ops::RangeInclusive<u64>) -> TelemetryBatch {
        TelemetryBatch::new(edge.clone(), *range.start(), *range.end(), &rows(range)).unwrap()
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
            telemetry::TelemetryWriter::open(&dir.path().join("relay.db"), Default::default())
                .unwrap();
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
        assert_eq!(store.acked(&edge, Stream::Telemetry).unwrap(), 20);
        assert_eq!(store.acked(&other, Stream::Telemetry).unwrap(), 4);
        assert_eq!(store.acked(&revoked, Stream::Telemetry).unwrap(), 0);
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
    fn a_resend_overlapping_held_rows_adds_each_row_once_with_every_column() {
        let (_dir, store, edge) = setup();
        // Distinct values in every column; the second batch repeats the first's rows, so
        // only its new part is kept (re-encoded).
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
            .prepare("SELECT payload FROM telemetry_chunks ORDER BY first_seq")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .flat_map(|p| sync_protocol::codec::decode(&p.unwrap()).unwrap())
            .collect();
        assert_eq!(held, sent);
    }

    /// A store in a temporary directory, removed with it (the directory lives as long as
    /// the store).
    struct Fresh(SqliteStore, #[allow(dead_code)] tempfile::TempDir);

    impl std::ops::Deref for Fresh {
        type Target = SqliteStore;
        fn deref(&self) -> &SqliteStore {
            &self.0
        }
    }

    fn fresh() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        Fresh(
            SqliteStore::open(&dir.path().join("relay.db")).unwrap(),
            dir,
        )
    }

    crate::store::conformance::conformance_tests!(fresh());
}
