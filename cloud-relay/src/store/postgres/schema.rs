//! The relay's tables in PostgreSQL, and the migrations that bring a database up to them.
//!
//! The same tables as SQLite's (`store/sqlite/schema.rs`, which says what each is for), in
//! PostgreSQL's types. Text compares byte by byte (`COLLATE "C"`), as in SQLite, so lists
//! and the events' paging order come out the same on both. `schema_migrations` lists the migrations applied; each runs in its own
//! transaction under an advisory lock, so relays starting together on one database migrate
//! it once.

use postgres::Client;

use crate::store::StoreError;

/// Migrations in order; a database has applied a prefix of them.
const MIGRATIONS: [&str; 3] = [V1, V2, V3];

const V1: &str = r#"
CREATE TABLE orgs (
    org        TEXT COLLATE "C" PRIMARY KEY,
    created_us BIGINT NOT NULL
);
CREATE TABLE edges (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org         TEXT COLLATE "C" NOT NULL REFERENCES orgs (org),
    edge        TEXT COLLATE "C" NOT NULL,
    enrolled_us BIGINT NOT NULL,
    revoked_us  BIGINT,
    UNIQUE (org, edge)
);
CREATE TABLE stream_cursors (
    edge_id   BIGINT NOT NULL REFERENCES edges (id),
    stream    TEXT COLLATE "C" NOT NULL,
    acked_seq BIGINT NOT NULL,
    PRIMARY KEY (edge_id, stream)
);
CREATE TABLE gaps (
    edge_id  BIGINT NOT NULL REFERENCES edges (id),
    stream   TEXT COLLATE "C" NOT NULL,
    from_seq BIGINT NOT NULL,
    to_seq   BIGINT NOT NULL,
    noted_us BIGINT NOT NULL
);
CREATE TABLE telemetry_chunks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    edge_id     BIGINT NOT NULL REFERENCES edges (id),
    first_seq   BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    t_min_us    BIGINT NOT NULL,
    t_max_us    BIGINT NOT NULL,
    rows        BIGINT NOT NULL,
    level       BIGINT NOT NULL,
    received_us BIGINT NOT NULL,
    payload     BYTEA NOT NULL
);
-- Payloads are zstd already: stored out of line as they are, not compressed again (pglz
-- would spend CPU on every chunk for nothing).
ALTER TABLE telemetry_chunks ALTER COLUMN payload SET STORAGE EXTERNAL;
CREATE INDEX telemetry_chunks_by_edge ON telemetry_chunks (edge_id, level, id);
CREATE INDEX telemetry_chunks_to_compact ON telemetry_chunks (level, received_us);
CREATE TABLE chunk_vehicles (
    edge_id  BIGINT NOT NULL,
    vehicle  BIGINT NOT NULL,
    t_min_us BIGINT NOT NULL,
    t_max_us BIGINT NOT NULL,
    chunk_id BIGINT NOT NULL REFERENCES telemetry_chunks (id),
    rows     BIGINT NOT NULL,
    PRIMARY KEY (edge_id, vehicle, t_min_us, chunk_id)
);
CREATE TABLE chunk_spans (
    edge_id     BIGINT NOT NULL,
    vehicle     BIGINT NOT NULL,
    max_span_us BIGINT NOT NULL,
    PRIMARY KEY (edge_id, vehicle)
);
CREATE TABLE events (
    edge_id     BIGINT NOT NULL REFERENCES edges (id),
    seq         BIGINT NOT NULL,
    t_us        BIGINT NOT NULL,
    vehicle     BIGINT NOT NULL,
    kind        INTEGER NOT NULL,
    code        TEXT COLLATE "C" NOT NULL,
    severity    INTEGER NOT NULL,
    message     TEXT COLLATE "C" NOT NULL,
    received_us BIGINT NOT NULL,
    PRIMARY KEY (edge_id, seq)
);
CREATE INDEX events_by_kind_time ON events (kind, t_us);
CREATE TABLE alert_acks (
    edge_id   BIGINT NOT NULL REFERENCES edges (id),
    alert_seq BIGINT NOT NULL,
    t_us      BIGINT NOT NULL,
    by        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (edge_id, alert_seq)
);
CREATE TABLE vehicles (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org       TEXT COLLATE "C" NOT NULL REFERENCES orgs (org),
    uid       TEXT COLLATE "C",
    name      TEXT COLLATE "C" NOT NULL,
    autopilot BIGINT NOT NULL,
    mav_type  BIGINT NOT NULL,
    UNIQUE (org, uid)
);
CREATE TABLE sightings (
    edge_id    BIGINT NOT NULL REFERENCES edges (id),
    sysid      BIGINT NOT NULL,
    vehicle_id BIGINT NOT NULL REFERENCES vehicles (id),
    PRIMARY KEY (edge_id, sysid)
);
CREATE INDEX sightings_by_vehicle ON sightings (vehicle_id);
CREATE TABLE tokens (
    hash       TEXT COLLATE "C" PRIMARY KEY,
    org        TEXT COLLATE "C" NOT NULL REFERENCES orgs (org),
    role       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    created_us BIGINT NOT NULL
);
CREATE TABLE shares (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_org   TEXT COLLATE "C" NOT NULL REFERENCES orgs (org),
    to_org     TEXT COLLATE "C" NOT NULL REFERENCES orgs (org),
    vehicles   TEXT COLLATE "C" NOT NULL,
    area       TEXT COLLATE "C",
    coarsen_m  DOUBLE PRECISION,
    created_us BIGINT NOT NULL,
    revoked_us BIGINT
);
CREATE TABLE records (
    org     TEXT COLLATE "C" NOT NULL REFERENCES orgs (org),
    tbl     TEXT COLLATE "C" NOT NULL,
    key     TEXT COLLATE "C" NOT NULL,
    field   TEXT COLLATE "C" NOT NULL,
    value   TEXT COLLATE "C" NOT NULL,
    wall_us BIGINT NOT NULL,
    logical BIGINT NOT NULL,
    node    BIGINT NOT NULL,
    rev     BIGINT NOT NULL,
    PRIMARY KEY (org, tbl, key, field)
);
CREATE INDEX records_by_rev ON records (org, rev);
"#;

/// A telemetry batch's checks and writes as one server-side call, so storing it costs one
/// round trip instead of seven (at 1,000 batches a second, round trips are what the writer
/// waits on). The rules are `apply_batch`'s in `telemetry.rs`: the edge must be active; its
/// mark is locked until commit; a range already held, or one leaving a gap, stores nothing
/// (`sync_protocol::session::admit`, written here in SQL);
/// a chunk wholly above the mark is stored with its index entries and the mark moves.
/// A chunk overlapping the mark (a resend after a reconnect) comes back as `overlap` with
/// the mark still locked: the caller stores the rows above it.
const V2: &str = r#"
CREATE FUNCTION store_telemetry_chunk(
    p_org TEXT, p_edge TEXT, p_first BIGINT, p_last BIGINT,
    p_chunk_first BIGINT, p_chunk_last BIGINT, p_t_min BIGINT, p_t_max BIGINT,
    p_rows BIGINT, p_level BIGINT, p_received BIGINT, p_payload BYTEA,
    p_vehicles BIGINT[], p_v_min BIGINT[], p_v_max BIGINT[], p_v_rows BIGINT[],
    p_v_spans BIGINT[],
    OUT o_outcome TEXT, OUT o_edge BIGINT, OUT o_acked BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_chunk BIGINT;
BEGIN
    SELECT e.id INTO o_edge FROM edges e
     WHERE e.org = p_org AND e.edge = p_edge AND e.revoked_us IS NULL;
    IF o_edge IS NULL THEN
        o_outcome := 'inactive';
        RETURN;
    END IF;
    INSERT INTO stream_cursors (edge_id, stream, acked_seq) VALUES (o_edge, 'telemetry', 0)
        ON CONFLICT DO NOTHING;
    SELECT c.acked_seq INTO o_acked FROM stream_cursors c
     WHERE c.edge_id = o_edge AND c.stream = 'telemetry' FOR UPDATE;
    IF p_last <= o_acked THEN
        o_outcome := 'held';
        RETURN;
    ELSIF p_first > o_acked + 1 THEN
        o_outcome := 'gap';
        RETURN;
    ELSIF p_rows > 0 AND p_chunk_first <= o_acked THEN
        o_outcome := 'overlap';
        RETURN;
    END IF;
    IF p_rows > 0 THEN
        INSERT INTO telemetry_chunks (edge_id, first_seq, last_seq, t_min_us, t_max_us, rows,
                                      level, received_us, payload)
        VALUES (o_edge, p_chunk_first, p_chunk_last, p_t_min, p_t_max, p_rows, p_level,
                p_received, p_payload)
        RETURNING id INTO v_chunk;
        INSERT INTO chunk_vehicles (edge_id, vehicle, t_min_us, t_max_us, chunk_id, rows)
        SELECT o_edge, v, lo, hi, v_chunk, n
        FROM unnest(p_vehicles, p_v_min, p_v_max, p_v_rows) AS t (v, lo, hi, n);
        INSERT INTO chunk_spans AS s (edge_id, vehicle, max_span_us)
        SELECT o_edge, v, span FROM unnest(p_vehicles, p_v_spans) AS t (v, span)
        ON CONFLICT (edge_id, vehicle) DO UPDATE SET max_span_us = excluded.max_span_us
            WHERE excluded.max_span_us > s.max_span_us;
    END IF;
    UPDATE stream_cursors SET acked_seq = GREATEST(acked_seq, p_last)
     WHERE edge_id = o_edge AND stream = 'telemetry';
    o_outcome := 'stored';
    o_acked := p_last;
END
$fn$;
"#;

/// Any number, the same for every relay: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x0074_7265_6c6c_6973; // "trellis"

/// Deleting a chunk checks `chunk_vehicles` for rows still naming it (the foreign key);
/// without an index on `chunk_id` that check read the whole table for every chunk compaction
/// deleted (7,222 chunks merged in 10.3 s in the history bench; SQLite took 0.23 s).
const V3: &str = r#"
CREATE INDEX chunk_vehicles_by_chunk ON chunk_vehicles (chunk_id);
"#;

/// Applies the migrations `client`'s database lacks.
pub fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            applied_us BIGINT NOT NULL
        )",
    )?;
    let applied: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    if applied > MIGRATIONS.len() as i64 {
        return Err(StoreError::Corrupt(format!(
            "the database has schema {applied}, newer than this relay's {}: run the newer relay",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_us) VALUES ($1, $2)",
            &[&(i as i64 + 1), &crate::now_us()],
        )?;
        tracing::info!(version = i + 1, "relay database migrated");
    }
    tx.commit()?;
    Ok(())
}
