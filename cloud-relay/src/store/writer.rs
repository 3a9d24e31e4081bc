//! The group-commit writer: every telemetry batch the relay stores passes through one thread
//! that commits the batches of many edges together.
//!
//! **Why.** An acknowledgement promises that the rows survive a power cut, so every commit ends
//! in an fsync. An fsync costs about the same whether the transaction holds 50 rows or 50,000:
//! on a server disk that honours it, one to several milliseconds. Committing each batch in its
//! own transaction therefore caps the relay at a few hundred batches a second however fast its
//! CPU is, and a thousand edges sending a batch a second each end up queued behind one
//! another's fsyncs. One writer also ends the contention of many sessions for one database
//! connection, and SQLite allows only one writer at a time anyway.
//!
//! **How.** Sessions hand their batches to a queue ([`GroupWriter::submit`]) and await the
//! [`Pending`] it returns. The writer takes the first batch waiting plus everything queued
//! behind it (up to [`GROUP_ROWS`] rows), applies them all in one transaction, commits once,
//! and only then answers each batch with its edge's new durable mark. It never waits on
//! purpose to gather more: while one group is being written and synced, the next one
//! accumulates in the queue, so groups grow with the load. The commits per second stay what
//! the disk can do while the batches per second keep growing, and an idle relay still
//! commits a lone batch at once.
//!
//! **What stays as it was.**
//! - An Ack follows the durable commit of the group that holds its batch.
//! - Each batch is judged on its own inside the group's transaction, by the same rules:
//!   idempotent by (edge, seq), a gap is refused, the mark moves only over contiguous ranges.
//!   A refused batch has written nothing and its group commits without it.
//! - Per-edge order: one queue and one thread apply batches in the order they were submitted,
//!   and a session submits its batches in the order they arrive.
//! - When the database fails while writing one batch, that batch gets the error and the rest
//!   of its group is applied again without it, so one batch the database refuses cannot fail
//!   the other edges. When the transaction fails as a whole (it cannot begin or commit: disk
//!   full, I/O error), nothing of it is durable and every batch in it gets the error; nothing
//!   was acknowledged, so the edges resend.
//!
//!
//! **Compaction** runs on the same thread, so telemetry keeps one writer: chunks that arrived
//! small (a connected station's batch a second) are merged per vehicle and time once they
//! are [`COMPACT_AGE`] old, a step of at most [`COMPACT_ROWS`] rows at a time: as many
//! steps as there is work while no batch waits, and one step a second under load, so a
//! step never holds more than tens of milliseconds of batches behind it.
//!
//! The writer knows nothing of SQL: a backend supplies the one transaction ([`ApplyGroup`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
use tokio::sync::oneshot;

use super::chunk::Chunk;
use super::StoreError;

/// Rows one group may gather before it is committed: bounds how long one transaction keeps
/// the batches behind it waiting (four catch-up batches of 16,384 rows).
pub const GROUP_ROWS: usize = 65_536;

/// Rows `first..=last` of one edge's telemetry stream (rows missing from the range were never
/// written or are gone at the edge), as the chunk that holds them.
#[derive(Debug, Clone)]
pub struct TelemetryBatch {
    pub edge: EdgeIdentity,
    pub first: u64,
    pub last: u64,
    pub chunk: Chunk,
}

impl TelemetryBatch {
    /// A batch of rows the relay encodes itself (tests, tools); a session passes the chunk
    /// it received.
    pub fn new(
        edge: EdgeIdentity,
        first: u64,
        last: u64,
        rows: &[TelemetryRow],
    ) -> Result<TelemetryBatch, StoreError> {
        Ok(TelemetryBatch {
            edge,
            first,
            last,
            chunk: Chunk::encode(rows)?,
        })
    }

    /// Whether the range is a range and every row lies inside it.
    pub fn in_range(&self) -> bool {
        self.first <= self.last
            && (self.chunk.rows == 0
                || (self.chunk.first_seq >= self.first && self.chunk.last_seq <= self.last))
    }
}

/// Chunks younger than this are left as they arrived: a catch-up drains at full speed, and
/// the newest hour-or-so of a connected station is rewritten once, not repeatedly.
pub const COMPACT_AGE: std::time::Duration = std::time::Duration::from_secs(600);
/// Rows one compaction step may read and rewrite: about 40 ms of the writer's time.
pub const COMPACT_ROWS: usize = 65_536;
/// Under load, one compaction step this often.
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What one compaction step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Chunks merged, and the chunks they became.
    pub chunks_in: u64,
    pub chunks_out: u64,
    pub rows: u64,
}

/// Why a group's transaction did not commit.
pub struct GroupFailure {
    /// The batch being written when the database failed, if the failure was one batch's.
    pub culprit: Option<usize>,
    pub error: StoreError,
}

/// A backend's part: one transaction for a whole group.
pub trait ApplyGroup: Send + 'static {
    /// Applies `batches` in order in one transaction and commits it durably. On success,
    /// each batch's verdict: its edge's new durable mark, or why it was refused (a refused
    /// batch must have written nothing). On failure nothing may have been committed.
    fn apply_group(
        &mut self,
        batches: &[TelemetryBatch],
    ) -> Result<Vec<Result<u64, StoreError>>, GroupFailure>;

    /// One compaction step in its own transaction: merges one edge's small chunks stored
    /// before `stored_before_us` (relay time), at most about `max_rows` rows, into chunks per
    /// vehicle and time. Nothing to do is `Compacted::default()`.
    fn compact(&mut self, stored_before_us: i64, max_rows: usize) -> Result<Compacted, StoreError>;
}

/// A batch's durable mark, once the commit of its group is done.
pub struct Pending(oneshot::Receiver<Result<u64, StoreError>>);

impl Pending {
    /// Waits for the commit: the edge's new durable mark, or why the batch was not stored.
    pub async fn durable(self) -> Result<u64, StoreError> {
        self.0.await.unwrap_or(Err(StoreError::WriterStopped))
    }

    /// The same from a thread that may block (never from async code).
    pub fn wait(self) -> Result<u64, StoreError> {
        self.0
            .blocking_recv()
            .unwrap_or(Err(StoreError::WriterStopped))
    }
}

/// Counters since the writer started.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub groups: AtomicU64,
    pub batches: AtomicU64,
    pub rows: AtomicU64,
    /// Rows rewritten by compaction.
    pub compacted_rows: AtomicU64,
    /// Compaction steps that failed (the database unreachable, say); retried with backoff.
    pub compaction_failures: AtomicU64,
    /// Batches submitted and not yet taken by the thread: compaction yields to them.
    pub queued: AtomicU64,
}

enum Job {
    Batch {
        batch: TelemetryBatch,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Compact everything stored before this time now (tools and tests).
    Compact {
        stored_before_us: i64,
        reply: oneshot::Sender<Result<Compacted, StoreError>>,
    },
}

/// The queue in front of the writer thread, and the thread.
pub struct GroupWriter {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
    /// Set when the writer is dropped: background compaction stops at its next step.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl GroupWriter {
    pub fn start(backend: impl ApplyGroup) -> std::io::Result<GroupWriter> {
        let (queue, jobs) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let counters = stats.clone();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || run(backend, &jobs, &counters, &stop))?;
        Ok(GroupWriter {
            queue: Some(queue),
            thread: Some(thread),
            stats,
            stopping,
        })
    }

    /// Queues a batch; never blocks. The queue is unbounded: each session keeps at most a
    /// couple of batches queued (see `server::lane`), so the sessions bound it.
    pub fn submit(&self, batch: TelemetryBatch) -> Pending {
        let (reply, pending) = oneshot::channel();
        if let Some(queue) = &self.queue {
            // A send fails only when the thread is gone; `pending` then says so.
            self.stats.queued.fetch_add(1, Relaxed);
            let _ = queue.send(Job::Batch { batch, reply });
        }
        Pending(pending)
    }

    /// Compacts every small chunk stored before `stored_before_us`, step by step, and waits
    /// until it is done: the totals of all steps.
    pub fn compact_now(&self, stored_before_us: i64) -> Result<Compacted, StoreError> {
        let (reply, done) = oneshot::channel();
        if let Some(queue) = &self.queue {
            let _ = queue.send(Job::Compact {
                stored_before_us,
                reply,
            });
        }
        done.blocking_recv()
            .unwrap_or(Err(StoreError::WriterStopped))
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

impl Drop for GroupWriter {
    /// Lets the thread finish what is queued, so the database closes cleanly.
    fn drop(&mut self) {
        self.stopping.store(true, Relaxed);
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    mut backend: impl ApplyGroup,
    jobs: &mpsc::Receiver<Job>,
    stats: &WriterStats,
    stopping: &std::sync::atomic::AtomicBool,
) {
    let mut last_step = std::time::Instant::now();
    // Steps wait this long between them: a second, doubling after each failure up to
    // COMPACT_BACKOFF_MAX, so an unreachable database is not asked (or logged) every second.
    let mut every = COMPACT_EVERY;
    loop {
        let next_step = every.saturating_sub(last_step.elapsed());
        let first = match jobs.recv_timeout(next_step) {
            Ok(Job::Batch { batch, reply }) => {
                stats.queued.fetch_sub(1, Relaxed);
                (batch, reply)
            }
            Ok(Job::Compact {
                stored_before_us,
                reply,
            }) => {
                let _ = reply.send(compact_all(&mut backend, stored_before_us, stats));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Idle: compact while there is work and nothing waits.
                last_step = std::time::Instant::now();
                while stats.queued.load(Relaxed) == 0
                    && !stopping.load(Relaxed)
                    && compact_step(&mut backend, stats, &mut every)
                {}
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        write_group(&mut backend, first, jobs, stats);
        if last_step.elapsed() >= every {
            // Under load: one step a second.
            last_step = std::time::Instant::now();
            compact_step(&mut backend, stats, &mut every);
        }
    }
}

/// The longest wait between compaction steps while they fail.
const COMPACT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(64);

/// One step of COMPACT_AGE-old chunks; whether there may be more. A failure doubles `every`
/// (the wait before the next step) and is logged when the wait grows, a success resets it.
fn compact_step(
    backend: &mut impl ApplyGroup,
    stats: &WriterStats,
    every: &mut std::time::Duration,
) -> bool {
    let before = crate::now_us() - COMPACT_AGE.as_micros() as i64;
    match backend.compact(before, COMPACT_ROWS) {
        Ok(done) => {
            if *every > COMPACT_EVERY {
                tracing::info!("compaction works again");
            }
            *every = COMPACT_EVERY;
            stats.compacted_rows.fetch_add(done.rows, Relaxed);
            done.chunks_in > 0
        }
        Err(e) => {
            stats.compaction_failures.fetch_add(1, Relaxed);
            if *every < COMPACT_BACKOFF_MAX {
                *every = (*every * 2).min(COMPACT_BACKOFF_MAX);
                tracing::warn!("compaction step failed (next try in {every:?}): {e}");
            }
            false
        }
    }
}

fn compact_all(
    backend: &mut impl ApplyGroup,
    stored_before_us: i64,
    stats: &WriterStats,
) -> Result<Compacted, StoreError> {
    let mut total = Compacted::default();
    loop {
        let done = backend.compact(stored_before_us, COMPACT_ROWS)?;
        stats.compacted_rows.fetch_add(done.rows, Relaxed);
        if done.chunks_in == 0 {
            return Ok(total);
        }
        total.chunks_in += done.chunks_in;
        total.chunks_out += done.chunks_out;
        total.rows += done.rows;
    }
}

/// Takes `first` and what is queued behind it (up to [`GROUP_ROWS`] rows) and commits them
/// as one group. A compaction request met in the queue runs after the group.
fn write_group(
    backend: &mut impl ApplyGroup,
    first: (TelemetryBatch, oneshot::Sender<Result<u64, StoreError>>),
    jobs: &mpsc::Receiver<Job>,
    stats: &WriterStats,
) {
    let mut rows = first.0.chunk.rows as usize;
    let mut group = vec![first];
    let mut after = None;
    while rows < GROUP_ROWS {
        match jobs.try_recv() {
            Ok(Job::Batch { batch, reply }) => {
                stats.queued.fetch_sub(1, Relaxed);
                rows += batch.chunk.rows as usize;
                group.push((batch, reply));
            }
            Ok(compact @ Job::Compact { .. }) => {
                after = Some(compact);
                break;
            }
            Err(_) => break,
        }
    }
    let (mut batches, mut replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    let span = tracing::debug_span!("group_commit", batches = batches.len(), rows);
    let _entered = span.enter();
    loop {
        match backend.apply_group(&batches) {
            Ok(verdicts) => {
                stats.groups.fetch_add(1, Relaxed);
                stats.batches.fetch_add(batches.len() as u64, Relaxed);
                stats.rows.fetch_add(rows as u64, Relaxed);
                for (reply, verdict) in replies.into_iter().zip(verdicts) {
                    let _ = reply.send(verdict);
                }
                break;
            }
            Err(GroupFailure {
                culprit: Some(i),
                error,
            }) if i < batches.len() => {
                tracing::warn!(edge = %batches[i].edge, "batch not stored: {error}");
                rows -= batches[i].chunk.rows as usize;
                batches.remove(i);
                let _ = replies.remove(i).send(Err(error));
                if batches.is_empty() {
                    break;
                }
            }
            Err(GroupFailure { error, .. }) => {
                tracing::error!("group of {} batches not stored: {error}", batches.len());
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Group(error.clone())));
                }
                break;
            }
        }
    }
    if let Some(Job::Compact {
        stored_before_us,
        reply,
    }) = after
    {
        let _ = reply.send(compact_all(backend, stored_before_us, stats));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails the group while writing any batch of edge "bad"; otherwise each batch's mark is
    /// its `last`. Records the groups it was given.
    struct Backend {
        groups: Arc<std::sync::Mutex<Vec<Vec<u64>>>>,
        /// Compaction steps with work left (u64::MAX: endless), each taking `step`.
        steps_left: u64,
        step: std::time::Duration,
        steps_done: Arc<AtomicU64>,
    }

    impl Backend {
        fn new(groups: Arc<std::sync::Mutex<Vec<Vec<u64>>>>) -> Backend {
            Backend {
                groups,
                steps_left: 0,
                step: std::time::Duration::ZERO,
                steps_done: Arc::default(),
            }
        }
    }

    impl ApplyGroup for Backend {
        fn apply_group(
            &mut self,
            batches: &[TelemetryBatch],
        ) -> Result<Vec<Result<u64, StoreError>>, GroupFailure> {
            self.groups
                .lock()
                .unwrap()
                .push(batches.iter().map(|b| b.last).collect());
            if let Some(i) = batches.iter().position(|b| b.edge.edge == "bad") {
                return Err(GroupFailure {
                    culprit: Some(i),
                    error: StoreError::BadRange { first: 0, last: 0 },
                });
            }
            Ok(batches.iter().map(|b| Ok(b.last)).collect())
        }

        fn compact(&mut self, _: i64, _: usize) -> Result<Compacted, StoreError> {
            if self.steps_left == 0 {
                return Ok(Compacted::default());
            }
            std::thread::sleep(self.step);
            self.steps_left = self.steps_left.saturating_sub(1);
            self.steps_done.fetch_add(1, Relaxed);
            Ok(Compacted {
                chunks_in: 2,
                chunks_out: 1,
                rows: 100,
            })
        }
    }

    fn batch(edge: &str, last: u64) -> TelemetryBatch {
        TelemetryBatch::new(EdgeIdentity::new("org", edge).unwrap(), last, last, &[]).unwrap()
    }

    /// A database that cannot compact (unreachable, say).
    struct Unreachable;

    impl ApplyGroup for Unreachable {
        fn apply_group(
            &mut self,
            batches: &[TelemetryBatch],
        ) -> Result<Vec<Result<u64, StoreError>>, GroupFailure> {
            Ok(batches.iter().map(|b| Ok(b.last)).collect())
        }

        fn compact(&mut self, _: i64, _: usize) -> Result<Compacted, StoreError> {
            Err(StoreError::Database("connection refused".into()))
        }
    }

    #[test]
    fn failing_compaction_backs_off_to_a_minute_and_counts() {
        let stats = WriterStats::default();
        let mut every = COMPACT_EVERY;
        let mut waits = Vec::new();
        for _ in 0..9 {
            assert!(!compact_step(&mut Unreachable, &stats, &mut every));
            waits.push(every.as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 64, 64, 64]);
        assert_eq!(stats.compaction_failures.load(Relaxed), 9);
        // Working again: back to a step a second.
        let mut backend = Backend::new(Arc::default());
        compact_step(&mut backend, &stats, &mut every);
        assert_eq!(every, COMPACT_EVERY);
    }

    #[test]
    fn a_batch_the_database_refuses_does_not_fail_its_group() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = GroupWriter::start(Backend::new(groups.clone())).unwrap();
        // Whether these land in one group or several depends on the thread's timing; the
        // verdicts must not.
        let pending: Vec<_> = [("a", 1), ("bad", 2), ("b", 3)]
            .into_iter()
            .map(|(edge, last)| writer.submit(batch(edge, last)))
            .collect();
        let verdicts: Vec<_> = pending.into_iter().map(Pending::wait).collect();
        assert!(matches!(verdicts[0], Ok(1)));
        assert!(matches!(verdicts[1], Err(StoreError::BadRange { .. })));
        assert!(matches!(verdicts[2], Ok(3)));
        drop(writer);
        let groups = groups.lock().unwrap();
        let committed: Vec<u64> = groups
            .iter()
            .filter(|g| !g.contains(&2))
            .flatten()
            .copied()
            .collect();
        assert_eq!(
            committed,
            [1, 3],
            "each good batch committed once: {groups:?}"
        );
    }

    #[test]
    fn dropping_the_writer_finishes_what_is_queued() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = GroupWriter::start(Backend::new(groups.clone())).unwrap();
        let pending: Vec<_> = (1..=100).map(|i| writer.submit(batch("a", i))).collect();
        drop(writer);
        for (i, p) in pending.into_iter().enumerate() {
            assert_eq!(p.wait().unwrap(), i as u64 + 1);
        }
    }

    #[test]
    fn an_idle_writer_compacts_until_nothing_is_left() {
        let mut backend = Backend::new(Default::default());
        backend.steps_left = 3;
        let done = backend.steps_done.clone();
        let writer = GroupWriter::start(backend).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while done.load(Relaxed) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "idle writer ran {} of 3 compaction steps",
                done.load(Relaxed)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(writer.stats().compacted_rows.load(Relaxed), 300);
    }

    #[test]
    fn endless_compaction_work_yields_to_a_batch() {
        let mut backend = Backend::new(Default::default());
        backend.steps_left = u64::MAX;
        backend.step = std::time::Duration::from_millis(20);
        let done = backend.steps_done.clone();
        let writer = GroupWriter::start(backend).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while done.load(Relaxed) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no compaction started"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The writer is busy compacting with no end in sight: a batch still goes first,
        // after at most the step in progress.
        let start = std::time::Instant::now();
        assert!(matches!(writer.submit(batch("a", 7)).wait(), Ok(7)));
        let waited = start.elapsed();
        assert!(
            waited < std::time::Duration::from_millis(500),
            "a batch waited {waited:?} behind compaction"
        );
        // And stopping the writer does not wait for the endless work either.
        while done.load(Relaxed) < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "compaction did not resume"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(writer);
    }
}
