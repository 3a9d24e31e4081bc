//! `history`: what HQ waits for when it opens a vehicle's last hour, and what the relay's disk
//! holds per sample.
//!
//! An org with two stations, five vehicles each at 10 Hz for two hours; one autopilot is heard
//! by both stations (the same samples 30 ms apart at the second), so every query of it merges
//! two stations' rows and drops the duplicates. The north station was connected all along and
//! sent a batch a second (50 rows, as a station's store commits); the south station was offline
//! and caught up in batches of 16,384 rows. Samples follow a survey track with GPS-like noise
//! (σ ≈ 0.4 m in position, 0.1 m/s in velocity) and 2–12 ms of arrival jitter on their times.
//!
//! The rows go into the store through `RelayStore::submit_telemetry`, the call a QUIC session
//! makes, but not over QUIC (`catchup` and `fanin` measure that path). The queries go over
//! real HTTP to the relay's HQ API with a viewer token: `GET /api/v1/orgs/{org}/vehicles/{id}/
//! telemetry?from=…&to=…&limit=36000`, one hour of the shared vehicle at a random offset
//! inside the two hours, timed from request to the last byte of the JSON.
//!
//! Everything is measured twice: with the chunks as they arrived, and after compaction has
//! merged them per vehicle and time (what the relay's writer does to chunks ten minutes old).
//! The store's part alone (no JSON, no HTTP) is printed beside the HTTP figure.
//!
//! `HISTORY_QUERIES` (default 200) sets how many queries are timed. `BENCH_STORE=postgres`
//! keeps the relay's store on a fresh database of the local PostgreSQL server; its bytes per
//! sample are then the database's tables, indexes and TOAST after a `VACUUM FULL`.

#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_relay::config::Config;
use cloud_relay::relay::Relay;
use cloud_relay::store::hq::Role;
use cloud_relay::store::{PgStore, SqliteStore, Store, TelemetryBatch};
use sync_protocol::codec::TelemetryRow;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{event::Kind, Event, VehicleIdentity};

const HZ: i64 = 10;
const SECONDS: i64 = 2 * 3_600;
const VEHICLES: u32 = 5;
/// 2026-06-01T06:00:00Z, a morning's flying.
const START_US: i64 = 1_780_293_600_000_000;
const SHARED_UID: &str = "003a001b3438510b";

/// xorshift64*: the same noise every run, no dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Roughly normal (sum of four uniforms), standard deviation `sigma`.
    fn normal(&mut self, sigma: f64) -> f64 {
        let sum: f64 = (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        (sum - 2.0) * sigma * 3f64.sqrt()
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }
}

/// One vehicle's samples: a lawnmower over a 400 m block at 6 m/s, 30 m up.
fn track(vehicle: u32, noise: &mut Noise) -> Vec<(i64, TelemetryRow)> {
    let mut out = Vec::with_capacity((SECONDS * HZ) as usize);
    let lat0 = 38.2919 + f64::from(vehicle) * 0.004;
    let lon0 = -122.4580;
    for i in 0..SECONDS * HZ {
        let t = i as f64 / HZ as f64;
        let along = (t * 6.0) % 800.0;
        let (north, heading) = if along < 400.0 {
            (along, 0)
        } else {
            (800.0 - along, 18_000)
        };
        let east = (t * 6.0 / 800.0).floor() * 20.0 % 400.0;
        let lat = lat0 + (north + noise.normal(0.4)) / 111_320.0;
        let lon = lon0 + (east + noise.normal(0.4)) / 87_600.0;
        let heard = START_US + i * 1_000_000 / HZ + noise.between(2_000, 12_000);
        out.push((
            heard,
            TelemetryRow {
                seq: 0,
                vehicle,
                t_us: heard,
                time_source: 2,
                lat_e7: (lat * 1e7) as i32,
                lon_e7: (lon * 1e7) as i32,
                alt_mm: 78_000 + noise.normal(700.0) as i32,
                rel_alt_mm: 30_000 + noise.normal(700.0) as i32,
                vx: if heading == 0 { 600 } else { -600 } + noise.normal(10.0) as i16,
                vy: noise.normal(10.0) as i16,
                vz: noise.normal(5.0) as i16,
                heading_cdeg: heading,
                battery_mv: 25_200 - (t / 2.0) as u16,
                battery_ca: 1_800 + noise.normal(30.0) as i16,
                battery_pct: 100 - (t / 80.0) as i8,
                gps_fix: 3,
                satellites: 16,
                custom_mode: 3,
                armed: true,
                mission_seq: (t / 60.0) as u16,
            },
        ));
    }
    out
}

/// A station's outbox: its vehicles' samples in arrival order, numbered.
fn outbox(vehicles: &[Vec<(i64, TelemetryRow)>]) -> Vec<TelemetryRow> {
    let mut all: Vec<(i64, TelemetryRow)> = vehicles.iter().flatten().copied().collect();
    all.sort_by_key(|(heard, r)| (*heard, r.vehicle));
    all.into_iter()
        .enumerate()
        .map(|(i, (_, mut r))| {
            r.seq = i as u64 + 1;
            r
        })
        .collect()
}

fn identity(seq: u64, sysid: u32, uid: String) -> Event {
    Event {
        seq,
        vehicle: sysid,
        kind: Kind::Identity as i32,
        code: "identity".into(),
        identity: Some(VehicleIdentity {
            name: format!("V-{sysid:02}"),
            uid,
            autopilot: 3,
            mav_type: 2,
        }),
        ..Default::default()
    }
}

/// Queues one station's outbox in batches of `rows` and waits until all are durable.
fn load(store: &dyn Store, edge: &EdgeIdentity, rows: &[TelemetryRow], batch_rows: usize) {
    let pending: Vec<_> = rows
        .chunks(batch_rows)
        .map(|chunk| {
            let batch = TelemetryBatch::new(
                edge.clone(),
                chunk[0].seq,
                chunk[chunk.len() - 1].seq,
                chunk,
            )
            .expect("batch");
            store.submit_telemetry(batch)
        })
        .collect();
    for p in pending {
        p.wait().expect("stored");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let queries: usize = std::env::var("HISTORY_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);

    // North hears sysids 1..=5, south 11..=15; north's 1 and south's 11 are one autopilot.
    let north_tracks: Vec<_> = (1..=VEHICLES).map(|v| track(v, &mut noise)).collect();
    let mut south_tracks: Vec<_> = (11..10 + VEHICLES + 1)
        .map(|v| track(v, &mut noise))
        .collect();
    south_tracks[0] = north_tracks[0]
        .iter()
        .map(|(heard, r)| {
            let late = heard + 30_000;
            (
                late,
                TelemetryRow {
                    vehicle: 11,
                    t_us: late,
                    ..*r
                },
            )
        })
        .collect();
    let north_rows = outbox(&north_tracks);
    let south_rows = outbox(&south_tracks);
    let total = (north_rows.len() + south_rows.len()) as u64;

    let db_path = dir.path().join("relay.db");
    let (store, storage, _pg): (Arc<dyn Store>, _, _) = match common::store_kind() {
        "PostgreSQL" => {
            let (pg, url) = common::BenchDatabase::create();
            let store = PgStore::open(&url).expect("store");
            (Arc::new(store), Storage::Postgres(url), Some(pg))
        }
        _ => {
            let store = SqliteStore::open(&db_path).expect("store");
            (Arc::new(store), Storage::Sqlite(db_path), None)
        }
    };
    println!("relay store: {}", common::store_kind());
    store.create_org("bench").expect("org");
    let north = EdgeIdentity::new("bench", "north").expect("id");
    let south = EdgeIdentity::new("bench", "south").expect("id");
    for (edge, base) in [(&north, 0), (&south, 10)] {
        store.enroll_edge(edge).expect("enroll");
        let events: Vec<Event> = (1..=VEHICLES)
            .map(|v| {
                let uid = if v == 1 {
                    SHARED_UID.to_string()
                } else {
                    format!("{:016x}", base + v)
                };
                identity(u64::from(v), base + v, uid)
            })
            .collect();
        store
            .apply_events(edge, 1, u64::from(VEHICLES), &events)
            .expect("identities");
    }
    let t = Instant::now();
    load(store.as_ref(), &north, &north_rows, 50);
    load(store.as_ref(), &south, &south_rows, 16_384);
    let load_s = t.elapsed().as_secs_f64();
    assert_eq!(store.telemetry_count("bench").expect("count"), total);
    println!(
        "loaded {total} samples ({} batches of 50 from north, {} of 16,384 from south) in {load_s:.1} s",
        north_rows.len().div_ceil(50),
        south_rows.len().div_ceil(16_384),
    );

    let fleet = store.fleet("bench").expect("fleet");
    let shared = fleet
        .iter()
        .find(|v| v.uid.as_deref() == Some(SHARED_UID))
        .expect("the shared vehicle");
    assert_eq!(shared.sightings.len(), 2, "heard by both stations");
    let token = store
        .create_token("bench", Role::Viewer, "bench")
        .expect("token");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let relay_dir = dir.path().to_path_buf();
    let relay = runtime.block_on(async {
        let mut config = Config {
            data_dir: relay_dir,
            ..Config::default()
        };
        config.quic.listen = "127.0.0.1:0".parse().expect("addr");
        config.hq.listen = "127.0.0.1:0".parse().expect("addr");
        config.hq.tls = false;
        Relay::start(&config, store.clone()).await.expect("relay")
    });
    let bench = Bench {
        store: store.clone(),
        storage,
        total,
        vehicle: shared.id,
        url: format!(
            "http://{}/api/v1/orgs/bench/vehicles/{}/telemetry",
            relay.hq_addr, shared.id
        ),
        token,
        queries,
    };
    bench.measure("as received", &mut noise);
    let t = Instant::now();
    let done = store.compact_telemetry(i64::MAX).expect("compaction");
    println!(
        "compacted {} chunks into {} ({} rows) in {:.2} s",
        done.chunks_in,
        done.chunks_out,
        done.rows,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(store.telemetry_count("bench").expect("count"), total);
    bench.measure("compacted", &mut noise);
    runtime.block_on(relay.stop());
}

struct Bench {
    store: Arc<dyn Store>,
    storage: Storage,
    total: u64,
    vehicle: i64,
    url: String,
    token: String,
    queries: usize,
}

impl Bench {
    /// Prints the relay's bytes per sample and the latency of hour-long history queries,
    /// from the store alone and over HTTP.
    fn measure(&self, label: &str, noise: &mut Noise) {
        let tag = label.replace(' ', "_");
        let used = self.storage.settled_size();
        let per_sample = used as f64 / self.total as f64;
        println!("[{label}] relay store: {used} bytes in use, {per_sample:.2} bytes/sample");
        println!("FIGURE history_storage_{tag} {per_sample:.2} B/sample");
        let hour_ms = 3_600_000i64;
        // The store's part alone: what the query costs before JSON and HTTP.
        let mut store_ms = Vec::with_capacity(self.queries);
        for _ in 0..self.queries {
            let from_us = START_US + noise.between(0, hour_ms) * 1_000;
            let start = Instant::now();
            let rows = self
                .store
                .vehicle_telemetry(
                    "bench",
                    self.vehicle,
                    from_us,
                    from_us + hour_ms * 1_000,
                    None,
                    36_000,
                )
                .expect("history")
                .rows;
            store_ms.push(start.elapsed().as_secs_f64() * 1e3);
            assert!(rows.len() >= 35_900, "{} samples", rows.len());
        }
        store_ms.sort_by(f64::total_cmp);
        println!(
            "[{label}] store alone (HqStore::vehicle_telemetry, no JSON, no HTTP): p50 {:.1} ms, p99 {:.1} ms",
            percentile(&store_ms, 0.5),
            percentile(&store_ms, 0.99)
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut latencies = Vec::with_capacity(self.queries);
        let mut samples = Vec::with_capacity(self.queries);
        for _ in 0..=self.queries {
            let from_ms = START_US / 1_000 + noise.between(0, hour_ms);
            let start = Instant::now();
            let body: Page = agent
                .get(&self.url)
                .query("from", from_ms.to_string())
                .query("to", (from_ms + hour_ms).to_string())
                .query("limit", "36000")
                .header("Authorization", format!("Bearer {}", self.token))
                .call()
                .expect("history query")
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_json()
                .expect("JSON");
            latencies.push(start.elapsed().as_secs_f64() * 1e3);
            samples.push(body.samples.len());
        }
        // The first query warms the page cache and the statement caches: not timed.
        latencies.remove(0);
        samples.remove(0);
        let (lo, hi) = (
            samples.iter().min().copied().unwrap_or(0),
            samples.iter().max().copied().unwrap_or(0),
        );
        assert!(
            lo >= 35_900,
            "an hour at 10 Hz, each sample once: got {lo}..{hi}"
        );
        assert!(
            hi <= 36_000,
            "duplicates from the second station kept: {hi}"
        );
        latencies.sort_by(f64::total_cmp);
        println!(
            "[{label}] {} queries over HTTP of one hour of the shared vehicle ({lo}..{hi} samples each): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(0.0),
        );
        println!(
            "FIGURE history_query_p50_{tag} {:.1} ms",
            percentile(&latencies, 0.5)
        );
        println!(
            "FIGURE history_query_p99_{tag} {:.1} ms",
            percentile(&latencies, 0.99)
        );
    }
}

/// The response, read as a client that wants the samples would (every field parsed).
#[derive(serde::Deserialize)]
#[allow(dead_code)] // parsed to be paid for, not read
struct Page {
    samples: Vec<trellis_web::SampleView>,
}

/// Where the relay's store keeps its bytes.
enum Storage {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Storage {
    /// Bytes the store holds once settled. SQLite: the live pages once the WAL is folded in
    /// (pages compaction freed stay in the file for reuse; counting them would hide what
    /// compaction saves). PostgreSQL: every table with its indexes and TOAST after a
    /// `VACUUM FULL` (the same reason: dead rows wait for a vacuum).
    fn settled_size(&self) -> u64 {
        match self {
            Storage::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db).expect("open");
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .expect("checkpoint");
                let pragma = |name: &str| -> u64 {
                    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                        .expect("pragma") as u64
                };
                (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
            }
            Storage::Postgres(url) => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).expect("PG");
                client.batch_execute("VACUUM FULL").expect("vacuum");
                let bytes: i64 = client
                    .query_one(
                        "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = 'public' AND c.relkind = 'r'",
                        &[],
                    )
                    .expect("sizes")
                    .get(0);
                bytes as u64
            }
        }
    }
}
