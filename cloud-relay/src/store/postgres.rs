//! The PostgreSQL store, for relays that outgrow one machine: several relay instances share
//! one database. Behind the same traits as SQLite, with the same tables and rules; what
//! differs is that nothing may assume one process. A batch's check-then-write locks its
//! edge's mark (`SELECT … FOR UPDATE`) until commit, an org's registry and record revisions
//! are written under its `orgs` row's lock, and compaction steps skip chunks another
//! instance holds. Reads and admin writes share a connection pool; telemetry is written by
//! this instance's group-commit writer on a connection of its own.
//!
//! One file per responsibility, as for SQLite: `schema.rs` (migrations), `edges.rs`,
//! `telemetry.rs`, `events.rs`, `records.rs`, `hq.rs`; `pool_log.rs` says when the pool loses
//! and finds the database.

use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::Event;
use sync_protocol::records::FieldChange;
use sync_protocol::stream::Stream;

use super::writer::{Compacted, GroupWriter, Pending, TelemetryBatch, WriterStats};
use super::{EdgeStatus, RelayStore, StoreError};

mod edges;
mod events;
mod hq;
mod pool_log;
mod records;
mod schema;
mod telemetry;

/// Connections in the pool: the HQ API's and the sessions' reads and admin writes (the
/// writer has its own).
const POOL_SIZE: u32 = 8;
/// How long one attempt to connect to the server may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::Database(describe(&e))
    }
}

/// The error with the server's own reason: `postgres::Error` alone says "db error" and keeps
/// the message ("database … is not currently accepting connections") in its source.
fn describe(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> StoreError {
        StoreError::Database(format!("no database connection: {e}"))
    }
}

type Pooled = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

pub struct PgStore {
    /// `None` only while dropping.
    pool: Option<r2d2::Pool<PostgresConnectionManager<NoTls>>>,
    writer: GroupWriter,
}

impl Drop for PgStore {
    /// The `postgres` client closes its connection by running its own small runtime, which
    /// tokio forbids inside another: a store dropped on an async worker (the relay's last
    /// reference goes with its tasks) hands its pool to a plain thread to close.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`), migrates the database, and starts
    /// this instance's writer. Blocks: not from async code (as every method here).
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Database(format!("store url: {e}")))?;
        // A server that does not answer at all (a network cut) fails a connection attempt
        // in seconds rather than the minutes of TCP's own timeout: the writer would wait
        // that long before failing the batches queued behind it. The url may set its own.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = config.connect(NoTls)?;
        schema::migrate(&mut client)?;
        drop(client);
        let telemetry = telemetry::TelemetryWriter::open(&config)?;
        let log = pool_log::PoolLog::default();
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            // One at start, more as the load asks: an admin command needs one, not eight
            // (r2d2 otherwise opens them all before the first query).
            .min_idle(Some(1))
            .connection_timeout(std::time::Duration::from_secs(10))
            .error_handler(Box::new(log.clone()))
            .connection_customizer(Box::new(log))
            .build(PostgresConnectionManager::new(config, NoTls))?;
        let writer =
            GroupWriter::start(telemetry).map_err(|e| StoreError::WriterStart(e.to_string()))?;
        Ok(PgStore {
            pool: Some(pool),
            writer,
        })
    }

    fn conn(&self) -> Result<Pooled, StoreError> {
        match &self.pool {
            Some(pool) => Ok(pool.get()?),
            None => Err(StoreError::Database("the store is closing".into())),
        }
    }
}

impl RelayStore for PgStore {
    fn create_org(&self, org: &str) -> Result<(), StoreError> {
        edges::create_org(&mut *self.conn()?, org)
    }

    fn orgs(&self) -> Result<Vec<String>, StoreError> {
        edges::orgs(&mut *self.conn()?)
    }

    fn enroll_edge(&self, edge: &EdgeIdentity) -> Result<(), StoreError> {
        edges::enroll(&mut *self.conn()?, edge)
    }

    fn revoke_edge(&self, edge: &EdgeIdentity) -> Result<bool, StoreError> {
        edges::revoke(&mut *self.conn()?, edge)
    }

    fn edge_status(&self, edge: &EdgeIdentity) -> Result<EdgeStatus, StoreError> {
        edges::status(&mut *self.conn()?, edge)
    }

    fn inactive_among(&self, edges: &[EdgeIdentity]) -> Result<Vec<EdgeIdentity>, StoreError> {
        edges::inactive_among(&mut *self.conn()?, edges)
    }

    fn acked(&self, edge: &EdgeIdentity, stream: Stream) -> Result<u64, StoreError> {
        let mut c = self.conn()?;
        let id = edges::edge_id(&mut *c, edge)?;
        edges::acked_in(&mut *c, id, stream, false)
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

    fn record_gap(
        &self,
        edge: &EdgeIdentity,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError> {
        edges::record_gap(&mut *self.conn()?, edge, stream, from, to)
    }

    fn compact_telemetry(&self, stored_before_us: i64) -> Result<Compacted, StoreError> {
        self.writer.compact_now(stored_before_us)
    }

    fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    fn telemetry_count(&self, org: &str) -> Result<u64, StoreError> {
        telemetry::count(&mut *self.conn()?, org)
    }

    fn apply_events(
        &self,
        edge: &EdgeIdentity,
        first: u64,
        last: u64,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        events::apply(&mut *self.conn()?, edge, first, last, events)
    }

    fn apply_changes(&self, org: &str, changes: &[FieldChange]) -> Result<usize, StoreError> {
        records::apply(&mut *self.conn()?, org, changes)
    }

    fn changes_since(
        &self,
        org: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, FieldChange)>, StoreError> {
        records::since(&mut *self.conn()?, org, after, limit)
    }

    fn records(&self, org: &str, table: &str) -> Result<Vec<super::Record>, StoreError> {
        records::table(&mut *self.conn()?, org, table)
    }

    fn advance_cursor(
        &self,
        edge: &EdgeIdentity,
        stream: Stream,
        seq: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        let id = edges::edge_id(&mut *c, edge)?;
        edges::advance(&mut *c, id, stream, seq)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A database of its own on the local PostgreSQL server (`TRELLIS_TEST_PG`, by default
    /// `postgres://postgres@127.0.0.1/postgres`), dropped with it. `scripts/test` starts the
    /// server when it is not running; a test that cannot reach it fails saying so.
    pub(crate) struct TestDb {
        pub store: PgStore,
        pub url: String,
        name: String,
        admin: String,
    }

    impl std::ops::Deref for TestDb {
        type Target = PgStore;
        fn deref(&self) -> &PgStore {
            &self.store
        }
    }

    impl TestDb {
        pub(crate) fn new() -> TestDb {
            let admin = std::env::var("TRELLIS_TEST_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/postgres".into());
            let mut client = postgres::Client::connect(&admin, NoTls).unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} (TRELLIS_TEST_PG) is not reachable: {e}")
            });
            let mut bytes = [0u8; 6];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .expect("random");
            let name = format!(
                "trellis_test_{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create the test database");
            let url = match admin.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => panic!("TRELLIS_TEST_PG must end in /DATABASE: {admin}"),
            };
            let store = PgStore::open(&url).expect("open the PostgreSQL store");
            TestDb {
                store,
                url,
                name,
                admin,
            }
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Ok(mut client) = postgres::Client::connect(&self.admin, NoTls) {
                let _ = client.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }

    crate::store::conformance::conformance_tests!(TestDb::new());

    /// An admin command opens the store, does one thing and exits: the pool opens one
    /// connection (beside the writer's) and more only as checkouts ask, not the eight r2d2
    /// opens before the first query by default.
    #[test]
    fn an_opened_store_holds_one_pooled_connection_until_the_load_asks_for_more() {
        let db = TestDb::new();
        let pooled = |db: &TestDb| db.store.pool.as_ref().map(|p| p.state().connections);
        assert_eq!(pooled(&db), Some(1));
        db.create_org("vineyard-co").unwrap();
        assert_eq!(db.orgs().unwrap(), ["vineyard-co"]);
        // r2d2 may open one for each checkout that left none idle: two queries, three at most.
        let after = pooled(&db).unwrap_or(0);
        assert!((1..=3).contains(&after), "{after} pooled connections");
    }

    #[test]
    fn migrating_twice_changes_nothing_and_a_newer_schema_is_refused() {
        let db = TestDb::new();
        let mut client = postgres::Client::connect(&db.url, NoTls).unwrap();
        schema::migrate(&mut client).unwrap();
        client
            .execute(
                "INSERT INTO schema_migrations (version, applied_us) VALUES (99, 0)",
                &[],
            )
            .unwrap();
        let err = schema::migrate(&mut client).unwrap_err();
        assert!(err.to_string().contains("newer than this relay"), "{err}");
    }
}
