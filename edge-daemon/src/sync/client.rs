//! The sync client: one QUIC connection to the relay at a time, reconnecting with backoff.
//!
//! Per session: Hello with what the outbox holds and what the relay last acknowledged, per
//! stream; Welcome with the relay's durable marks; then three lanes run side by side until
//! the connection ends:
//!
//! - **events**: alerts, state changes and vehicle identity, and this station's own edits
//!   to editable records, on a high-priority stream, sent the moment the store commits them
//!   (the writer wakes this lane), never paced;
//! - **downsync**: a stream the relay opens, carrying the org's record changes (HQ's edits,
//!   other stations'); each is merged and committed here before it is acknowledged;
//! - **live**: each vehicle's latest position as a QUIC datagram, every `live_interval`;
//!   a lost one is superseded by the next;
//! - **bulk**: telemetry history from right after the relay's mark, a small window of
//!   unacknowledged batches at once, each covering a contiguous sequence range (rows the
//!   edge no longer has, or never wrote, are simply absent from the range), paced to the
//!   bandwidth cap when one is set.
//!
//! What to say, where each batch starts and ends, how many may be in flight and which
//! acknowledgements to believe is decided by [`EdgeSession`], the protocol's station half
//! without I/O; this module reads the outbox, moves bytes, and records what it is told. The
//! edge's cursor for a stream moves only on the relay's Ack, which comes after the relay's
//! commit.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use prost::Message as _;
use sync_protocol::codec::{self, TelemetryRow};
use sync_protocol::enrollment::Bundle;
use sync_protocol::proto::{envelope::Body, Batch, Encoding, Envelope, EventList, Live};
use sync_protocol::session::{EdgeSession, Held, Lane, Range, Resume};
use sync_protocol::stream::Stream as ProtocolStream;
use sync_protocol::wire::{read_message, write_message};
use tokio::sync::watch;

use super::pacer::Pacer;
use super::SyncStatus;
use crate::store::{Reader, StoreSender, StoreStatus, Stream};
use crate::vehicle::FleetSnapshot;

/// Rows per batch: large enough to compress well, small enough to retransmit cheaply.
const BATCH_ROWS: u32 = 16_384;
/// Events per batch.
const EVENT_BATCH: u32 = 1_000;
/// How often a caught-up client looks for new rows.
const IDLE_POLL: Duration = Duration::from_millis(100);
const ZSTD_LEVEL: i32 = 6;
/// How long a station without a trusted clock waits for the relay's time to be taken in.
const CLOCK_WAIT: Duration = Duration::from_secs(5);

/// Everything the client needs; see `daemon.rs` for how it is built.
pub struct Client {
    pub bundle: Bundle,
    pub reader: Reader,
    pub store: StoreSender,
    pub committed: Arc<StoreStatus>,
    pub status: Arc<SyncStatus>,
    pub snapshots: watch::Receiver<Arc<FleetSnapshot>>,
    /// Cap on telemetry payload bytes per second; 0: no cap.
    pub bandwidth_limit_bytes_per_s: u64,
    /// How often live positions go out as datagrams; zero: never.
    pub live_interval: Duration,
    /// The station's clock, and where to tell it the relay's time.
    pub time: watch::Receiver<crate::clock::TimeBase>,
    pub relay_time: crate::clock::RelayTime,
}

/// QUIC close code for a station that is shutting down (the relay's `CLOSE_DONE`).
const CLOSE_STOPPING: u32 = 0;
/// How long a stopping session may take to close its connection.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Runs sync until `shutdown` turns true; then closes the connection, telling the relay
/// why, and returns. Nothing is lost by stopping at any point: the edge's cursors only move
/// on the relay's acks, and the next session resumes from its marks.
pub async fn run(client: Client, mut shutdown: watch::Receiver<bool>) {
    use tracing::Instrument as _;
    let span = tracing::info_span!("sync", org = %client.bundle.org, edge = %client.bundle.edge);
    async move {
        let mut backoff = Duration::from_millis(500);
        // Which of the relay's addresses to dial; a failed session moves on to the next.
        let mut turn = 0;
        loop {
            let started = Instant::now();
            let mut stopping = shutdown.clone();
            let result = tokio::select! {
                r = session(&client, turn, &mut shutdown) => r,
                // A session closes itself on shutdown; one stuck connecting to an unreachable
                // relay, or waiting for its Welcome, gets a short grace and is dropped.
                () = async {
                    let _ = stopping.wait_for(|stop| *stop).await;
                    tokio::time::sleep(STOP_GRACE).await;
                } => Ok(()),
            };
            client.status.connected.store(false, Relaxed);
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = &result {
                turn += 1;
                tracing::warn!("sync session ended: {e:#}");
                *client
                    .status
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(500);
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
    .instrument(span)
    .await
}

/// Nothing stamped leaves before the station's clock is trusted: what it stored on an
/// unsynchronised clock moves to the right times when a trusted time arrives
/// (`store/restamp.rs`), and the relay must only ever see the moved ones. A station with no
/// GPS time and no NTP takes the relay's, told in its Welcome; one whose relay does not tell
/// it, or whose clock does not take it in time, ends the session and tries again later.
async fn settle_clock(
    client: &Client,
    relay_time_us: i64,
    heard: Instant,
    rtt: Duration,
) -> anyhow::Result<()> {
    let mut time = client.time.clone();
    if !time.borrow().trusted() {
        if relay_time_us <= 0 {
            bail!(
                "this station's clock is not trusted (no vehicle GPS time, no NTP) and the \
                 relay does not say its time: nothing stamped is sent until one of them does"
            );
        }
        client
            .relay_time
            .tell(relay_time_us + rtt.as_micros() as i64 / 2, heard);
        // The ingest loop takes it in within a tick.
        let trusted = tokio::time::timeout(CLOCK_WAIT, async move {
            time.wait_for(|t| t.trusted()).await.map(|_| ())
        })
        .await;
        if !matches!(trusted, Ok(Ok(()))) {
            bail!("the station's clock did not take the relay's time within {CLOCK_WAIT:?}");
        }
    }
    // The ingest loop queues a new base to the writer before it publishes it, and this flush
    // is queued after that: once it returns, the writer has moved history and the outbox
    // holds the moved times.
    let store = client.store.clone();
    blocking(move || store.flush()).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Dials the relay: the `turn`th of its addresses, counting every address each of the
/// bundle's comma-separated `HOST:PORT`s resolves to (a relay of several instances).
async fn connect(
    bundle: &Bundle,
    turn: usize,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
    let mut addrs = Vec::new();
    for relay in bundle
        .relay
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        match tokio::net::lookup_host(relay).await {
            Ok(resolved) => addrs.extend(resolved),
            Err(e) => tracing::warn!(%relay, "cannot resolve the relay: {e}"),
        }
    }
    if addrs.is_empty() {
        bail!("{} resolves to nothing", bundle.relay);
    }
    let addr = addrs[turn % addrs.len()];
    let local: std::net::SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(local)?;
    endpoint.set_default_client_config(
        bundle
            .client_config()
            .map_err(|e| anyhow::anyhow!("bundle: {e}"))?,
    );
    let conn = endpoint
        .connect(addr, &bundle.server_name)?
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok((endpoint, conn))
}

/// What this edge holds of one stream, for Hello.
async fn held(client: &Client, stream: Stream) -> anyhow::Result<Held> {
    let r = client.reader.clone();
    let believed = blocking(move || r.acked(stream)).await?.max(0) as u64;
    let r = client.reader.clone();
    let (oldest, newest) = blocking(move || r.outbox_bounds(stream)).await?;
    // The outbox may have let go of its newest rows (acknowledged, then deleted for space);
    // the sequence it reached is the committed one.
    let newest = newest.max(client.committed.committed(stream));
    let oldest = if oldest == 0 { newest + 1 } else { oldest };
    Ok(Held {
        oldest,
        newest,
        believed_acked: believed,
    })
}

/// Does what Welcome asks of one stream: reports what the relay lost, keeps what it must
/// resend, renumbers an outbox the relay is ahead of, and records the relay's mark.
async fn resume(client: &Client, r: &Resume, believed: u64) -> anyhow::Result<()> {
    let Some(stream) = Stream::of(r.stream) else {
        return Ok(());
    };
    if let Some(lost) = r.relay_lost {
        let gone = r.gone.map_or(0, |g| g.last - g.first + 1);
        tracing::error!(
            stream = %r.stream,
            relay_acked = r.acked,
            believed = lost.last,
            gone,
            "the relay lost records it had acknowledged; resending those still held"
        );
        client.status.relay_lost_rows.fetch_add(gone, Relaxed);
        client.store.relay_lost(stream, r.acked as i64)?;
    } else if r.renumber {
        tracing::warn!(
            stream = %r.stream,
            relay_acked = r.acked,
            "the relay is ahead of this outbox; renumbering"
        );
        let s = client.store.clone();
        let above = r.acked;
        blocking(move || s.rebase(stream, above)).await?;
    } else if r.acked > believed {
        // An acknowledgement lost with the last connection: the Welcome carries it.
        client.store.ack(stream, r.acked as i64)?;
    }
    Ok(())
}

/// The session's protocol state, shared by its lanes; held for microseconds, never across
/// an await.
type Core = std::sync::Mutex<EdgeSession>;

fn lock(core: &Core) -> std::sync::MutexGuard<'_, EdgeSession> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

async fn session(
    client: &Client,
    turn: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (endpoint, conn) = connect(&client.bundle, turn).await?;
    let status = &client.status;
    status.connects.fetch_add(1, Relaxed);

    let (mut control_tx, mut control_rx) = conn.open_bi().await?;
    control_tx.set_priority(Lane::Control.priority())?;
    let mut held_now = Vec::new();
    for stream in Stream::ALL {
        held_now.push((stream.protocol(), held(client, stream).await?));
    }
    let mut core = EdgeSession::new(held_now.iter().copied());
    let software = format!("edge-daemon {}", env!("CARGO_PKG_VERSION"));
    write_message(&mut control_tx, &core.hello(&software)).await?;
    let Some(welcome) = read_message(&mut control_rx).await? else {
        bail!("the relay closed the control stream before its Welcome");
    };
    let heard = Instant::now();
    let relay_time_us = match &welcome.body {
        Some(Body::Welcome(w)) => w.relay_time_us,
        _ => 0,
    };
    for r in core.welcome(welcome)? {
        let believed = held_now
            .iter()
            .find(|(s, _)| *s == r.stream)
            .map_or(0, |(_, h)| h.believed_acked);
        resume(client, &r, believed).await?;
    }
    settle_clock(client, relay_time_us, heard, conn.rtt()).await?;
    let telemetry_acked = core.acked(ProtocolStream::Telemetry);
    status.relay_acked.store(telemetry_acked, Relaxed);
    status
        .events_acked
        .store(core.acked(ProtocolStream::Events), Relaxed);
    status.connected.store(true, Relaxed);
    tracing::info!(
        telemetry_acked,
        events_acked = core.acked(ProtocolStream::Events),
        backlog = client
            .committed
            .committed(Stream::Telemetry)
            .saturating_sub(telemetry_acked),
        "syncing"
    );

    let core = std::sync::Mutex::new(core);
    // Bumped on every acknowledgement, so that a lane waiting on its window wakes.
    let (acked_tx, acked_rx) = watch::channel(0u64);
    // The control stream's receive side: acknowledgements, checked, recorded, and handed
    // to the lanes.
    let control = async {
        while let Some(message) = read_message(&mut control_rx).await? {
            let (stream, seq) = lock(&core).control(message)?;
            let Some(stream) = Stream::of(stream) else {
                bail!("the relay acknowledged {stream}, which this station does not send");
            };
            client.store.ack(stream, seq as i64)?;
            match stream {
                Stream::Telemetry => status.relay_acked.store(seq, Relaxed),
                Stream::Events => status.events_acked.store(seq, Relaxed),
                Stream::Changes => {}
            }
            acked_tx.send_modify(|n| *n += 1);
            status
                .last_ack_unix_ms
                .store(client.time.borrow().now_us() / 1000, Relaxed);
            status.rtt_us.store(conn.rtt().as_micros() as u64, Relaxed);
        }
        Ok(())
    };
    let result = tokio::select! {
        r = control => r,
        r = downsync(client, &conn, &core, control_tx) => r,
        r = events_lane(client, &conn, &core, acked_rx.clone()) => r,
        r = bulk_lane(client, &conn, &core, acked_rx) => r,
        r = live_lane(client, &conn) => r,
        _ = shutdown.wait_for(|stop| *stop) => Ok(()),
    };
    if *shutdown.borrow() {
        conn.close(CLOSE_STOPPING.into(), b"station stopping");
        // The close frame goes out with the endpoint's next send; don't wait on a dead link.
        let _ = tokio::time::timeout(STOP_GRACE / 2, endpoint.wait_idle()).await;
    }
    result
}

/// Merges the relay's record changes as they come, acknowledging each once it is durable.
async fn downsync(
    client: &Client,
    conn: &quinn::Connection,
    core: &Core,
    mut control_tx: quinn::SendStream,
) -> anyhow::Result<()> {
    let mut stream = conn.accept_uni().await?;
    while let Some(message) = read_message(&mut stream).await? {
        let (rev, change) = lock(core).downsync(message)?;
        let store = client.store.clone();
        blocking(move || store.merge(vec![change])).await?;
        let ack = lock(core).merged(rev);
        write_message(&mut control_tx, &ack).await?;
        client.status.changes_received.fetch_add(1, Relaxed);
    }
    std::future::pending().await
}

/// Sends events, then this station's own record edits, as soon as they are committed.
async fn events_lane(
    client: &Client,
    conn: &quinn::Connection,
    core: &Core,
    mut acked: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let mut lane = conn.open_uni().await?;
    lane.set_priority(Lane::Events.priority())?;
    let (events, changes) = (ProtocolStream::Events, ProtocolStream::Changes);
    loop {
        acked.borrow_and_update();
        let changes_mark = client.committed.committed(Stream::Changes);
        let next_change = lock(core).next(changes, changes_mark);
        if let Some(first) = next_change {
            let r = client.reader.clone();
            let own = blocking(move || r.own_changes(first - 1, EVENT_BATCH)).await?;
            let full = own.len() == EVENT_BATCH as usize;
            lock(core).take(changes, changes_mark, own.last().map(|(s, _)| *s), full)?;
            for (seq, change) in &own {
                write_message(
                    &mut lane,
                    &Envelope {
                        body: Some(Body::Change(change.to_proto(*seq))),
                    },
                )
                .await?;
                lock(core).sent(
                    changes,
                    Range {
                        first: *seq,
                        last: *seq,
                    },
                )?;
                client.status.changes_sent.fetch_add(1, Relaxed);
            }
            continue;
        }
        let mark = client.committed.committed(Stream::Events);
        let next = {
            let core = lock(core);
            core.next(events, mark).filter(|_| core.window_open(events))
        };
        let Some(first) = next else {
            tokio::select! {
                () = client.committed.urgent_committed.notified() => {}
                r = acked.changed() => r?,
                // A commit made while this lane was busy sending is caught here at the latest.
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        };
        let r = client.reader.clone();
        let rows = blocking(move || r.events_outbox(first - 1, EVENT_BATCH)).await?;
        let full = rows.len() == EVENT_BATCH as usize;
        let range = lock(core).take(events, mark, rows.last().map(|e| e.seq), full)?;
        let count = rows.len();
        let payload = EventList { events: rows }.encode_to_vec();
        let bytes = payload.len();
        write_message(&mut lane, &batch(events, range, count, payload)).await?;
        lock(core).sent(events, range)?;
        client.status.events_sent.fetch_add(count as u64, Relaxed);
        client.status.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }
}

fn batch(stream: ProtocolStream, range: Range, rows: usize, payload: Vec<u8>) -> Envelope {
    let encoding = match stream {
        ProtocolStream::Events => Encoding::EventsV1,
        _ => Encoding::TelemetryColumnarV1,
    };
    Envelope {
        body: Some(Body::Batch(Batch {
            stream: stream.name().into(),
            first_seq: range.first,
            last_seq: range.last,
            rows: rows as u32,
            encoding: encoding as i32,
            payload,
        })),
    }
}

/// A telemetry batch read from the outbox: the rows it has of `range`.
struct ReadBatch {
    range: Range,
    rows: Vec<TelemetryRow>,
}

/// A batch encoded and ready to go.
struct Prepared {
    range: Range,
    rows: usize,
    payload: Vec<u8>,
}

/// Drains the telemetry backlog behind everything else, in three stages that overlap: the
/// next batch is read from the outbox while the one before it is compressed and the one
/// before that is on its way (in a catch-up the read and the compression cost about the
/// same, and each alone would leave the other core idle). Each stage holds at most one
/// batch ahead of the next, so a paced or stalled lane reads no further.
async fn bulk_lane(
    client: &Client,
    conn: &quinn::Connection,
    core: &Core,
    acked: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let (read_tx, read_rx) = tokio::sync::mpsc::channel(1);
    let (ready_tx, ready_rx) = tokio::sync::mpsc::channel(1);
    tokio::try_join!(
        read_stage(client, core, read_tx),
        encode_stage(read_rx, ready_tx),
        send_stage(client, conn, core, ready_rx, acked),
    )?;
    Ok(())
}

/// Reads committed rows, a batch at a time.
async fn read_stage(
    client: &Client,
    core: &Core,
    out: tokio::sync::mpsc::Sender<ReadBatch>,
) -> anyhow::Result<()> {
    let telemetry = ProtocolStream::Telemetry;
    loop {
        // Everything up to this mark is committed, so the read below sees all of it.
        let mark = client.committed.committed(Stream::Telemetry);
        let Some(first) = lock(core).next(telemetry, mark) else {
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        };
        let r = client.reader.clone();
        let rows = blocking(move || r.outbox(first - 1, BATCH_ROWS)).await?;
        let full = rows.len() == BATCH_ROWS as usize;
        let range = lock(core).take(telemetry, mark, rows.last().map(|r| r.seq), full)?;
        if out.send(ReadBatch { range, rows }).await.is_err() {
            return Ok(()); // the lane is ending
        }
    }
}

async fn encode_stage(
    mut batches: tokio::sync::mpsc::Receiver<ReadBatch>,
    out: tokio::sync::mpsc::Sender<Prepared>,
) -> anyhow::Result<()> {
    while let Some(ReadBatch { range, rows }) = batches.recv().await {
        let count = rows.len();
        let payload =
            tokio::task::spawn_blocking(move || codec::encode(&rows, ZSTD_LEVEL)).await??;
        let prepared = Prepared {
            range,
            rows: count,
            payload,
        };
        if out.send(prepared).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Sends prepared batches as the window allows, paced when capped.
async fn send_stage(
    client: &Client,
    conn: &quinn::Connection,
    core: &Core,
    mut ready: tokio::sync::mpsc::Receiver<Prepared>,
    mut acked: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let telemetry = ProtocolStream::Telemetry;
    let mut lane = conn.open_uni().await?;
    lane.set_priority(Lane::Bulk.priority())?;
    let status = &client.status;
    let mut pacer = (client.bandwidth_limit_bytes_per_s > 0)
        .then(|| Pacer::new(client.bandwidth_limit_bytes_per_s, Instant::now()));
    loop {
        acked.borrow_and_update();
        let open = lock(core).window_open(telemetry);
        tokio::select! {
            r = acked.changed() => r?,
            prepared = ready.recv(), if open => {
                let Some(Prepared { range, rows, payload }) = prepared else {
                    return Ok(());
                };
                if let Some(p) = pacer.as_mut() {
                    tokio::time::sleep(p.wait(Instant::now())).await;
                }
                let bytes = payload.len();
                write_message(&mut lane, &batch(telemetry, range, rows, payload)).await?;
                lock(core).sent(telemetry, range)?;
                if let Some(p) = pacer.as_mut() {
                    p.spend(bytes, Instant::now());
                }
                status.batches_sent.fetch_add(1, Relaxed);
                status.rows_sent.fetch_add(rows as u64, Relaxed);
                status.bytes_sent.fetch_add(bytes as u64, Relaxed);
            }
        }
    }
}

/// Sends each vehicle's latest position as a datagram, every `live_interval`.
async fn live_lane(client: &Client, conn: &quinn::Connection) -> anyhow::Result<()> {
    if client.live_interval.is_zero() || conn.max_datagram_size().is_none() {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(client.live_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let snapshot = client.snapshots.borrow().clone();
        for v in &snapshot.vehicles {
            let Some(live) = live_message(v, snapshot.time_us) else {
                continue;
            };
            match conn.send_datagram(live.encode_to_vec().into()) {
                Ok(()) => {
                    client.status.live_sent.fetch_add(1, Relaxed);
                }
                // Datagrams are best effort: the next tick carries newer state anyway.
                Err(quinn::SendDatagramError::ConnectionLost(e)) => return Err(e.into()),
                Err(e) => tracing::debug!("live datagram not sent: {e}"),
            }
        }
    }
}

fn live_message(v: &crate::vehicle::VehicleView, t_us: i64) -> Option<Live> {
    let p = v.position.as_ref()?;
    Some(Live {
        vehicle: u32::from(v.sysid),
        t_us,
        lat_e7: (p.lat * 1e7).round() as i32,
        lon_e7: (p.lon * 1e7).round() as i32,
        alt_mm: (p.alt_msl_m * 1e3).round() as i32,
        heading_cdeg: v
            .heading_deg
            .map_or(u32::from(TelemetryRow::HEADING_UNKNOWN), |h| {
                (h * 100.0).round() as u32
            }),
        battery_pct: v.battery.remaining_pct.map_or(-1, i32::from),
        custom_mode: v.custom_mode,
        armed: v.armed,
        mode: v.mode.clone(),
    })
}
