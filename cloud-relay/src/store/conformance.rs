//! Checks every relay store backend must pass, written against the traits only. Each
//! backend's tests run them all through [`conformance_tests!`], with a fresh store each.

use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{event::Kind, Event, VehicleIdentity};

use super::hq::EventCursor;
use super::{EdgeStatus, StoreError};

use super::history::DUPLICATE_WINDOW_US;
use super::hq::HqStore;
use super::RelayStore;

/// xorshift64*: reproducible random data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn identity(seq: u64, sysid: u32, uid: &str) -> Event {
    Event {
        seq,
        vehicle: sysid,
        kind: Kind::Identity as i32,
        code: "identity".into(),
        identity: Some(VehicleIdentity {
            name: format!("V-{sysid}"),
            uid: uid.into(),
            autopilot: 3,
            mav_type: 2,
        }),
        ..Default::default()
    }
}

/// The history of one vehicle as a row per sample would give it: every row its sightings
/// delivered, in (time, edge, seq) order, in the range, each sample heard twice kept once.
fn oracle(rows: &[(usize, TelemetryRow)], from: i64, to: i64, limit: usize) -> Vec<TelemetryRow> {
    let mut all: Vec<&(usize, TelemetryRow)> = rows
        .iter()
        .filter(|(_, r)| r.t_us >= from && r.t_us < to)
        .collect();
    all.sort_by_key(|(edge, r)| (r.t_us, *edge, r.seq));
    let mut kept: Vec<(usize, TelemetryRow)> = Vec::new();
    for &&(edge, r) in &all {
        let twice = kept.iter().any(|(e, k)| {
            *e != edge
                && r.t_us - k.t_us < DUPLICATE_WINDOW_US
                && (k.lat_e7, k.lon_e7, k.alt_mm) == (r.lat_e7, r.lon_e7, r.alt_mm)
        });
        if !twice && kept.len() < limit {
            kept.push((edge, r));
        }
    }
    kept.into_iter().map(|(_, r)| r).collect()
}

/// Random flights heard by two stations, one vehicle by both, stored in random batches
/// (resends overlapping what is held among them); random history queries must return
/// exactly what the row-per-sample oracle returns.
pub fn history_matches_a_row_per_sample_oracle<S: RelayStore + HqStore>(store: &S, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let org = format!("org-{seed}");
    store.create_org(&org).unwrap();
    // Enrolled in this order: the relay numbers them so, and ties in time break by it.
    let edges = [
        EdgeIdentity::new(&org, "north").unwrap(),
        EdgeIdentity::new(&org, "south").unwrap(),
    ];
    // The shared autopilot is system 1 at north and 7 at south; each has another of its own.
    let sysids = [(1u32, 2u32), (7, 8)];
    for (edge, &(shared, own)) in edges.iter().zip(&sysids) {
        store.enroll_edge(edge).unwrap();
        let events = [
            identity(1, shared, "00aa00bb00cc00dd"),
            identity(2, own, &format!("{:016x}", rng.next())),
        ];
        store.apply_events(edge, 1, 2, &events).unwrap();
    }

    // The shared vehicle's flight: both stations hear most of its messages, the second one
    // a little later; each hears some alone. Hovers repeat positions; clocks jump.
    let mut delivered: Vec<(usize, TelemetryRow)> = Vec::new();
    let mut outboxes: [Vec<TelemetryRow>; 2] = [Vec::new(), Vec::new()];
    let mut t = 1_000_000_000i64;
    let (mut lat, mut alt) = (0i32, 0i32);
    for _ in 0..1_500 {
        t += match rng.below(50) {
            0 => -(rng.below(5_000_000) as i64), // the clock steps back
            1 => rng.below(600_000_000) as i64,  // a long pause (or a forward step)
            _ => 20_000 + rng.below(150_000) as i64,
        };
        if !rng.chance(30) {
            lat += rng.below(40) as i32 - 20; // else a hover: same position again
            alt += rng.below(10) as i32 - 5;
        }
        let sample = TelemetryRow {
            t_us: t,
            lat_e7: lat,
            lon_e7: lat / 3,
            alt_mm: alt,
            battery_mv: rng.below(30_000) as u16,
            armed: rng.chance(50),
            ..Default::default()
        };
        let heard_by = match rng.below(10) {
            0 => vec![0],
            1 => vec![1],
            _ => vec![0, 1],
        };
        for station in heard_by {
            let delay = if station == 1 {
                rng.below(250_000) as i64
            } else {
                0
            };
            outboxes[station].push(TelemetryRow {
                vehicle: sysids[station].0,
                t_us: t + delay,
                ..sample
            });
        }
        // Each station's own vehicle flies too, in the same outbox.
        for (station, outbox) in outboxes.iter_mut().enumerate() {
            if rng.chance(40) {
                outbox.push(TelemetryRow {
                    vehicle: sysids[station].1,
                    t_us: t + rng.below(100_000) as i64,
                    lat_e7: lat,
                    lon_e7: lat / 3,
                    alt_mm: alt,
                    ..Default::default()
                });
            }
        }
    }

    for (station, outbox) in outboxes.iter_mut().enumerate() {
        // Sequence numbers with holes (rows the edge's quota removed before they were sent).
        let mut seq = 0;
        for r in outbox.iter_mut() {
            seq += 1 + u64::from(rng.chance(5));
            r.seq = seq;
        }
        let (mut start, mut mark) = (0usize, 0u64);
        while start < outbox.len() {
            let len = 1 + rng.below(300) as usize;
            let end = (start + len).min(outbox.len());
            // Sometimes the batch before is sent again along with this one (a lost ack).
            let from = if rng.chance(15) && start > 0 {
                start.saturating_sub(1 + rng.below(50) as usize)
            } else {
                start
            };
            let batch = &outbox[from..end];
            // A range starts right after the relay's mark, holes and all.
            let first = if from == start {
                mark + 1
            } else {
                batch[0].seq
            };
            mark = store
                .apply_telemetry(&edges[station], first, batch[batch.len() - 1].seq, batch)
                .unwrap();
            assert_eq!(mark, outbox[end - 1].seq);
            start = end;
        }
        delivered.extend(outbox.iter().map(|r| (station, *r)));
    }
    assert_eq!(store.telemetry_count(&org).unwrap(), delivered.len() as u64);

    let fleet = store.fleet(&org).unwrap();
    let shared = fleet
        .iter()
        .find(|v| v.sightings.len() == 2)
        .expect("the shared vehicle is one vehicle");
    let shared_rows: Vec<(usize, TelemetryRow)> = delivered
        .iter()
        .filter(|(station, r)| r.vehicle == sysids[*station].0)
        .copied()
        .collect();
    let (t_min, t_max) = (
        shared_rows.iter().map(|(_, r)| r.t_us).min().unwrap(),
        shared_rows.iter().map(|(_, r)| r.t_us).max().unwrap(),
    );
    let queries: Vec<(i64, i64, usize)> = (0..40)
        .map(|query| {
            let (from, to) = match query {
                0 => (i64::MIN, i64::MAX),
                _ => {
                    let span = (t_max - t_min) as u64;
                    let a = t_min - 1_000_000 + rng.below(span + 2_000_000) as i64;
                    (a, a + rng.below(span / 4) as i64)
                }
            };
            let limit = match rng.below(3) {
                0 => 1 + rng.below(20) as usize,
                1 => 1 + rng.below(500) as usize,
                _ => 100_000,
            };
            (from, to, limit)
        })
        .collect();
    // Pages of `limit`, each after the cursor of the one before, at most 60; and whether
    // the walk reached the last page.
    let walk = |vehicle: i64, from: i64, to: i64, limit: usize| {
        let mut all: Vec<TelemetryRow> = Vec::new();
        let mut after: Option<super::history::HistoryCursor> = None;
        for _ in 0..60 {
            let page = store
                .vehicle_telemetry(&org, vehicle, from, to, after.as_ref(), limit as u32)
                .unwrap();
            assert!(page.rows.len() <= limit);
            assert!(
                page.next.is_none() || !page.rows.is_empty(),
                "a page leads on"
            );
            all.extend(page.rows);
            // As a client holds it: text.
            after = match page.next {
                Some(next) => Some(next.to_string().parse().unwrap()),
                None => return (all, true),
            };
        }
        (all, false)
    };
    let check = |when: &str| {
        for (query, &(from, to, limit)) in queries.iter().enumerate() {
            let got = store
                .vehicle_telemetry(&org, shared.id, from, to, None, limit as u32)
                .unwrap()
                .rows;
            let mut want = oracle(&shared_rows, from, to, limit + 1);
            // A page with more after it ends before the microsecond of its last sample
            // (that goes whole to the next page), unless that microsecond is all it holds.
            let more = want.len() > limit;
            want.truncate(limit);
            if let (true, Some(last)) = (more, want.last().map(|r| r.t_us)) {
                let keep = want.partition_point(|r| r.t_us < last);
                if keep > 0 {
                    want.truncate(keep);
                }
            }
            assert_eq!(
                got.len(),
                want.len(),
                "seed {seed} query {query} {when}: {from}..{to} limit {limit}"
            );
            assert!(
                got == want,
                "seed {seed} query {query} {when}: {from}..{to} limit {limit}: samples differ"
            );
            if limit <= 20 {
                let (walked, ended) = walk(shared.id, from, to, limit);
                // To its end, all of it; cut short, the beginning of it.
                let upto = if ended { usize::MAX } else { walked.len() };
                let want = oracle(&shared_rows, from, to, upto);
                assert!(
                    walked == want,
                    "seed {seed} query {query} {when}: {from}..{to} by {limit}: pages differ"
                );
            }
        }
    };
    check("as received");
    // Merged per vehicle and time, the chunks must answer exactly the same.
    let done = store.compact_telemetry(i64::MAX).unwrap();
    assert!(done.chunks_in > 1 && done.rows > 0, "{done:?}");
    assert_eq!(store.telemetry_count(&org).unwrap(), delivered.len() as u64);
    check("compacted");
    assert_eq!(
        store.compact_telemetry(i64::MAX).unwrap().chunks_in,
        0,
        "nothing left to compact"
    );
}

fn rows(range: std::ops::RangeInclusive<u64>) -> Vec<TelemetryRow> {
    range
        .map(|seq| TelemetryRow {
            seq,
            vehicle: 1,
            t_us: seq as i64 * 100_000,
            ..Default::default()
        })
        .collect()
}

fn setup<S: RelayStore>(store: &S) -> EdgeIdentity {
    store.create_org("vineyard-co").unwrap();
    let edge = EdgeIdentity::new("vineyard-co", "pi-north").unwrap();
    store.enroll_edge(&edge).unwrap();
    edge
}

fn named_identity(seq: u64, sysid: u32, name: &str, uid: &str) -> Event {
    let mut e = identity(seq, sysid, uid);
    if let Some(i) = e.identity.as_mut() {
        i.name = name.into();
    }
    e
}

pub fn applying_is_idempotent_and_refuses_gaps<S: RelayStore + HqStore>(store: &S) {
    let edge = setup(store);
    assert_eq!(
        store.apply_telemetry(&edge, 1, 10, &rows(1..=10)).unwrap(),
        10
    );
    // The same batch again (its ack was lost): nothing new, same mark.
    assert_eq!(
        store.apply_telemetry(&edge, 1, 10, &rows(1..=10)).unwrap(),
        10
    );
    // Overlapping resend.
    assert_eq!(
        store.apply_telemetry(&edge, 5, 15, &rows(5..=15)).unwrap(),
        15
    );
    assert_eq!(store.telemetry_count("vineyard-co").unwrap(), 15);
    // A range may have holes the edge never wrote; the mark still moves.
    assert_eq!(
        store
            .apply_telemetry(&edge, 16, 20, &rows(18..=20))
            .unwrap(),
        20
    );
    assert!(matches!(
        store.apply_telemetry(&edge, 30, 31, &rows(30..=31)),
        Err(StoreError::Gap { .. })
    ));
    assert!(matches!(
        store.apply_telemetry(&edge, 21, 22, &rows(21..=25)),
        Err(StoreError::BadRange { .. })
    ));
}

pub fn a_revoked_edge_stores_nothing<S: RelayStore + HqStore>(store: &S) {
    let edge = setup(store);
    store.revoke_edge(&edge).unwrap();
    assert!(matches!(
        store.apply_telemetry(&edge, 1, 10, &rows(1..=10)),
        Err(StoreError::NotActive(_))
    ));
    assert_eq!(store.telemetry_count("vineyard-co").unwrap(), 0);
}

pub fn edges_are_enrolled_into_existing_orgs_and_can_be_revoked<S: RelayStore + HqStore>(
    store: &S,
) {
    let edge = setup(store);
    assert_eq!(store.edge_status(&edge).unwrap(), EdgeStatus::Active);
    let stranger = EdgeIdentity::new("other-org", "pi").unwrap();
    let both = [edge.clone(), stranger.clone()];
    assert_eq!(
        store.inactive_among(&both).unwrap(),
        std::slice::from_ref(&stranger)
    );
    assert!(store.revoke_edge(&edge).unwrap());
    assert_eq!(store.edge_status(&edge).unwrap(), EdgeStatus::Revoked);
    let mut inactive = store.inactive_among(&both).unwrap();
    inactive.sort_by_key(|e| e.to_string());
    assert_eq!(inactive, [stranger.clone(), edge.clone()]);
    assert!(store.inactive_among(&[]).unwrap().is_empty());
    assert!(matches!(
        store.enroll_edge(&stranger),
        Err(StoreError::NoSuchOrg(_))
    ));
    assert_eq!(store.edge_status(&stranger).unwrap(), EdgeStatus::Unknown);
    assert!(matches!(
        store.create_org("vineyard-co"),
        Err(StoreError::OrgExists(_))
    ));
}

pub fn events_page_newest_first_across_edges_with_ties_kept_apart<S: RelayStore + HqStore>(
    store: &S,
) {
    store.create_org("vineyard-co").unwrap();
    let north = EdgeIdentity::new("vineyard-co", "pi-north").unwrap();
    let south = EdgeIdentity::new("vineyard-co", "pi-south").unwrap();
    let alert = |seq: u64, t_us: i64| Event {
        seq,
        t_us,
        kind: Kind::Alert as i32,
        code: "low_battery".into(),
        ..Default::default()
    };
    for e in [&north, &south] {
        store.enroll_edge(e).unwrap();
    }
    // Two edges raise alerts at the same instants: a page boundary must not lose or repeat one.
    store
        .apply_events(&north, 1, 3, &[alert(1, 10), alert(2, 20), alert(3, 20)])
        .unwrap();
    store
        .apply_events(&south, 1, 2, &[alert(1, 20), alert(2, 30)])
        .unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .events("vineyard-co", Some(1), before.as_ref(), 2)
            .unwrap();
        seen.extend(page.iter().map(|e| (e.t_us, e.edge.clone(), e.seq)));
        match page.last() {
            Some(last) if page.len() == 2 => {
                let cursor = EventCursor::of(last);
                assert_eq!(
                    EventCursor::parse(&cursor.to_string()),
                    Some(cursor.clone())
                );
                before = Some(cursor);
            }
            _ => break,
        }
    }
    let edge = |e: &str| e.to_string();
    assert_eq!(
        seen,
        vec![
            (30, edge("pi-south"), 2),
            (20, edge("pi-south"), 1),
            (20, edge("pi-north"), 3),
            (20, edge("pi-north"), 2),
            (10, edge("pi-north"), 1),
        ]
    );
    assert_eq!(EventCursor::parse("20.3"), None);
    assert_eq!(EventCursor::parse("x.3.pi"), None);
}

pub fn a_vehicle_heard_by_two_edges_is_one_vehicle_once_its_uid_is_known<
    S: RelayStore + HqStore,
>(
    store: &S,
) {
    store.create_org("vineyard-co").unwrap();
    store.create_org("other-co").unwrap();
    let north = EdgeIdentity::new("vineyard-co", "pi-north").unwrap();
    let south = EdgeIdentity::new("vineyard-co", "pi-south").unwrap();
    let other = EdgeIdentity::new("other-co", "pi").unwrap();
    for e in [&north, &south, &other] {
        store.enroll_edge(e).unwrap();
    }
    // North hears it before the autopilot reports its uid; south knows the uid already.
    store
        .apply_events(&north, 1, 1, &[named_identity(1, 3, "V-03", "")])
        .unwrap();
    store
        .apply_events(&south, 1, 1, &[named_identity(1, 9, "V-09", "00aa")])
        .unwrap();
    assert_eq!(store.fleet("vineyard-co").unwrap().len(), 2);
    store
        .apply_events(&north, 2, 2, &[named_identity(2, 3, "V-03", "00aa")])
        .unwrap();
    let fleet = store.fleet("vineyard-co").unwrap();
    assert_eq!(fleet.len(), 1, "{fleet:?}");
    assert_eq!(
        fleet[0].sightings,
        vec![("pi-north".to_string(), 3), ("pi-south".to_string(), 9)]
    );
    // The same uid in another org is that org's own vehicle.
    store
        .apply_events(&other, 1, 1, &[named_identity(1, 3, "X-1", "00aa")])
        .unwrap();
    assert_eq!(store.fleet("vineyard-co").unwrap().len(), 1);
    assert_eq!(store.fleet("other-co").unwrap()[0].name, "X-1");
}

/// One `#[test]` per check above, each on a store from `$fresh` (an expression giving a
/// value that derefs to the store and cleans up when dropped).
macro_rules! conformance_tests {
    ($fresh:expr) => {
        #[test]
        fn conformance_history_matches_a_row_per_sample_oracle() {
            for seed in 1..=4 {
                let store = $fresh;
                $crate::store::conformance::history_matches_a_row_per_sample_oracle(&*store, seed);
            }
        }
        #[test]
        fn conformance_applying_is_idempotent_and_refuses_gaps() {
            $crate::store::conformance::applying_is_idempotent_and_refuses_gaps(&*$fresh);
        }
        #[test]
        fn conformance_a_revoked_edge_stores_nothing() {
            $crate::store::conformance::a_revoked_edge_stores_nothing(&*$fresh);
        }
        #[test]
        fn conformance_edges_are_enrolled_into_existing_orgs_and_can_be_revoked() {
            $crate::store::conformance::edges_are_enrolled_into_existing_orgs_and_can_be_revoked(
                &*$fresh,
            );
        }
        #[test]
        fn conformance_events_page_newest_first_across_edges_with_ties_kept_apart() {
            $crate::store::conformance::events_page_newest_first_across_edges_with_ties_kept_apart(
                &*$fresh,
            );
        }
        #[test]
        fn conformance_a_vehicle_heard_by_two_edges_is_one_vehicle_once_its_uid_is_known() {
            $crate::store::conformance::a_vehicle_heard_by_two_edges_is_one_vehicle_once_its_uid_is_known(&*$fresh);
        }
    };
}
pub(crate) use conformance_tests;
