//! Edge → relay over real QUIC with real certificates: exactly once, across kills of either
//! side, and revocation.

use std::process::Stdio;
use std::time::Duration;

use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

/// A relay with org `vineyard-co` and an edge `pi-north` enrolled into it, both running.
fn pair() -> (CloudRelay, EdgeDaemon, u16) {
    pair_with(CloudRelay::new())
}

/// The same with a given (not yet started) relay, e.g. one whose bundles point at a proxy.
fn pair_with(mut relay: CloudRelay) -> (CloudRelay, EdgeDaemon, u16) {
    let data = relay.enroll_pi_north();
    relay.start();
    let udp = free_udp_port();
    let edge = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    (relay, edge, udp)
}

/// Waits until the relay holds exactly the rows of the edge's outbox (traffic has stopped,
/// so both sides settle), then compares them row for row. The relay's own rows are the judge:
/// the edge's view of the relay's mark can be from a session a relay restart has since ended.
fn assert_relay_equals_outbox(relay: &CloudRelay, edge: &EdgeDaemon) -> usize {
    // Generous: a lossy, flapping link may still be draining.
    let settle = Duration::from_secs(180);
    let (outbox, held) = wait_for(
        "the relay to hold exactly the edge's outbox",
        settle,
        || {
            let outbox = edge_rows(&edge.db());
            let held = relay.rows("vineyard-co", "pi-north");
            let acked = edge.try_get("/api/v1/sync")?["relay_acked"].as_u64()?;
            let newest = outbox.last()?[0] as u64;
            (held.len() == outbox.len() && acked == newest).then_some((outbox, held))
        },
    );
    assert!(
        held == outbox,
        "rows at the relay differ from the edge's outbox"
    );
    held.len()
}

#[test]
fn rows_at_the_relay_equal_the_edge_outbox() {
    let (relay, edge, udp) = pair();
    let mut v = Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", &format!("udpout:127.0.0.1:{udp}")])
            .args(["--sysid", "7", "--lat", "38.29", "--lon", "-122.45"])
            .args(["--rate", "100", "--positions", "600"])
            .stdout(Stdio::piped()),
    );
    v.wait_event("done", T);
    wait_for("600 samples committed at the edge", T, || {
        let h = edge.try_get("/api/v1/health")?;
        (h["store"]["committed_samples"].as_u64()? >= 600).then_some(())
    });
    assert_eq!(assert_relay_equals_outbox(&relay, &edge), 600);
    let s = edge.get("/api/v1/sync");
    assert_eq!(s["connected"], true);
    assert_eq!(s["relay_lost_rows"], 0);
}

#[test]
fn killing_either_side_mid_stream_stays_exactly_once() {
    let (mut relay, edge, udp) = pair();
    let mut sim = sim_fleet(udp, 10, 20);
    fn relay_has(relay: &CloudRelay, n: usize) -> impl FnMut() -> Option<()> + '_ {
        move || (relay.rows("vineyard-co", "pi-north").len() >= n).then_some(())
    }
    wait_for("rows at the relay", T, relay_has(&relay, 500));

    relay.kill9();
    relay.start();
    wait_for(
        "rows after the relay restarted",
        T,
        relay_has(&relay, 2_000),
    );

    let mut edge = edge;
    edge.proc.kill9();
    let EdgeDaemon { data, .. } = edge;
    let edge = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    wait_for("rows after the edge restarted", T, relay_has(&relay, 4_000));

    sim.kill9();
    let n = assert_relay_equals_outbox(&relay, &edge);
    assert!(n >= 4_000);
}

#[test]
fn a_revoked_edge_is_cut_off_at_once_and_stays_out() {
    let (relay, edge, udp) = pair();
    let _sim = sim_fleet(udp, 2, 20);
    wait_for("sync connected", T, || {
        (edge.try_get("/api/v1/sync")?["connected"] == true).then_some(())
    });
    relay.admin(&[
        "edge",
        "revoke",
        "--org",
        "vineyard-co",
        "--edge",
        "pi-north",
    ]);
    let connects = wait_for("the open session to be closed", T, || {
        let s = edge.try_get("/api/v1/sync")?;
        (s["connected"] == false).then(|| s["connects"].as_u64())?
    });
    // It keeps trying; each attempt is refused and it never counts as connected again.
    wait_for(
        "two more refused attempts",
        Duration::from_secs(120),
        || {
            let s = edge.try_get("/api/v1/sync")?;
            assert_eq!(s["connected"], false, "a revoked edge got back in: {s}");
            (s["connects"].as_u64()? >= connects + 2).then_some(())
        },
    );
    let acked = edge.get("/api/v1/sync")["relay_acked"].as_u64().unwrap();
    let held = relay.rows("vineyard-co", "pi-north").len() as u64;
    assert!(
        held <= acked + 1,
        "nothing was stored after the revocation was acked"
    );
}

#[test]
fn a_relay_restored_from_an_old_backup_is_told_the_truth_and_made_whole() {
    let (mut relay, edge, udp) = pair();
    let mut sim = sim_fleet(udp, 10, 20);
    let held = |relay: &CloudRelay| relay.rows("vineyard-co", "pi-north").len();
    wait_for("rows at the relay", T, || {
        (held(&relay) >= 500).then_some(())
    });
    relay.stop();
    relay.back_up();
    let backed_up = held(&relay) as u64;

    relay.start();
    wait_for("more rows after the backup", T, || {
        (held(&relay) as u64 >= backed_up + 1_500).then_some(())
    });
    relay.stop();
    let acked_before = held(&relay) as u64;
    // What the station will say it believes: the last acknowledgement it heard, once its
    // store has committed it. (A stopping relay may have stored rows whose Ack it never
    // sent: the station cannot know of those, and the relay's record of its loss ends at
    // what the station believed.)
    let believed = wait_for("the station's last acknowledgement committed", T, || {
        let heard = edge.try_get("/api/v1/sync")?["relay_acked"].as_u64()?;
        let stored: i64 = edge
            .db()
            .query_row(
                "SELECT acked_seq FROM sync_cursor WHERE stream = 'telemetry'",
                [],
                |r| r.get(0),
            )
            .ok()?;
        (stored as u64 == heard).then_some(heard)
    });
    assert!(believed <= acked_before && believed > backed_up);
    // The disk dies; the operator restores last night's backup.
    relay.restore_backup();
    relay.start();

    sim.kill9();
    assert_relay_equals_outbox(&relay, &edge);
    let gaps = relay.gaps("vineyard-co", "pi-north");
    let &(from, to) = gaps.first().expect("the relay recorded what it had lost");
    assert_eq!(
        (from as u64, to as u64),
        (backed_up + 1, believed),
        "the lost range: after the backup's mark, through what the station believed \
         acknowledged ({acked_before} rows were held before the restore)"
    );
    // The edge still held every row, so nothing is lost for good.
    assert_eq!(edge.get("/api/v1/sync")["relay_lost_rows"], 0);
}

#[test]
fn through_a_lossy_slow_flapping_link_sync_completes_exactly_once() {
    use std::sync::atomic::Ordering::Relaxed;
    use trellis_tests::impair::{ImpairedLink, Impairment};

    let relay_port = free_udp_port();
    let link = ImpairedLink::start(
        ([127, 0, 0, 1], relay_port).into(),
        Impairment {
            loss: 0.2,
            delay: Duration::from_millis(150), // 300 ms round trip
            flap: Some((Duration::from_secs(3), Duration::from_millis(1_500))),
        },
    );
    let (relay, edge, udp) = pair_with(CloudRelay::on_port(relay_port, Some(link.addr)));

    let mut sim = sim_fleet(udp, 5, 20);
    wait_for("rows across the bad link", Duration::from_secs(120), || {
        (relay.rows("vineyard-co", "pi-north").len() >= 1_500).then_some(())
    });
    sim.kill9();
    assert!(assert_relay_equals_outbox(&relay, &edge) >= 1_500);
    let (dropped, forwarded) = (link.dropped.load(Relaxed), link.forwarded.load(Relaxed));
    assert!(
        dropped >= 10 && dropped * 10 >= dropped + forwarded,
        "the link really was lossy: {dropped} dropped, {forwarded} forwarded"
    );
}

#[test]
fn an_edge_whose_database_was_lost_continues_above_the_relays_mark() {
    let (relay, edge, udp) = pair();
    let mut sim = sim_fleet(udp, 5, 20);
    let held = |relay: &CloudRelay| relay.rows("vineyard-co", "pi-north");
    wait_for("rows at the relay", T, || {
        (held(&relay).len() >= 500).then_some(())
    });
    let mut edge = edge;
    edge.proc.kill9();
    let before = held(&relay);
    let mark = before.last().unwrap()[0];

    // The SD card is replaced: the database is gone, the enrollment bundle restored.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", edge.db_path().display()));
    }
    let EdgeDaemon { data, .. } = edge;
    let edge = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    wait_for("new rows above the old mark", T, || {
        (held(&relay).last()?[0] > mark + 200).then_some(())
    });
    sim.kill9();

    let outbox = wait_for("the relay to hold the new outbox", T, || {
        let outbox = edge_rows(&edge.db());
        let newer: Vec<_> = held(&relay).into_iter().filter(|r| r[0] > mark).collect();
        (!outbox.is_empty() && newer == outbox).then_some(outbox)
    });
    assert!(
        outbox[0][0] > mark,
        "the new outbox starts above the relay's mark"
    );
    let old: Vec<_> = held(&relay).into_iter().filter(|r| r[0] <= mark).collect();
    assert!(
        old == before,
        "rows from before the loss are untouched at the relay"
    );
}
