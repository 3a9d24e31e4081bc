//! Telemetry chunks in PostgreSQL: the group-commit writer's connection, which alone writes
//! them in this instance, the compaction steps it runs, and the reads a history query makes.
//! The rules are SQLite's (`store/sqlite/telemetry.rs`); what differs is locking, since
//! several relay instances may share the database: a batch locks its edge's mark until its
//! transaction ends, so two instances given the same range (a station that moved) store it
//! once, and a compaction step locks the chunks it merges.

use postgres::{Client, Config, GenericClient, NoTls, Statement, Transaction};
use sync_protocol::codec::TelemetryRow;
use sync_protocol::stream::Stream;

use crate::store::chunk::{
    compacted, level_of, Chunk, LEVEL_COMPACT, LEVEL_SMALL, LEVEL_UNREADABLE,
};
use crate::store::history::{ChunkRef, ChunkSource, Sighting};
use crate::store::writer::{ApplyGroup, Compacted, GroupFailure, TelemetryBatch};
use crate::store::StoreError;

/// The group-commit writer's own connection, and its statements, prepared once: an
/// unprepared statement costs a round trip to the server of its own, and a batch's work is
/// a handful of statements (each vehicle's index entries go in one, as arrays).
///
/// The server may end the connection (a restart, a failover, an administrator): the writer
/// then connects again before its next group, and until it can, every group fails as a
/// storage failure, so nothing is acknowledged and the stations resend.
pub(super) struct TelemetryWriter {
    config: Config,
    client: Client,
    sql: Statements,
}

struct Statements {
    /// `store_telemetry_chunk` (schema.rs, V2): a batch in one round trip.
    store: Statement,
    cursor_advance: Statement,
    chunk: Statement,
    vehicles: Statement,
    spans: Statement,
}

impl TelemetryWriter {
    pub(super) fn open(config: &Config) -> Result<TelemetryWriter, StoreError> {
        let mut client = config.connect(NoTls)?;
        let sql = Statements {
            store: client.prepare(
                "SELECT o_outcome, o_edge, o_acked FROM store_telemetry_chunk(
                    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )?,
            cursor_advance: client.prepare(
                "UPDATE stream_cursors SET acked_seq = GREATEST(acked_seq, $3)
                 WHERE edge_id = $1 AND stream = $2",
            )?,
            chunk: client.prepare(
                "INSERT INTO telemetry_chunks (edge_id, first_seq, last_seq, t_min_us, t_max_us,
                    rows, level, received_us, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )?,
            vehicles: client.prepare(
                "INSERT INTO chunk_vehicles (edge_id, vehicle, t_min_us, t_max_us, chunk_id, rows)
                 SELECT $1, v, lo, hi, $2, n
                 FROM unnest($3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[])
                    AS t (v, lo, hi, n)",
            )?,
            spans: client.prepare(
                "INSERT INTO chunk_spans (edge_id, vehicle, max_span_us)
                 SELECT $1, v, span FROM unnest($2::BIGINT[], $3::BIGINT[]) AS t (v, span)
                 ON CONFLICT (edge_id, vehicle) DO UPDATE SET max_span_us = excluded.max_span_us
                    WHERE excluded.max_span_us > chunk_spans.max_span_us",
            )?,
        };
        Ok(TelemetryWriter {
            config: config.clone(),
            client,
            sql,
        })
    }

    /// The connection, opened again if the server ended it.
    fn connected(&mut self) -> Result<(&mut Client, &Statements), StoreError> {
        if self.client.is_closed() {
            tracing::warn!("the writer's database connection was closed: connecting again");
            *self = TelemetryWriter::open(&self.config)?;
            tracing::info!("the writer is connected to the database again");
        }
        Ok((&mut self.client, &self.sql))
    }
}

impl ApplyGroup for TelemetryWriter {
    fn apply_group(
        &mut self,
        batches: &[TelemetryBatch],
    ) -> Result<Vec<Result<u64, StoreError>>, GroupFailure> {
        let whole = |error: StoreError| GroupFailure {
            culprit: None,
            error,
        };
        let (client, sql) = self.connected().map_err(whole)?;
        let mut tx = client.transaction().map_err(|e| whole(e.into()))?;
        let mut verdicts = Vec::with_capacity(batches.len());
        for (i, batch) in batches.iter().enumerate() {
            // A batch the database refuses aborts the transaction; the writer then applies
            // the group again without it.
            let verdict = apply_batch(&mut tx, sql, batch).map_err(|error| GroupFailure {
                culprit: Some(i),
                error,
            })?;
            verdicts.push(verdict);
        }
        tx.commit().map_err(|e| whole(e.into()))?;
        Ok(verdicts)
    }

    fn compact(&mut self, stored_before_us: i64, max_rows: usize) -> Result<Compacted, StoreError> {
        let (client, sql) = self.connected()?;
        let mut tx = client.transaction()?;
        let done = compact_oldest(&mut tx, sql, stored_before_us, max_rows)?;
        tx.commit()?;
        Ok(done)
    }
}

fn apply_batch(
    tx: &mut Transaction<'_>,
    sql: &Statements,
    batch: &TelemetryBatch,
) -> Result<Result<u64, StoreError>, StoreError> {
    let (first, last) = (batch.first, batch.last);
    if !batch.in_range() {
        return Ok(Err(StoreError::BadRange { first, last }));
    }
    // The function locks the mark until commit: another relay instance given the same
    // range (a station that moved to it) waits, then finds the range held.
    let chunk = &batch.chunk;
    let column = |f: fn(&crate::store::chunk::VehicleSpan) -> i64| -> Vec<i64> {
        chunk.vehicles.iter().map(f).collect()
    };
    let row = tx.query_one(
        &sql.store,
        &[
            &batch.edge.org,
            &batch.edge.edge,
            &(first as i64),
            &(last as i64),
            &(chunk.first_seq as i64),
            &(chunk.last_seq as i64),
            &chunk.t_min_us,
            &chunk.t_max_us,
            &i64::from(chunk.rows),
            &level_of(chunk),
            &crate::now_us(),
            &chunk.payload,
            &column(|v| i64::from(v.vehicle)),
            &column(|v| v.t_min_us),
            &column(|v| v.t_max_us),
            &column(|v| i64::from(v.rows)),
            &column(|v| v.t_max_us.saturating_sub(v.t_min_us)),
        ],
    )?;
    let acked = || row.get::<_, Option<i64>>(2).unwrap_or(0) as u64;
    match row.get::<_, &str>(0) {
        "stored" => Ok(Ok(last)),
        "held" => Ok(Ok(acked())),
        "inactive" => Ok(Err(StoreError::NotActive(batch.edge.to_string()))),
        "gap" => Ok(Err(StoreError::Gap {
            stream: Stream::Telemetry,
            first,
            acked: acked(),
        })),
        "overlap" => {
            // A resend overlapping what is held: its rows above the mark, re-encoded.
            let id: i64 = row.get(1);
            let fresh = chunk.clone().after(acked())?;
            if fresh.rows > 0 {
                insert_chunk(tx, sql, id, &fresh, level_of(&fresh), crate::now_us())?;
            }
            let stream = Stream::Telemetry.name();
            tx.execute(&sql.cursor_advance, &[&id, &stream, &(last as i64)])?;
            Ok(Ok(last))
        }
        other => Err(StoreError::Corrupt(format!(
            "store_telemetry_chunk answered {other:?}"
        ))),
    }
}

fn insert_chunk(
    tx: &mut Transaction<'_>,
    sql: &Statements,
    edge_id: i64,
    chunk: &Chunk,
    level: i64,
    received_us: i64,
) -> Result<i64, StoreError> {
    let chunk_id: i64 = tx
        .query_one(
            &sql.chunk,
            &[
                &edge_id,
                &(chunk.first_seq as i64),
                &(chunk.last_seq as i64),
                &chunk.t_min_us,
                &chunk.t_max_us,
                &i64::from(chunk.rows),
                &level,
                &received_us,
                &chunk.payload,
            ],
        )?
        .get(0);
    let column = |f: fn(&crate::store::chunk::VehicleSpan) -> i64| -> Vec<i64> {
        chunk.vehicles.iter().map(f).collect()
    };
    let vehicles = column(|v| i64::from(v.vehicle));
    tx.execute(
        &sql.vehicles,
        &[
            &edge_id,
            &chunk_id,
            &vehicles,
            &column(|v| v.t_min_us),
            &column(|v| v.t_max_us),
            &column(|v| i64::from(v.rows)),
        ],
    )?;
    tx.execute(
        &sql.spans,
        &[
            &edge_id,
            &vehicles,
            &column(|v| v.t_max_us.saturating_sub(v.t_min_us)),
        ],
    )?;
    Ok(chunk_id)
}

/// Merges the oldest small chunks of one edge into one-vehicle chunks (SQLite's
/// `compact_oldest`); the chunks it takes are locked, and skipped by another instance's
/// step running at the same time.
fn compact_oldest(
    tx: &mut Transaction<'_>,
    sql: &Statements,
    stored_before_us: i64,
    max_rows: usize,
) -> Result<Compacted, StoreError> {
    let Some(edge_id) = tx
        .query_opt(
            "SELECT edge_id FROM telemetry_chunks WHERE level = $1 AND received_us < $2
             ORDER BY received_us LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&LEVEL_SMALL, &stored_before_us],
        )?
        .map(|r| r.get::<_, i64>(0))
    else {
        return Ok(Compacted::default());
    };
    // Sizes first, payloads only of the chunks this step takes: an edge may have thousands
    // waiting, and a step takes at most `max_rows` rows of them.
    let candidates = tx.query(
        "SELECT id, rows FROM telemetry_chunks
         WHERE edge_id = $1 AND level = $2 AND received_us < $3 ORDER BY id
         FOR UPDATE SKIP LOCKED",
        &[&edge_id, &LEVEL_SMALL, &stored_before_us],
    )?;
    let mut ids: Vec<i64> = Vec::new();
    let mut total = 0usize;
    for r in &candidates {
        let rows = r.get::<_, i64>(1) as usize;
        if !ids.is_empty() && total + rows > max_rows {
            break;
        }
        total += rows;
        ids.push(r.get(0));
    }
    let inputs = tx.query(
        "SELECT id, payload FROM telemetry_chunks WHERE id = ANY($1) ORDER BY id",
        &[&ids],
    )?;
    let mut done = Compacted::default();
    let mut merged: Vec<TelemetryRow> = Vec::new();
    let (mut taken, mut unreadable): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    for r in inputs {
        let id: i64 = r.get(0);
        match Chunk::decode_with_rows(r.get(1)) {
            Ok((_, rows)) => {
                taken.push(id);
                done.chunks_in += 1;
                done.rows += rows.len() as u64;
                merged.extend(rows);
            }
            Err(e) => {
                tracing::error!(chunk = id, edge_id, "stored chunk does not decode: {e}");
                unreadable.push(id);
            }
        }
    }
    tx.execute(
        "UPDATE telemetry_chunks SET level = $2 WHERE id = ANY($1)",
        &[&unreadable, &LEVEL_UNREADABLE],
    )?;
    tx.execute(
        "DELETE FROM chunk_vehicles WHERE chunk_id = ANY($1)",
        &[&taken],
    )?;
    tx.execute("DELETE FROM telemetry_chunks WHERE id = ANY($1)", &[&taken])?;
    let now = crate::now_us();
    for out in compacted(merged)? {
        insert_chunk(tx, sql, edge_id, &out, LEVEL_COMPACT, now)?;
        done.chunks_out += 1;
    }
    Ok(done)
}

/// Samples held for the org's edges.
pub(super) fn count(c: &mut impl GenericClient, org: &str) -> Result<u64, StoreError> {
    let n: i64 = c
        .query_one(
            "SELECT coalesce(sum(c.rows), 0)::BIGINT FROM telemetry_chunks c
             JOIN edges e ON e.id = c.edge_id WHERE e.org = $1",
            &[&org],
        )?
        .get(0);
    Ok(n as u64)
}

/// History reads inside one read-only snapshot.
pub(super) struct Chunks<'a, 't>(pub &'a mut Transaction<'t>);

impl ChunkSource for Chunks<'_, '_> {
    fn chunks(
        &mut self,
        sighting: Sighting,
        from_us: i64,
        to_us: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<ChunkRef>, StoreError> {
        let vehicle = i64::from(sighting.sysid);
        let max_span: i64 = self
            .0
            .query_opt(
                "SELECT max_span_us FROM chunk_spans WHERE edge_id = $1 AND vehicle = $2",
                &[&sighting.edge_id, &vehicle],
            )?
            .map_or(0, |r| r.get(0));
        let (after_t, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
        let rows = self.0.query(
            "SELECT v.chunk_id, v.t_min_us, c.payload
             FROM chunk_vehicles v JOIN telemetry_chunks c ON c.id = v.chunk_id
             WHERE v.edge_id = $1 AND v.vehicle = $2
                AND v.t_min_us >= $3 AND v.t_min_us < $4 AND v.t_max_us >= $5
                AND (v.t_min_us, v.chunk_id) > ($6, $7)
             ORDER BY v.t_min_us, v.chunk_id
             LIMIT $8",
            &[
                &sighting.edge_id,
                &vehicle,
                &from_us.saturating_sub(max_span),
                &to_us,
                &from_us,
                &after_t,
                &after_id,
                &i64::from(limit),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| ChunkRef {
                chunk_id: r.get(0),
                t_min_us: r.get(1),
                payload: r.get(2),
            })
            .collect())
    }
}
