//! The store's guarantees under abuse: SIGKILL mid-ingest, and a disk quota reached.

use std::time::Duration;

use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn sigkill_during_heavy_ingest_keeps_every_reported_commit_and_a_sound_database() {
    let udp = free_udp_port();
    let mut daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let _fleet = sim_fleet(udp, 40, 50);
    let reported = wait_for("several commits under load", T, || {
        let s = daemon.try_get("/api/v1/health")?["store"].clone();
        let seq = s["committed_seq"].as_i64()?;
        (s["commits"].as_u64()? >= 3 && seq > 3_000).then_some(seq)
    });
    daemon.proc.kill9();

    // Opening read-write replays the WAL, as the next start would.
    let db = rusqlite::Connection::open(daemon.db_path()).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let kept: i64 = db
        .query_row(
            "SELECT count(*) FROM telemetry WHERE seq <= ?1",
            [reported],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, reported, "every sample of a reported commit survives");
    let max: i64 = db
        .query_row("SELECT max(seq) FROM telemetry", [], |r| r.get(0))
        .unwrap();
    drop(db);

    // The next start continues the sequence; nothing is reused.
    let EdgeDaemon { data, .. } = daemon;
    let daemon = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    let next = wait_for("new samples after the restart", T, || {
        let s = daemon.try_get("/api/v1/health")?["store"].clone();
        let seq = s["committed_seq"].as_i64()?;
        (s["committed_samples"].as_u64()? > 0).then_some(seq)
    });
    assert!(next > max, "sequence continues past {max}, got {next}");
}

#[test]
fn over_quota_the_oldest_synced_telemetry_goes_first_and_the_daemon_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, "[store]\nquota_mb = 1\ncommit_window_ms = 200\n").unwrap();
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start_with(
        &[format!("udpin:127.0.0.1:{udp}")],
        &["--config", config.to_str().unwrap()],
    );
    let _fleet = sim_fleet(udp, 20, 50);

    // Play the relay: acknowledge the first 2000 samples, as sync will.
    wait_for("2000 committed samples", T, || {
        let s = daemon.try_get("/api/v1/health")?["store"].clone();
        (s["committed_seq"].as_i64()? > 2_000).then_some(())
    });
    let acked = 2_000i64;
    {
        let db = rusqlite::Connection::open(daemon.db_path()).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute(
            "INSERT INTO sync_cursor (stream, acked_seq) VALUES ('telemetry', ?1)",
            [acked],
        )
        .unwrap();
    }

    let store = wait_for("the quota to delete telemetry", T, || {
        let s = daemon.try_get("/api/v1/health")?["store"].clone();
        (s["quota_deleted_samples"].as_u64()? > 0).then_some(s)
    });
    assert_eq!(store["write_errors"], 0, "{store}");

    let db = daemon.db();
    let q = |sql: &str| -> i64 { db.query_row(sql, [acked], |r| r.get(0)).unwrap() };
    let synced_left = q("SELECT count(*) FROM telemetry WHERE seq <= ?1");
    let unsynced = q("SELECT count(*) FROM telemetry WHERE seq > ?1");
    let newest = q("SELECT max(seq) - ?1 FROM telemetry");
    assert!(
        synced_left == 0 || unsynced == newest,
        "unsynced samples were deleted while {synced_left} synced ones remained"
    );
    // Still ingesting.
    let before = store["committed_samples"].as_u64().unwrap();
    wait_for("ingest to go on after the quota", T, || {
        let s = daemon.try_get("/api/v1/health")?["store"].clone();
        (s["committed_samples"].as_u64()? > before + 500).then_some(())
    });
}

#[test]
fn a_disk_smaller_than_the_quota_fills_and_the_daemon_keeps_running() {
    let disk = SmallDisk::mount("16m");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    // The quota believes there are 1024 MB; the disk has 16.
    std::fs::write(
        &config,
        "[store]\nquota_mb = 1024\ncommit_window_ms = 200\n",
    )
    .unwrap();
    let data = tempfile::TempDir::new_in(&disk.path).unwrap();
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start_in(
        data,
        &[format!("udpin:127.0.0.1:{udp}")],
        &["--config", config.to_str().unwrap()],
    );
    let _fleet = sim_fleet(udp, 40, 100);

    // Generous bounds: this test shares two cores with the other heavy-ingest tests.
    let long = Duration::from_secs(150);
    let store = wait_for("the store to make room on the small disk", long, || {
        let s = daemon.try_get("/api/v1/health")?["store"].clone();
        (s["quota_deleted_samples"].as_u64()? + s["quota_deleted_frames"].as_u64()? > 0)
            .then_some(s)
    });
    // Well after the disk would have filled, the daemon still commits new telemetry.
    let before = store["committed_samples"].as_u64().unwrap();
    let after = wait_for("ingest to go on on a full disk", long, || {
        let s = daemon.try_get("/api/v1/health")?["store"].clone();
        (s["committed_samples"].as_u64()? > before + 10_000).then_some(s)
    });
    assert!(
        after["db_bytes"].as_u64() < Some(16 << 20),
        "the database stays inside the disk: {after}"
    );
    // Every loss is counted, never silent: lost samples only with a matching write error.
    assert!(
        after["lost_samples"] == 0 || after["write_errors"].as_u64() > Some(0),
        "{after}"
    );
    let check: String = daemon
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
