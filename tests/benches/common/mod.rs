//! A telemetry backlog drained from a real edge store to a real relay over loopback QUIC,
//! shared by the `catchup` and `wire_bytes` benchmarks.
//!
//! The backlog is made the way a field day makes it: 50 simulated copters fly their surveys,
//! their frames go through the edge's real ingest path into its SQLite store (raw frames and
//! samples), and then the edge's sync client drains the samples into the relay's store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_relay::store::{PgStore, RelayStore, SqliteStore};
use edge_daemon::frame::FrameScanner;
use edge_daemon::ingest::Ingest;
use edge_daemon::link::{Endpoint, Inbound, LinkConfig, Links};
use edge_daemon::store::{Store, StoreConfig};
use edge_daemon::survey::LatLon;
use edge_daemon::sync::SyncStatus;
use edge_daemon::vehicle::FleetSnapshot;
use sync_protocol::codec::TelemetryRow;
use sync_protocol::enrollment::Bundle;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::pki::Ca;

pub const VEHICLES: usize = 50;
/// 50 vehicles × 10 samples/s × 2,000 s = 1,000,000 samples.
const FLIGHT_SECONDS: f64 = 2_000.0;

pub struct Drain {
    pub rows: u64,
    pub seconds: f64,
    pub payload_bytes: u64,
    pub batches: u64,
    /// CPU seconds during the drain: the relay's writer thread, the relay's other threads
    /// (its runtime: QUIC, sessions, decoding, and their blocking pool), and the edge's
    /// (its runtime and store: the outbox reads, compression, QUIC).
    pub writer_cpu: f64,
    pub relay_cpu: f64,
    pub edge_cpu: f64,
    /// Every `postgres` process's CPU seconds during the drain (the server's backends, WAL
    /// writer and checkpointer: the relay's store at work), when the relay is on PostgreSQL.
    pub postgres_cpu: Option<f64>,
}

/// A running relay: its store, the CA that issues its edges' certificates, and where it listens.
pub struct Relay {
    pub store: Arc<dyn RelayStore>,
    pub ca: Ca,
    pub addr: SocketAddr,
    /// Every instance's address (`addr` first) and store, for a relay of several.
    pub addrs: Vec<SocketAddr>,
    pub stores: Vec<Arc<dyn RelayStore>>,
    _clusters: Vec<cloud_relay::cluster::Cluster>,
    /// The PostgreSQL database it stores into, when it does (dropped after the relay).
    pub pg: Option<BenchDatabase>,
}

/// Which store the benches' relays use: SQLite at the path given (the default) or, with
/// `BENCH_STORE=postgres`, a fresh database on the local PostgreSQL server
/// (`TRELLIS_TEST_PG`, default `postgres://postgres@127.0.0.1/postgres`).
pub fn store_kind() -> &'static str {
    match std::env::var("BENCH_STORE").as_deref() {
        Ok("postgres") => "PostgreSQL",
        _ => "SQLite",
    }
}

/// A database of the bench's own, dropped at the end.
pub struct BenchDatabase {
    name: String,
    admin: String,
}

impl BenchDatabase {
    /// A fresh database, and its URL. Blocks: not on an async thread.
    pub fn create() -> (BenchDatabase, String) {
        let admin = std::env::var("TRELLIS_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/postgres".into());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("PostgreSQL");
        let name = format!("trellis_bench_{}", std::process::id());
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create");
        let url = format!("{}/{name}", admin.rsplit_once('/').expect("url").0);
        (BenchDatabase { name, admin }, url)
    }
}

impl Drop for BenchDatabase {
    /// On a plain thread: the postgres client may not block inside the bench's runtime.
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// Starts the real relay server (its store at `db` or on PostgreSQL, see [`store_kind`];
/// QUIC with mutual TLS on loopback) on the current tokio runtime.
pub async fn relay(db: &Path) -> Relay {
    relay_instances(db, 1).await
}

/// A relay of `instances` instances as `cloud-relay serve` runs them with `[cluster]`: each
/// with its own store on one PostgreSQL database (so more than one needs
/// `BENCH_STORE=postgres`), its own QUIC endpoint and live picture, joined over NATS
/// (`BENCH_NATS`, default `nats://127.0.0.1:4222`). All in this process, on one runtime.
pub async fn relay_instances(db: &Path, instances: usize) -> Relay {
    assert!(
        instances == 1 || store_kind() == "PostgreSQL",
        "several instances share a PostgreSQL store: set BENCH_STORE=postgres"
    );
    let (stores, pg): (Vec<Arc<dyn RelayStore>>, _) = if store_kind() == "PostgreSQL" {
        // The postgres client blocks on a runtime of its own: not on this async thread.
        let (pg, stores) = std::thread::spawn(move || {
            let (pg, url) = BenchDatabase::create();
            let stores: Vec<Arc<dyn RelayStore>> = (0..instances)
                .map(|_| Arc::new(PgStore::open(&url).expect("relay store")) as _)
                .collect();
            (pg, stores)
        })
        .join()
        .expect("open the PostgreSQL store");
        (stores, Some(pg))
    } else {
        (
            vec![Arc::new(SqliteStore::open(db).expect("relay store"))],
            None,
        )
    };
    let (ca, _) = Ca::generate("bench CA").expect("CA");
    let relay_key = ca.issue_relay(&["localhost".into()]).expect("relay cert");
    let server = sync_protocol::transport::server_config(
        relay_key.cert_der().expect("der"),
        relay_key.key_der().expect("der"),
        ca.cert_der().expect("der"),
    )
    .expect("server config");
    let nats = std::env::var("BENCH_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let subject = format!("trellis.bench.{}", std::process::id());
    let (mut addrs, mut clusters) = (Vec::new(), Vec::new());
    for (i, store) in stores.iter().enumerate() {
        let endpoint = sync_protocol::transport::server_endpoint(
            server.clone(),
            "127.0.0.1:0".parse().expect("addr"),
            &[7; 32],
        )
        .expect("endpoint");
        addrs.push(endpoint.local_addr().expect("addr"));
        let live = Arc::new(cloud_relay::live::LiveView::default());
        if instances > 1 {
            let instance = format!("bench-{i}");
            clusters.push(
                cloud_relay::cluster::Cluster::join(&nats, &subject, &instance, live.clone())
                    .await
                    .expect("join the cluster over NATS"),
            );
        }
        tokio::spawn(cloud_relay::server::run(endpoint, store.clone(), live));
    }
    Relay {
        store: stores[0].clone(),
        ca,
        addr: addrs[0],
        addrs,
        stores,
        _clusters: clusters,
        pg,
    }
}

/// CPU seconds this process's threads have used so far, summed by `class(thread name)`.
pub fn cpu_seconds(class: impl Fn(&str) -> &'static str) -> HashMap<&'static str, f64> {
    cpu_seconds_in("/proc/self/task", class)
}

/// CPU seconds every process named `postgres` on this machine has used so far.
fn postgres_cpu_seconds() -> f64 {
    let by_name = cpu_seconds_in("/proc", |name| match name {
        "postgres" => "postgres",
        _ => "other",
    });
    by_name.get("postgres").copied().unwrap_or(0.0)
}

/// User and system CPU seconds of every process or thread under `dir` (`/proc`, or a
/// process's `task`), summed by `class(its name)`.
fn cpu_seconds_in(dir: &str, class: impl Fn(&str) -> &'static str) -> HashMap<&'static str, f64> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The name is in parentheses and may hold spaces; the fields after it are fixed.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let Some(times) = fields.get(11..13) else {
            continue;
        };
        let ticks: f64 = times.iter().map(|f| f.parse::<f64>().unwrap_or(0.0)).sum();
        *out.entry(class(&stat[open + 1..close])).or_default() += ticks / 100.0;
        // USER_HZ
    }
    out
}

/// Whose a thread is: the relay's writer, the relay's runtime (named "relay"), or the edge.
fn side(thread: &str) -> &'static str {
    match thread {
        "relay-writer" => "writer",
        "relay" => "relay",
        _ => "edge",
    }
}

/// Feeds `frames` through a new ingest loop committing to `store`, as the UDP link hands them
/// over (one datagram each, 64 a read), and returns once the store holds them; also the loop's
/// fleet snapshots, for a sync client.
pub fn ingest_all<F: std::borrow::Borrow<edge_daemon::frame::Frame>>(
    store: &Store,
    frames: &[F],
) -> tokio::sync::watch::Receiver<Arc<FleetSnapshot>> {
    let links = Links::default();
    let radio = links.add(
        "udpin:bench".into(),
        LinkConfig::from("udpin:127.0.0.1:1".parse::<Endpoint>().expect("endpoint")),
    );
    let (snapshots, snapshots_rx) = tokio::sync::watch::channel(Arc::new(FleetSnapshot::default()));
    let mut ingest = Ingest::new(
        links,
        Duration::from_secs(5),
        HashMap::new(),
        &Default::default(),
        store.sender(),
        snapshots,
    );
    let mut scanner = FrameScanner::new();
    for chunk in frames.chunks(64) {
        let mut batch = Vec::with_capacity(chunk.len());
        for f in chunk {
            scanner.push(f.borrow().as_bytes());
            while let Some(frame) = scanner.next_frame() {
                batch.push(frame);
            }
            scanner.end_datagram();
        }
        ingest
            .process(Inbound {
                link: radio.id,
                received: Instant::now(),
                frames: batch,
            })
            .expect("ingest");
    }
    ingest.flush().expect("flush");
    store.flush().expect("durable");
    snapshots_rx
}

/// Drains a 1,000,050-row edge outbox into a relay over loopback QUIC. The relay runs on a
/// runtime of its own (as it would in its own process), so its CPU can be told from the
/// edge's.
pub fn drain() -> Drain {
    let dir = tempfile::tempdir().expect("temp dir");
    let edge_dir = dir.path().join("edge");
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir_all(&relay_dir).expect("relay dir");

    let origin = LatLon {
        lat: 38.2919,
        lon: -122.4580,
    };
    let t = Instant::now();
    let frames = edge_daemon::sim::fleet_frames(origin, VEHICLES, FLIGHT_SECONDS);
    eprintln!(
        "generated {} frames in {:.1} s",
        frames.len(),
        t.elapsed().as_secs_f64()
    );

    let store = Store::open(&edge_dir, StoreConfig::default()).expect("edge store");
    let snapshots_rx = ingest_all(&store, &frames);
    drop(frames);
    let rows = store.status_view().committed_seq as u64;
    eprintln!("edge store holds {rows} samples");

    let relay_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("relay")
        .build()
        .expect("relay runtime");
    // `_pg` lives to the end: its database is dropped with it.
    let Relay {
        store: relay_store,
        ca,
        addr,
        pg: _pg,
        ..
    } = relay_runtime.block_on(relay(&relay_dir.join("relay.db")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edge")
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let id = EdgeIdentity::new("bench", "edge-1").expect("identity");
        // Store calls block (PostgreSQL's client on a runtime of its own): off the async path.
        tokio::task::block_in_place(|| {
            relay_store.create_org("bench").expect("org");
            relay_store.enroll_edge(&id).expect("enroll");
        });

        let edge_key = ca.issue_edge(&id).expect("edge cert");
        let bundle = Bundle {
            org: id.org.clone(),
            edge: id.edge.clone(),
            relay: addr.to_string(),
            server_name: "localhost".into(),
            relay_ca_pem: ca.cert_pem.clone(),
            cert_pem: edge_key.cert_pem,
            key_pem: edge_key.key_pem,
        };
        let status = Arc::new(SyncStatus::default());
        let cpu_before = cpu_seconds(side);
        let postgres_before = postgres_cpu_seconds();
        let start = Instant::now();
        let (stop_sync, stop_rx) = tokio::sync::watch::channel(false);
        // No ingest loop here, and the rows carry their own times: the sync client only needs
        // a clock it trusts (on a machine whose kernel says unsynchronised, the relay's time).
        let mut clock = edge_daemon::clock::Clock::new(store.time_base());
        clock.relay_time().tell(
            edge_daemon::clock::system_now_us(),
            std::time::Instant::now(),
        );
        clock.adjust(std::time::Instant::now());
        let (_time_tx, time) = tokio::sync::watch::channel(clock.base());
        let sync = tokio::spawn(edge_daemon::sync::run(
            edge_daemon::sync::Client {
                bundle,
                reader: store.reader(),
                store: store.sender(),
                committed: store.status(),
                status: status.clone(),
                snapshots: snapshots_rx,
                bandwidth_limit_bytes_per_s: 0,
                live_interval: Duration::ZERO,
                time,
                relay_time: clock.relay_time(),
            },
            stop_rx,
        ));
        while status.relay_acked.load(Relaxed) < rows {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "drain did not finish"
            );
        }
        let seconds = start.elapsed().as_secs_f64();
        let cpu_after = cpu_seconds(side);
        let postgres_used = postgres_cpu_seconds() - postgres_before;
        let used =
            |class| cpu_after.get(class).unwrap_or(&0.0) - cpu_before.get(class).unwrap_or(&0.0);
        let _ = stop_sync.send(true);
        let _ = sync.await;
        let held =
            tokio::task::block_in_place(|| relay_store.telemetry_count("bench")).expect("count");
        assert_eq!(held, rows, "every row at the relay, once");
        Drain {
            rows,
            seconds,
            payload_bytes: status.bytes_sent.load(Relaxed),
            batches: status.batches_sent.load(Relaxed),
            writer_cpu: used("writer"),
            relay_cpu: used("relay"),
            edge_cpu: used("edge"),
            postgres_cpu: (store_kind() == "PostgreSQL").then_some(postgres_used),
        }
    })
}

/// Row `seq` of a vehicle `vehicle` (1-based) flying a straight line at 10 Hz, `step` ticks
/// in: the rows the fan-in and relay-restart benches stream.
pub fn straight_line_row(seq: u64, vehicle: u32, step: i32) -> TelemetryRow {
    TelemetryRow {
        seq,
        vehicle,
        t_us: 1_790_000_000_000_000 + i64::from(step) * 100_000 + i64::from(vehicle - 1) * 1_713,
        time_source: 1,
        lat_e7: 382_919_000 + step * 54 + (vehicle - 1) as i32 * 10_000,
        lon_e7: -1_224_580_000 + step * 3,
        alt_mm: 78_000,
        rel_alt_mm: 30_000,
        vx: 600,
        vy: 30,
        heading_cdeg: 900,
        battery_mv: 24_000 - (step / 50) as u16,
        battery_ca: 1_800,
        battery_pct: 90 - (step / 600) as i8,
        gps_fix: 3,
        satellites: 16,
        custom_mode: 3,
        armed: true,
        mission_seq: (step / 200) as u16,
        ..Default::default()
    }
}
