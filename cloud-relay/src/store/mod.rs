//! Relay storage behind one trait: SQLite embedded by default (`sqlite.rs`); PostgreSQL for
//! scale-out comes later behind the same trait, so the SQL here stays portable (the one
//! SQLite-only statement, the writer's bulk insert, says why). Telemetry is written through
//! the group-commit writer (`writer.rs`), which any backend can drive with its own
//! transaction ([`ApplyGroup`]).
//!
//! Every record is keyed by org first: tenancy is in the schema, not only in the API.

mod sqlite;
mod writer;

pub use sqlite::SqliteStore;
use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
pub use writer::{
    ApplyGroup, GroupFailure, GroupWriter, Pending, TelemetryBatch, WriterStats, GROUP_ROWS,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("no organization {0:?}")]
    NoSuchOrg(String),
    #[error("organization {0:?} exists already")]
    OrgExists(String),
    #[error("{stream}: batch starts at {first} but the relay holds only up to {acked}: a gap")]
    Gap {
        stream: String,
        first: u64,
        acked: u64,
    },
    #[error("batch range {first}..={last} is empty or holds rows outside it")]
    BadRange { first: u64, last: u64 },
    #[error("edge {0} is not enrolled, or was revoked")]
    NotActive(String),
    #[error("the store's writer has stopped")]
    WriterStopped,
    #[error("cannot start the store's writer: {0}")]
    WriterStart(String),
    /// The transaction of the group holding this batch failed as a whole.
    #[error("{0}")]
    Group(std::sync::Arc<StoreError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeStatus {
    Unknown,
    Active,
    Revoked,
}

pub trait RelayStore: Send + Sync + 'static {
    fn create_org(&self, org: &str) -> Result<(), StoreError>;
    fn orgs(&self) -> Result<Vec<String>, StoreError>;
    fn enroll_edge(&self, edge: &EdgeIdentity) -> Result<(), StoreError>;
    /// Returns whether the edge was active.
    fn revoke_edge(&self, edge: &EdgeIdentity) -> Result<bool, StoreError>;
    fn edge_status(&self, edge: &EdgeIdentity) -> Result<EdgeStatus, StoreError>;
    /// The durable high-water mark of one edge's stream.
    fn acked(&self, edge: &EdgeIdentity, stream: &str) -> Result<u64, StoreError>;
    /// Stores rows `first..=last` of the telemetry stream (rows missing from the range were
    /// never written or are gone at the edge) and returns the new durable high-water mark.
    /// Idempotent: a range already held changes nothing and returns the same mark. Refuses
    /// an edge that is not active. Blocks until durable: not for async code, which uses
    /// [`RelayStore::submit_telemetry`].
    fn apply_telemetry(
        &self,
        edge: &EdgeIdentity,
        first: u64,
        last: u64,
        rows: &[TelemetryRow],
    ) -> Result<u64, StoreError>;
    /// Queues a batch for the store's writer, which commits the batches of many edges in one
    /// durable transaction (group commit, see `writer.rs`); same rules as
    /// [`RelayStore::apply_telemetry`]. Never blocks: the [`Pending`] resolves after the commit.
    fn submit_telemetry(&self, batch: TelemetryBatch) -> Pending;
    /// Records a range the edge says the relay had acknowledged but no longer holds.
    fn record_gap(
        &self,
        edge: &EdgeIdentity,
        stream: &str,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError>;
    fn telemetry_count(&self, org: &str) -> Result<u64, StoreError>;
}
