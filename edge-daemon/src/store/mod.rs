//! The SQLite store: every frame and every sample, kept on an SD card that loses power without
//! warning.
//!
//! One writer thread owns the only writing connection and batches everything into one
//! transaction per commit window (default 1 s), and the database never corrupts (WAL,
//! `synchronous=FULL`); what a power cut may lose is stated once, in ARCHITECTURE.md ("What a
//! power cut loses"). Readers (the API, export) open their own read-only connections and never
//! block the writer.

mod commands;
mod params;
mod query;
mod quota;
mod records;
mod restamp;
mod schema;
pub mod tlog;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::frame::Frame;
use crate::vehicle::{Event, Sample, VehicleRecord};
pub use commands::CommandRow;
pub use params::{ParamChange, ParamHistoryQuery, ParamList, ParamRow};
pub use query::{EventRow, Reader, Record, TelemetryQuery, VehicleRow};
use sync_protocol::records::FieldChange;

/// The outbox's streams, each with its own never-reused sequence and sync cursor: the
/// protocol's upstream streams ([`sync_protocol::stream::Stream::UPSTREAM`]), each kept in a
/// table of this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Samples, drained in bulk behind everything else.
    Telemetry,
    /// Alerts, state changes, vehicle identity: sent first, committed on arrival.
    Events,
    /// Edits made at this station to editable records (fields, geofences, names,
    /// proposals); their `seq` orders every change the station applied, its own or not.
    Changes,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Telemetry, Stream::Events, Stream::Changes];

    fn index(self) -> usize {
        self as usize
    }

    /// The protocol's stream this outbox stream feeds.
    pub fn protocol(self) -> sync_protocol::stream::Stream {
        match self {
            Stream::Telemetry => sync_protocol::stream::Stream::Telemetry,
            Stream::Events => sync_protocol::stream::Stream::Events,
            Stream::Changes => sync_protocol::stream::Stream::Changes,
        }
    }

    /// The outbox stream of a protocol stream; `None` for one the edge receives.
    pub fn of(stream: sync_protocol::stream::Stream) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.protocol() == stream)
    }

    /// The stream's name in the sync protocol and in `sync_cursor`.
    pub fn name(self) -> &'static str {
        self.protocol().name()
    }

    fn table(self) -> &'static str {
        match self {
            Stream::Telemetry => "telemetry",
            Stream::Events => "events",
            Stream::Changes => "records",
        }
    }

    /// The `meta` key holding the stream's high-water mark.
    fn meta_key(self) -> &'static str {
        match self {
            Stream::Telemetry => "telemetry_seq",
            Stream::Events => "events_seq",
            Stream::Changes => "changes_seq",
        }
    }
}

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "trellis.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("database {0}: {1}")]
    Open(PathBuf, rusqlite::Error),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored frames are corrupt: {0}")]
    Corrupt(String),
    #[error("the store has shut down")]
    Closed,
    #[error("renumbering the outbox failed: {0}")]
    Rebase(String),
    #[error("editing records failed: {0}")]
    Records(String),
    #[error("there is no alert {0}")]
    NoSuchAlert(i64),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    pub commit_window: Duration,
    /// Bytes the database may use before the oldest telemetry is deleted.
    pub quota_bytes: u64,
    /// Raw frames older than this are deleted (samples are kept until the quota says so).
    pub frame_retention: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            commit_window: Duration::from_secs(1),
            quota_bytes: 2 << 30,
            frame_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// One loop iteration's worth of ingest: raw frames with receive times, and samples.
#[derive(Debug, Default)]
pub struct IngestBatch {
    pub frames: Vec<(i64, Frame)>,
    pub samples: Vec<Sample>,
    pub vehicles: Vec<VehicleRecord>,
    /// Committed as soon as the writer sees them, not at the end of the commit window.
    pub events: Vec<Event>,
    /// Outcomes of commands to vehicles; committed at once too (each is an event).
    pub commands: Vec<crate::gcs::CommandUpdate>,
    /// What vehicles reported of their parameters.
    pub params: Vec<crate::gcs::ParamUpdate>,
}

impl IngestBatch {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self.samples.is_empty()
            && self.vehicles.is_empty()
            && self.events.is_empty()
            && self.commands.is_empty()
            && self.params.is_empty()
    }
}

pub(crate) enum Write {
    Ingest(IngestBatch),
    /// Records the relay's durable acknowledgement of a stream up to `seq`.
    Ack {
        stream: Stream,
        seq: i64,
    },
    /// The relay no longer holds what it acknowledged past `seq`: the cursor falls back.
    RelayLost {
        stream: Stream,
        seq: i64,
    },
    /// Commits now and answers when the commit is durable.
    Flush(mpsc::Sender<()>),
    /// An edit made at this station: stamped with the station's HLC, merged, committed.
    Edit {
        table: String,
        key: String,
        fields: Vec<(String, String)>,
        reply: mpsc::Sender<Result<usize, String>>,
    },
    /// Changes from the relay, merged under the same rule and committed before the reply.
    Merge {
        changes: Vec<FieldChange>,
        reply: mpsc::Sender<Result<usize, String>>,
    },
    /// Renumbers the outbox so every row's sequence is above `above` (see `StoreSender::rebase`).
    Rebase {
        stream: Stream,
        above: u64,
        reply: mpsc::Sender<Result<(), String>>,
    },
    /// A person acknowledged an alert; committed before the reply.
    Acknowledge {
        alert_seq: i64,
        by: String,
        reply: mpsc::Sender<Result<(Acknowledgement, bool), StoreError>>,
    },
    /// A command for a vehicle, from `by`: stored as pending, committed before the reply.
    Command {
        vehicle: u8,
        action: crate::gcs::Action,
        by: String,
        reply: mpsc::Sender<Result<CommandRow, StoreError>>,
    },
    /// Commits what is pending and ends the writer (see `Store::close`).
    Close,
    /// The station's clock moved (see `clock.rs`): stamp on the new base from here on.
    Time(crate::clock::Adjustment),
}

/// An alert's acknowledgement. The first one stands: acknowledging again answers with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Acknowledgement {
    /// The token name that acknowledged it.
    pub by: String,
    pub t_us: i64,
    /// The ACK event's sequence on the events stream.
    pub seq: i64,
}

/// What the writer has made durable; read by the API and the tests.
#[derive(Debug, Default)]
pub struct StoreStatus {
    /// Highest telemetry sequence in a committed transaction.
    pub committed_seq: AtomicI64,
    /// Highest event sequence in a committed transaction.
    pub committed_event_seq: AtomicI64,
    /// Highest record change sequence in a committed transaction.
    pub committed_change_seq: AtomicI64,
    /// Woken after every commit that held events or edits, so sync sends them at once.
    pub urgent_committed: tokio::sync::Notify,
    /// Events and record changes, each sent once its commit is durable (the live stream).
    pub live: crate::live::CommittedFeed,
    pub committed_samples: AtomicU64,
    pub committed_frames: AtomicU64,
    pub commits: AtomicU64,
    /// How long each commit took (chunk compression, inserts, fsync).
    pub commit_times: CommitTimes,
    pub last_commit_unix_ms: AtomicI64,
    pub db_bytes: AtomicU64,
    pub write_errors: AtomicU64,
    /// Samples that could not be stored (only when the disk is full and nothing is deletable).
    pub lost_samples: AtomicU64,
    pub quota_deleted_samples: AtomicU64,
    pub quota_deleted_frames: AtomicU64,
    /// Retention and quota passes made (every 10 s, and after a commit on a filling disk).
    pub housekeeping_runs: AtomicU64,
    /// Monotonic ms (`clock::monotonic_ms`) of the writer loop's last turn (it turns at least
    /// every 10 s).
    pub writer_heartbeat_ms: AtomicI64,
    /// Vehicles renamed in the registry (system id, name), for the ingest loop to pick up.
    renames: std::sync::Mutex<Vec<(u8, String)>>,
    /// A geofence changed (here or at HQ): the ingest loop reads them again.
    geofences_changed: std::sync::atomic::AtomicBool,
}

impl StoreStatus {
    /// Registry renames since the last call.
    pub fn take_renames(&self) -> Vec<(u8, String)> {
        std::mem::take(&mut *self.renames.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a geofence changed since the last call.
    pub fn take_geofences_changed(&self) -> bool {
        self.geofences_changed.swap(false, Relaxed)
    }

    /// The newest committed sequence of `stream`.
    pub fn committed(&self, stream: Stream) -> u64 {
        self.committed_slot(stream).load(Relaxed).max(0) as u64
    }

    fn committed_slot(&self, stream: Stream) -> &AtomicI64 {
        match stream {
            Stream::Telemetry => &self.committed_seq,
            Stream::Events => &self.committed_event_seq,
            Stream::Changes => &self.committed_change_seq,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoreStatusView {
    pub path: String,
    pub committed_seq: i64,
    pub committed_samples: u64,
    pub committed_frames: u64,
    pub commits: u64,
    pub last_commit_unix_ms: i64,
    pub db_bytes: u64,
    pub quota_bytes: u64,
    pub write_errors: u64,
    pub lost_samples: u64,
    pub quota_deleted_samples: u64,
    pub quota_deleted_frames: u64,
    pub housekeeping_runs: u64,
}

/// The handle the daemon holds: send writes, read status, open readers.
pub struct Store {
    tx: Option<SyncSender<Write>>,
    status: Arc<StoreStatus>,
    path: PathBuf,
    config: StoreConfig,
    thread: Option<JoinHandle<()>>,
    /// The time base the writer started on.
    time: crate::clock::TimeBase,
}

/// Batches waiting for the writer before ingest has to wait (backpressure, never loss).
const WRITE_QUEUE: usize = 64;

impl Store {
    pub fn open(data_dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::DataDir(data_dir.to_path_buf(), e))?;
        let path = data_dir.join(DB_FILE);
        let conn = open_writer(&path)?;
        let status = Arc::new(StoreStatus::default());
        let (tx, rx) = mpsc::sync_channel(WRITE_QUEUE);
        // This run's clock starts after everything already stored, whatever the system
        // clock says (a Pi without a real-time clock boots at 1970).
        let time = crate::clock::TimeBase::start(restamp::newest_us(&conn)?);
        let mut writer = writer::Writer::new(conn, config, status.clone(), time)?;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::Io)?;
        Ok(Store {
            time,
            tx: Some(tx),
            status,
            path,
            config,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The time base this run starts on: the ingest loop's clock begins here.
    pub fn time_base(&self) -> crate::clock::TimeBase {
        self.time
    }

    pub fn status(&self) -> Arc<StoreStatus> {
        self.status.clone()
    }

    pub fn status_view(&self) -> StoreStatusView {
        status_view(&self.status, &self.path, self.config.quota_bytes)
    }

    pub fn reader(&self) -> Reader {
        Reader::new(self.path.clone())
    }

    /// A cloneable sender for the ingest loop.
    pub fn sender(&self) -> StoreSender {
        StoreSender {
            tx: self.tx.clone(),
            status: self.status.clone(),
        }
    }

    /// Commits everything sent so far and waits until it is durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.sender().flush()
    }

    /// Commits what is pending and stops the writer, even while other tasks still hold
    /// senders: writes sent after this fail with [`StoreError::Closed`].
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.tx.take() {
            // Queued behind what was sent before, so that is committed too.
            let _ = tx.send(Write::Close);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn status_view(status: &StoreStatus, path: &Path, quota_bytes: u64) -> StoreStatusView {
    StoreStatusView {
        path: path.display().to_string(),
        committed_seq: status.committed_seq.load(Relaxed),
        committed_samples: status.committed_samples.load(Relaxed),
        committed_frames: status.committed_frames.load(Relaxed),
        commits: status.commits.load(Relaxed),
        last_commit_unix_ms: status.last_commit_unix_ms.load(Relaxed),
        db_bytes: status.db_bytes.load(Relaxed),
        quota_bytes,
        write_errors: status.write_errors.load(Relaxed),
        lost_samples: status.lost_samples.load(Relaxed),
        quota_deleted_samples: status.quota_deleted_samples.load(Relaxed),
        quota_deleted_frames: status.quota_deleted_frames.load(Relaxed),
        housekeeping_runs: status.housekeeping_runs.load(Relaxed),
    }
}

/// Sends writes to the writer thread. Never drops: when the writer is behind, the caller waits.
#[derive(Clone)]
pub struct StoreSender {
    tx: Option<SyncSender<Write>>,
    status: Arc<StoreStatus>,
}

impl StoreSender {
    /// What the writer has made durable.
    pub fn status(&self) -> &StoreStatus {
        &self.status
    }

    /// Sends a batch from async code: waits (off the async scheduler) if the writer is behind.
    pub fn send_batch(&self, batch: IngestBatch) -> Result<(), StoreError> {
        self.send(Write::Ingest(batch))
    }

    /// The station's clock moved: what is sent after this is stamped on the new base.
    pub fn send_time(&self, adjustment: crate::clock::Adjustment) -> Result<(), StoreError> {
        self.send(Write::Time(adjustment))
    }

    /// Sets `fields` (name, JSON value) of record `table/key` as an edit made here; durable
    /// on return. Returns how many fields changed.
    pub fn edit(
        &self,
        table: &str,
        key: &str,
        fields: Vec<(String, String)>,
    ) -> Result<usize, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Write::Edit {
            table: table.into(),
            key: key.into(),
            fields,
            reply: tx,
        })?;
        rx.recv()
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Records)
    }

    /// Merges changes that came from the relay; durable on return.
    pub fn merge(&self, changes: Vec<FieldChange>) -> Result<usize, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Write::Merge { changes, reply: tx })?;
        rx.recv()
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Records)
    }

    /// Acknowledges alert `alert_seq` as `by`; durable on return. Acknowledging an alert
    /// twice answers with the first acknowledgement, and `false`: nothing new was written.
    pub fn acknowledge(
        &self,
        alert_seq: i64,
        by: &str,
    ) -> Result<(Acknowledgement, bool), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Write::Acknowledge {
            alert_seq,
            by: by.into(),
            reply: tx,
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Stores a command for `vehicle` from `by`, with its `pending` event; durable on return,
    /// so it is on record before it is sent.
    pub fn command(
        &self,
        vehicle: u8,
        action: crate::gcs::Action,
        by: &str,
    ) -> Result<CommandRow, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Write::Command {
            vehicle,
            action,
            by: by.into(),
            reply: tx,
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    pub fn ack(&self, stream: Stream, seq: i64) -> Result<(), StoreError> {
        self.send(Write::Ack { stream, seq })
    }

    /// The relay no longer holds what it acknowledged of `stream` past `seq` (restored from
    /// an older backup): the cursor falls back to `seq`, so that the outbox keeps the rows
    /// after it until they are resent and acknowledged again.
    pub fn relay_lost(&self, stream: Stream, seq: i64) -> Result<(), StoreError> {
        self.send(Write::RelayLost { stream, seq })
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Write::Flush(tx))?;
        rx.recv().map_err(|_| StoreError::Closed)
    }

    /// Moves every outbox row, and the sequence itself, above `above`. For a station whose
    /// database was lost and recreated while the relay kept its mark: without this, new rows
    /// would reuse sequences the relay already holds and be ignored as duplicates. Blocks
    /// until the change is durable.
    pub fn rebase(&self, stream: Stream, above: u64) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.send(Write::Rebase {
            stream,
            above,
            reply: tx,
        })?;
        rx.recv()
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Rebase)
    }

    fn send(&self, write: Write) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        match tx.try_send(write) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(write)) => {
                let blocking = || tx.send(write).map_err(|_| StoreError::Closed);
                match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(blocking)
                    }
                    _ => blocking(),
                }
            }
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }
}

fn open_writer(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let open = || -> rusqlite::Result<rusqlite::Connection> {
        let mut conn = rusqlite::Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        Ok(conn)
    };
    open().map_err(|e| StoreError::Open(path.to_path_buf(), e))
}

/// The upper bounds of [`CommitTimes`]' buckets, in µs: a commit on an SSD takes about a
/// millisecond, on a Pi's SD card tens, and one over a second holds ingest back.
pub const COMMIT_BUCKETS_US: [u64; 11] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// Commit durations counted by bucket, for a Prometheus histogram: the slow commits a mean
/// hides (an SD card's occasional long fsync) show in the upper buckets.
#[derive(Debug, Default)]
pub struct CommitTimes {
    /// Per bucket of [`COMMIT_BUCKETS_US`], then one for longer: not cumulative.
    counts: [AtomicU64; COMMIT_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl CommitTimes {
    pub fn record(&self, us: u64) {
        let bucket = COMMIT_BUCKETS_US.partition_point(|bound| *bound < us);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Per bucket its upper bound in seconds (`None`: no bound) and how many commits took
    /// at most that long; then the total time in seconds.
    pub fn cumulative(&self) -> (Vec<(Option<f64>, u64)>, f64) {
        let mut total = 0;
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                total += n.load(Relaxed);
                let bound = COMMIT_BUCKETS_US.get(i).map(|us| *us as f64 / 1e6);
                (bound, total)
            })
            .collect();
        (buckets, self.sum_us.load(Relaxed) as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vehicle::Sample;

    #[test]
    fn commit_times_count_each_commit_once_in_every_bucket_it_fits() {
        let times = CommitTimes::default();
        for us in [100, 500, 501, 30_000, 5_000_000] {
            times.record(us);
        }
        let (buckets, sum) = times.cumulative();
        let at = |bound: f64| {
            buckets
                .iter()
                .find(|(b, _)| *b == Some(bound))
                .map(|(_, n)| *n)
        };
        assert_eq!(at(0.0005), Some(2), "100 µs and 500 µs");
        assert_eq!(at(0.001), Some(3));
        assert_eq!(at(0.05), Some(4));
        assert_eq!(at(1.0), Some(4));
        assert_eq!(buckets.last(), Some(&(None, 5)), "+Inf holds them all");
        assert!((sum - 5.031101).abs() < 1e-9, "{sum}");
    }

    fn samples(vehicle: u8, n: usize, t0: i64) -> IngestBatch {
        IngestBatch {
            samples: (0..n)
                .map(|i| Sample {
                    vehicle: u32::from(vehicle),
                    t_us: t0 + i as i64 * 100_000,
                    lat_e7: 382_919_000 + i as i32,
                    ..Sample::default()
                })
                .collect(),
            ..IngestBatch::default()
        }
    }

    #[test]
    fn commits_report_the_sequence_and_acks_advance_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let tx = store.sender();
        tx.send_batch(samples(1, 30, 1_000)).unwrap();
        tx.send_batch(samples(2, 20, 1_000)).unwrap();
        store.flush().unwrap();
        let status = store.status_view();
        assert_eq!((status.committed_seq, status.committed_samples), (50, 50));

        tx.ack(Stream::Telemetry, 30).unwrap();
        tx.ack(Stream::Telemetry, 10).unwrap(); // a stale ack never moves the cursor back
        store.flush().unwrap();
        assert_eq!(store.reader().acked(Stream::Telemetry).unwrap(), 30);

        let rows = store
            .reader()
            .telemetry(&TelemetryQuery {
                vehicle: 2,
                from_us: 0,
                to_us: i64::MAX,
                every_us: None,
                after: None,
                limit: 100,
            })
            .unwrap();
        assert_eq!(rows.len(), 20);
        assert_eq!(rows[0].seq, 31);
        let thinned = store
            .reader()
            .telemetry(&TelemetryQuery {
                vehicle: 1,
                from_us: 0,
                to_us: i64::MAX,
                every_us: Some(1_000_000),
                after: None,
                limit: 100,
            })
            .unwrap();
        assert_eq!(thinned.len(), 3, "30 samples 100 ms apart, one per second");
    }

    #[test]
    fn history_pages_walk_every_sample_once_even_where_samples_share_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let mut batch = samples(1, 10, 1_000_000);
        // Three samples in one microsecond, across a page boundary.
        for s in &mut batch.samples[3..6] {
            s.t_us = 1_300_000;
        }
        store.sender().send_batch(batch).unwrap();
        store.flush().unwrap();
        let query = |every_us, after| TelemetryQuery {
            vehicle: 1,
            from_us: 0,
            to_us: i64::MAX,
            every_us,
            after,
            limit: 4,
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.reader().telemetry(&query(None, after)).unwrap();
            seen.extend(page.iter().map(|r| r.seq));
            match page.last() {
                Some(last) if page.len() == 4 => after = Some((last.t_us, last.seq)),
                _ => break,
            }
        }
        assert_eq!(seen, (1..=10).collect::<Vec<u64>>());
        // Downsampled: the page after an interval starts at the next interval.
        let first = store
            .reader()
            .telemetry(&query(Some(500_000), None))
            .unwrap();
        assert_eq!(first.len(), 2, "{first:?}");
        let rest = store
            .reader()
            .telemetry(&query(Some(500_000), Some((2_000_000, 0))))
            .unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[test]
    fn a_restamp_moves_this_runs_times_and_leaves_earlier_ones() {
        use crate::clock::{Adjustment, Restamp, TimeBase, TimeSource};
        const Y2000: i64 = 946_684_800_000_000;
        const SHIFT: i64 = 850_000_000_000_000; // to 2026
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let tx = store.sender();
        // An earlier run, then this one on a system clock in 2000.
        tx.send_batch(samples(1, 3, Y2000 - 10_000_000)).unwrap();
        tx.send_time(Adjustment {
            base: TimeBase::fixed(Y2000 + 60_000_000, TimeSource::SystemUnsynced),
            restamp: None,
        })
        .unwrap();
        let mut batch = samples(1, 3, Y2000);
        let heartbeat = crate::dialect::MavMessage::HEARTBEAT(Default::default());
        let frame = crate::frame::Frame::encode(crate::frame::Version::V2, 1, 1, 0, &heartbeat);
        batch.frames.push((Y2000 + 10_000, frame));
        batch.events.push(Event {
            t_us: Y2000 + 50_000,
            vehicle: 1,
            message: "armed".into(),
            ..Event::default()
        });
        tx.send_batch(batch).unwrap();
        tx.send_time(Adjustment {
            base: TimeBase::fixed(Y2000 + SHIFT + 1_000_000, TimeSource::Gps),
            restamp: Some(Restamp {
                since_us: Y2000,
                shift_us: SHIFT,
                source: TimeSource::Gps,
            }),
        })
        .unwrap();
        // Stamped on the new base: it stays where it is.
        let mut after = samples(1, 1, Y2000 + SHIFT + 2_000_000);
        after.samples[0].time_source = TimeSource::Gps as u8;
        tx.send_batch(after).unwrap();
        store.flush().unwrap();

        let rows = store.reader().outbox(0, 100).unwrap();
        let times: Vec<(i64, u8)> = rows.iter().map(|r| (r.t_us, r.time_source)).collect();
        let (old, gps) = (TimeSource::SystemUnsynced as u8, TimeSource::Gps as u8);
        assert_eq!(
            times,
            vec![
                (Y2000 - 10_000_000, old),
                (Y2000 - 9_900_000, old),
                (Y2000 - 9_800_000, old),
                (Y2000 + SHIFT, gps),
                (Y2000 + SHIFT + 100_000, gps),
                (Y2000 + SHIFT + 200_000, gps),
                (Y2000 + SHIFT + 2_000_000, gps),
            ]
        );
        let mut tlog = Vec::new();
        let q = tlog::TlogQuery {
            vehicle: None,
            from_us: 0,
            to_us: i64::MAX,
        };
        assert_eq!(tlog::export(&store.reader(), &q, &mut tlog).unwrap(), 1);
        let stamp = i64::from_be_bytes(tlog[..8].try_into().unwrap());
        assert_eq!(
            stamp,
            Y2000 + SHIFT + 10_000,
            "a raw frame's time moves too"
        );
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let (t_us, body): (i64, Vec<u8>) = conn
            .query_row("SELECT t_us, body FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(t_us, Y2000 + SHIFT + 50_000);
        let synced = <Event as prost::Message>::decode(body.as_slice()).unwrap();
        assert_eq!(synced.t_us, t_us, "what sync sends moves too");
    }

    #[test]
    fn retention_ages_only_chunks_stamped_on_a_trusted_clock() {
        const DAY: i64 = 86_400_000_000;
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join(DB_FILE)).unwrap();
        let now = 1_800_000_000_000_000;
        for (t, trusted) in [(1_000, false), (now - 60 * DAY, true), (now, true)] {
            conn.execute(
                "INSERT INTO frames (sysid, t_first_us, t_last_us, count, data, trusted)
                 VALUES (1, ?1, ?1, 0, x'', ?2)",
                rusqlite::params![t, trusted],
            )
            .unwrap();
        }
        let config = StoreConfig::default(); // 30 days
        quota::enforce(&conn, &config, &StoreStatus::default()).unwrap();
        let kept: Vec<i64> = conn
            .prepare("SELECT t_last_us FROM frames ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            kept,
            [1_000, now],
            "the trusted chunk past retention goes; the one from a clock at 1970 has no age"
        );
    }

    #[test]
    fn a_rebase_moves_the_outbox_above_a_mark_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let tx = store.sender();
        tx.send_batch(samples(3, 5, 0)).unwrap();
        tx.rebase(Stream::Telemetry, 1_000).unwrap();
        assert_eq!(store.status_view().committed_seq, 1_005);
        assert_eq!(store.reader().acked(Stream::Telemetry).unwrap(), 1_000);
        let rows = store.reader().outbox(0, 100).unwrap();
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1_001, 1_002, 1_003, 1_004, 1_005]);
        assert_eq!(rows[0].lat_e7, 382_919_000, "content moves with the row");
        tx.send_batch(samples(3, 1, 0)).unwrap();
        tx.rebase(Stream::Telemetry, 500).unwrap(); // already above: nothing changes
        store.flush().unwrap();
        assert_eq!(store.status_view().committed_seq, 1_006);
    }

    #[test]
    fn an_alert_is_acknowledged_once_and_its_acknowledgement_follows_a_rebase() {
        use sync_protocol::proto::event::Kind;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let tx = store.sender();
        let event = |kind: Kind| Event {
            vehicle: 3,
            kind: kind as i32,
            message: "V-03 battery 9 %".into(),
            ..Event::default()
        };
        tx.send_batch(IngestBatch {
            events: vec![event(Kind::State), event(Kind::Alert)],
            ..IngestBatch::default()
        })
        .unwrap();
        store.flush().unwrap();
        assert!(matches!(
            tx.acknowledge(1, "ana"),
            Err(StoreError::NoSuchAlert(1))
        ));
        let (first, new) = tx.acknowledge(2, "ana").unwrap();
        assert!(new);
        assert_eq!((first.by.as_str(), first.seq), ("ana", 3));
        let (again, new) = tx.acknowledge(2, "ben").unwrap();
        assert_eq!(
            (again, new),
            (first, false),
            "the first acknowledgement stands"
        );

        tx.rebase(Stream::Events, 100).unwrap();
        let alerts = store.reader().events(Some(Kind::Alert), None, 10).unwrap();
        assert_eq!(alerts[0].seq, 102);
        let ack = alerts[0].acknowledged.as_ref().expect("still acknowledged");
        assert_eq!((ack.by.as_str(), ack.seq), ("ana", 103));
        let outbox = store.reader().events_outbox(0, 10).unwrap();
        let sent = outbox[2].acknowledgement.as_ref().expect("the ACK event");
        assert_eq!(
            sent.alert_seq, 102,
            "the ACK event names the renumbered alert"
        );
        assert!(tx.acknowledge(102, "ben").is_ok_and(|(_, new)| !new));
    }

    #[test]
    fn the_outbox_reads_back_every_field_at_its_extremes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let low = Sample {
            vehicle: 0,
            t_us: i64::MIN,
            time_source: 0,
            lat_e7: i32::MIN,
            lon_e7: i32::MIN,
            alt_mm: i32::MIN,
            rel_alt_mm: i32::MIN,
            vx: i16::MIN,
            vy: i16::MIN,
            vz: i16::MIN,
            heading_cdeg: 0,
            battery_mv: 0,
            battery_ca: i16::MIN,
            battery_pct: i8::MIN,
            gps_fix: 0,
            satellites: 0,
            custom_mode: 0,
            armed: false,
            mission_seq: 0,
            seq: 0,
        };
        let high = Sample {
            vehicle: u32::MAX,
            t_us: i64::MAX,
            time_source: u8::MAX,
            lat_e7: i32::MAX,
            lon_e7: i32::MAX,
            alt_mm: i32::MAX,
            rel_alt_mm: i32::MAX,
            vx: i16::MAX,
            vy: i16::MAX,
            vz: i16::MAX,
            heading_cdeg: u16::MAX,
            battery_mv: u16::MAX,
            battery_ca: i16::MAX,
            battery_pct: i8::MAX,
            gps_fix: u8::MAX,
            satellites: u8::MAX,
            custom_mode: u32::MAX,
            armed: true,
            mission_seq: u16::MAX,
            seq: 0,
        };
        let mixed = Sample {
            vx: -1,
            vy: 1,
            vz: -2,
            battery_ca: -1,
            battery_pct: -1,
            lat_e7: -1,
            lon_e7: 1,
            alt_mm: 5,
            rel_alt_mm: -5,
            custom_mode: 1 << 31,
            satellites: 1 << 7,
            ..high
        };
        let sent = [low, high, mixed];
        store
            .sender()
            .send_batch(IngestBatch {
                samples: sent.to_vec(),
                ..IngestBatch::default()
            })
            .unwrap();
        store.flush().unwrap();
        let read = store.reader().outbox(0, 10).unwrap();
        for (i, (read, sent)) in read.iter().zip(&sent).enumerate() {
            assert_eq!(
                *read,
                Sample {
                    seq: i as u64 + 1,
                    ..*sent
                }
            );
        }
        assert_eq!(read.len(), 3);
        // History reads the same table by the sample's column list: the same sample again.
        let history = store
            .reader()
            .telemetry(&TelemetryQuery {
                vehicle: 0,
                from_us: i64::MIN,
                to_us: i64::MAX,
                every_us: None,
                after: None,
                limit: 10,
            })
            .unwrap();
        assert_eq!(history, [Sample { seq: 1, ..low }]);
    }

    #[test]
    fn close_commits_and_stops_the_writer_while_senders_are_still_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let held = store.sender();
        held.send_batch(samples(1, 7, 0)).unwrap();
        let (closed_tx, closed) = mpsc::channel();
        std::thread::spawn(move || {
            store.close();
            let _ = closed_tx.send(());
        });
        closed
            .recv_timeout(Duration::from_secs(10))
            .expect("close() hung while a sender was held");
        assert!(matches!(
            held.send_batch(samples(1, 1, 0)),
            Err(StoreError::Closed)
        ));
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(
            store.status_view().committed_seq,
            7,
            "the batch sent before close"
        );
    }

    #[test]
    fn the_sequence_is_never_reused_after_a_reopen_even_if_rows_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            store.sender().send_batch(samples(1, 10, 0)).unwrap();
            store.close();
        }
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute("DELETE FROM telemetry", []).unwrap();
        drop(conn);
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(store.status_view().committed_seq, 10);
        store.sender().send_batch(samples(1, 1, 0)).unwrap();
        store.flush().unwrap();
        assert_eq!(store.status_view().committed_seq, 11);
    }
}
