//! Telemetry chunks in SQLite: the group-commit writer's connection, which alone writes
//! them, and the reads a history query makes.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sync_protocol::codec::TelemetryRow;
use sync_protocol::stream::Stream;

use super::edges::acked_in;
use super::gate::WriteGate;
use crate::store::chunk::{
    compacted, level_of, Chunk, LEVEL_COMPACT, LEVEL_SMALL, LEVEL_UNREADABLE,
};
use crate::store::history::{ChunkRef, ChunkSource, Sighting};
use crate::store::writer::{ApplyGroup, Compacted, GroupFailure, TelemetryBatch};
use crate::store::{already_held, StoreError};

/// The group-commit writer's connection: the only one that writes telemetry.
pub(super) struct TelemetryWriter {
    conn: Connection,
    gate: std::sync::Arc<WriteGate>,
}

impl TelemetryWriter {
    pub(super) fn open(
        path: &Path,
        gate: std::sync::Arc<WriteGate>,
    ) -> Result<TelemetryWriter, StoreError> {
        let conn = super::connect(path)?;
        // The writer takes each batch's edge id from `edges` inside its own transaction, so
        // the foreign keys hold by construction; checking them again per row costs a lookup
        // per row and makes SQLite journal each statement.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
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
            let verdict = apply_batch(&tx, batch).map_err(|error| GroupFailure {
                culprit: Some(i),
                error,
            })?;
            verdicts.push(verdict);
        }
        tx.commit().map_err(whole)?;
        Ok(verdicts)
    }

    fn compact(&mut self, stored_before_us: i64, max_rows: usize) -> Result<Compacted, StoreError> {
        let _turn = self.gate.bulk();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = compact_oldest(&tx, stored_before_us, max_rows)?;
        tx.commit()?;
        Ok(done)
    }
}

/// Merges the oldest small chunks of the edge that has the oldest one, up to about
/// `max_rows` rows (at least one chunk), into chunks of one vehicle each.
fn compact_oldest(
    tx: &Connection,
    stored_before_us: i64,
    max_rows: usize,
) -> Result<Compacted, StoreError> {
    let edge_id: Option<i64> = tx
        .prepare_cached(
            "SELECT edge_id FROM telemetry_chunks WHERE level = ?1 AND received_us < ?2
             ORDER BY received_us LIMIT 1",
        )?
        .query_row(params![LEVEL_SMALL, stored_before_us], |r| r.get(0))
        .optional()?;
    let Some(edge_id) = edge_id else {
        return Ok(Compacted::default());
    };
    let mut inputs: Vec<(i64, Vec<u8>)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, rows, payload FROM telemetry_chunks
             WHERE edge_id = ?1 AND level = ?2 AND received_us < ?3 ORDER BY id",
        )?;
        let mut chunks = stmt.query(params![edge_id, LEVEL_SMALL, stored_before_us])?;
        let mut total = 0usize;
        while let Some(r) = chunks.next()? {
            let rows = r.get::<_, i64>(1)? as usize;
            if !inputs.is_empty() && total + rows > max_rows {
                break;
            }
            total += rows;
            inputs.push((r.get(0)?, r.get(2)?));
        }
    }
    let mut done = Compacted::default();
    let mut merged: Vec<TelemetryRow> = Vec::new();
    for (id, payload) in inputs {
        let (chunk, rows) = match Chunk::decode_with_rows(payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                // Checked on arrival, so this is damage at rest: keep it for an operator
                // rather than fail every later step on it.
                tracing::error!(chunk = id, edge_id, "stored chunk does not decode: {e}");
                tx.execute(
                    "UPDATE telemetry_chunks SET level = ?2 WHERE id = ?1",
                    params![id, LEVEL_UNREADABLE],
                )?;
                continue;
            }
        };
        let mut unindex = tx.prepare_cached(
            "DELETE FROM chunk_vehicles
             WHERE edge_id = ?1 AND vehicle = ?2 AND t_min_us = ?3 AND chunk_id = ?4",
        )?;
        for v in &chunk.vehicles {
            unindex.execute(params![edge_id, v.vehicle, v.t_min_us, id])?;
        }
        tx.prepare_cached("DELETE FROM telemetry_chunks WHERE id = ?1")?
            .execute([id])?;
        done.chunks_in += 1;
        done.rows += rows.len() as u64;
        merged.extend(rows);
    }
    let now = crate::now_us();
    for out in compacted(merged)? {
        insert_chunk(tx, edge_id, &out, LEVEL_COMPACT, now)?;
        done.chunks_out += 1;
    }
    Ok(done)
}

/// One batch inside the group's transaction. The outer error is the database failing; the
/// inner one a refusal, decided before anything is written.
fn apply_batch(
    tx: &Connection,
    batch: &TelemetryBatch,
) -> Result<Result<u64, StoreError>, StoreError> {
    let TelemetryBatch {
        edge, first, last, ..
    } = batch;
    let (first, last) = (*first, *last);
    if !batch.in_range() {
        return Ok(Err(StoreError::BadRange { first, last }));
    }
    let enrolled: Option<(i64, Option<i64>)> = tx
        .prepare_cached("SELECT id, revoked_us FROM edges WHERE org = ?1 AND edge = ?2")?
        .query_row(params![edge.org, edge.edge], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, None)) = enrolled else {
        return Ok(Err(StoreError::NotActive(edge.to_string())));
    };
    let acked = acked_in(tx, id, Stream::Telemetry)?;
    match already_held(Stream::Telemetry, acked, first, last) {
        Ok(true) => return Ok(Ok(acked)), // a resend of what is already durable
        Ok(false) => {}
        Err(gap) => return Ok(Err(gap)),
    }
    // A resend overlapping what is held adds only its newer rows: rare (an ack lost in a
    // reconnect), so that part is re-encoded rather than kept with a filter beside it.
    let fresh = match batch.chunk.first_seq > acked {
        true => std::borrow::Cow::Borrowed(&batch.chunk),
        false => std::borrow::Cow::Owned(batch.chunk.clone().after(acked)?),
    };
    if fresh.rows > 0 {
        insert_chunk(tx, id, &fresh, level_of(&fresh), crate::now_us())?;
    }
    tx.prepare_cached(
        "INSERT INTO stream_cursors (edge_id, stream, acked_seq) VALUES (?1, 'telemetry', ?2)
         ON CONFLICT (edge_id, stream) DO UPDATE SET acked_seq = excluded.acked_seq",
    )?
    .execute(params![id, last as i64])?;
    Ok(Ok(last))
}

/// Writes one chunk and its index entries.
pub(super) fn insert_chunk(
    tx: &Connection,
    edge_id: i64,
    chunk: &Chunk,
    level: i64,
    received_us: i64,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO telemetry_chunks (edge_id, first_seq, last_seq, t_min_us, t_max_us, rows,
            level, received_us, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        edge_id,
        chunk.first_seq as i64,
        chunk.last_seq as i64,
        chunk.t_min_us,
        chunk.t_max_us,
        chunk.rows,
        level,
        received_us,
        chunk.payload
    ])?;
    let chunk_id = tx.last_insert_rowid();
    let mut index = tx.prepare_cached(
        "INSERT INTO chunk_vehicles (edge_id, vehicle, t_min_us, t_max_us, chunk_id, rows)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut span = tx.prepare_cached(
        "INSERT INTO chunk_spans (edge_id, vehicle, max_span_us) VALUES (?1, ?2, ?3)
         ON CONFLICT (edge_id, vehicle) DO UPDATE SET max_span_us = excluded.max_span_us
            WHERE excluded.max_span_us > chunk_spans.max_span_us",
    )?;
    for v in &chunk.vehicles {
        index.execute(params![
            edge_id, v.vehicle, v.t_min_us, v.t_max_us, chunk_id, v.rows
        ])?;
        span.execute(params![
            edge_id,
            v.vehicle,
            v.t_max_us.saturating_sub(v.t_min_us)
        ])?;
    }
    Ok(chunk_id)
}

/// Samples held for the org's edges.
pub(super) fn count(conn: &Connection, org: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(c.rows), 0) FROM telemetry_chunks c
         JOIN edges e ON e.id = c.edge_id WHERE e.org = ?1",
    )?
    .query_row([org], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
}

/// History reads on one connection.
pub(super) struct Chunks<'c>(pub &'c Connection);

impl ChunkSource for Chunks<'_> {
    fn chunks(
        &mut self,
        sighting: Sighting,
        from_us: i64,
        to_us: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<ChunkRef>, StoreError> {
        let max_span: i64 = self
            .0
            .prepare_cached(
                "SELECT max_span_us FROM chunk_spans WHERE edge_id = ?1 AND vehicle = ?2",
            )?
            .query_row(params![sighting.edge_id, sighting.sysid], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let (after_t, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
        let mut stmt = self.0.prepare_cached(
            "SELECT v.chunk_id, v.t_min_us, c.payload
             FROM chunk_vehicles v JOIN telemetry_chunks c ON c.id = v.chunk_id
             WHERE v.edge_id = ?1 AND v.vehicle = ?2
                AND v.t_min_us >= ?3 AND v.t_min_us < ?4 AND v.t_max_us >= ?5
                AND (v.t_min_us, v.chunk_id) > (?6, ?7)
             ORDER BY v.t_min_us, v.chunk_id
             LIMIT ?8",
        )?;
        let refs = stmt.query_map(
            params![
                sighting.edge_id,
                sighting.sysid,
                from_us.saturating_sub(max_span),
                to_us,
                from_us,
                after_t,
                after_id,
                limit
            ],
            |r| {
                Ok(ChunkRef {
                    chunk_id: r.get(0)?,
                    t_min_us: r.get(1)?,
                    payload: r.get(2)?,
                })
            },
        )?;
        Ok(refs.collect::<Result<_, _>>()?)
    }
}
