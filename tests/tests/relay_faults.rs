//! The relay's storage misbehaving under a syncing station: its disk full, then slow, and on
//! PostgreSQL the database server going away. It acknowledges nothing it did not store, says
//! why it closed the session, recovers when space or the server returns, and keeps up on a
//! slow disk by committing more per fsync. `RELAY_FSYNC_MS` sets the slow disk's fsync
//! (default 500). (The relay restarted under a thousand
//! edges is the `relay_restart` bench; power cuts are `power_cut.rs`.)

use std::io::Write as _;
use std::time::{Duration, Instant};

use trellis_tests::lazyfs::LazyFs;
use trellis_tests::*;

const T: Duration = Duration::from_secs(90);
const ORG: &str = "vineyard-co";
const EDGE: &str = "pi-north";

/// A relay on SQLite whose data lives in `dir` (its disk is what these tests break), a
/// station enrolled in it streaming 10 vehicles at 20 Hz, both running.
fn relay_and_station(dir: tempfile::TempDir) -> (CloudRelay, EdgeDaemon, Proc) {
    start_with_station(CloudRelay::in_dir_on(dir, free_udp_port(), None, None))
}

/// `relay` started with a station enrolled in it streaming 10 vehicles at 20 Hz.
fn start_with_station(mut relay: CloudRelay) -> (CloudRelay, EdgeDaemon, Proc) {
    relay.admin(&["org", "create", ORG]);
    let data = tempfile::tempdir().expect("station dir");
    relay.enroll(ORG, EDGE, data.path());
    relay.start();
    relay.wait_hq();
    let udp = free_udp_port();
    let station = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    let fleet = sim_fleet(udp, 10, 20);
    (relay, station, fleet)
}

/// The station's newest commit, the relay's acknowledgement, and the backlog between them.
fn sync_state(station: &EdgeDaemon) -> Option<(i64, i64, serde_json::Value)> {
    let committed = station.try_get("/api/v1/health")?["store"]["committed_seq"].as_i64()?;
    let sync = station.try_get("/api/v1/sync")?;
    Some((committed, sync["relay_acked"].as_i64()?, sync))
}

/// The relay has every row it acknowledged, each once.
fn assert_holds_acked(relay: &CloudRelay, acked: i64, when: &str) {
    let seqs: Vec<i64> = relay.rows(ORG, EDGE).iter().map(|r| r[0]).collect();
    let held = seqs.iter().filter(|&&s| s <= acked).count() as i64;
    assert_eq!(
        held, acked,
        "{when}: rows 1..={acked} acknowledged, held {held}"
    );
}

/// Stops the fleet and waits until the relay holds exactly the station's rows.
fn assert_exactly_once(relay: &CloudRelay, station: &EdgeDaemon, fleet: Proc) {
    drop(fleet);
    wait_for(
        "the relay to hold exactly the station's rows, each once",
        T,
        || {
            let (committed, acked, _) = sync_state(station)?;
            (acked >= committed).then_some(())?;
            (relay.rows(ORG, EDGE) == edge_rows(&station.db())).then_some(())
        },
    );
}

#[test]
fn a_full_disk_at_the_relay_acknowledges_nothing_unstored_and_recovers() {
    let disk = SmallDisk::mount("48m");
    let dir = tempfile::TempDir::new_in(&disk.path).expect("relay dir");
    let (relay, station, fleet) = relay_and_station(dir);
    wait_for("the relay to acknowledge 1,000 rows", T, || {
        let (_, acked, _) = sync_state(&station)?;
        (acked > 1_000).then_some(())
    });

    // Fill the disk to the last byte.
    let ballast_path = disk.path.join("ballast");
    let mut ballast = std::fs::File::create(&ballast_path).expect("ballast");
    let chunk = vec![0xA5u8; 64 << 10];
    let mut filled = 0u64;
    loop {
        match ballast.write(&chunk) {
            Ok(0) => break,
            Ok(n) => filled += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    drop(ballast);
    eprintln!("disk full after {} MiB of ballast", filled >> 20);

    // The relay refuses (and says its storage failed), while the station goes on committing.
    let full_since = Instant::now();
    wait_for("the relay to fail to store, twice", T, || {
        (metric(&relay.metrics(), "trellis_relay_store_failures_total")? >= 2.0).then_some(())
    });
    let (committed, acked, sync) = sync_state(&station).expect("station status");
    assert_holds_acked(&relay, acked, "disk full");
    assert_eq!(
        metric(&relay.metrics(), "trellis_relay_protocol_errors_total"),
        Some(0.0),
        "a full disk is not the station's protocol error"
    );
    eprintln!(
        "{:.1} s into the full disk: station committed {committed}, relay acknowledged {acked}; \
         station's last sync error: {}",
        full_since.elapsed().as_secs_f64(),
        sync["last_error"]
    );

    // Room again: the relay stores the backlog, exactly once.
    std::fs::remove_file(&ballast_path).expect("remove the ballast");
    let freed = Instant::now();
    wait_for("the relay to catch up after the disk has room", T, || {
        let (committed_now, acked_now, _) = sync_state(&station)?;
        (acked_now > committed && acked_now + 400 >= committed_now).then_some(())
    });
    eprintln!(
        "caught up {:.1} s after the disk had room",
        freed.elapsed().as_secs_f64()
    );
    assert_exactly_once(&relay, &station, fleet);
    let check: String = rusqlite::Connection::open(relay.db_path())
        .and_then(|db| db.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}

#[test]
fn a_relay_on_a_slow_disk_keeps_up_by_committing_more_per_fsync() {
    let fsync = Duration::from_millis(
        std::env::var("RELAY_FSYNC_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500),
    );
    let fs = LazyFs::mount();
    let dir = tempfile::TempDir::new_in(fs.path()).expect("relay dir");
    let (relay, station, fleet) = relay_and_station(dir);
    wait_for("sync under way", T, || {
        let (_, acked, _) = sync_state(&station)?;
        (acked > 500).then_some(())
    });
    fs.sync_all();
    fs.set_fsync_delay(fsync);

    // Half a second per fsync (a cheap disk under load). The station sends a telemetry batch
    // a second and, with 10 vehicles, an events batch about as often; the relay commits
    // telemetry in groups but each events batch on its own, so it needs about 2.3 fsyncs a
    // second for this station. At 500 ms it keeps the backlog at a couple of seconds of rows;
    // at 1 s it falls behind (RELAY_FSYNC_MS=1000: BENCHMARKS.md, "relay on a slow disk").
    let until = Instant::now() + Duration::from_secs(20);
    let mut worst = 0i64;
    let mut samples = 0;
    while Instant::now() < until {
        let (committed, acked, _) =
            wait_for("the station's sync status", T, || sync_state(&station));
        worst = worst.max(committed - acked);
        samples += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, acked, _) = sync_state(&station).expect("station status");
    assert_holds_acked(&relay, acked, "slow disk");
    eprintln!(
        "fsync {} ms: largest backlog over {samples} samples {worst} rows ({:.1} s of traffic)",
        fsync.as_millis(),
        worst as f64 / 200.0
    );
    // The station's own commit window (1 s) plus a few relay commits, with margin.
    assert!(
        worst <= 1_000,
        "the relay fell behind on a {fsync:?} fsync: a backlog of {worst} rows"
    );
    fs.set_fsync_delay(Duration::ZERO);
    assert_exactly_once(&relay, &station, fleet);
}

/// On PostgreSQL the store is a server that can go away under the relay: restarted, failed
/// over, cut off. While it is away the relay acknowledges nothing; when it returns, the relay
/// finds it again by itself (no restart of the relay) and stores the backlog, each row once.
#[test]
fn the_database_server_going_away_acknowledges_nothing_and_the_relay_reconnects() {
    let relay = CloudRelay::in_dir_on(
        tempfile::tempdir().expect("relay dir"),
        free_udp_port(),
        None,
        Some(PgDatabase::create()),
    );
    let (relay, station, fleet) = start_with_station(relay);
    wait_for("the relay to acknowledge 1,000 rows", T, || {
        let (_, acked, _) = sync_state(&station)?;
        (acked > 1_000).then_some(())
    });
    let db = relay.pg.as_ref().expect("a relay on PostgreSQL");

    db.refuse_connections();
    let away = Instant::now();
    wait_for("the relay to fail to store, twice", T, || {
        (metric(&relay.metrics(), "trellis_relay_store_failures_total")? >= 2.0).then_some(())
    });
    let sync = wait_for("the station to be told why", T, || {
        let (_, _, sync) = sync_state(&station)?;
        let error = sync["last_error"].as_str()?;
        error.contains("relay storage unavailable").then_some(sync)
    });
    let (committed, acked, _) = sync_state(&station).expect("station status");
    assert_eq!(
        metric(&relay.metrics(), "trellis_relay_protocol_errors_total"),
        Some(0.0),
        "a database that went away is not the station's protocol error"
    );
    // Away long enough for the station to pile up a backlog (200 rows a second), as a
    // server restart does.
    wait_for("the station to commit 1,000 rows more", T, || {
        let (committed_now, _, _) = sync_state(&station)?;
        (committed_now >= committed + 1_000).then_some(())
    });
    let (_, acked_away, _) = sync_state(&station).expect("station status");
    assert_eq!(
        acked_away, acked,
        "the relay acknowledged rows while its database was away"
    );
    eprintln!(
        "{:.1} s without the database: station committed {committed}, relay acknowledged \
         {acked}; station's last sync error: {}",
        away.elapsed().as_secs_f64(),
        sync["last_error"]
    );

    db.accept_connections();
    let back = Instant::now();
    assert_holds_acked(&relay, acked, "database away");
    wait_for("the relay to catch up once the database is back", T, || {
        let (_, acked_now, _) = sync_state(&station)?;
        (acked_now > committed + 1_000).then_some(())
    });
    eprintln!(
        "caught up {:.1} s after the database came back",
        back.elapsed().as_secs_f64()
    );
    assert_exactly_once(&relay, &station, fleet);
}
