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
//! - **bulk**: telemetry history from right after the relay's mark, at most [`WINDOW`]
//!   unacknowledged batches at once, each covering a contiguous sequence range (rows the
//!   edge no longer has, or never wrote, are simply absent from the range), paced to the
//!   bandwidth cap when one is set.
//!
//! The edge's cursor for a stream moves only on the relay's Ack, which comes after the
//! relay's commit.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use prost::Message as _;
use sync_protocol::codec;
use sync_protocol::enrollment::Bundle;
use sync_protocol::proto::{
    envelope::Body, Batch, ChangeAck, Encoding, Envelope, EventList, Hello, Live, StreamState,
    Welcome,
};
use sync_protocol::records::FieldChange;
use sync_protocol::wire::{read_message, write_message};
use tokio::sync::watch;

use super::pacer::Pacer;
use super::SyncStatus;
use crate::store::{Reader, StoreSender, StoreStatus, Stream};
use crate::vehicle::FleetSnapshot;

/// Rows per batch: large enough to compress well, small enough to retransmit cheaply.
const BATCH_ROWS: u32 = 16_384;
/// Unacknowledged telemetry batches in flight.
const WINDOW: usize = 4;
/// Events per batch, and event batches in flight.
const EVENT_BATCH: u32 = 1_000;
const EVENT_WINDOW: usize = 8;
/// How often a caught-up client looks for new rows.
const IDLE_POLL: Duration = Duration::from_millis(100);
const ZSTD_LEVEL: i32 = 6;
/// QUIC stream priorities: higher is sent first.
const EVENTS_PRIORITY: i32 = 10;
const BULK_PRIORITY: i32 = 0;

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
async fn stream_state(reader: &Reader, stream: Stream) -> anyhow::Result<StreamState> {
    let r = reader.clone();
    let believed = blocking(move || r.acked(stream)).await?.max(0) as u64;
    let r = reader.clone();
    let (oldest, newest) = blocking(move || r.outbox_bounds(stream)).await?;
    Ok(StreamState {
        stream: stream.name().into(),
        oldest_held: oldest,
        newest,
        believed_acked: believed,
    })
}

fn committed_seq(committed: &StoreStatus, stream: Stream) -> u64 {
    committed.committed(stream)
}

/// Reconciles one stream's marks after Welcome and returns where to resume: right after the
/// relay's mark.
async fn resume_point(
    client: &Client,
    state: &StreamState,
    welcome: &Welcome,
    stream: Stream,
) -> anyhow::Result<u64> {
    let relay_acked = welcome
        .acked
        .iter()
        .find(|a| a.stream == stream.name())
        .map_or(0, |a| a.seq);
    let believed = state.believed_acked;
    if relay_acked < believed {
        let lost = believed - relay_acked;
        let resend_from = state.oldest_held.max(relay_acked + 1);
        tracing::error!(
            stream = stream.name(),
            relay_acked,
            believed,
            "the relay lost {lost} records it had acknowledged; resending from {resend_from}, \
             records before that are gone here too"
        );
        client
            .status
            .relay_lost_rows
            .fetch_add(resend_from.saturating_sub(relay_acked + 1), Relaxed);
    }
    if relay_acked > committed_seq(&client.committed, stream) {
        // This station's database is newer than the relay's record of it (a replaced SD
        // card, a re-flash): continue above the relay's mark so no sequence is reused.
        tracing::warn!(
            stream = stream.name(),
            relay_acked,
            "the relay is ahead of this outbox; renumbering"
        );
        let s = client.store.clone();
        blocking(move || s.rebase(stream, relay_acked)).await?;
    }
    Ok(relay_acked)
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
    let telemetry = stream_state(&client.reader, Stream::Telemetry).await?;
    let events = stream_state(&client.reader, Stream::Events).await?;
    let changes = stream_state(&client.reader, Stream::Changes).await?;
    write_message(
        &mut control_tx,
        &Envelope {
            body: Some(Body::Hello(Hello {
                protocol_version: sync_protocol::PROTOCOL_VERSION,
                software: format!("edge-daemon {}", env!("CARGO_PKG_VERSION")),
                streams: vec![telemetry.clone(), events.clone(), changes.clone()],
            })),
        },
    )
    .await?;
    let welcome = match read_message(&mut control_rx).await? {
        Some(Envelope {
            body: Some(Body::Welcome(w)),
        }) => w,
        other => bail!("expected Welcome, got {other:?}"),
    };
    let telemetry_acked = resume_point(client, &telemetry, &welcome, Stream::Telemetry).await?;
    let events_acked = resume_point(client, &events, &welcome, Stream::Events).await?;
    let changes_acked = resume_point(client, &changes, &welcome, Stream::Changes).await?;
    status.relay_acked.store(telemetry_acked, Relaxed);
    status.events_acked.store(events_acked, Relaxed);
    status.connected.store(true, Relaxed);
    tracing::info!(
        telemetry_acked,
        events_acked,
        backlog = telemetry.newest.saturating_sub(telemetry_acked),
        "syncing"
    );

    let (telemetry_tx, telemetry_rx) = watch::channel(telemetry_acked);
    let (events_tx, events_rx) = watch::channel(events_acked);
    // The control stream's receive side: acknowledgements, recorded and handed to the lanes.
    let control = async {
        loop {
            let ack = match read_message(&mut control_rx).await? {
                Some(Envelope {
                    body: Some(Body::Ack(ack)),
                }) => ack,
                Some(Envelope {
                    body: Some(Body::ChangeAck(ack)),
                }) => {
                    // The relay has merged and committed our edits up to here.
                    client.store.ack(Stream::Changes, ack.seq as i64)?;
                    continue;
                }
                Some(other) => bail!("unexpected message from the relay: {other:?}"),
                None => return Ok(()),
            };
            let stream = sync_protocol::stream::Stream::parse(&ack.stream).and_then(Stream::of);
            let Some(stream) = stream else {
                bail!("the relay acknowledged unknown stream {:?}", ack.stream);
            };
            client.store.ack(stream, ack.seq as i64)?;
            match stream {
                Stream::Telemetry => {
                    status.relay_acked.store(ack.seq, Relaxed);
                    telemetry_tx.send_replace(ack.seq);
                }
                Stream::Events => {
                    status.events_acked.store(ack.seq, Relaxed);
                    events_tx.send_replace(ack.seq);
                }
                Stream::Changes => bail!("the relay acknowledged changes with a batch Ack"),
            }
            status
                .last_ack_unix_ms
                .store(crate::clock::system_now_us() / 1000, Relaxed);
            status.rtt_us.store(conn.rtt().as_micros() as u64, Relaxed);
        }
    };
    let result = tokio::select! {
        r = control => r,
        r = downsync(client, &conn, control_tx) => r,
        r = events_lane(client, &conn, events_acked, changes_acked, events_rx) => r,
        r = bulk_lane(client, &conn, telemetry_acked, telemetry_rx) => r,
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
    mut control_tx: quinn::SendStream,
) -> anyhow::Result<()> {
    let mut stream = conn.accept_uni().await?;
    while let Some(message) = read_message(&mut stream).await? {
        let change = match message.body {
            Some(Body::Change(c)) => c,
            other => bail!("expected Change on the downsync stream, got {other:?}"),
        };
        let (seq, change) =
            FieldChange::from_proto(&change).context("record change from the relay")?;
        let store = client.store.clone();
        blocking(move || store.merge(vec![change])).await?;
        write_message(
            &mut control_tx,
            &Envelope {
                body: Some(Body::ChangeAck(ChangeAck { seq })),
            },
        )
        .await?;
        client.status.changes_received.fetch_add(1, Relaxed);
    }
    std::future::pending().await
}

/// Sends events, then this station's own record edits, as soon as they are committed.
async fn events_lane(
    client: &Client,
    conn: &quinn::Connection,
    acked: u64,
    changes_acked: u64,
    mut acks: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let mut lane = conn.open_uni().await?;
    lane.set_priority(EVENTS_PRIORITY)?;
    let mut next = acked + 1;
    let mut next_change = changes_acked + 1;
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    loop {
        let acked = *acks.borrow_and_update();
        while in_flight.front().is_some_and(|&last| last <= acked) {
            in_flight.pop_front();
        }
        let changes_mark = committed_seq(&client.committed, Stream::Changes);
        if changes_mark >= next_change {
            let r = client.reader.clone();
            let from = next_change - 1;
            let own = blocking(move || r.own_changes(from, EVENT_BATCH)).await?;
            let full = own.len() == EVENT_BATCH as usize;
            for (seq, change) in &own {
                write_message(
                    &mut lane,
                    &Envelope {
                        body: Some(Body::Change(change.to_proto(*seq))),
                    },
                )
                .await?;
                client.status.changes_sent.fetch_add(1, Relaxed);
            }
            next_change = match own.last() {
                Some((seq, _)) if full => seq + 1,
                // Everything up to the mark that was not ours came from elsewhere.
                _ => changes_mark + 1,
            };
            continue;
        }
        let mark = committed_seq(&client.committed, Stream::Events);
        if mark < next || in_flight.len() >= EVENT_WINDOW {
            tokio::select! {
                () = client.committed.urgent_committed.notified() => {}
                r = acks.changed() => r?,
                // A commit made while this lane was busy sending is caught here at the latest.
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let r = client.reader.clone();
        let events = blocking(move || r.events_outbox(next - 1, EVENT_BATCH)).await?;
        let last = match events.last() {
            Some(e) if events.len() == EVENT_BATCH as usize => e.seq,
            Some(e) => e.seq.max(mark),
            None => mark,
        };
        let count = events.len();
        let payload = EventList { events }.encode_to_vec();
        let bytes = payload.len();
        write_message(
            &mut lane,
            &Envelope {
                body: Some(Body::Batch(Batch {
                    stream: Stream::Events.name().into(),
                    first_seq: next,
                    last_seq: last,
                    rows: count as u32,
                    encoding: Encoding::EventsV1 as i32,
                    payload,
                })),
            },
        )
        .await?;
        client.status.events_sent.fetch_add(count as u64, Relaxed);
        client.status.bytes_sent.fetch_add(bytes as u64, Relaxed);
        in_flight.push_back(last);
        next = last + 1;
    }
}

/// A telemetry batch read from the outbox: rows `first..=last` (the rows it has of them).
struct ReadBatch {
    first: u64,
    last: u64,
    rows: Vec<codec::TelemetryRow>,
}

/// A batch encoded and ready to go.
struct Prepared {
    first: u64,
    last: u64,
    rows: u32,
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
    acked: u64,
    acks: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let (read_tx, read_rx) = tokio::sync::mpsc::channel(1);
    let (ready_tx, ready_rx) = tokio::sync::mpsc::channel(1);
    tokio::try_join!(
        read_stage(client, acked + 1, read_tx),
        encode_stage(read_rx, ready_tx),
        send_stage(client, conn, ready_rx, acks),
    )?;
    Ok(())
}

/// Reads committed rows from `next` on, a batch at a time.
async fn read_stage(
    client: &Client,
    mut next: u64,
    out: tokio::sync::mpsc::Sender<ReadBatch>,
) -> anyhow::Result<()> {
    loop {
        // Everything up to this mark is committed, so the read below sees all of it.
        let mark = committed_seq(&client.committed, Stream::Telemetry);
        if mark < next {
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }
        let r = client.reader.clone();
        let rows = blocking(move || r.outbox(next - 1, BATCH_ROWS)).await?;
        let last = match rows.last() {
            Some(row) if rows.len() == BATCH_ROWS as usize => row.seq,
            Some(row) => row.seq.max(mark),
            None => mark,
        };
        let batch = ReadBatch {
            first: next,
            last,
            rows,
        };
        if out.send(batch).await.is_err() {
            return Ok(()); // the lane is ending
        }
        next = last + 1;
    }
}

async fn encode_stage(
    mut batches: tokio::sync::mpsc::Receiver<ReadBatch>,
    out: tokio::sync::mpsc::Sender<Prepared>,
) -> anyhow::Result<()> {
    while let Some(ReadBatch { first, last, rows }) = batches.recv().await {
        let count = rows.len() as u32;
        let payload =
            tokio::task::spawn_blocking(move || codec::encode(&rows, ZSTD_LEVEL)).await??;
        let prepared = Prepared {
            first,
            last,
            rows: count,
            payload,
        };
        if out.send(prepared).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Sends prepared batches, at most [`WINDOW`] unacknowledged, paced when capped.
async fn send_stage(
    client: &Client,
    conn: &quinn::Connection,
    mut ready: tokio::sync::mpsc::Receiver<Prepared>,
    mut acks: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let mut lane = conn.open_uni().await?;
    lane.set_priority(BULK_PRIORITY)?;
    let status = &client.status;
    let mut pacer = (client.bandwidth_limit_bytes_per_s > 0)
        .then(|| Pacer::new(client.bandwidth_limit_bytes_per_s, Instant::now()));
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    loop {
        tokio::select! {
            r = acks.changed() => {
                r?;
                let acked = *acks.borrow_and_update();
                while in_flight.front().is_some_and(|&last| last <= acked) {
                    in_flight.pop_front();
                }
            }
            prepared = ready.recv(), if in_flight.len() < WINDOW => {
                let Some(Prepared { first, last, rows, payload }) = prepared else {
                    return Ok(());
                };
                if let Some(p) = pacer.as_mut() {
                    tokio::time::sleep(p.wait(Instant::now())).await;
                }
                let bytes = payload.len();
                let batch = Envelope {
                    body: Some(Body::Batch(Batch {
                        stream: Stream::Telemetry.name().into(),
                        first_seq: first,
                        last_seq: last,
                        rows,
                        encoding: Encoding::TelemetryColumnarV1 as i32,
                        payload,
                    })),
                };
                write_message(&mut lane, &batch).await?;
                if let Some(p) = pacer.as_mut() {
                    p.spend(bytes, Instant::now());
                }
                status.batches_sent.fetch_add(1, Relaxed);
                status.rows_sent.fetch_add(u64::from(rows), Relaxed);
                status.bytes_sent.fetch_add(bytes as u64, Relaxed);
                in_flight.push_back(last);
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
            .map_or(u32::from(u16::MAX), |h| (h * 100.0).round() as u32),
        battery_pct: v.battery.remaining_pct.map_or(-1, i32::from),
        custom_mode: v.custom_mode,
        armed: v.armed,
        mode: v.mode.clone(),
    })
}
