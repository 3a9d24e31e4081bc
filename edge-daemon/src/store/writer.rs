//! The single writer: everything that reaches the database goes through this thread.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use prost::Message as _;

use sync_protocol::records::FieldChange;
use sync_protocol::telemetry::{self, TelemetryRow};

use super::{
    quota, records, Acknowledgement, EventRow, IngestBatch, StoreConfig, StoreError, StoreStatus,
    Stream, Write,
};
use crate::clock::{Adjustment, TimeBase};
use crate::live::Committed;
use crate::vehicle::Event;
use crate::vehicle::{default_name, VehicleRecord};

/// How often retention and the quota are checked.
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// zstd level for raw frame chunks: fast, and tlog data still shrinks about 3×.
const CHUNK_ZSTD_LEVEL: i32 = 1;

pub(super) struct Writer {
    conn: Connection,
    config: StoreConfig,
    status: Arc<StoreStatus>,
    /// The next sequence of each stream, by `Stream::index`.
    next: [i64; 3],
    /// The open transaction holds events or edits: commit it now, and wake sync after.
    pending_urgent: bool,
    /// Events and record changes of the open transaction, told to stream clients once it
    /// commits (and never if it fails).
    pending_live: Vec<Committed>,
    /// Stamps edits made at this station.
    hlc: sync_protocol::hlc::Hlc,
    /// The station's wall time, moved by the ingest loop in order with the data it stamps
    /// (see `clock.rs`): what the writer stamps itself (commands, acks, parameters, edits).
    time: TimeBase,
    /// Raw frames of the open transaction, per sending system, as tlog records.
    chunks: HashMap<u8, Chunk>,
    /// When the open transaction must commit; `None` when no transaction is open.
    deadline: Option<Instant>,
    pending_samples: u64,
    pending_frames: u64,
    last_housekeeping: Instant,
}

#[derive(Default)]
struct Chunk {
    t_first: i64,
    t_last: i64,
    count: i64,
    data: Vec<u8>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        config: StoreConfig,
        status: Arc<StoreStatus>,
        time: TimeBase,
    ) -> Result<Writer, StoreError> {
        let mut next = [0; 3];
        for stream in Stream::ALL {
            let last = high_water(&conn, stream)?;
            status.committed_slot(stream).store(last, Relaxed);
            next[stream.index()] = last + 1;
        }
        status.db_bytes.store(quota::used_bytes(&conn)?, Relaxed);
        let hlc = records::clock(&conn)?;
        Ok(Writer {
            conn,
            config,
            status,
            next,
            pending_urgent: false,
            pending_live: Vec::new(),
            hlc,
            time,
            chunks: HashMap::new(),
            deadline: None,
            pending_samples: 0,
            pending_frames: 0,
            last_housekeeping: Instant::now(),
        })
    }

    pub(super) fn run(&mut self, rx: Receiver<Write>) {
        loop {
            self.status
                .writer_heartbeat_ms
                .store(crate::clock::monotonic_ms(), Relaxed);
            let now = Instant::now();
            let wait = match self.deadline {
                Some(d) => d.saturating_duration_since(now),
                None => HOUSEKEEPING,
            };
            match rx.recv_timeout(wait) {
                Ok(Write::Ingest(batch)) => self.ingest(batch),
                Ok(Write::Ack { stream, seq }) => self.ack(stream, seq, "max(acked_seq, ?2)"),
                Ok(Write::RelayLost { stream, seq }) => self.ack(stream, seq, "?2"),
                Ok(Write::Time(adjustment)) => self.set_time(adjustment),
                Ok(Write::Flush(reply)) => {
                    self.commit();
                    let _ = reply.send(());
                }
                Ok(Write::Edit {
                    table,
                    key,
                    fields,
                    reply,
                }) => {
                    let result = self.edit(&table, &key, fields);
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                }
                Ok(Write::Merge { changes, reply }) => {
                    for c in &changes {
                        // A peer far ahead does not drag this clock along; its change still
                        // merges by the same rule, so both sides converge.
                        if let Err(e) = self.hlc.observe(c.hlc, self.unix_us()) {
                            tracing::warn!("record change from the relay: {e}");
                        }
                    }
                    let result = self.merge(&changes);
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                }
                Ok(Write::Acknowledge {
                    alert_seq,
                    by,
                    reply,
                }) => {
                    let _ = reply.send(self.acknowledge(alert_seq, &by));
                }
                Ok(Write::Command {
                    vehicle,
                    action,
                    by,
                    reply,
                }) => {
                    let _ = reply.send(self.new_command(vehicle, &action, &by));
                }
                Ok(Write::Rebase {
                    stream,
                    above,
                    reply,
                }) => {
                    self.commit();
                    let _ = reply.send(self.rebase(stream, above).map_err(|e| e.to_string()));
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Senders outlive the store in tasks that are still stopping (sync, the API):
                // `Close` ends the writer whoever still holds one; their sends then fail.
                Ok(Write::Close) | Err(RecvTimeoutError::Disconnected) => {
                    self.commit();
                    return;
                }
            }
            if self.pending_urgent || self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.commit();
            }
            if self.deadline.is_none() && self.last_housekeeping.elapsed() >= HOUSEKEEPING {
                self.housekeeping();
            }
        }
    }

    fn unix_us(&self) -> u64 {
        self.time.now_us().max(0) as u64
    }

    /// Moves to a new time base; the first trusted one also moves what this run stored on
    /// the unsynchronised clock, after committing what is open (it was stamped on that clock).
    fn set_time(&mut self, adjustment: Adjustment) {
        if let Some(restamp) = &adjustment.restamp {
            if !self.commit() {
                tracing::error!("stored history not moved onto the trusted clock: a commit failed");
            } else if let Err(e) = self
                .begin()
                .and_then(|()| super::restamp::apply(&self.conn, restamp, self.hlc.node()))
            {
                tracing::error!("stored history not moved onto the trusted clock: {e}");
                self.fail(e, 0);
            } else {
                self.pending_urgent = true;
                self.commit();
            }
        }
        self.time = adjustment.base;
    }

    fn begin(&mut self) -> rusqlite::Result<()> {
        if self.deadline.is_none() {
            self.conn.execute_batch("BEGIN")?;
            self.deadline = Some(Instant::now() + self.config.commit_window);
        }
        Ok(())
    }

    fn ingest(&mut self, batch: IngestBatch) {
        let samples = batch.samples.len() as u64;
        if let Err(e) = self.try_ingest(&batch) {
            self.fail(e, samples);
            return;
        }
        self.pending_samples += samples;
        self.pending_frames += batch.frames.len() as u64;
        for (t_us, frame) in &batch.frames {
            let chunk = self.chunks.entry(frame.system_id()).or_default();
            if chunk.count == 0 {
                chunk.t_first = *t_us;
            }
            chunk.t_last = *t_us;
            chunk.count += 1;
            chunk.data.extend_from_slice(&(*t_us as u64).to_be_bytes());
            chunk.data.extend_from_slice(frame.as_bytes());
        }
    }

    fn try_ingest(&mut self, batch: &IngestBatch) -> rusqlite::Result<()> {
        self.begin()?;
        for v in &batch.vehicles {
            upsert_vehicle(&self.conn, v)?;
        }
        for e in &batch.events {
            self.insert_event(e.clone())?;
        }
        for update in &batch.params {
            super::params::apply(&self.conn, update, self.time.now_us())?;
        }
        for update in &batch.commands {
            let t_us = self.time.now_us();
            match super::commands::update(&self.conn, update, t_us)? {
                Some(row) => {
                    self.insert_event(command_event(&row, t_us))?;
                }
                None => tracing::warn!(command = update.id, "an outcome for an unknown command"),
            }
        }
        if batch.samples.is_empty() {
            return Ok(());
        }
        let mut insert = self.conn.prepare_cached(&format!(
            "INSERT INTO telemetry ({}) VALUES ({})",
            telemetry::sql::columns(),
            telemetry::sql::placeholders()
        ))?;
        let mut seq = self.next[Stream::Telemetry.index()];
        for s in &batch.samples {
            let row = TelemetryRow {
                seq: seq as u64,
                ..*s
            };
            insert.execute(rusqlite::params_from_iter(row.values()))?;
            seq += 1;
            self.next[Stream::Telemetry.index()] = seq;
        }
        Ok(())
    }

    fn edit(
        &mut self,
        table: &str,
        key: &str,
        fields: Vec<(String, String)>,
    ) -> Result<usize, String> {
        let mut changes = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            let hlc = self.hlc.now(self.unix_us()).map_err(|e| e.to_string())?;
            changes.push(FieldChange {
                table: table.into(),
                key: key.into(),
                field,
                value,
                hlc,
            });
        }
        self.merge(&changes)
    }

    /// Merges `changes` and commits at once: edits are durable before they are answered.
    fn merge(&mut self, changes: &[FieldChange]) -> Result<usize, String> {
        let mut renames = Vec::new();
        let mut won = 0;
        let result = self.begin().and_then(|()| {
            for c in changes {
                let seq = self.next[Stream::Changes.index()];
                if records::apply(&self.conn, c, seq, &mut renames)? {
                    self.next[Stream::Changes.index()] += 1;
                    won += 1;
                    self.pending_live.push(Committed::Record {
                        table: c.table.clone(),
                        key: c.key.clone(),
                        field: c.field.clone(),
                        value: c.value.clone(),
                    });
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            self.fail(e, 0);
            return Err("the store could not write the change".into());
        }
        self.pending_urgent = true;
        if !self.commit() {
            return Err("the store could not commit the change".into());
        }
        if changes.iter().any(|c| c.table == "geofences") {
            self.status.geofences_changed.store(true, Relaxed);
        }
        if !renames.is_empty() {
            self.status
                .renames
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(renames);
        }
        Ok(won)
    }

    /// Shifts every row of `stream` by `above` (so the lowest becomes > `above`) and
    /// continues the sequence after them; the relay's mark becomes the edge's cursor.
    fn rebase(&mut self, stream: Stream, above: u64) -> rusqlite::Result<()> {
        let offset = above as i64;
        let next = self.next[stream.index()];
        if next > offset {
            return Ok(()); // already above the mark
        }
        let table = stream.table();
        // Negate first so no row collides with another mid-update on the primary key.
        self.conn.execute_batch("BEGIN")?;
        let result = (|| {
            self.conn
                .execute(&format!("UPDATE {table} SET seq = -seq"), [])?;
            self.conn
                .execute(&format!("UPDATE {table} SET seq = -seq + ?1"), [offset])?;
            if stream == Stream::Events {
                // The stored body carries the sequence too, and so do acknowledgements.
                renumber_event_bodies(&self.conn, offset)?;
                self.conn.execute(
                    "UPDATE alert_acks SET alert_seq = -(alert_seq + ?1), ack_seq = ack_seq + ?1",
                    [offset],
                )?;
                self.conn
                    .execute("UPDATE alert_acks SET alert_seq = -alert_seq", [])?;
            }
            set_high_water(&self.conn, stream, next - 1 + offset)?;
            self.conn.execute(
                "INSERT INTO sync_cursor (stream, acked_seq) VALUES (?1, ?2)
                 ON CONFLICT (stream) DO UPDATE SET acked_seq = excluded.acked_seq",
                params![stream.name(), offset],
            )?;
            self.conn.execute_batch("COMMIT")
        })();
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
            return result;
        }
        self.next[stream.index()] += offset;
        self.status
            .committed_slot(stream)
            .store(self.next[stream.index()] - 1, Relaxed);
        tracing::warn!(
            stream = stream.name(),
            above,
            "outbox renumbered above the relay's mark"
        );
        Ok(())
    }

    /// Gives `e` the next events sequence and stores it; the transaction then commits at
    /// once, and stream clients hear of it once it has.
    fn insert_event(&mut self, mut e: Event) -> rusqlite::Result<i64> {
        let seq = self.next[Stream::Events.index()];
        e.seq = seq as u64;
        self.conn
            .prepare_cached(
                "INSERT INTO events (seq, t_us, vehicle, kind, code, severity, message, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                seq,
                e.t_us,
                e.vehicle,
                e.kind,
                e.code,
                e.severity,
                e.message,
                e.encode_to_vec(),
            ])?;
        self.pending_live
            .push(Committed::Event(EventRow::new(seq, &e)));
        self.next[Stream::Events.index()] += 1;
        self.pending_urgent = true;
        Ok(seq)
    }

    /// Stores a new command and its `pending` event, committed before the reply.
    fn new_command(
        &mut self,
        vehicle: u8,
        action: &crate::gcs::Action,
        by: &str,
    ) -> Result<super::CommandRow, StoreError> {
        let t_us = self.time.now_us();
        let result = self.begin().and_then(|()| {
            let id = super::commands::insert(&self.conn, vehicle, action, by, t_us)?;
            // A signing key is stored with the command that installs it, in one transaction.
            match action {
                crate::gcs::Action::Signing(crate::gcs::SigningOp::Install(key)) => {
                    self.conn.execute(
                        "INSERT INTO signing_keys (vehicle, key, command, created_us)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (vehicle) DO UPDATE SET key = excluded.key,
                            command = excluded.command, created_us = excluded.created_us",
                        rusqlite::params![vehicle, &key.0[..], id, t_us],
                    )?;
                }
                crate::gcs::Action::Signing(crate::gcs::SigningOp::Remove) => {
                    self.conn
                        .execute("DELETE FROM signing_keys WHERE vehicle = ?1", [vehicle])?;
                }
                _ => {}
            }
            let row = super::commands::get(&self.conn, id)?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            self.insert_event(command_event(&row, t_us))?;
            Ok(row)
        });
        match result {
            Ok(row) if self.commit() => Ok(row),
            Ok(_) => Err(StoreError::Records(
                "the store could not commit the command".into(),
            )),
            Err(e) => {
                self.fail(e, 0);
                Err(StoreError::Records(
                    "the store could not write the command".into(),
                ))
            }
        }
    }

    /// Records that `by` acknowledged alert `alert_seq`: an ACK event, which sync takes to
    /// HQ, and its row in `alert_acks`, committed before the answer. The first
    /// acknowledgement stands; a second answers with it and writes nothing.
    fn acknowledge(
        &mut self,
        alert_seq: i64,
        by: &str,
    ) -> Result<(Acknowledgement, bool), StoreError> {
        use sync_protocol::proto::event::{Kind, Severity};
        let result = self.begin().and_then(|()| {
            let existing = self
                .conn
                .query_row(
                    "SELECT by, t_us, ack_seq FROM alert_acks WHERE alert_seq = ?1",
                    [alert_seq],
                    |r| {
                        Ok(Acknowledgement {
                            by: r.get(0)?,
                            t_us: r.get(1)?,
                            seq: r.get(2)?,
                        })
                    },
                )
                .optional()?;
            if let Some(first) = existing {
                return Ok(Some((first, false)));
            }
            let alert = self
                .conn
                .query_row(
                    "SELECT vehicle, message FROM events WHERE seq = ?1 AND kind = ?2",
                    params![alert_seq, Kind::Alert as i32],
                    |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            let Some((vehicle, message)) = alert else {
                return Ok(None);
            };
            let t_us = self.time.now_us();
            let seq = self.insert_event(Event {
                t_us,
                vehicle,
                kind: Kind::Ack as i32,
                code: "ack".into(),
                severity: Severity::Info as i32,
                message: format!("{by} acknowledged: {message}"),
                acknowledgement: Some(sync_protocol::proto::Acknowledgement {
                    alert_seq: alert_seq as u64,
                    by: by.into(),
                }),
                ..Event::default()
            })?;
            self.conn.execute(
                "INSERT INTO alert_acks (alert_seq, ack_seq, t_us, by) VALUES (?1, ?2, ?3, ?4)",
                params![alert_seq, seq, t_us, by],
            )?;
            let ack = Acknowledgement {
                by: by.into(),
                t_us,
                seq,
            };
            Ok(Some((ack, true)))
        });
        match result {
            Ok(Some(ack)) => {
                if self.commit() {
                    Ok(ack)
                } else {
                    Err(StoreError::Records(
                        "the store could not commit the acknowledgement".into(),
                    ))
                }
            }
            Ok(None) => Err(StoreError::NoSuchAlert(alert_seq)),
            Err(e) => {
                self.fail(e, 0);
                Err(StoreError::Records(
                    "the store could not write the acknowledgement".into(),
                ))
            }
        }
    }

    /// Sets a stream's cursor to `value`, an SQL expression of the old one and `?2`.
    fn ack(&mut self, stream: Stream, seq: i64, value: &str) {
        let result = self.begin().and_then(|()| {
            self.conn.execute(
                &format!(
                    "INSERT INTO sync_cursor (stream, acked_seq) VALUES (?1, ?2)
                     ON CONFLICT (stream) DO UPDATE SET acked_seq = {value}"
                ),
                params![stream.name(), seq],
            )
        });
        if let Err(e) = result {
            self.fail(e, 0);
        }
    }

    /// Commits the open transaction, if any; false if it failed (and was rolled back).
    fn commit(&mut self) -> bool {
        if self.deadline.is_none() {
            return true;
        }
        let started = Instant::now();
        match self.try_commit() {
            Ok(()) => {
                let s = &self.status;
                s.commit_times.record(started.elapsed().as_micros() as u64);
                for stream in Stream::ALL {
                    s.committed_slot(stream)
                        .store(self.next[stream.index()] - 1, Relaxed);
                }
                if std::mem::take(&mut self.pending_urgent) {
                    s.urgent_committed.notify_one();
                }
                for c in self.pending_live.drain(..) {
                    s.live.send(c);
                }
                s.committed_samples.fetch_add(self.pending_samples, Relaxed);
                s.committed_frames.fetch_add(self.pending_frames, Relaxed);
                s.commits.fetch_add(1, Relaxed);
                s.last_commit_unix_ms
                    .store(self.time.now_us() / 1000, Relaxed);
                self.deadline = None;
                self.pending_samples = 0;
                self.pending_frames = 0;
                // A disk filling faster than housekeeping runs is caught here, once a commit.
                if quota::disk_space(&self.conn).is_some_and(|(free, reserve)| free < 2 * reserve) {
                    self.housekeeping();
                }
                true
            }
            Err(e) => {
                self.fail(e, 0);
                false
            }
        }
    }

    fn try_commit(&mut self) -> rusqlite::Result<()> {
        {
            let mut insert = self.conn.prepare_cached(
                "INSERT INTO frames (sysid, t_first_us, t_last_us, count, data, trusted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (sysid, chunk) in &self.chunks {
                if chunk.count == 0 {
                    continue;
                }
                let data = zstd::bulk::compress(&chunk.data, CHUNK_ZSTD_LEVEL)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                insert.execute(params![
                    sysid,
                    chunk.t_first,
                    chunk.t_last,
                    chunk.count,
                    data,
                    self.time.trusted()
                ])?;
            }
        }
        for stream in Stream::ALL {
            set_high_water(&self.conn, stream, self.next[stream.index()] - 1)?;
        }
        self.conn.execute_batch("COMMIT")?;
        self.chunks.clear();
        Ok(())
    }

    /// A write failed (a full disk, an I/O error): roll back, make room, carry on. What the
    /// rolled-back transaction held is counted as lost; the daemon does not stop.
    fn fail(&mut self, e: rusqlite::Error, extra_samples: u64) {
        let lost = self.pending_samples + extra_samples;
        tracing::error!("store write failed, {lost} samples lost: {e}");
        self.status.write_errors.fetch_add(1, Relaxed);
        self.status.lost_samples.fetch_add(lost, Relaxed);
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // Sequence numbers handed out in the lost transaction are skipped, never reused.
        self.deadline = None;
        self.pending_urgent = false;
        self.pending_live.clear();
        self.pending_samples = 0;
        self.pending_frames = 0;
        self.chunks.clear();
        if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull)) {
            quota::make_room(&self.conn, &self.status);
        }
    }

    fn housekeeping(&mut self) {
        self.last_housekeeping = Instant::now();
        self.status.housekeeping_runs.fetch_add(1, Relaxed);
        if let Err(e) = quota::enforce(&self.conn, &self.config, &self.status) {
            tracing::error!("store housekeeping failed: {e}");
            self.status.write_errors.fetch_add(1, Relaxed);
        }
    }
}

/// The newest sequence `stream` ever used: its newest row, or the mark kept in `meta` when
/// rows were deleted.
fn high_water(conn: &Connection, stream: Stream) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!(
            "SELECT max(coalesce((SELECT max(seq) FROM {}), 0),
                        coalesce((SELECT value FROM meta WHERE key = ?1), 0))",
            stream.table()
        ),
        [stream.meta_key()],
        |r| r.get(0),
    )
}

fn set_high_water(conn: &Connection, stream: Stream, seq: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![stream.meta_key(), seq])?;
    Ok(())
}

fn renumber_event_bodies(conn: &Connection, offset: i64) -> rusqlite::Result<()> {
    let bodies: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT seq, body FROM events")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = conn.prepare("UPDATE events SET body = ?2 WHERE seq = ?1")?;
    for (seq, body) in bodies {
        let mut event = sync_protocol::proto::Event::decode(body.as_slice())
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        event.seq = seq as u64;
        if let Some(ack) = &mut event.acknowledgement {
            ack.alert_seq += offset as u64;
        }
        update.execute(params![seq, event.encode_to_vec()])?;
    }
    Ok(())
}

fn upsert_vehicle(conn: &Connection, v: &VehicleRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO vehicles (sysid, name, uid, autopilot, mav_type, first_seen_us, last_seen_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (sysid) DO UPDATE SET
            uid = coalesce(excluded.uid, uid),
            autopilot = excluded.autopilot,
            mav_type = excluded.mav_type,
            last_seen_us = excluded.last_seen_us",
    )?
    .execute(params![
        v.sysid,
        default_name(v.sysid),
        v.uid.map(|u| format!("{u:016x}")),
        v.autopilot,
        v.mav_type,
        v.seen_us
    ])?;
    Ok(())
}

/// The `COMMAND` event for a command as it now stands.
fn command_event(row: &super::CommandRow, t_us: i64) -> Event {
    use crate::gcs::Outcome;
    use sync_protocol::proto::event::{Kind, Severity};
    let severity = match row.outcome {
        Outcome::Pending | Outcome::InProgress | Outcome::Accepted => Severity::Info,
        _ => Severity::Warning,
    };
    Event {
        t_us,
        vehicle: u32::from(row.vehicle),
        kind: Kind::Command as i32,
        code: "command".into(),
        severity: severity as i32,
        message: format!(
            "{} by {}: {}",
            row.description,
            row.by,
            row.outcome.as_str().replace('_', " ")
        ),
        command: Some(sync_protocol::proto::CommandOutcome {
            id: row.id as u64,
            command: row.command.clone(),
            outcome: row.outcome.as_str().into(),
            result: row.result.map(u32::from),
            by: row.by.clone(),
        }),
        ..Event::default()
    }
}
