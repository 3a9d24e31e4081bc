//! The database schema and its migrations (`PRAGMA user_version` counts applied steps).
//!
//! Telemetry rows and events double as the sync outbox's two streams: `seq` is a monotonic
//! sequence per stream that is never reused (its high-water mark survives in `meta` even if
//! every row is deleted), and `sync_cursor` holds the relay's last durable acknowledgement
//! per stream.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the edge core.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
     );
     CREATE TABLE vehicles (
        sysid         INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        uid           TEXT,
        autopilot     INTEGER NOT NULL,
        mav_type      INTEGER NOT NULL,
        first_seen_us INTEGER NOT NULL,
        last_seen_us  INTEGER NOT NULL
     );
     CREATE TABLE telemetry (
        seq          INTEGER PRIMARY KEY,
        vehicle      INTEGER NOT NULL,
        t_us         INTEGER NOT NULL,
        time_source  INTEGER NOT NULL,
        lat_e7       INTEGER NOT NULL,
        lon_e7       INTEGER NOT NULL,
        alt_mm       INTEGER NOT NULL,
        rel_alt_mm   INTEGER NOT NULL,
        vx           INTEGER NOT NULL,
        vy           INTEGER NOT NULL,
        vz           INTEGER NOT NULL,
        heading_cdeg INTEGER NOT NULL,
        battery_mv   INTEGER NOT NULL,
        battery_ca   INTEGER NOT NULL,
        battery_pct  INTEGER NOT NULL,
        gps_fix      INTEGER NOT NULL,
        satellites   INTEGER NOT NULL,
        custom_mode  INTEGER NOT NULL,
        armed        INTEGER NOT NULL,
        mission_seq  INTEGER NOT NULL
     );
     CREATE INDEX telemetry_by_vehicle_time ON telemetry (vehicle, t_us);
     -- Raw frames, for .tlog export: one row per vehicle per commit, holding zstd-compressed
     -- tlog records (8-byte big-endian microsecond timestamp, then the frame).
     CREATE TABLE frames (
        id         INTEGER PRIMARY KEY,
        sysid      INTEGER NOT NULL,
        t_first_us INTEGER NOT NULL,
        t_last_us  INTEGER NOT NULL,
        count      INTEGER NOT NULL,
        data       BLOB NOT NULL
     );
     CREATE INDEX frames_by_system_time ON frames (sysid, t_last_us);
     CREATE TABLE sync_cursor (
        stream    TEXT PRIMARY KEY,
        acked_seq INTEGER NOT NULL
     );",
    // 2: the events stream (alerts, state changes, vehicle identity). Never deleted by the
    // quota; `body` is the protobuf Event exactly as sync sends it, the other columns are
    // for queries.
    "CREATE TABLE events (
        seq      INTEGER PRIMARY KEY,
        t_us     INTEGER NOT NULL,
        vehicle  INTEGER NOT NULL,
        kind     INTEGER NOT NULL,
        code     TEXT NOT NULL,
        severity INTEGER NOT NULL,
        message  TEXT NOT NULL,
        body     BLOB NOT NULL
     );
     CREATE INDEX events_by_kind_time ON events (kind, t_us);",
    // 3: editable records (fields, geofences, registry names, mission proposals), one row
    // per field, merged by HLC (see sync_protocol::records). `seq` is the order this
    // station applied changes in: the "changes" stream, of which it sends its own edits.
    "CREATE TABLE records (
        tbl     TEXT NOT NULL,
        key     TEXT NOT NULL,
        field   TEXT NOT NULL,
        value   TEXT NOT NULL,
        wall_us INTEGER NOT NULL,
        logical INTEGER NOT NULL,
        node    INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        PRIMARY KEY (tbl, key, field)
     );
     CREATE INDEX records_by_seq ON records (seq);",
    // 4: alerts acknowledged here. The ACK event (on the events stream, so HQ learns it) is
    // the record; this row makes "is it acknowledged, by whom" one lookup and keeps the
    // first acknowledgement the only one.
    "CREATE TABLE alert_acks (
        alert_seq INTEGER PRIMARY KEY,
        ack_seq   INTEGER NOT NULL,
        t_us      INTEGER NOT NULL,
        by        TEXT NOT NULL
     );",
    // 5: commands to vehicles (store/commands.rs): stored before they are sent, each outcome
    // recorded; also COMMAND events on the events stream. Never deleted by the quota.
    "CREATE TABLE commands (
        id         INTEGER PRIMARY KEY,
        vehicle    INTEGER NOT NULL,
        command    TEXT NOT NULL,
        args       TEXT NOT NULL,
        description TEXT NOT NULL,
        by         TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        result     INTEGER,
        progress   INTEGER,
        sends      INTEGER NOT NULL,
        detail     TEXT,
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL
     );
     CREATE INDEX commands_by_vehicle ON commands (vehicle, id);",
    // 6: vehicles' parameters (store/params.rs): the last value of each, every change, and
    // the profile each vehicle follows.
    "CREATE TABLE params (
        vehicle    INTEGER NOT NULL,
        name       TEXT NOT NULL,
        value      REAL NOT NULL,
        type       INTEGER NOT NULL,
        idx        INTEGER,
        updated_us INTEGER NOT NULL,
        PRIMARY KEY (vehicle, name)
     ) WITHOUT ROWID;
     CREATE TABLE param_history (
        id       INTEGER PRIMARY KEY,
        vehicle  INTEGER NOT NULL,
        name     TEXT NOT NULL,
        previous REAL NOT NULL,
        value    REAL NOT NULL,
        command  INTEGER,
        t_us     INTEGER NOT NULL
     );
     CREATE INDEX param_history_by_vehicle ON param_history (vehicle, id);
     CREATE TABLE param_lists (
        vehicle    INTEGER PRIMARY KEY,
        count      INTEGER,
        listed_us  INTEGER,
        profile    TEXT,
        profile_text TEXT,
        profile_us INTEGER
     );",
    // 7: MAVLink 2 signing keys (signing.rs), one per vehicle, written with the command that
    // installs them. Secret: never synced, never served.
    "CREATE TABLE signing_keys (
        vehicle    INTEGER PRIMARY KEY,
        key        BLOB NOT NULL,
        command    INTEGER NOT NULL,
        created_us INTEGER NOT NULL
     );",
    // SD-card wear: an index led by the vehicle takes each commit's rows to one leaf page per
    // vehicle (62 of the 103 pages a commit wrote with 50 vehicles); led by time, they all
    // land on the newest leaves. A vehicle's history then reads the range's index entries of
    // every vehicle (BENCHMARKS.md, SD-card wear, has both costs).
    "DROP INDEX telemetry_by_vehicle_time;
     CREATE INDEX telemetry_by_time ON telemetry (t_us, vehicle);
     DROP INDEX frames_by_system_time;
     CREATE INDEX frames_by_time ON frames (t_last_us, sysid);",
    // 9: a station without a real-time clock (store/restamp.rs). A chunk stored before the
    // station knew the time is moved as a whole: `t_shift_us` is added to the times inside
    // it on export. Retention judges ages only between chunks stamped on a trusted clock.
    // Chunks from before this step are trusted unless they say 2019 or earlier, which no
    // right clock does.
    "ALTER TABLE frames ADD COLUMN t_shift_us INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE frames ADD COLUMN trusted INTEGER NOT NULL DEFAULT 1;
     UPDATE frames SET trusted = 0 WHERE t_last_us < 1577836800000000;",
];

/// Largest WAL file kept between checkpoints (SQLite checkpoints at about 4 MB of WAL).
pub const WAL_LIMIT: i64 = 4 << 20;

/// Opens-time settings. WAL lets the API read while the writer writes; `synchronous=FULL`
/// makes every commit durable (fsync of the WAL), which costs one fsync per commit window,
/// not per row; incremental auto-vacuum lets the quota give space back to the SD card.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a checkpoint the WAL is cut back to this, so it never holds a full disk hostage.
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migrations are frozen text; the statements that write and read samples are built
    /// from `sync_protocol::telemetry::COLUMNS`. This keeps the two in step.
    #[test]
    fn the_telemetry_table_has_a_column_for_every_field_of_a_sample() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let mut columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('telemetry')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        columns.sort();
        let mut fields = sync_protocol::telemetry::COLUMNS.map(String::from).to_vec();
        fields.sort();
        assert_eq!(columns, fields);
    }
}
