//! Moving this run's history onto the right time once the station learns it.
//!
//! A station that starts on an unsynchronised clock stamps what it stores on that clock
//! (never earlier than the newest time already stored: see `clock::TimeBase::start`). When
//! the first trusted time arrives (a vehicle's GPS, NTP or the relay's), the monotonic clock
//! has run on unbroken, so every one of those times is off by the same, known amount:
//! shifting them puts them where they belong. Because this run started after everything
//! stored before it, "this run's times" is simply "every time at or after the run's first".

use prost::Message as _;
use rusqlite::{params, Connection};

use crate::clock::{Restamp, TimeSource};
use crate::vehicle::Event;

/// Every stored wall time: table and column. Telemetry, frames and events, which need more
/// than a shift, are handled on their own below.
const STAMPED: &[(&str, &str)] = &[
    ("vehicles", "first_seen_us"),
    ("vehicles", "last_seen_us"),
    ("alert_acks", "t_us"),
    ("commands", "created_us"),
    ("commands", "updated_us"),
    ("params", "updated_us"),
    ("param_history", "t_us"),
    ("param_lists", "listed_us"),
    ("param_lists", "profile_us"),
    ("signing_keys", "created_us"),
];

/// The newest wall time anywhere in the store: where a run on an unsynchronised clock
/// starts, so that its times sort after everything already kept.
pub(super) fn newest_us(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let mut newest = None;
    // Record edits too: an earlier run's own edit made after its last sample must not look
    // like this run's and be moved.
    for (table, column) in STAMPED.iter().chain(&[
        ("telemetry", "t_us"),
        ("frames", "t_last_us"),
        ("events", "t_us"),
        ("records", "wall_us"),
    ]) {
        let t: Option<i64> =
            conn.query_row(&format!("SELECT max({column}) FROM {table}"), [], |r| {
                r.get(0)
            })?;
        newest = newest.max(t);
    }
    Ok(newest)
}

/// Shifts every time of this run; returns how many telemetry samples moved. Runs inside the
/// writer's open transaction. `node` is this station's edit clock: its own record edits
/// of this run (none of them sent yet: sync waits for a trusted clock) move too, so that
/// last-writer-wins orders them by when they were really made.
pub(super) fn apply(conn: &Connection, r: &Restamp, node: u64) -> rusqlite::Result<usize> {
    let samples = conn.execute(
        "UPDATE telemetry SET t_us = t_us + ?1, time_source = ?2
         WHERE t_us >= ?3 AND time_source = ?4",
        params![
            r.shift_us,
            r.source as u8,
            r.since_us,
            TimeSource::SystemUnsynced as u8
        ],
    )?;
    // A chunk's records carry their own times; `t_shift_us` is added to them on export.
    conn.execute(
        "UPDATE frames SET t_first_us = t_first_us + ?1, t_last_us = t_last_us + ?1,
                           t_shift_us = t_shift_us + ?1, trusted = 1
         WHERE t_last_us >= ?2",
        params![r.shift_us, r.since_us],
    )?;
    conn.execute(
        "UPDATE records SET wall_us = wall_us + ?1 WHERE node = ?2 AND wall_us >= ?3",
        params![r.shift_us, node as i64, r.since_us],
    )?;
    for (table, column) in STAMPED {
        conn.execute(
            &format!("UPDATE {table} SET {column} = {column} + ?1 WHERE {column} >= ?2"),
            params![r.shift_us, r.since_us],
        )?;
    }
    // An event's body is what sync sends: its time moves too.
    let mut events = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT seq, t_us, body FROM events WHERE t_us >= ?1")?;
        let mut rows = stmt.query([r.since_us])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let t_us: i64 = row.get(1)?;
            let body: Vec<u8> = row.get(2)?;
            match Event::decode(body.as_slice()) {
                Ok(mut e) => {
                    e.t_us += r.shift_us;
                    events.push((seq, e.t_us, e.encode_to_vec()));
                }
                Err(e) => {
                    tracing::error!(seq, "stored event does not decode: {e}");
                    events.push((seq, t_us + r.shift_us, body));
                }
            }
        }
    }
    let mut update = conn.prepare("UPDATE events SET t_us = ?2, body = ?3 WHERE seq = ?1")?;
    for (seq, t_us, body) in &events {
        update.execute(params![seq, t_us, body])?;
    }
    tracing::info!(
        samples,
        events = events.len(),
        shift_s = r.shift_us / 1_000_000,
        "stored history moved onto the trusted clock"
    );
    Ok(samples)
}
