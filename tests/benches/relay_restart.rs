//! `relay_restart`: the relay crashes under many connected edges and is restarted on the same
//! database and address; the figure is the time from the new relay's start until every edge's
//! backlog is acknowledged again (issue #9 item 4; no SPEC §8 target).
//!
//! **The relay is the real daemon.** `cloud-relay serve` (this package's release binary) runs
//! as its own process with a config file, its data directory (CA, relay certificate, reset
//! key, `relay.db`: SQLite, WAL, `synchronous=FULL`) in a temp directory, and `NOTIFY_SOCKET`
//! pointing at this bench, which reads its `READY=1` as systemd does. The edges were enrolled
//! beforehand through `cloud_relay::relay::enroll`, the function behind `cloud-relay edge
//! enroll`, so each holds a bundle with a CA-issued certificate. The crash is `SIGKILL`: no
//! close frames, no draining of the writer's queue, a transaction in progress left for SQLite
//! to roll back. After `RestartSec` (5 s in `systemd/cloud-relay.service`) the same command
//! starts it again on the same files and the same UDP port.
//!
//! **The edges are simulations in this process** of what `edge-daemon/src/sync/client.rs`
//! does, each its own quinn connection (sharing a few client UDP sockets, as in `fanin`):
//! - a station's store commits once a second, so each edge commits 50 rows (5 vehicles at
//!   10 Hz) a second, staggered evenly over the second, and goes on committing whatever the
//!   relay does: a backlog builds while the relay is away;
//! - a session: Hello with the telemetry stream's `oldest_held`, `newest` and
//!   `believed_acked` (the edge's cursor, moved only by Acks), Welcome, then everything after
//!   the relay's mark in batches of at most 16,384 rows, at most 4 unacknowledged batches in
//!   flight, each new commit sent as it is made;
//! - when the session ends it reconnects with the client's backoff: 500 ms, doubling to 30 s,
//!   back to 500 ms after a session that lasted over 30 s.
//!
//! What the edges do not do: the events lane, live datagrams and downsync (no events, no
//! vehicles' live state, no record edits here); the real client also polls its store every
//! 100 ms rather than being woken by the commit, and dials from a new UDP socket per session.
//!
//! `RESTART_RESEND=believed` makes every edge resend from its own cursor instead of the
//! relay's mark (what a client ignoring Welcome would do), so rows the crashed relay had
//! committed but never acknowledged reach the relay again and must be deduplicated there.
//!
//! At the end every edge stops committing, waits for its last Ack and closes; the relay is
//! stopped with SIGTERM and its database is checked: exactly the rows committed at the edges,
//! every edge's mark at its last row, no range recorded as lost.
//!
//! Printed: the new relay's time to READY; from its start, when every edge had resumed (a
//! Welcome) and when every edge's backlog was acknowledged (the figure), with per-edge
//! percentiles; how the old sessions ended (stateless reset or idle timeout) and connection
//! attempts; rows committed but unacknowledged at the crash, rows sent again, rows the new
//! relay dropped as duplicates (its `trellis_relay_records_total` less the rows it added);
//! datagrams the kernel dropped on full receive buffers (`/proc/net/udp`); CPU; WARN and
//! ERROR lines of both runs' logs. Besides the exactly-once checks, every edge must have had
//! exactly one session after the restart.
//!
//! `RESTART_EDGES` (default 1000), `RESTART_WARMUP_SECS` (streaming before the crash, 10),
//! `RESTART_DOWN_MS` (crash to new start, 5000: systemd's `RestartSec`), `RESTART_TAIL_SECS`
//! (streaming after all are synced, 5), `RESTART_SOCKETS` (client UDP sockets, 4),
//! `RESTART_RESEND` (`relay`, the client's behaviour, or `believed`), `RESTART_KEEP` (keep the
//! temp directory with both runs' logs and the database), `RESTART_RELAY_BIN` (another
//! `cloud-relay` binary, to compare builds side by side).

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use sync_protocol::stream::Stream;

use anyhow::{bail, Context as _};
use cloud_relay::config::{Config, HqConfig, QuicConfig};
use cloud_relay::store::{HqStore, RelayStore, SqliteStore};
use sync_protocol::codec::{self, TelemetryRow};
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{envelope::Body, Batch, Encoding, Envelope, Hello, StreamState};
use sync_protocol::wire::{read_message, write_message};
use tokio::sync::{watch, Notify, Semaphore};

const VEHICLES_PER_EDGE: u64 = 5;
const HZ: u64 = 10;
const ROWS_PER_SECOND: u64 = VEHICLES_PER_EDGE * HZ;
const ORGS: usize = 10;

// The real client's constants (edge-daemon/src/sync/client.rs).
const BATCH_ROWS: u64 = 16_384;
const WINDOW: usize = 4;
const ZSTD_LEVEL: i32 = 6;
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Row `seq` of any edge: 5 vehicles flying straight lines at 10 Hz, row 1 first.
fn row(seq: u64) -> TelemetryRow {
    let i = seq - 1;
    let (second, within) = (i / ROWS_PER_SECOND, i % ROWS_PER_SECOND);
    let (tick, v) = (within / VEHICLES_PER_EDGE, within % VEHICLES_PER_EDGE);
    let step = (second * HZ + tick) as i32;
    common::straight_line_row(seq, v as u32 + 1, step)
}

/// Encoded batches by range. Every edge holds the same rows (the relay keys them by edge) and
/// commits whole seconds, so the ranges edges send are few and each is encoded once.
#[derive(Default)]
struct Batches(Mutex<HashMap<(u64, u64), Arc<EncodedOnce>>>);

/// One range's batch, encoded by the first edge that needs it while the others wait.
type EncodedOnce = OnceLock<Arc<Envelope>>;

impl Batches {
    fn get(&self, first: u64, last: u64) -> Arc<Envelope> {
        let cell = self
            .0
            .lock()
            .expect("lock")
            .entry((first, last))
            .or_default()
            .clone();
        cell.get_or_init(|| {
            let rows: Vec<TelemetryRow> = (first..=last).map(row).collect();
            Arc::new(Envelope {
                body: Some(Body::Batch(Batch {
                    stream: Stream::Telemetry.name().into(),
                    first_seq: first,
                    last_seq: last,
                    rows: rows.len() as u32,
                    encoding: Encoding::TelemetryColumnarV1 as i32,
                    payload: codec::encode(&rows, ZSTD_LEVEL).expect("encode"),
                })),
            })
        })
        .clone()
    }
}

/// What the edge's store has committed.
#[derive(Debug, Clone, Copy, Default)]
struct Produced {
    committed: u64,
    /// The station stopped producing (the end of the bench).
    done: bool,
}

/// Shared by every edge and the bench.
struct Ctx {
    addr: SocketAddr,
    batches: Batches,
    resend_from_believed: bool,
    /// When the relay was killed: sessions opened after it are resumptions.
    crashed: OnceLock<Instant>,
    /// Edges that have had a session (Welcome received) before the crash.
    connected: AtomicUsize,
    /// Edges that have had a session since the crash, and those whose backlog is acknowledged.
    resumed: AtomicUsize,
    synced: AtomicUsize,
    /// First connections only, 64 at a time (as fanin): a thousand simultaneous first
    /// handshakes would only measure the accept queue before anything is measured. Reconnects
    /// after the crash are not gated: they come as the edges notice.
    first_connects: Semaphore,
}

#[derive(Debug, Default)]
struct EdgeReport {
    sessions_before: u32,
    sessions_after: u32,
    /// Connection attempts after the crash, and why each session or attempt after it ended.
    attempts_after: u32,
    endings_after: Vec<&'static str>,
    failures_before: Vec<String>,
    /// Sessions after the restart that ended before the edge was done.
    failures_after_resume: Vec<String>,
    /// When the edge's session to the crashed relay ended; when it next had a Welcome; when
    /// the backlog it held at that Welcome was acknowledged.
    lost_at: Option<Instant>,
    resumed_at: Option<Instant>,
    synced_at: Option<Instant>,
    /// At the resuming Hello and Welcome.
    believed: u64,
    welcome: u64,
    backlog_through: u64,
    /// Rows the relay had acknowledged (by the edge's cursor) and no longer held.
    relay_behind: u64,
    rows_sent: u64,
    /// Rows sent a second time (they had gone out on an earlier connection).
    rows_resent: u64,
    /// Rows sent at or below the relay's mark at Welcome: held already, to be deduplicated.
    rows_below_mark: u64,
    last: u64,
    acked: u64,
}

struct Edge {
    config: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    produced: watch::Receiver<Produced>,
    /// The edge's cursor: the relay's last Ack.
    acked: AtomicU64,
    /// The highest row ever handed to a connection.
    max_sent: AtomicU64,
    report: Mutex<EdgeReport>,
}

fn ending(e: &quinn::ConnectionError) -> &'static str {
    use quinn::ConnectionError::*;
    match e {
        Reset => "stateless reset",
        TimedOut => "idle timeout",
        ApplicationClosed(_) => "closed by the relay",
        ConnectionClosed(_) => "aborted by the relay's QUIC",
        LocallyClosed => "closed here",
        VersionMismatch => "version mismatch",
        TransportError(_) => "transport error",
        CidsExhausted => "CIDs exhausted",
    }
}

/// One connection attempt and, if it connects, one session. `Err` says how it ended.
async fn session(edge: &Edge, ctx: &Ctx, first: bool) -> Result<(), (&'static str, String)> {
    let after_crash = ctx.crashed.get().is_some();
    if after_crash {
        edge.report.lock().expect("lock").attempts_after += 1;
    }
    let permit = if first {
        Some(ctx.first_connects.acquire().await.expect("gate"))
    } else {
        None
    };
    let connecting = edge
        .endpoint
        .connect_with(edge.config.clone(), ctx.addr, "localhost")
        .map_err(|e| ("connect refused locally", e.to_string()))?;
    let conn = match connecting.await {
        Ok(c) => c,
        Err(e) => return Err((ending(&e), format!("connecting: {e}"))),
    };
    drop(permit);
    match on_connection(edge, ctx, &conn, after_crash).await {
        Ok(()) => {
            conn.close(0u32.into(), b"done");
            Ok(())
        }
        Err(e) => Err((
            conn.close_reason()
                .as_ref()
                .map_or("protocol error", ending),
            format!("{e:#}"),
        )),
    }
}

/// Hello, Welcome, then the bulk lane until the connection fails (`Err`) or the edge has
/// stopped producing and everything it produced is acknowledged (`Ok`).
async fn on_connection(
    edge: &Edge,
    ctx: &Ctx,
    conn: &quinn::Connection,
    after_crash: bool,
) -> anyhow::Result<()> {
    let (mut control_tx, mut control_rx) = conn.open_bi().await?;
    let produced = *edge.produced.borrow();
    let believed = edge.acked.load(Relaxed);
    let hello = Envelope {
        body: Some(Body::Hello(Hello {
            protocol_version: sync_protocol::PROTOCOL_VERSION,
            software: "relay_restart bench".into(),
            streams: vec![StreamState {
                stream: Stream::Telemetry.name().into(),
                oldest_held: u64::from(produced.committed > 0),
                newest: produced.committed,
                believed_acked: believed,
            }],
        })),
    };
    write_message(&mut control_tx, &hello).await?;
    let mark = match read_message(&mut control_rx).await? {
        Some(Envelope {
            body: Some(Body::Welcome(w)),
        }) => w
            .acked
            .iter()
            .find(|a| a.stream == Stream::Telemetry.name())
            .map_or(0, |a| a.seq),
        other => bail!("expected Welcome, got {other:?}"),
    };
    let now = Instant::now();
    {
        let mut r = edge.report.lock().expect("lock");
        r.relay_behind += believed.saturating_sub(mark);
        if after_crash {
            r.sessions_after += 1;
            if r.resumed_at.is_none() {
                r.resumed_at = Some(now);
                r.believed = believed;
                r.welcome = mark;
                r.backlog_through = produced.committed;
                ctx.resumed.fetch_add(1, Relaxed);
            }
        } else {
            r.sessions_before += 1;
            if r.sessions_before == 1 {
                ctx.connected.fetch_add(1, Relaxed);
            }
        }
    }
    // The real client resumes right after the relay's mark.
    let next = if ctx.resend_from_believed {
        believed + 1
    } else {
        mark + 1
    };
    let lane = conn.open_uni().await?;
    let in_flight: Mutex<VecDeque<u64>> = Mutex::new(VecDeque::new());
    let acked_changed = Notify::new();
    let receive = async {
        loop {
            let ack = match read_message(&mut control_rx).await? {
                Some(Envelope {
                    body: Some(Body::Ack(a)),
                }) if a.stream == Stream::Telemetry.name() => a,
                None => bail!("the relay ended the control stream"),
                other => bail!("expected Ack, got {other:?}"),
            };
            let now = Instant::now();
            edge.acked.fetch_max(ack.seq, Relaxed);
            {
                let mut q = in_flight.lock().expect("lock");
                while q.front().is_some_and(|&last| last <= ack.seq) {
                    q.pop_front();
                }
            }
            acked_changed.notify_one();
            if after_crash {
                let mut r = edge.report.lock().expect("lock");
                if r.synced_at.is_none() && ack.seq >= r.backlog_through {
                    r.synced_at = Some(now);
                    ctx.synced.fetch_add(1, Relaxed);
                }
            }
        }
    };
    let send = bulk_lane(edge, ctx, lane, next, mark, &in_flight, &acked_changed);
    tokio::select! {
        r = receive => r,
        r = send => r,
    }
}

/// Sends every committed row from `next` on, as the real client's bulk lane does; returns
/// `Ok` once the edge has stopped producing and all it produced is acknowledged.
async fn bulk_lane(
    edge: &Edge,
    ctx: &Ctx,
    mut lane: quinn::SendStream,
    mut next: u64,
    mark: u64,
    in_flight: &Mutex<VecDeque<u64>>,
    acked_changed: &Notify,
) -> anyhow::Result<()> {
    let mut produced = edge.produced.clone();
    loop {
        let last = loop {
            let p = *produced.borrow_and_update();
            if p.done && edge.acked.load(Relaxed) >= p.committed {
                return Ok(());
            }
            if p.committed >= next && in_flight.lock().expect("lock").len() < WINDOW {
                break p.committed.min(next + BATCH_ROWS - 1);
            }
            tokio::select! {
                r = produced.changed() => r.context("producer gone")?,
                () = acked_changed.notified() => {}
            }
        };
        let batch = ctx.batches.get(next, last);
        in_flight.lock().expect("lock").push_back(last);
        write_message(&mut lane, &batch).await?;
        let before = edge.max_sent.fetch_max(last, Relaxed);
        {
            let mut r = edge.report.lock().expect("lock");
            r.rows_sent += last - next + 1;
            r.rows_resent += before.min(last).saturating_sub(next - 1);
            r.rows_below_mark += mark.min(last).saturating_sub(next - 1);
        }
        next = last + 1;
    }
}

/// The station's store: 50 rows committed a second at the edge's phase, until told to stop.
async fn produce(
    tx: &watch::Sender<Produced>,
    mut start: watch::Receiver<Option<Instant>>,
    phase: Duration,
    stop: watch::Receiver<bool>,
) {
    let start = *start
        .wait_for(Option::is_some)
        .await
        .expect("start")
        .as_ref()
        .expect("some");
    for k in 0u64.. {
        tokio::time::sleep_until((start + phase + Duration::from_secs(k)).into()).await;
        if *stop.borrow() {
            break;
        }
        tx.send_modify(|p| p.committed = (k + 1) * ROWS_PER_SECOND);
    }
    tx.send_modify(|p| p.done = true);
}

/// The client's run loop: a session, and on its end the backoff, until done.
async fn client(edge: &Edge, ctx: &Ctx) {
    let mut backoff = BACKOFF_FIRST;
    let mut first = true;
    loop {
        let started = Instant::now();
        let result = session(edge, ctx, first).await;
        first = false;
        let Err((how, why)) = result else {
            return;
        };
        {
            let mut r = edge.report.lock().expect("lock");
            if ctx.crashed.get().is_some() {
                r.lost_at.get_or_insert_with(Instant::now);
                r.endings_after.push(how);
                if r.resumed_at.is_some() {
                    r.failures_after_resume.push(format!("{how}: {why}"));
                }
            } else {
                r.failures_before.push(format!("{how}: {why}"));
            }
        }
        if started.elapsed() > BACKOFF_RESET_AFTER {
            backoff = BACKOFF_FIRST;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn run_edge(
    edge: Edge,
    tx: watch::Sender<Produced>,
    ctx: Arc<Ctx>,
    start: watch::Receiver<Option<Instant>>,
    phase: Duration,
    stop: watch::Receiver<bool>,
) -> EdgeReport {
    tokio::join!(produce(&tx, start, phase, stop), client(&edge, &ctx));
    let mut report = edge.report.into_inner().expect("lock");
    report.last = tx.borrow().committed;
    report.acked = edge.acked.load(Relaxed);
    report
}

/// A client UDP socket shared by many simulated edges. It asks for as large a receive buffer
/// as the relay's (`sync_protocol::transport::SERVER_RECV_BUFFER`): a real station has a
/// socket of its own, and drops here would be the simulation's, not the relay's.
fn client_endpoint() -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let state = quinn::udp::UdpSocketState::new((&socket).into()).expect("socket state");
    let _ = state.set_recv_buffer_size(
        (&socket).into(),
        sync_protocol::transport::SERVER_RECV_BUFFER,
    );
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .expect("endpoint")
}

/// A port free on loopback now (the relay binds it a moment later).
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("udp port")
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("tcp port")
            .port()
    }
}

/// `cloud-relay serve --config …`, its log appended to `log`, readiness on `notify`.
fn spawn_relay(config: &Path, notify: &Path, log: &Path) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("relay log");
    // The release binary beside this bench (`cargo build --release -p cloud-relay` first).
    let binary = std::env::var_os("RESTART_RELAY_BIN")
        .unwrap_or_else(|| trellis_tests::bin("cloud-relay").into());
    tokio::process::Command::new(binary)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", notify)
        .env_remove("WATCHDOG_USEC")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start cloud-relay")
}

/// Waits for the relay's `READY=1`, as systemd does for `Type=notify`.
async fn ready(notify: &tokio::net::UnixDatagram) {
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(90), notify.recv(&mut buf))
            .await
            .expect("READY=1 within systemd's TimeoutStartSec")
            .expect("notify socket");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            return;
        }
    }
}

/// The relay's Prometheus metrics, by line (HQ API on loopback, plain HTTP).
async fn metrics(addr: SocketAddr) -> BTreeMap<String, f64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("HQ API");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("response");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// CPU seconds a process has used.
fn process_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    fields[11..13]
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum::<f64>()
        / 100.0
}

/// Datagrams the kernel dropped because a socket's receive buffer was full, summed over the
/// loopback UDP sockets bound to `ports` (the last column of `/proc/net/udp`).
fn udp_drops(ports: &[u16]) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = u16::from_str_radix(fields.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            ports
                .contains(&port)
                .then(|| fields.last()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// WARN and ERROR lines of a relay log, by message (timestamps and spans cut).
fn log_problems(log: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let Some(level) = ["WARN", "ERROR"].into_iter().find(|l| line.contains(l)) else {
            continue;
        };
        let message = line.rsplit_once(": ").map_or(line, |(_, m)| m);
        *out.entry(format!("{level} {message}")).or_default() += 1;
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn edges_class(thread: &str) -> &'static str {
    if thread.starts_with("edge") {
        "edges"
    } else {
        "other"
    }
}

fn main() {
    let edges: usize = env_or("RESTART_EDGES", 1000);
    let warmup: u64 = env_or("RESTART_WARMUP_SECS", 10);
    let down = Duration::from_millis(env_or("RESTART_DOWN_MS", 5000));
    let tail: u64 = env_or("RESTART_TAIL_SECS", 5);
    let sockets: usize = env_or("RESTART_SOCKETS", 4).max(1);
    let resend_from_believed = match std::env::var("RESTART_RESEND").as_deref() {
        Ok("believed") => true,
        Ok("relay") | Err(_) => false,
        Ok(other) => panic!("RESTART_RESEND={other}: relay or believed"),
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("relay");
    let quic_port = free_port(true);
    let hq_addr: SocketAddr = ([127, 0, 0, 1], free_port(false)).into();
    let config = Config {
        data_dir: data.clone(),
        quic: QuicConfig {
            listen: ([127, 0, 0, 1], quic_port).into(),
            public_address: format!("127.0.0.1:{quic_port}"),
            server_names: vec!["localhost".into()],
        },
        hq: HqConfig {
            listen: hq_addr,
            tls: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let config_path = dir.path().join("cloud-relay.toml");
    std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("config");
    let db = data.join(cloud_relay::relay::DB_FILE);
    let filesystem = std::process::Command::new("df")
        .arg("--output=fstype")
        .arg(dir.path())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().nth(1).map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());

    // Enrollment as `cloud-relay org create` and `cloud-relay edge enroll` do it.
    let t = Instant::now();
    let ids: Vec<EdgeIdentity> = (0..edges)
        .map(|i| EdgeIdentity::new(&format!("org-{}", i % ORGS), &format!("edge-{i}")))
        .collect::<Result<_, _>>()
        .expect("identities");
    let configs: Vec<quinn::ClientConfig> = {
        std::fs::create_dir_all(&data).expect("data dir");
        let store = SqliteStore::open(&db).expect("relay store");
        for org in 0..ORGS.min(edges) {
            store.create_org(&format!("org-{org}")).expect("org");
        }
        ids.iter()
            .map(|id| {
                cloud_relay::relay::enroll(&config, &store, &id.org, &id.edge)
                    .expect("enroll")
                    .client_config()
                    .expect("client config")
            })
            .collect()
    };
    eprintln!(
        "enrolled {edges} edges (bundles with CA-issued certificates) in {:.1} s; database on {filesystem}",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("edge")
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let notify_path = dir.path().join("notify.sock");
        let notify = tokio::net::UnixDatagram::bind(&notify_path).expect("notify socket");
        let (log1, log2) = (dir.path().join("relay-1.log"), dir.path().join("relay-2.log"));
        let mut relay = spawn_relay(&config_path, &notify_path, &log1);
        ready(&notify).await;

        let ctx = Arc::new(Ctx {
            addr: config.quic.listen,
            batches: Batches::default(),
            resend_from_believed,
            crashed: OnceLock::new(),
            connected: AtomicUsize::new(0),
            resumed: AtomicUsize::new(0),
            synced: AtomicUsize::new(0),
            first_connects: Semaphore::new(64),
        });
        let endpoints: Vec<quinn::Endpoint> = (0..sockets).map(|_| client_endpoint()).collect();
        let edge_ports: Vec<u16> = endpoints
            .iter()
            .map(|e| e.local_addr().expect("addr").port())
            .collect();
        let (start_tx, start_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let t = Instant::now();
        let mut running = tokio::task::JoinSet::new();
        for (i, config) in configs.into_iter().enumerate() {
            let (tx, produced) = watch::channel(Produced::default());
            let edge = Edge {
                config,
                endpoint: endpoints[i % sockets].clone(),
                produced,
                acked: AtomicU64::new(0),
                max_sent: AtomicU64::new(0),
                report: Mutex::new(EdgeReport::default()),
            };
            let phase = Duration::from_secs(1) * i as u32 / edges as u32;
            let (ctx, start, stop) = (ctx.clone(), start_rx.clone(), stop_rx.clone());
            running.spawn(async move { (i, run_edge(edge, tx, ctx, start, phase, stop).await) });
        }
        while ctx.connected.load(Relaxed) < edges {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "only {} of {edges} edges connected",
                ctx.connected.load(Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "{edges} edges connected over {sockets} client sockets in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let start = Instant::now() + Duration::from_millis(500);
        start_tx.send_replace(Some(start));
        tokio::time::sleep_until((start + Duration::from_secs(warmup)).into()).await;

        // The crash.
        let sessions_before = metrics(hq_addr).await;
        let drops_crashed = udp_drops(&[quic_port]);
        let crashed = Instant::now();
        ctx.crashed.set(crashed).expect("once");
        relay.start_kill().expect("SIGKILL");
        let status = relay.wait().await.expect("reap");
        eprintln!(
            "relay killed ({status}) after {warmup} s of streaming with {} sessions open",
            sessions_before
                .get("trellis_relay_sessions")
                .copied()
                .unwrap_or(f64::NAN)
        );
        tokio::time::sleep(down).await;

        // The restart, as systemd's Restart=on-failure does it.
        let spawned = Instant::now();
        let mut relay = spawn_relay(&config_path, &notify_path, &log2);
        let pid = relay.id().expect("pid");
        let edges_cpu_before = common::cpu_seconds(edges_class)
            .get("edges")
            .copied()
            .unwrap_or(0.0);
        ready(&notify).await;
        let ready_at = Instant::now();
        eprintln!(
            "new relay ready {:.0} ms after its start",
            (ready_at - spawned).as_secs_f64() * 1e3
        );
        let mut all_resumed = None;
        let mut next_print = spawned + Duration::from_secs(1);
        let all_synced = loop {
            let now = Instant::now();
            let (resumed, synced) = (ctx.resumed.load(Relaxed), ctx.synced.load(Relaxed));
            if all_resumed.is_none() && resumed == edges {
                all_resumed = Some(now);
            }
            if synced == edges {
                break now;
            }
            if now >= next_print {
                eprintln!(
                    "  +{:.0} s: {resumed} edges resumed, {synced} synced",
                    (now - spawned).as_secs_f64()
                );
                next_print += Duration::from_secs(1);
            }
            assert!(
                now - spawned < Duration::from_secs(300),
                "5 minutes after the restart: {resumed} of {edges} resumed, {synced} synced"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let all_resumed = all_resumed.expect("all resumed before all synced");
        let relay_cpu = process_cpu(pid);
        let edges_cpu = common::cpu_seconds(edges_class)
            .get("edges")
            .copied()
            .unwrap_or(0.0)
            - edges_cpu_before;

        tokio::time::sleep(Duration::from_secs(tail)).await;
        stop_tx.send_replace(true);
        let mut reports: Vec<Option<EdgeReport>> = (0..edges).map(|_| None).collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Some(joined) = tokio::time::timeout_at(deadline.into(), running.join_next())
            .await
            .expect("every edge's last row acknowledged within 2 minutes")
        {
            let (i, r) = joined.expect("edge task");
            reports[i] = Some(r);
        }
        let reports: Vec<EdgeReport> = reports.into_iter().map(|r| r.expect("report")).collect();
        let relay_metrics = metrics(hq_addr).await;
        let drops_new = udp_drops(&[quic_port]);
        let drops_edges = udp_drops(&edge_ports);
        for e in &endpoints {
            e.wait_idle().await;
        }

        // A clean stop of the second run, then the database as it was left.
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(term.success(), "SIGTERM to the relay");
        let status = tokio::time::timeout(Duration::from_secs(30), relay.wait())
            .await
            .expect("relay stopped within TimeoutStopSec")
            .expect("reap");
        assert!(status.success(), "relay exit after SIGTERM: {status}");
        let store = SqliteStore::open(&db).expect("relay store");
        let held: u64 = (0..ORGS.min(edges))
            .map(|o| store.telemetry_count(&format!("org-{o}")).expect("count"))
            .sum();
        let committed: u64 = reports.iter().map(|r| r.last).sum();
        let gaps: usize = (0..ORGS.min(edges))
            .flat_map(|o| store.edges(&format!("org-{o}")).expect("edges"))
            .map(|e| e.gaps.len())
            .sum();

        // Exactly once, and every edge resumed once: checked here, reported below.
        let mut violations = Vec::new();
        if held != committed {
            violations.push(format!("the relay holds {held} rows, the edges committed {committed}"));
        }
        if gaps != 0 {
            violations.push(format!("{gaps} ranges recorded as lost"));
        }
        for (id, r) in ids.iter().zip(&reports) {
            let relay_mark = store.acked(id, Stream::Telemetry).expect("mark");
            if r.relay_behind != 0 {
                violations.push(format!("{id}: the relay lost {} acknowledged rows", r.relay_behind));
            }
            if r.acked != r.last || relay_mark != r.last {
                violations.push(format!(
                    "{id}: last row {}, acknowledged to the edge {}, relay's mark {relay_mark}",
                    r.last, r.acked
                ));
            }
            if r.sessions_after != 1 || !r.failures_before.is_empty() {
                violations.push(format!(
                    "{id}: {} sessions after the restart, endings {:?}, failures before the crash {:?}, after resuming {:?}",
                    r.sessions_after, r.endings_after, r.failures_before, r.failures_after_resume
                ));
            }
        }
        drop(store);

        // Figures.
        let since = |t: Option<Instant>| (t.expect("time") - spawned).as_secs_f64();
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        let resumed = sorted(reports.iter().map(|r| since(r.resumed_at)).collect());
        let synced = sorted(reports.iter().map(|r| since(r.synced_at)).collect());
        let lost = sorted(
            reports
                .iter()
                .map(|r| (r.lost_at.expect("lost") - spawned).as_secs_f64())
                .collect(),
        );
        let mut endings: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &reports {
            for e in &r.endings_after {
                *endings.entry(e).or_default() += 1;
            }
        }
        let failures_before: usize = reports.iter().map(|r| r.failures_before.len()).sum();
        let attempts: u32 = reports.iter().map(|r| r.attempts_after).sum();
        let max_attempts = reports.iter().map(|r| r.attempts_after).max().unwrap_or(0);
        let unacked_commits: u64 = reports.iter().map(|r| r.welcome.saturating_sub(r.believed)).sum();
        let edges_unacked = reports.iter().filter(|r| r.welcome > r.believed).count();
        let marks_at_crash: u64 = reports.iter().map(|r| r.welcome).sum();
        let backlog: u64 = reports
            .iter()
            .map(|r| r.backlog_through.saturating_sub(r.welcome))
            .sum();
        let resent: u64 = reports.iter().map(|r| r.rows_resent).sum();
        let below_mark: u64 = reports.iter().map(|r| r.rows_below_mark).sum();
        let sent: u64 = reports.iter().map(|r| r.rows_sent).sum();
        let relay_rows = relay_metrics
            .get("trellis_relay_records_total{stream=\"telemetry\"}")
            .copied()
            .unwrap_or(f64::NAN);
        let stored_by_new = held - marks_at_crash;
        let s = |x: f64| format!("{x:.2} s");

        println!(
            "{edges} edges × {ROWS_PER_SECOND} rows/s (one commit a second each, staggered); \
             relay killed (SIGKILL) after {warmup} s, restarted {:.1} s later on the same \
             database ({filesystem}) and UDP port; edges resend from {}",
            down.as_secs_f64(),
            if resend_from_believed {
                "their own cursor (RESTART_RESEND=believed)"
            } else {
                "the relay's mark (as the client does)"
            }
        );
        println!(
            "new relay: READY after {}; all {edges} edges resumed after {}, all synced again after {} (from its start)",
            s((ready_at - spawned).as_secs_f64()),
            s((all_resumed - spawned).as_secs_f64()),
            s((all_synced - spawned).as_secs_f64()),
        );
        println!(
            "per edge, from the new relay's start: old session ended p50 {} p99 {} (range {} to {}); \
             resumed p50 {} p99 {} max {}; synced p50 {} p99 {} max {}",
            s(percentile(&lost, 0.5)),
            s(percentile(&lost, 0.99)),
            s(lost[0]),
            s(lost[lost.len() - 1]),
            s(percentile(&resumed, 0.5)),
            s(percentile(&resumed, 0.99)),
            s(resumed[resumed.len() - 1]),
            s(percentile(&synced, 0.5)),
            s(percentile(&synced, 0.99)),
            s(synced[synced.len() - 1]),
        );
        println!(
            "after the crash: {attempts} connection attempts ({max_attempts} at most for one edge); \
             sessions and attempts ended by {endings:?}; failures before the crash: {failures_before}"
        );
        println!(
            "rows: the crashed relay held {marks_at_crash}, {unacked_commits} of them committed \
             but never acknowledged ({edges_unacked} edges; Welcome's mark covered them); \
             {resent} rows sent again after the crash (they had gone out before it), \
             {below_mark} of them at or below the relay's mark (held already); backlog after \
             the marks at resume {backlog} rows"
        );
        println!(
            "new relay stored batches totalling {relay_rows} rows, of which {stored_by_new} new: \
             {} dropped as duplicates",
            relay_rows - stored_by_new as f64
        );
        println!(
            "relay holds {held} rows, {committed} committed at the edges ({sent} sent)"
        );
        println!(
            "UDP datagrams dropped for a full receive buffer: crashed relay's socket {drops_crashed} (over its life), \
             new relay's {drops_new}, the edges' {sockets} sockets {drops_edges}"
        );
        println!(
            "CPU from the new relay's start to all synced: relay {relay_cpu:.2} s (startup included), edges {edges_cpu:.2} s"
        );
        for (name, log) in [("crashed relay", &log1), ("new relay", &log2)] {
            let problems = log_problems(log);
            if problems.is_empty() {
                println!("{name}: no WARN or ERROR in its log");
            } else {
                println!("{name}: {problems:?}");
            }
        }
        if !violations.is_empty() {
            for v in &violations {
                println!("VIOLATION {v}");
            }
            if std::env::var_os("RESTART_KEEP").is_some() {
                println!("kept {}", dir.keep().display());
            }
            panic!("{} violations", violations.len());
        }
        if std::env::var_os("RESTART_KEEP").is_some() {
            println!("kept {}", dir.keep().display());
        }
        println!(
            "exactly once: the relay holds exactly the rows committed at the edges, every edge's \
             mark (relay and edge) at its last row, no range recorded as lost; every edge had \
             one session after the restart"
        );
        println!(
            "FIGURE relay_restart {:.2} s",
            (all_synced - spawned).as_secs_f64()
        );
    });
}
