//! Relay storage behind one trait: SQLite embedded by default (`sqlite.rs`); PostgreSQL for
//! scale-out comes later behind the same trait, so the SQL here stays portable. Telemetry is
//! kept as the chunks stations send (`chunk.rs`), written through the group-commit writer
//! (`writer.rs`), which any backend can drive with its own transaction ([`ApplyGroup`]), and
//! read back merged across stations by `history.rs`.
//!
//! Every record is keyed by org first: tenancy is in the schema, not only in the API.

pub mod chunk;
#[cfg(test)]
mod conformance;
pub mod history;
pub mod hq;
mod postgres;
pub mod registry;
mod sqlite;
mod writer;

pub use hq::HqStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::Event;
use sync_protocol::records::FieldChange;
use sync_protocol::stream::Stream;
pub use writer::{
    ApplyGroup, Compacted, GroupFailure, GroupWriter, Pending, TelemetryBatch, WriterStats,
    COMPACT_AGE, COMPACT_ROWS, GROUP_ROWS,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, full disk, a lost connection): the backend's own words.
    #[error("database: {0}")]
    Database(String),
    #[error("no organization {0:?}")]
    NoSuchOrg(String),
    #[error("organization {0:?} exists already")]
    OrgExists(String),
    #[error("{stream}: batch starts at {first} but the relay holds only up to {acked}: a gap")]
    Gap {
        stream: Stream,
        first: u64,
        acked: u64,
    },
    #[error("batch range {first}..={last} is empty or holds rows outside it")]
    BadRange { first: u64, last: u64 },
    #[error("telemetry batch: {0}")]
    Codec(#[from] sync_protocol::codec::CodecError),
    /// Something the relay stored does not read back (a damaged chunk).
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("the system random generator failed")]
    Random,
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

impl StoreError {
    /// Whether the relay's own storage failed (disk full, I/O error, the writer gone), as
    /// against a batch the store refused on its merits (a gap, a bad range, a revoked edge).
    pub fn is_storage_failure(&self) -> bool {
        match self {
            StoreError::Database(_)
            | StoreError::Corrupt(_)
            | StoreError::Random
            | StoreError::WriterStopped
            | StoreError::WriterStart(_) => true,
            StoreError::Group(inner) => inner.is_storage_failure(),
            StoreError::NoSuchOrg(_)
            | StoreError::OrgExists(_)
            | StoreError::Gap { .. }
            | StoreError::BadRange { .. }
            | StoreError::Codec(_)
            | StoreError::NotActive(_) => false,
        }
    }
}

/// The protocol's rule for a batch `first..=last` of `stream` (`sync_protocol::session::admit`)
/// as a store applies it: `true` when it is all held already (acknowledge `acked` again),
/// `false` when its rows above `acked` are to be stored, a [`StoreError::Gap`] otherwise.
pub(crate) fn already_held(
    stream: Stream,
    acked: u64,
    first: u64,
    last: u64,
) -> Result<bool, StoreError> {
    use sync_protocol::session::{admit, Admission};
    match admit(acked, first, last) {
        Admission::Held => Ok(true),
        Admission::Store => Ok(false),
        Admission::Gap => Err(StoreError::Gap {
            stream,
            first,
            acked,
        }),
    }
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
    /// Those of `edges` that are no longer active (revoked, or gone): what a relay asks
    /// every second about the edges connected to it.
    fn inactive_among(&self, edges: &[EdgeIdentity]) -> Result<Vec<EdgeIdentity>, StoreError> {
        let mut inactive = Vec::new();
        for edge in edges {
            if self.edge_status(edge)? != EdgeStatus::Active {
                inactive.push(edge.clone());
            }
        }
        Ok(inactive)
    }
    /// The durable high-water mark of one edge's stream.
    fn acked(&self, edge: &EdgeIdentity, stream: Stream) -> Result<u64, StoreError>;
    /// Stores rows `first..=last` of the telemetry stream (rows missing from the range were
    /// never written or are gone at the edge) as one chunk and returns the new durable
    /// high-water mark. Idempotent: a range already held changes nothing and returns the
    /// same mark. Refuses an edge that is not active. Blocks until durable: not for async
    /// code, which uses [`RelayStore::submit_telemetry`].
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
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<(), StoreError>;
    /// Compacts now every small telemetry chunk stored before `stored_before_us` (relay
    /// time), which the writer otherwise does in the background once they are
    /// [`COMPACT_AGE`] old. Blocks until done.
    fn compact_telemetry(&self, stored_before_us: i64) -> Result<Compacted, StoreError>;
    /// What this instance's group-commit writer has done since it started.
    fn writer_stats(&self) -> &WriterStats;
    /// Telemetry samples the org's edges have delivered (a sample two stations heard counts
    /// twice).
    fn telemetry_count(&self, org: &str) -> Result<u64, StoreError>;
    /// Stores events `first..=last` (same rules as telemetry) and folds identity events into
    /// the org's vehicle registry, where a vehicle heard by two edges (same autopilot uid)
    /// is one vehicle. Returns the new durable high-water mark.
    fn apply_events(
        &self,
        edge: &EdgeIdentity,
        first: u64,
        last: u64,
        events: &[Event],
    ) -> Result<u64, StoreError>;
    /// Applies edits to the org's editable records under the merge rule of
    /// `sync_protocol::records` (per field, the larger HLC wins), durably; returns how many
    /// changed something. Each one that did gets the org's next revision.
    fn apply_changes(&self, org: &str, changes: &[FieldChange]) -> Result<usize, StoreError>;
    /// The org's record fields changed after revision `after`, oldest first, with their
    /// revision: what an edge that has seen up to `after` still needs.
    fn changes_since(
        &self,
        org: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, FieldChange)>, StoreError>;
    /// The org's records of one table: key → field → JSON value.
    fn records(&self, org: &str, table: &str) -> Result<Vec<Record>, StoreError>;
    /// Moves an edge's cursor of `stream` forward (never back): for streams the edge
    /// acknowledges (downsync) or the relay acknowledges without storing rows (changes).
    fn advance_cursor(
        &self,
        edge: &EdgeIdentity,
        stream: Stream,
        seq: u64,
    ) -> Result<(), StoreError>;
}

/// Everything a relay stores, for the sync path and for HQ: what `cloud-relay serve` runs on.
pub trait Store: RelayStore + HqStore {}

impl<S: RelayStore + HqStore> Store for S {}

/// Opens the store `url` names: empty, SQLite at `sqlite_path`; `postgres://…` or
/// `postgresql://…`, PostgreSQL.
pub fn open(
    url: &str,
    sqlite_path: &std::path::Path,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.is_empty() {
        Ok(std::sync::Arc::new(SqliteStore::open(sqlite_path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::open(url)?))
    } else {
        Err(StoreError::Database(format!(
            "store url {url:?}: expected empty (SQLite) or postgres://…"
        )))
    }
}

/// One editable record, every field with its current value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Record {
    pub key: String,
    pub fields: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Record {
    /// Records from (key, field, JSON text) rows ordered by key: what both backends store.
    pub(crate) fn from_fields(
        rows: impl IntoIterator<Item = (String, String, String)>,
    ) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for (key, field, value) in rows {
            let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::Null);
            match out.last_mut() {
                Some(last) if last.key == key => {
                    last.fields.insert(field, value);
                }
                _ => out.push(Record {
                    key,
                    fields: std::collections::BTreeMap::from([(field, value)]),
                }),
            }
        }
        out
    }
}
