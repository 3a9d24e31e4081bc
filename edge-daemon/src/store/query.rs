//! Read-only queries: history for the API, the vehicle registry, the sync cursor.
//!
//! Each call opens its own read-only connection (WAL readers never block the writer or each
//! other); opening SQLite costs tens of microseconds, far less than any query here.

use std::path::PathBuf;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use prost::Message as _;
use sync_protocol::proto::event::Kind as EventKind;
use sync_protocol::proto::{event_kind_name, severity_name};

use super::{Acknowledgement, StoreError, Stream};
use crate::vehicle::Event;
use sync_protocol::records::FieldChange;
use sync_protocol::telemetry::{self, TelemetryRow};

#[derive(Debug, Clone)]
pub struct Reader {
    path: PathBuf,
}

/// A history request: one vehicle, a time range, optionally one sample per `every_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryQuery {
    pub vehicle: u8,
    pub from_us: i64,
    pub to_us: i64,
    pub every_us: Option<i64>,
    /// Only samples after this (time, seq): where the page before ended.
    pub after: Option<(i64, u64)>,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VehicleRow {
    pub sysid: u8,
    pub name: String,
    pub uid: Option<String>,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
}

impl Reader {
    pub fn new(path: PathBuf) -> Reader {
        Reader { path }
    }

    pub fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open(self.path.clone(), e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// A vehicle's samples over a time range, oldest first.
    pub fn telemetry(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryRow>, StoreError> {
        let conn = self.connect()?;
        let columns = telemetry::sql::columns();
        let (after_t, after_seq) = q.after.unwrap_or((i64::MIN, 0));
        let after_seq = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let rows = match q.every_us {
            // SQLite's bare-column rule returns, per bucket, the row holding min(t_us): the
            // first sample of each interval, a real sample rather than an average.
            Some(every) => conn
                .prepare(&format!(
                    "SELECT {columns}, min(t_us) FROM telemetry
                     WHERE vehicle = ?1 AND t_us >= ?2 AND t_us < ?3 AND (t_us, seq) > (?6, ?7)
                     GROUP BY t_us / ?4 ORDER BY t_us LIMIT ?5"
                ))?
                .query_map(
                    params![
                        q.vehicle,
                        q.from_us,
                        q.to_us,
                        every.max(1),
                        q.limit,
                        after_t,
                        after_seq
                    ],
                    telemetry_row,
                )?
                .collect::<Result<_, _>>()?,
            None => conn
                .prepare(&format!(
                    "SELECT {columns} FROM telemetry
                     WHERE vehicle = ?1 AND t_us >= ?2 AND t_us < ?3 AND (t_us, seq) > (?5, ?6)
                     ORDER BY t_us, seq LIMIT ?4"
                ))?
                .query_map(
                    params![q.vehicle, q.from_us, q.to_us, q.limit, after_t, after_seq],
                    telemetry_row,
                )?
                .collect::<Result<_, _>>()?,
        };
        Ok(rows)
    }

    pub fn vehicles(&self) -> Result<Vec<VehicleRow>, StoreError> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare(
            "SELECT sysid, name, uid, first_seen_us, last_seen_us FROM vehicles ORDER BY sysid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(VehicleRow {
                sysid: r.get(0)?,
                name: r.get(1)?,
                uid: r.get(2)?,
                first_seen_us: r.get(3)?,
                last_seen_us: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Outbox rows after `after`, in sequence order: what sync sends next.
    ///
    /// The narrow columns come packed into a few 64-bit values by SQLite itself: reading a
    /// value out through rusqlite costs several FFI calls and checks, which for 20 columns
    /// was most of the time spent here during a catch-up; 8 values cost under half as much.
    /// Every column was written from a field of the same width, so the packing is exact.
    pub fn outbox(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::vehicle::Sample>, StoreError> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, t_us,
                (vehicle & 4294967295) | (custom_mode << 32),
                (lat_e7 & 4294967295) | (lon_e7 << 32),
                (alt_mm & 4294967295) | (rel_alt_mm << 32),
                (vx & 65535) | ((vy & 65535) << 16) | ((vz & 65535) << 32) | (heading_cdeg << 48),
                (battery_mv & 65535) | ((battery_ca & 65535) << 16) | ((battery_pct & 255) << 32)
                    | (time_source << 40) | (gps_fix << 48) | (satellites << 56),
                armed | (mission_seq << 1)
             FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after as i64, limit], |r| {
            // Every column is an INTEGER NOT NULL expression of the query above, so read
            // straight as one (no per-value conversion layer: this loop runs 16,384 times a
            // batch in a catch-up).
            let int = |i: usize| r.get_ref(i).and_then(|v| v.as_i64().map_err(Into::into));
            let ids = int(2)?;
            let position = int(3)?;
            let altitude = int(4)?;
            let motion = int(5)?;
            let status = int(6)?;
            let mission = int(7)?;
            // `as` keeps the low bits: each field is cut back out at its own width.
            Ok(crate::vehicle::Sample {
                seq: int(0)? as u64,
                t_us: int(1)?,
                vehicle: ids as u32,
                custom_mode: (ids >> 32) as u32,
                lat_e7: position as i32,
                lon_e7: (position >> 32) as i32,
                alt_mm: altitude as i32,
                rel_alt_mm: (altitude >> 32) as i32,
                vx: motion as i16,
                vy: (motion >> 16) as i16,
                vz: (motion >> 32) as i16,
                heading_cdeg: (motion >> 48) as u16,
                battery_mv: status as u16,
                battery_ca: (status >> 16) as i16,
                battery_pct: (status >> 32) as i8,
                time_source: (status >> 40) as u8,
                gps_fix: (status >> 48) as u8,
                satellites: (status >> 56) as u8,
                armed: mission & 1 == 1,
                mission_seq: (mission >> 1) as u16,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Oldest and newest outbox sequence still held (0 when empty).
    /// The oldest and newest sequence `stream` still holds (0, 0 when empty).
    pub fn outbox_bounds(&self, stream: Stream) -> Result<(u64, u64), StoreError> {
        let conn = self.connect()?;
        Ok(conn.query_row(
            &format!(
                "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM {}",
                stream.table()
            ),
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// The relay's last durable acknowledgement of a stream.
    pub fn acked(&self, stream: Stream) -> Result<i64, StoreError> {
        let conn = self.connect()?;
        Ok(conn
            .query_row(
                "SELECT acked_seq FROM sync_cursor WHERE stream = ?1",
                [stream.name()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// One command and where it stands.
    pub fn command(&self, id: i64) -> Result<Option<super::CommandRow>, StoreError> {
        Ok(super::commands::get(&self.connect()?, id)?)
    }

    /// Every vehicle's signing key, with when it was installed.
    pub fn signing_keys(&self) -> Result<Vec<(u8, crate::signing::Key, i64)>, StoreError> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare("SELECT vehicle, key, created_us FROM signing_keys")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u8>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (vehicle, key, since) = row?;
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("vehicle {vehicle}'s signing key")))?;
            keys.push((vehicle, crate::signing::Key(key), since));
        }
        Ok(keys)
    }

    /// A vehicle's parameters as last reported, and the profile it follows.
    pub fn params(&self, vehicle: u8) -> Result<super::ParamList, StoreError> {
        Ok(super::params::list(&self.connect()?, vehicle)?)
    }

    /// A vehicle's parameter changes, newest first.
    pub fn param_history(
        &self,
        q: &super::ParamHistoryQuery,
    ) -> Result<Vec<super::ParamChange>, StoreError> {
        Ok(super::params::history(&self.connect()?, q)?)
    }

    /// Up to `limit` events after sequence `after`, as sync sends them.
    pub fn events_outbox(&self, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        let conn = self.connect()?;
        let mut stmt =
            conn.prepare_cached("SELECT body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let bodies = stmt.query_map(params![after as i64, limit], |r| r.get::<_, Vec<u8>>(0))?;
        let mut events = Vec::new();
        for body in bodies {
            let event = Event::decode(body?.as_slice())
                .map_err(|e| StoreError::Corrupt(format!("stored event: {e}")))?;
            events.push(event);
        }
        Ok(events)
    }

    /// Every record of `table` (fields, geofences, vehicles, proposals), as the API shows it.
    pub fn records(&self, table: &str) -> Result<Vec<Record>, StoreError> {
        let conn = self.connect()?;
        Ok(super::records::table(&conn, table)?
            .into_iter()
            .map(|(key, fields)| Record { key, fields })
            .collect())
    }

    /// Up to `limit` records of `table` with keys after `after`, in key order.
    pub fn records_page(
        &self,
        table: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let conn = self.connect()?;
        Ok(
            super::records::page(&conn, table, after.unwrap_or(""), limit)?
                .into_iter()
                .map(|(key, fields)| Record { key, fields })
                .collect(),
        )
    }

    /// This station's own record edits after change sequence `after`, for sync to send.
    pub fn own_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, FieldChange)>, StoreError> {
        let conn = self.connect()?;
        let node: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'node_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match node {
            Some(node) => Ok(super::records::own_since(&conn, node as u64, after, limit)?),
            None => Ok(Vec::new()),
        }
    }

    /// The newest events of `kind` older than `before` (a sequence), newest first.
    pub fn events(
        &self,
        kind: Option<EventKind>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare_cached(
            "SELECT e.seq, e.t_us, e.vehicle, e.kind, e.code, e.severity, e.message,
                a.by, a.t_us, a.ack_seq
             FROM events e LEFT JOIN alert_acks a ON a.alert_seq = e.seq
             WHERE (?1 IS NULL OR e.kind = ?1) AND e.seq < ?2 ORDER BY e.seq DESC LIMIT ?3",
        )?;
        let before = before.unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![kind.map(|k| k as i32), before, limit], |r| {
            Ok(EventRow {
                seq: r.get(0)?,
                t_us: r.get(1)?,
                vehicle: r.get(2)?,
                kind: event_kind_name(r.get(3)?),
                code: r.get(4)?,
                severity: severity_name(r.get(5)?),
                message: r.get(6)?,
                acknowledged: match r.get::<_, Option<String>>(7)? {
                    Some(by) => Some(Acknowledgement {
                        by,
                        t_us: r.get(8)?,
                        seq: r.get(9)?,
                    }),
                    None => None,
                },
                acknowledges: None,
                command: None,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One editable record with its current fields.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Record {
    pub key: String,
    pub fields: std::collections::BTreeMap<String, serde_json::Value>,
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EventRow {
    pub seq: i64,
    pub t_us: i64,
    pub vehicle: u32,
    pub kind: String,
    pub code: String,
    pub severity: String,
    pub message: String,
    /// For an alert: its acknowledgement, once someone gave one. For an acknowledgement:
    /// itself, so a stream client can mark the alert without another request.
    pub acknowledged: Option<Acknowledgement>,
    /// For an acknowledgement (kind `ack`): the alert it acknowledges.
    pub acknowledges: Option<i64>,
    /// For a command event (kind `command`): which command, and where it stands.
    pub command: Option<CommandEvent>,
}

/// The command a `command` event is about.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CommandEvent {
    pub id: i64,
    pub command: String,
    pub outcome: String,
    pub result: Option<u32>,
    pub by: String,
}

impl EventRow {
    /// The row of an event with its sequence; kinds and severities by name.
    pub fn new(seq: i64, e: &Event) -> EventRow {
        EventRow {
            seq,
            t_us: e.t_us,
            vehicle: e.vehicle,
            kind: event_kind_name(e.kind),
            code: e.code.clone(),
            severity: severity_name(e.severity),
            message: e.message.clone(),
            acknowledged: e.acknowledgement.as_ref().map(|a| Acknowledgement {
                by: a.by.clone(),
                t_us: e.t_us,
                seq,
            }),
            acknowledges: e.acknowledgement.as_ref().map(|a| a.alert_seq as i64),
            command: e.command.as_ref().map(|c| CommandEvent {
                id: c.id as i64,
                command: c.command.clone(),
                outcome: c.outcome.clone(),
                result: c.result,
                by: c.by.clone(),
            }),
        }
    }
}

/// One row of the telemetry table, selected by `telemetry::sql::columns()`.
fn telemetry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TelemetryRow> {
    let mut values = [0i64; telemetry::FIELDS];
    for (i, v) in values.iter_mut().enumerate() {
        *v = r.get(i)?;
    }
    TelemetryRow::from_values(&values).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            telemetry::COLUMNS
                .iter()
                .position(|c| *c == e.column)
                .unwrap_or(0),
            rusqlite::types::Type::Integer,
            Box::new(e),
        )
    })
}
