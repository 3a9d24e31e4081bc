//! `fanin`: one relay holding many edges at once, each streaming 50 samples/s; the figure is
//! the p99 acknowledgement latency (SPEC §8 target: 1,000 edges, p99 ≤ 100 ms).
//!
//! Everything on the relay side is real: `cloud_relay::server::run` with its `SqliteStore` on
//! a file (WAL, `synchronous=FULL`), QUIC with mutual TLS, one CA-issued certificate per edge.
//! Each edge is its own quinn connection speaking the protocol as `edge-daemon` does: Hello and
//! Welcome on the control stream, `Batch`es on a unidirectional lane, `Ack`s back on the
//! control stream. The edges share a few client UDP sockets (`connect_with` a per-edge client
//! configuration) so a thousand of them need a handful of file descriptors, not a thousand.
//!
//! Cadence: an edge's store writer commits once a second (`commit_window`) and its sync client
//! sends what is committed, so 50 samples/s reach the relay as one batch of 50 rows a second
//! per edge (5 vehicles at 10 Hz), not as five batches of 10. Edges are staggered evenly over
//! the second, as independent stations are. Batches are sent on schedule whether or not the
//! previous one was acknowledged (the real client allows 4 in flight, which at one batch a
//! second only binds past 3 s of latency): a slow relay shows up as latency, not as edges
//! that politely stopped sending.
//!
//! Ack latency is measured per batch from just before it is written to the lane until the
//! first Ack covering its last row arrives, for batches sent in the steady window (after all
//! edges are connected and a warm-up). At the end the relay must hold exactly the rows sent.
//!
//! Both sides run in this one process on the same cores (the relay on its own runtime); the
//! client side's QUIC and TLS work is real and would sit on the edges' own machines in the
//! field, so the CPU split is printed too.
//!
//! `FANIN_EDGES` (default 1000), `FANIN_SECS` (steady window, default 30), `FANIN_WARMUP_SECS`
//! (default 5), `FANIN_SOCKETS` (client UDP sockets, default 4). `FANIN_INSTANCES=2` (with
//! `BENCH_STORE=postgres`) runs two relay instances, as `[cluster]` joins them: a store each
//! on one database, the live picture over NATS, edges spread evenly; both in this process,
//! on the same cores, so the figure shows what sharing costs, not what a second machine adds.

#[allow(dead_code)]
mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_protocol::stream::Stream;

use sync_protocol::codec::{self, TelemetryRow};
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{envelope::Body, Batch, Encoding, Envelope, Hello, StreamState};
use sync_protocol::wire::{read_message, write_message};

const VEHICLES_PER_EDGE: u32 = 5;
const HZ: u32 = 10;
const ROWS_PER_BATCH: u64 = (VEHICLES_PER_EDGE * HZ) as u64;
const ORGS: usize = 10;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One second of one edge: 5 vehicles flying straight lines at 10 Hz.
fn second_of_flight(k: u64) -> Vec<TelemetryRow> {
    let mut rows = Vec::with_capacity(ROWS_PER_BATCH as usize);
    for tick in 0..u64::from(HZ) {
        for v in 0..VEHICLES_PER_EDGE {
            let step = (k * u64::from(HZ) + tick) as i32;
            let seq = k * ROWS_PER_BATCH + rows.len() as u64 + 1;
            rows.push(common::straight_line_row(seq, v + 1, step));
        }
    }
    rows
}

struct Plan {
    start: Instant,
    batches: u64,
    /// Batch `k` of every edge (the same samples; the relay keys them by edge).
    messages: Vec<Envelope>,
    window: (Instant, Instant),
}

#[derive(Default)]
struct EdgeReport {
    /// Ack latency of each batch sent inside the window.
    latencies: Vec<Duration>,
    /// Rows whose Ack arrived inside the window.
    rows_acked_in_window: u64,
    /// How late the latest send in the window was against its schedule (client-side
    /// saturation; the first sends, right after a thousand Hellos, are late by design).
    max_send_lag: Duration,
    rows_sent: u64,
}

async fn edge(conn: quinn::Connection, plan: Arc<Plan>, phase: Duration) -> EdgeReport {
    let (mut control_tx, mut control_rx) = conn.open_bi().await.expect("control stream");
    let hello = Envelope {
        body: Some(Body::Hello(Hello {
            protocol_version: sync_protocol::PROTOCOL_VERSION,
            software: "fanin bench".into(),
            streams: vec![StreamState {
                stream: Stream::Telemetry.name().into(),
                oldest_held: 0,
                newest: 0,
                believed_acked: 0,
            }],
        })),
    };
    write_message(&mut control_tx, &hello).await.expect("Hello");
    match read_message(&mut control_rx).await.expect("Welcome") {
        Some(Envelope {
            body: Some(Body::Welcome(w)),
        }) => assert!(w.acked.iter().all(|a| a.seq == 0), "a fresh relay"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    let mut lane = conn.open_uni().await.expect("lane");

    // (last seq, when written)
    let in_flight: Mutex<VecDeque<(u64, Instant)>> = Mutex::new(VecDeque::new());
    let report = Mutex::new(EdgeReport::default());
    let last_seq = plan.batches * ROWS_PER_BATCH;
    let send = async {
        for (k, message) in plan.messages.iter().enumerate() {
            let due = plan.start + phase + Duration::from_secs(k as u64);
            tokio::time::sleep_until(due.into()).await;
            let now = Instant::now();
            let Some(Body::Batch(b)) = &message.body else {
                unreachable!("plan holds batches")
            };
            in_flight.lock().expect("lock").push_back((b.last_seq, now));
            write_message(&mut lane, message).await.expect("batch");
            let mut r = report.lock().expect("lock");
            if now >= plan.window.0 && now < plan.window.1 {
                r.max_send_lag = r.max_send_lag.max(now - due);
            }
            r.rows_sent += u64::from(b.rows);
        }
    };
    let receive = async {
        loop {
            let ack = match read_message(&mut control_rx).await.expect("control") {
                Some(Envelope {
                    body: Some(Body::Ack(a)),
                }) => a,
                other => panic!("expected Ack, got {other:?}"),
            };
            let now = Instant::now();
            let mut q = in_flight.lock().expect("lock");
            let mut r = report.lock().expect("lock");
            while q.front().is_some_and(|&(last, _)| last <= ack.seq) {
                let (_, sent) = q.pop_front().expect("front");
                if sent >= plan.window.0 && sent < plan.window.1 {
                    r.latencies.push(now - sent);
                }
                if now >= plan.window.0 && now < plan.window.1 {
                    r.rows_acked_in_window += ROWS_PER_BATCH;
                }
            }
            if ack.seq >= last_seq {
                return;
            }
        }
    };
    tokio::join!(send, receive);
    let _ = lane.finish();
    conn.close(0u32.into(), b"done");
    report.into_inner().expect("lock")
}

/// The relay's runtime and writer ("relay…"), the simulated edges ("edge…"), and the rest.
fn side(thread: &str) -> &'static str {
    if thread.starts_with("relay") {
        "relay"
    } else if thread.starts_with("edge") {
        "edges"
    } else {
        "other"
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let edges: usize = env_or("FANIN_EDGES", 1000);
    let secs: u64 = env_or("FANIN_SECS", 30);
    let warmup: u64 = env_or("FANIN_WARMUP_SECS", 5);
    let sockets: usize = env_or("FANIN_SOCKETS", 4).max(1);
    let instances: usize = env_or("FANIN_INSTANCES", 1).max(1);

    let dir = tempfile::tempdir().expect("temp dir");
    let relay_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("relay")
        .enable_all()
        .build()
        .expect("relay runtime");
    let relay = relay_rt.block_on(common::relay_instances(
        &dir.path().join("relay.db"),
        instances,
    ));

    let t = Instant::now();
    let ids: Vec<EdgeIdentity> = (0..edges)
        .map(|i| EdgeIdentity::new(&format!("org-{}", i % ORGS), &format!("edge-{i}")))
        .collect::<Result<_, _>>()
        .expect("identities");
    for org in 0..ORGS.min(edges) {
        relay.store.create_org(&format!("org-{org}")).expect("org");
    }
    let ca_der = relay.ca.cert_der().expect("CA der");
    let configs: Vec<quinn::ClientConfig> = ids
        .iter()
        .map(|id| {
            relay.store.enroll_edge(id).expect("enroll");
            let key = relay.ca.issue_edge(id).expect("edge cert");
            sync_protocol::transport::client_config(
                key.cert_der().expect("der"),
                key.key_der().expect("der"),
                ca_der.clone(),
            )
            .expect("client config")
        })
        .collect();
    eprintln!(
        "enrolled {edges} edges and issued their certificates in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let messages: Vec<Envelope> = (0..warmup + secs + 1)
        .map(|k| {
            let rows = second_of_flight(k);
            Envelope {
                body: Some(Body::Batch(Batch {
                    stream: Stream::Telemetry.name().into(),
                    first_seq: k * ROWS_PER_BATCH + 1,
                    last_seq: (k + 1) * ROWS_PER_BATCH,
                    rows: rows.len() as u32,
                    encoding: Encoding::TelemetryColumnarV1 as i32,
                    payload: codec::encode(&rows, 6).expect("encode"),
                })),
            }
        })
        .collect();
    let batches = messages.len() as u64;

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("edge")
        .enable_all()
        .build()
        .expect("client runtime");
    let reports = client_rt.block_on(async {
        let endpoints: Vec<quinn::Endpoint> = (0..sockets)
            .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("socket"))
            .collect();
        let t = Instant::now();
        // A thousand simultaneous handshakes would only measure the accept queue; 64 at a
        // time connects everyone in a few seconds.
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let mut connecting = tokio::task::JoinSet::new();
        for (i, config) in configs.into_iter().enumerate() {
            let endpoint = endpoints[i % sockets].clone();
            let (gate, addr) = (gate.clone(), relay.addrs[i % relay.addrs.len()]);
            connecting.spawn(async move {
                let _permit = gate.acquire().await.expect("gate");
                let conn = endpoint
                    .connect_with(config, addr, "localhost")
                    .expect("connect")
                    .await
                    .expect("handshake");
                (i, conn)
            });
        }
        let mut conns: Vec<Option<quinn::Connection>> = vec![None; edges];
        while let Some(joined) = connecting.join_next().await {
            let (i, conn) = joined.expect("connect task");
            conns[i] = Some(conn);
        }
        eprintln!(
            "{edges} edges connected over {sockets} client sockets in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let start = Instant::now() + Duration::from_millis(500);
        let window = (
            start + Duration::from_secs(warmup),
            start + Duration::from_secs(warmup + secs),
        );
        let plan = Arc::new(Plan {
            start,
            batches,
            messages,
            window,
        });
        let mut running = tokio::task::JoinSet::new();
        for (i, conn) in conns.into_iter().enumerate() {
            let phase = Duration::from_secs(1) * i as u32 / edges as u32;
            let conn = conn.expect("connected");
            running.spawn(edge(conn, plan.clone(), phase));
        }
        let groups = |stores: &[Arc<dyn cloud_relay::store::RelayStore>]| {
            use std::sync::atomic::Ordering::Relaxed;
            stores.iter().fold((0, 0), |(g, b), store| {
                let s = store.writer_stats();
                (g + s.groups.load(Relaxed), b + s.batches.load(Relaxed))
            })
        };
        tokio::time::sleep_until(window.0.into()).await;
        let cpu_before = common::cpu_seconds(side);
        let groups_before = groups(&relay.stores);
        tokio::time::sleep_until(window.1.into()).await;
        let cpu_after = common::cpu_seconds(side);
        let groups_after = groups(&relay.stores);
        let commits = (
            groups_after.0 - groups_before.0,
            groups_after.1 - groups_before.1,
        );
        let mut reports = Vec::with_capacity(edges);
        let deadline = window.1 + Duration::from_secs(120);
        while let Some(r) = tokio::time::timeout_at(deadline.into(), running.join_next())
            .await
            .expect("every edge's last batch acknowledged within 2 minutes")
        {
            reports.push(r.expect("edge task"));
        }
        for e in &endpoints {
            e.wait_idle().await;
        }
        let cpu: Vec<(&str, f64)> = ["relay", "edges", "other"]
            .into_iter()
            .map(|side| {
                let used = cpu_after.get(side).copied().unwrap_or(0.0)
                    - cpu_before.get(side).copied().unwrap_or(0.0);
                (side, used / secs as f64)
            })
            .collect();
        (reports, cpu, commits)
    });
    let (reports, cpu, (commits, committed_batches)) = reports;

    let sent: u64 = reports.iter().map(|r| r.rows_sent).sum();
    let held: u64 = (0..ORGS.min(edges))
        .map(|o| {
            relay
                .store
                .telemetry_count(&format!("org-{o}"))
                .expect("count")
        })
        .sum();
    assert_eq!(sent, edges as u64 * batches * ROWS_PER_BATCH);
    assert_eq!(held, sent, "the relay holds exactly the rows sent");
    for id in &ids {
        assert_eq!(
            relay.store.acked(id, Stream::Telemetry).expect("mark"),
            batches * ROWS_PER_BATCH,
            "{id}: every row acknowledged"
        );
    }

    let mut latencies: Vec<Duration> = reports.iter().flat_map(|r| r.latencies.clone()).collect();
    latencies.sort_unstable();
    let in_window: u64 = reports.iter().map(|r| r.rows_acked_in_window).sum();
    let lag = reports
        .iter()
        .map(|r| r.max_send_lag)
        .max()
        .unwrap_or_default();
    assert!(!latencies.is_empty(), "no batch in the window");
    println!(
        "{edges} edges × {ROWS_PER_BATCH} rows/s (one batch a second each, staggered), \
         {secs} s steady window after {warmup} s warm-up; store {}, {instances} relay instance(s)",
        common::store_kind()
    );
    println!(
        "ack latency over {} batches: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(percentile(&latencies, 1.0)),
    );
    println!(
        "stored {:.0} rows/s in the window; relay holds {held} rows = rows sent; latest send in the window {:.1} ms behind schedule",
        in_window as f64 / secs as f64,
        ms(lag)
    );
    println!(
        "{:.0} commits/s in the window, {:.1} batches per commit",
        commits as f64 / secs as f64,
        committed_batches as f64 / commits.max(1) as f64
    );
    println!(
        "CPU in the window (cores): {}",
        cpu.iter()
            .map(|(side, c)| format!("{side} {c:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("edges held: {edges}");
    println!("FIGURE fanin {:.1} ms", ms(percentile(&latencies, 0.99)));
    drop(relay_rt);
}
