//! `wire_bytes`: bytes per telemetry sample on the wire between a station and its relay,
//! all-in (SPEC §8 target ≤ 6 B; anchor: the same samples as a zstd-compressed .tlog), for a
//! catch-up after an hour offline and for steady sync, with the samples' times and positions
//! as a station really gets them.
//!
//! Every byte is counted at the UDP socket: a proxy in this process sits between the
//! station's sync client and the relay and counts the UDP payload (QUIC packets: the TLS
//! handshake, TLS record protection, QUIC framing, the protocol's envelopes, batches and
//! acks, QUIC acks, keep-alives, Live datagrams, the close) and the datagrams, each way. The
//! figure is all of it, both directions, divided by the telemetry samples synced.
//!
//! **Catch-up** (what is real and what is replayed). 50 simulated copters fly one hour of
//! surveys with GPS noise (`edge_daemon::sim::fleet_frames_each`, the simulator the station is
//! tested with, noise as `edge-daemon sim --gps-noise`), generated faster than real time.
//! Their frames go through the edge's real ingest path (`Ingest::process`, frame scanner,
//! fleet state, the store writer, SQLite) with **receive times replayed from real-rate
//! arrivals**: each vehicle's frames of one 20 ms simulator step arrive together, as a radio
//! delivers a burst, at the step's simulated time plus 2–12 ms of latency drawn per burst
//! (seeded). Sample timestamps are the station's receive times, so they carry that jitter as
//! in the field, instead of collapsing onto one instant per 64 frames. Ingest's 100 ms tick
//! is not run during the replay (its clock would re-anchor replayed instants to the real
//! system time), only once after the last arrival, to publish the fleet state Live sends; the
//! store's commit window runs in real time, which changes only how rows are grouped into
//! transactions, not the rows. Then the edge's real sync client
//! (`edge_daemon::sync::run`, Live datagrams at the product's 1 s) drains the backlog through
//! the proxy to a real relay (`cloud_relay::server::run`, `SqliteStore` on a file, QUIC with
//! mutual TLS) on loopback, from the handshake until the connection is closed after the
//! relay has acknowledged every sample and event. The relay must then hold every sample.
//! To show what the payload is made of, the backlog is also re-encoded as the client encodes
//! it with each group of columns in turn held constant (time, position, altitude, velocity,
//! ...): the bytes that saves is roughly what the group costs.
//!
//! **Steady**: nothing replayed. The release binaries run as their own processes (`cargo
//! build --release --workspace --bins` first): `cloud-relay serve`, `edge-daemon serve`
//! enrolled to it with its bundle pointing at the proxy, and `edge-daemon sim --vehicles 50
//! --rate 10 --gps-noise` sending real UDP in real time. After a warm-up (`WIRE_WARMUP_SECS`,
//! default 30) with everything connected, bytes at the proxy are counted for `WIRE_SECS`
//! (default 120) and divided by the samples the station committed in that window. Two
//! stations run side by side, each with its own fleet (the same seeds, so the same flights)
//! and its own proxy to the one relay: one with the product's defaults (Live datagrams every
//! second per vehicle), the figure; one with `[sync] live_interval_ms = 0`, so that what is
//! not payload in the first and not in the second is what Live costs on the wire. Payload is
//! what a station's `/api/v1/sync` counts as `bytes_sent` (telemetry batches and event
//! lists, before their envelopes); the rest is QUIC, TLS, envelopes, acks and keep-alives,
//! and Live.
//!
//! The anchor is the catch-up's hour as a `.tlog` (every frame the vehicles sent, exported
//! from the edge store as MAVExplorer reads it), compressed with zstd at levels 3 and 19.
//!
//! `WIRE_CATCHUP_SECS` (flight seconds, default 3600), `WIRE_VEHICLES` (default 50),
//! `WIRE_ONLY` (`catchup` or `steady`), `WIRE_TLOG=0` skips the anchor.
//!
//! `cargo build --release --workspace --bins && cargo bench -p trellis-tests --bench wire_bytes`

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_relay::store::{RelayStore, SqliteStore};
use edge_daemon::frame::{Frame, FrameScanner};
use edge_daemon::ingest::Ingest;
use edge_daemon::link::{Endpoint, Inbound, LinkConfig, Links};
use edge_daemon::store::tlog::{self, TlogQuery};
use edge_daemon::store::{Store, StoreConfig, Stream};
use edge_daemon::survey::LatLon;
use edge_daemon::sync::SyncStatus;
use edge_daemon::vehicle::FleetSnapshot;
use sync_protocol::enrollment::Bundle;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::pki::Ca;
use trellis_tests::*;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What crossed the proxy, each way.
#[derive(Debug, Default, Clone, Copy)]
struct Wire {
    up_bytes: u64,
    up_datagrams: u64,
    down_bytes: u64,
    down_datagrams: u64,
}

impl Wire {
    fn bytes(&self) -> u64 {
        self.up_bytes + self.down_bytes
    }

    fn datagrams(&self) -> u64 {
        self.up_datagrams + self.down_datagrams
    }

    fn since(&self, before: &Wire) -> Wire {
        Wire {
            up_bytes: self.up_bytes - before.up_bytes,
            up_datagrams: self.up_datagrams - before.up_datagrams,
            down_bytes: self.down_bytes - before.down_bytes,
            down_datagrams: self.down_datagrams - before.down_datagrams,
        }
    }
}

#[derive(Default)]
struct Counters {
    up_bytes: AtomicU64,
    up_datagrams: AtomicU64,
    down_bytes: AtomicU64,
    down_datagrams: AtomicU64,
}

/// A UDP proxy that forwards everything at once and counts it: station ↔ `addr` ↔ relay.
/// The station is whoever last sent to `addr` (a restarted station takes over).
struct CountingProxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    fn start(relay: SocketAddr) -> CountingProxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind proxy"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind proxy"));
        back.connect(relay).expect("connect to the relay");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
        }
        let addr = front.local_addr().expect("addr");
        let station: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (front, back, station) = (front.clone(), back.clone(), station.clone());
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *station.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                    counters.up_bytes.fetch_add(n as u64, Relaxed);
                    counters.up_datagrams.fetch_add(1, Relaxed);
                    let _ = back.send(&buf[..n]);
                }
            });
        }
        {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Relaxed) {
                    let Ok(n) = back.recv(&mut buf) else {
                        continue;
                    };
                    counters.down_bytes.fetch_add(n as u64, Relaxed);
                    counters.down_datagrams.fetch_add(1, Relaxed);
                    let to = *station.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(to) = to {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            });
        }
        CountingProxy {
            addr,
            counters,
            stop,
        }
    }

    fn wire(&self) -> Wire {
        let c = &self.counters;
        Wire {
            up_bytes: c.up_bytes.load(Relaxed),
            up_datagrams: c.up_datagrams.load(Relaxed),
            down_bytes: c.down_bytes.load(Relaxed),
            down_datagrams: c.down_datagrams.load(Relaxed),
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// One measurement: bytes at the proxy, samples synced, and the station's own counters.
#[derive(Debug, Default, Clone, Copy)]
struct Measured {
    wire: Wire,
    samples: u64,
    /// Samples the relay acknowledged meanwhile.
    acked: u64,
    /// Telemetry batch and event list payloads (the station's `bytes_sent`).
    payload_bytes: u64,
    batches: u64,
    events: u64,
    live_datagrams: u64,
    seconds: f64,
}

impl Measured {
    fn per_sample(&self, bytes: u64) -> f64 {
        bytes as f64 / self.samples.max(1) as f64
    }

    fn all(&self) -> f64 {
        self.per_sample(self.wire.bytes())
    }
}

/// The catch-up hour, and its anchor.
struct Catchup {
    measured: Measured,
    frames: u64,
    replay_seconds: f64,
    tlog: Option<Tlog>,
    /// What each group of columns costs in the payload: (name, bytes saved when it is
    /// constant).
    columns: Vec<(&'static str, u64)>,
}

/// Batch size and zstd level the sync client uses (`edge-daemon/src/sync/client.rs`).
const BATCH_ROWS: u32 = 16_384;
const ZSTD_LEVEL: i32 = 6;

/// The backlog's payload re-encoded as the client encodes it, whole and then with each group
/// of columns in turn held constant: the difference is roughly what that group costs (zstd
/// sees the columns together, so the parts need not add up to the whole).
fn column_costs(reader: &edge_daemon::store::Reader) -> Vec<(&'static str, u64)> {
    type Row = sync_protocol::codec::TelemetryRow;
    type Flatten = (&'static str, fn(&mut Row));
    let flatten: [Flatten; 7] = [
        ("time (t_us)", |r| r.t_us = 0),
        ("position (lat_e7, lon_e7)", |r| {
            (r.lat_e7, r.lon_e7) = (0, 0)
        }),
        ("altitude (alt_mm, rel_alt_mm)", |r| {
            (r.alt_mm, r.rel_alt_mm) = (0, 0)
        }),
        ("velocity (vx, vy, vz)", |r| (r.vx, r.vy, r.vz) = (0, 0, 0)),
        ("heading", |r| r.heading_cdeg = 0),
        ("battery (mv, ca, pct)", |r| {
            (r.battery_mv, r.battery_ca, r.battery_pct) = (0, 0, 0)
        }),
        (
            "the rest (source, fix, satellites, mode, armed, mission item)",
            |r| {
                (r.time_source, r.gps_fix, r.satellites) = (0, 0, 0);
                (r.custom_mode, r.armed, r.mission_seq) = (0, false, 0);
            },
        ),
    ];
    let mut whole = 0u64;
    let mut without = vec![0u64; flatten.len()];
    let mut after = 0;
    loop {
        let rows = reader.outbox(after, BATCH_ROWS).expect("outbox");
        let Some(last) = rows.last() else { break };
        after = last.seq;
        let size = |rows: &[Row]| {
            sync_protocol::codec::encode(rows, ZSTD_LEVEL)
                .expect("encode")
                .len() as u64
        };
        whole += size(&rows);
        for (i, (_, f)) in flatten.iter().enumerate() {
            let mut flat = rows.clone();
            flat.iter_mut().for_each(f);
            without[i] += size(&flat);
        }
    }
    flatten
        .iter()
        .zip(without)
        .map(|((name, _), w)| (*name, whole.saturating_sub(w)))
        .collect()
}

struct Tlog {
    frames: u64,
    bytes: u64,
    zstd3: u64,
    zstd19: u64,
}

/// Radio latency of one burst, 2–12 ms: xorshift64*, seeded, so runs replay the same times.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> Duration {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let u = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(0.002 + 0.010 * u)
    }
}

/// The fleet's frames of one simulator step, and where they go when the next step starts.
struct Replay {
    ingest: Ingest,
    link: edge_daemon::link::LinkId,
    scanner: FrameScanner,
    jitter: Jitter,
    start: Instant,
    step_at: Duration,
    /// This step's frames, one burst per vehicle, in the order they were sent.
    bursts: Vec<(u8, Vec<Frame>)>,
    frames: u64,
    last_received: Instant,
}

impl Replay {
    fn frame(&mut self, at: Duration, frame: Frame) {
        if at != self.step_at {
            self.deliver();
            self.step_at = at;
        }
        self.frames += 1;
        // As the station's link reader gets it: bytes from a datagram, cut by the scanner.
        self.scanner.push(frame.as_bytes());
        let sysid = frame.system_id();
        match self.bursts.last_mut() {
            Some((v, burst)) if *v == sysid => {
                while let Some(f) = self.scanner.next_frame() {
                    burst.push(f);
                }
            }
            _ => {
                let mut burst = Vec::new();
                while let Some(f) = self.scanner.next_frame() {
                    burst.push(f);
                }
                self.bursts.push((sysid, burst));
            }
        }
        self.scanner.end_datagram();
    }

    /// Hands this step's bursts to ingest in the order they arrive.
    fn deliver(&mut self) {
        let mut arrivals: Vec<(Instant, Vec<Frame>)> = self
            .bursts
            .drain(..)
            .map(|(_, frames)| (self.start + self.step_at + self.jitter.next(), frames))
            .collect();
        // Latency (≤ 12 ms) is less than a step (20 ms): steps never overtake each other.
        arrivals.sort_by_key(|(at, _)| *at);
        for (received, frames) in arrivals {
            self.ingest
                .process(Inbound {
                    link: self.link,
                    received,
                    frames,
                })
                .expect("ingest");
            self.last_received = received;
        }
    }
}

/// The real relay server on loopback (SQLite at `db`, QUIC with mutual TLS), as
/// `tests/benches/common` starts it.
fn relay(db: &std::path::Path) -> (Arc<dyn RelayStore>, Ca, SocketAddr) {
    let store: Arc<dyn RelayStore> = Arc::new(SqliteStore::open(db).expect("relay store"));
    let (ca, _) = Ca::generate("bench CA").expect("CA");
    let relay_key = ca.issue_relay(&["localhost".into()]).expect("relay cert");
    let server = sync_protocol::transport::server_config(
        relay_key.cert_der().expect("der"),
        relay_key.key_der().expect("der"),
        ca.cert_der().expect("der"),
    )
    .expect("server config");
    let endpoint = sync_protocol::transport::server_endpoint(
        server,
        "127.0.0.1:0".parse().expect("addr"),
        &[7; 32],
    )
    .expect("endpoint");
    let addr = endpoint.local_addr().expect("addr");
    tokio::spawn(cloud_relay::server::run(
        endpoint,
        store.clone(),
        Default::default(),
    ));
    (store, ca, addr)
}

fn catchup(vehicles: usize, flight_seconds: f64, with_tlog: bool) -> Catchup {
    let dir = tempfile::tempdir().expect("temp dir");
    let edge_dir = dir.path().join("edge");
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir_all(&relay_dir).expect("relay dir");

    // The simulator's GPS time starts at a fixed date (2026-09-22), and a station whose
    // system clock is not synchronised (this one's may not be) anchors its receive times to
    // it after its first second: the raw frames of that second, stamped with the system
    // clock, would then be the newest data by weeks, and raw-frame retention (30 days,
    // measured against the newest data) would delete the rest of the hour before the .tlog
    // anchor is exported. Samples are kept either way; retention is long here.
    let config = StoreConfig {
        frame_retention: Duration::from_secs(10 * 365 * 24 * 3600),
        ..StoreConfig::default()
    };
    let store = Store::open(&edge_dir, config).expect("edge store");
    let links = Links::default();
    let radio = links.add(
        "udpin:radio".into(),
        LinkConfig::from("udpin:127.0.0.1:1".parse::<Endpoint>().expect("endpoint")),
    );
    let (snapshots, snapshots_rx) = tokio::sync::watch::channel(Arc::new(FleetSnapshot::default()));
    let ingest = Ingest::new(
        links,
        Duration::from_secs(5),
        HashMap::new(),
        &Default::default(),
        store.sender(),
        snapshots,
    );
    let clock = (ingest.time(), ingest.relay_time());
    let start = Instant::now();
    let mut replay = Replay {
        ingest,
        link: radio.id,
        scanner: FrameScanner::new(),
        jitter: Jitter(0x9E37_79B9_7F4A_7C15),
        start,
        step_at: Duration::ZERO,
        bursts: Vec::new(),
        frames: 0,
        last_received: start,
    };
    let origin = LatLon {
        lat: 38.2919,
        lon: -122.4580,
    };
    edge_daemon::sim::fleet_frames_each(origin, vehicles, flight_seconds, true, |at, frame| {
        replay.frame(at, frame)
    });
    replay.deliver();
    // One tick after the last arrival publishes the fleet's state, which Live sends.
    replay
        .ingest
        .tick(replay.last_received + Duration::from_millis(100))
        .expect("tick");
    replay.ingest.flush().expect("flush");
    store.flush().expect("durable");
    let replay_seconds = start.elapsed().as_secs_f64();
    let view = store.status_view();
    let rows = view.committed_seq as u64;
    let events = store.status().committed(Stream::Events);
    assert_eq!(
        view.quota_deleted_samples, 0,
        "the quota thinned the backlog"
    );
    assert_eq!(
        view.quota_deleted_frames, 0,
        "raw frames deleted before the .tlog export"
    );
    eprintln!(
        "replayed {} frames of {flight_seconds} s in {replay_seconds:.0} s: {rows} samples, {events} events",
        replay.frames
    );

    let tlog = with_tlog.then(|| {
        let mut bytes = Vec::new();
        let frames = tlog::export(
            &store.reader(),
            &TlogQuery {
                vehicle: None,
                from_us: 0,
                to_us: i64::MAX,
            },
            &mut bytes,
        )
        .expect("export");
        let t = Instant::now();
        let zstd3 = zstd::bulk::compress(&bytes, 3).expect("zstd").len() as u64;
        let zstd19 = zstd::bulk::compress(&bytes, 19).expect("zstd").len() as u64;
        eprintln!(
            ".tlog of {} MB compressed in {:.0} s",
            bytes.len() / 1_000_000,
            t.elapsed().as_secs_f64()
        );
        Tlog {
            frames,
            bytes: bytes.len() as u64,
            zstd3,
            zstd19,
        }
    });

    let columns = column_costs(&store.reader());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let measured = runtime.block_on(async {
        let (relay_store, ca, addr) = relay(&relay_dir.join("relay.db"));
        let proxy = CountingProxy::start(addr);
        relay_store.create_org("bench").expect("org");
        let id = EdgeIdentity::new("bench", "edge-1").expect("identity");
        relay_store.enroll_edge(&id).expect("enroll");
        let edge_key = ca.issue_edge(&id).expect("edge cert");
        let bundle = Bundle {
            org: id.org.clone(),
            edge: id.edge.clone(),
            relay: proxy.addr.to_string(),
            server_name: "localhost".into(),
            relay_ca_pem: ca.cert_pem.clone(),
            cert_pem: edge_key.cert_pem,
            key_pem: edge_key.key_pem,
        };
        let status = Arc::new(SyncStatus::default());
        let start = Instant::now();
        let (stop_sync, stop_rx) = tokio::sync::watch::channel(false);
        let sync = tokio::spawn(edge_daemon::sync::run(
            edge_daemon::sync::Client {
                bundle,
                reader: store.reader(),
                store: store.sender(),
                committed: store.status(),
                status: status.clone(),
                snapshots: snapshots_rx,
                bandwidth_limit_bytes_per_s: 0,
                // The product's default (`[sync] live_interval_ms`).
                live_interval: Duration::from_secs(1),
                time: clock.0.clone(),
                relay_time: clock.1.clone(),
            },
            stop_rx,
        ));
        while status.relay_acked.load(Relaxed) < rows || status.events_acked.load(Relaxed) < events
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(
                start.elapsed() < Duration::from_secs(1_800),
                "drain did not finish"
            );
        }
        let seconds = start.elapsed().as_secs_f64();
        let _ = stop_sync.send(true);
        let _ = sync.await;
        // The close, and anything the relay still had to say, through the proxy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = relay_store.telemetry_count("bench").expect("count");
        assert_eq!(held, rows, "every sample at the relay, once");
        Measured {
            wire: proxy.wire(),
            samples: rows,
            acked: status.relay_acked.load(Relaxed),
            payload_bytes: status.bytes_sent.load(Relaxed),
            batches: status.batches_sent.load(Relaxed),
            events: status.events_sent.load(Relaxed),
            live_datagrams: status.live_sent.load(Relaxed),
            seconds,
        }
    });
    Catchup {
        measured,
        frames: replay.frames,
        replay_seconds,
        tlog,
        columns,
    }
}

/// `edge-daemon sim` with GPS noise, sending to a station's `udpin` on `udp`, quietly.
fn noisy_fleet(udp: u16, vehicles: u8, rate: u32) -> Proc {
    Proc::spawn(
        "edge-daemon sim",
        Command::new(bin("edge-daemon"))
            .args(["sim", "--gps-noise", "--vehicles", &vehicles.to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--link", &format!("udpout:127.0.0.1:{udp}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// The station's sync counters and committed mark, read at one moment with the proxy's.
struct Reading {
    wire: Wire,
    at: Instant,
    committed: u64,
    acked: u64,
    payload_bytes: u64,
    batches: u64,
    events: u64,
    live_datagrams: u64,
}

fn read(station: &EdgeDaemon, proxy: &CountingProxy) -> Reading {
    let at = Instant::now();
    let wire = proxy.wire();
    let s = station.get("/api/v1/sync");
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("sync {k}: {s}"));
    Reading {
        wire,
        at,
        committed: n("relay_acked") + n("backlog_rows"),
        acked: n("relay_acked"),
        payload_bytes: n("bytes_sent"),
        batches: n("batches_sent"),
        events: n("events_sent"),
        live_datagrams: n("live_datagrams_sent"),
    }
}

/// Waits until the station is connected, hears every vehicle and the relay acknowledges
/// what it sends.
fn wait_ready(station: &EdgeDaemon, vehicles: usize) {
    let acked = |station: &EdgeDaemon| -> Option<u64> {
        let s = station.try_get("/api/v1/sync")?;
        s["connected"].as_bool()?.then_some(())?;
        s["relay_acked"].as_u64()
    };
    let first = wait_for("sync connected", Duration::from_secs(60), || acked(station));
    wait_for(
        "every vehicle heard, and acknowledgements moving",
        Duration::from_secs(60),
        || {
            let heard = station.try_get("/api/v1/vehicles?limit=1000")?["vehicles"]
                .as_array()?
                .len();
            (heard == vehicles && acked(station)? > first).then_some(())
        },
    );
}

fn window(before: &Reading, after: &Reading) -> Measured {
    Measured {
        wire: after.wire.since(&before.wire),
        samples: after.committed - before.committed,
        acked: after.acked - before.acked,
        payload_bytes: after.payload_bytes - before.payload_bytes,
        batches: after.batches - before.batches,
        events: after.events - before.events,
        live_datagrams: after.live_datagrams - before.live_datagrams,
        seconds: after.at.duration_since(before.at).as_secs_f64(),
    }
}

struct Steady {
    live_on: Measured,
    live_off: Measured,
}

/// Two stations side by side, each with its own fleet (the same seeds: the same flights)
/// and its own proxy to the one relay: one with the defaults, one with Live off.
fn steady(vehicles: u8, warmup: Duration, secs: Duration) -> Steady {
    let relay_port = free_udp_port();
    let relay_addr: SocketAddr = ([127, 0, 0, 1], relay_port).into();
    let (proxy_on, proxy_off) = (
        CountingProxy::start(relay_addr),
        CountingProxy::start(relay_addr),
    );
    let mut relay = CloudRelay::on_port(relay_port, Some(proxy_on.addr));
    let data_on = relay.enroll_pi_north();
    let data_off = tempfile::tempdir().expect("temp dir");
    relay.enroll("vineyard-co", "pi-south", data_off.path());
    // The second station reaches the relay through its own proxy.
    let bundle = edge_daemon::sync::bundle_path(data_off.path());
    let text = std::fs::read_to_string(&bundle).expect("bundle");
    let (on, off) = (proxy_on.addr.to_string(), proxy_off.addr.to_string());
    assert!(text.contains(&on), "the bundle names the proxy");
    std::fs::write(&bundle, text.replace(&on, &off)).expect("bundle");
    let no_live = data_off.path().join("no-live.toml");
    std::fs::write(&no_live, "[sync]\nlive_interval_ms = 0\n").expect("write config");
    let no_live = no_live.to_str().expect("utf-8 path").to_string();
    relay.start();
    relay.wait_hq();

    let (udp_on, udp_off) = (free_udp_port(), free_udp_port());
    let station_on = EdgeDaemon::start_in(data_on, &[format!("udpin:127.0.0.1:{udp_on}")], &[]);
    let station_off = EdgeDaemon::start_in(
        data_off,
        &[format!("udpin:127.0.0.1:{udp_off}")],
        &["--config", &no_live],
    );
    let _fleets = (
        noisy_fleet(udp_on, vehicles, 10),
        noisy_fleet(udp_off, vehicles, 10),
    );
    wait_ready(&station_on, usize::from(vehicles));
    wait_ready(&station_off, usize::from(vehicles));
    std::thread::sleep(warmup);
    let before = (read(&station_on, &proxy_on), read(&station_off, &proxy_off));
    std::thread::sleep(secs);
    let after = (read(&station_on, &proxy_on), read(&station_off, &proxy_off));
    let connects = |s: &EdgeDaemon| s.get("/api/v1/sync")["connects"].as_u64().unwrap_or(0);
    assert_eq!(
        (connects(&station_on), connects(&station_off)),
        (1, 1),
        "each station kept its one connection"
    );
    let live_on = window(&before.0, &after.0);
    let live_off = window(&before.1, &after.1);
    assert_eq!(live_off.live_datagrams, 0, "Live was off");
    print_window("steady, Live on (the defaults)", &live_on);
    print_window("steady, Live off", &live_off);
    Steady { live_on, live_off }
}

fn print_window(name: &str, m: &Measured) {
    eprintln!(
        "{name}: {:.0} s, {} samples ({} acknowledged), up {} B in {} datagrams, down {} B in {} datagrams, payload {} B in {} batches, {} events, {} Live datagrams: {:.3} B/sample",
        m.seconds,
        m.samples,
        m.acked,
        m.wire.up_bytes,
        m.wire.up_datagrams,
        m.wire.down_bytes,
        m.wire.down_datagrams,
        m.payload_bytes,
        m.batches,
        m.events,
        m.live_datagrams,
        m.all()
    );
}

fn row(name: &str, m: &Measured) {
    let other = m.wire.bytes().saturating_sub(m.payload_bytes);
    println!(
        "{name:<28} {:>9} {:>6.0} {:>11} {:>9} {:>7}/{:<7} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        m.samples,
        m.seconds,
        m.wire.up_bytes,
        m.wire.down_bytes,
        m.wire.up_datagrams,
        m.wire.down_datagrams,
        m.per_sample(m.payload_bytes),
        m.per_sample(other),
        m.all(),
        // With each datagram's IPv4 and UDP headers (28 B), as a metered link may bill.
        m.per_sample(m.wire.bytes() + 28 * m.wire.datagrams()),
    );
}

fn main() {
    let vehicles: u8 = env_or("WIRE_VEHICLES", 50);
    let flight = env_or("WIRE_CATCHUP_SECS", 3600.0);
    let window = Duration::from_secs(env_or("WIRE_SECS", 120));
    let warmup = Duration::from_secs(env_or("WIRE_WARMUP_SECS", 30));
    let only = std::env::var("WIRE_ONLY").unwrap_or_default();
    let with_tlog = env_or("WIRE_TLOG", 1) != 0;

    let catchup = (only != "steady").then(|| catchup(usize::from(vehicles), flight, with_tlog));
    if let Some(c) = &catchup {
        print_window("catch-up", &c.measured);
    }
    let steady = (only != "catchup").then(|| steady(vehicles, warmup, window));

    println!();
    println!(
        "wire_bytes: {vehicles} simulated copters at 10 Hz with GPS noise; bytes are UDP payload at a proxy between station and relay, both directions"
    );
    if let Some(c) = &catchup {
        println!(
            "catch-up: {flight} s of flight ({} frames) replayed through ingest at real-rate arrival times in {:.0} s; drained in {:.1} s",
            c.frames, c.replay_seconds, c.measured.seconds
        );
    }
    println!(
        "{:<28} {:>9} {:>6} {:>11} {:>9} {:>15} {:>8} {:>8} {:>8} {:>8}",
        "",
        "samples",
        "secs",
        "up B",
        "down B",
        "datagrams u/d",
        "payload",
        "other",
        "all-in",
        "+IP/UDP"
    );
    println!(
        "{:<28} {:>9} {:>6} {:>11} {:>9} {:>15} {:>8} {:>8} {:>8} {:>8}",
        "", "", "", "", "", "", "B/sample", "B/sample", "B/sample", "B/sample"
    );
    if let Some(c) = &catchup {
        row(
            &format!("catch-up ({:.0} min offline)", flight / 60.0),
            &c.measured,
        );
    }
    if let Some(s) = &steady {
        row("steady, Live on (defaults)", &s.live_on);
        row("steady, Live off", &s.live_off);
    }
    println!("(payload: telemetry batches and event lists as the station counts them; other: QUIC, TLS, envelopes, acks, keep-alives and Live datagrams)");
    if let Some(c) = &catchup {
        let m = &c.measured;
        println!(
            "catch-up: {} batches, {} events, {} Live datagrams",
            m.batches, m.events, m.live_datagrams
        );
    }
    if let Some(s) = &steady {
        let (on, off) = (&s.live_on, &s.live_off);
        let other = |m: &Measured| m.per_sample(m.wire.bytes().saturating_sub(m.payload_bytes));
        let live = other(on) - other(off);
        println!(
            "steady: {} / {} batches, {} / {} events, {} / {} samples acknowledged in the window (Live on / off)",
            on.batches, off.batches, on.events, off.events, on.acked, off.acked
        );
        println!(
            "steady, Live on: payload {:.3} + QUIC, TLS, envelopes, acks {:.3} (as with Live off) + Live {live:.3} ({} datagrams, {:.1}/s, about {:.0} B each on the wire) = {:.3} B/sample",
            on.per_sample(on.payload_bytes),
            other(off),
            on.live_datagrams,
            on.live_datagrams as f64 / on.seconds,
            live * on.samples as f64 / on.live_datagrams.max(1) as f64,
            on.all()
        );
    }
    if let Some(c) = &catchup {
        let mut columns = c.columns.clone();
        columns.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
        let parts: Vec<String> = columns
            .iter()
            .filter(|(_, b)| *b > 0)
            .map(|(name, b)| format!("{name}: {:.2}", c.measured.per_sample(*b)))
            .collect();
        println!(
            "catch-up payload by column, B/sample (saved when those columns are held constant): {}",
            parts.join("; ")
        );
    }
    if let Some(t) = catchup.as_ref().and_then(|c| c.tlog.as_ref()) {
        let rows = catchup.as_ref().map_or(1, |c| c.measured.samples) as f64;
        println!(
            "anchor, the catch-up hour as a .tlog ({} frames): {:.1} B/sample; .tlog.zst level 3 {:.2} B/sample, level 19 {:.2} B/sample",
            t.frames,
            t.bytes as f64 / rows,
            t.zstd3 as f64 / rows,
            t.zstd19 as f64 / rows
        );
    }
    if let Some(c) = &catchup {
        println!("FIGURE wire_bytes_catchup {:.3} B/sample", c.measured.all());
    }
    if let Some(s) = &steady {
        println!("FIGURE wire_bytes_steady {:.3} B/sample", s.live_on.all());
    }
}
