//! Retention and the disk quota, in the order the spec sets: raw frames past their retention
//! go first; over the quota, the oldest telemetry the relay has already acknowledged goes next;
//! only then is unsynced history thinned (raw frames first, then every other sample of the
//! oldest stretch). Vehicles, cursors — and, as they arrive, alerts, commands and missions —
//! are never deleted here.
//!
//! Ages are measured against the newest stored data, not the wall clock: a Pi that boots with
//! its clock days ahead must not think its whole history has expired. And only between chunks
//! stamped on a trusted clock (GPS or NTP): one stamped on an unsynchronised clock that never
//! learnt the time has no age to judge, and leaves only by the quota.

use std::sync::atomic::Ordering::Relaxed;

use rusqlite::{Connection, OptionalExtension};

use super::{StoreConfig, StoreStatus};

/// Deleting down to this fraction of the quota avoids running at the limit every check.
const LOW_WATER: f64 = 0.9;
const SAMPLE_BATCH: i64 = 5_000;
const FRAME_BATCH: i64 = 50;

/// Free space on the database's file system, and how much of it to keep in reserve: room for
/// the WAL and for the deletes that make space (a delete needs disk too). Returns `None` where
/// the file system cannot be asked.
pub(super) fn disk_space(conn: &Connection) -> Option<(u64, u64)> {
    let path = std::ffi::CString::new(conn.path()?).ok()?;
    // SAFETY: statvfs only writes into `st`, a plain C struct valid when zeroed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    let size = st.f_blocks as u64 * block;
    let free = st.f_bavail as u64 * block;
    // A delete in WAL mode must write before it frees: keep room for a full WAL and a delete.
    let reserve = (size / 10).clamp(2 * super::schema::WAL_LIMIT as u64, 128 << 20);
    Some((free, reserve))
}

/// The quota in force: the configured one, or less when the disk itself is running out.
fn effective_quota(conn: &Connection, config: &StoreConfig, used: u64) -> u64 {
    match disk_space(conn) {
        Some((free, reserve)) => config
            .quota_bytes
            .min((used + free).saturating_sub(reserve)),
        None => config.quota_bytes,
    }
}

/// Bytes in use: pages that hold data (free pages are reusable) plus the WAL.
pub(super) fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let wal = conn
        .path()
        .and_then(|p| std::fs::metadata(format!("{p}-wal")).ok())
        .map_or(0, |m| m.len());
    Ok(((pages - free).max(0) * size) as u64 + wal)
}

pub(super) fn enforce(
    conn: &Connection,
    config: &StoreConfig,
    status: &StoreStatus,
) -> rusqlite::Result<()> {
    let newest: Option<i64> =
        conn.query_row("SELECT max(t_last_us) FROM frames WHERE trusted", [], |r| {
            r.get(0)
        })?;
    if let Some(newest) = newest {
        let cutoff = newest - config.frame_retention.as_micros() as i64;
        let n = conn.execute(
            "DELETE FROM frames WHERE t_last_us < ?1 AND trusted",
            [cutoff],
        )?;
        status.quota_deleted_frames.fetch_add(n as u64, Relaxed);
    }
    let used = used_bytes(conn)?;
    status.db_bytes.store(used, Relaxed);
    let quota = effective_quota(conn, config, used);
    if used > quota {
        let target = (quota as f64 * LOW_WATER) as u64;
        tracing::warn!(used, quota, "store over quota");
        shrink(conn, target, status)?;
        let after = used_bytes(conn)?;
        status.db_bytes.store(after, Relaxed);
        if after > quota {
            tracing::error!(
                after,
                "store still over quota: only records that are never deleted remain"
            );
        }
    }
    Ok(())
}

/// After a write failed for lack of disk: free what can be freed, whatever the quota says.
pub(super) fn make_room(conn: &Connection, status: &StoreStatus) {
    let target = used_bytes(conn).map_or(0, |u| u / 2);
    if let Err(e) = shrink(conn, target, status) {
        tracing::error!("could not free space: {e}");
    }
}

fn shrink(conn: &Connection, target: u64, status: &StoreStatus) -> rusqlite::Result<()> {
    let acked: i64 = conn
        .query_row(
            "SELECT acked_seq FROM sync_cursor WHERE stream = 'telemetry'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    // Raw frames count as synced once the samples decoded from them are.
    let synced_until: i64 = conn
        .query_row(
            "SELECT coalesce(max(t_us), 0) FROM telemetry WHERE seq <= ?1",
            [acked],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);

    let steps: [(&str, i64, bool); 4] = [
        (
            "DELETE FROM telemetry WHERE seq IN
               (SELECT seq FROM telemetry WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
            acked,
            true,
        ),
        (
            "DELETE FROM frames WHERE id IN
               (SELECT id FROM frames WHERE t_last_us <= ?1 ORDER BY id LIMIT ?2)",
            synced_until,
            false,
        ),
        // Unsynced raw frames: the same delete with no time bound.
        (
            "DELETE FROM frames WHERE id IN
               (SELECT id FROM frames WHERE t_last_us <= ?1 ORDER BY id LIMIT ?2)",
            i64::MAX,
            false,
        ),
        (
            "DELETE FROM telemetry WHERE seq IN
               (SELECT seq FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT ?2) AND seq % 2 = 1",
            acked,
            true,
        ),
    ];
    for (sql, bound, samples) in steps {
        loop {
            // Checkpoint between batches: deleted pages only return to the file system once
            // the WAL that recorded the delete is folded back into the database.
            reclaim(conn)?;
            if used_bytes(conn)? <= target {
                return Ok(());
            }
            let limit = if samples { SAMPLE_BATCH } else { FRAME_BATCH };
            let n = conn.execute(sql, [bound, limit])? as u64;
            if samples {
                status.quota_deleted_samples.fetch_add(n, Relaxed);
            } else {
                status.quota_deleted_frames.fetch_add(n, Relaxed);
            }
            if n == 0 {
                break;
            }
        }
    }
    reclaim(conn)
}

/// Hands free pages back to the file system and cuts the WAL back to nothing.
fn reclaim(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);",
    )
}
