//! The QUIC side of the relay: one session per connected ground station.
//!
//! A session learns who the edge is from its certificate (never from a message), greets it
//! with the durable high-water mark of each stream, applies every batch idempotently and
//! acknowledges only after the store has committed it. Each of the edge's lanes (events,
//! bulk telemetry) is its own QUIC stream with its own task, so a telemetry batch being
//! stored never holds up an alert behind it; live datagrams go straight to the in-memory
//! [`LiveView`]. A revoked edge is refused at connect, and an open session of an edge
//! revoked meanwhile is closed within a second. A peer that breaks the protocol loses its
//! own connection, nothing else.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use prost::Message as _;
use sync_protocol::codec;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{envelope::Body, Envelope, EventList};
use sync_protocol::records::FieldChange;
use sync_protocol::session::{Greeting, Incoming, Lane, LaneId, Lost, Range, RelaySession};
use sync_protocol::stream::Stream;
use sync_protocol::transport::peer_identity;
use sync_protocol::wire::{read_message, write_message};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::live::{LiveView, Sighting, State, Update};
use crate::store::chunk::Chunk;
use crate::store::{EdgeStatus, Pending, RelayStore, StoreError, TelemetryBatch};

/// Record changes per downsync read.
const DOWNSYNC_BATCH: u32 = 500;
/// A connected edge's downsync looks for new revisions at least this often.
const DOWNSYNC_POLL: Duration = Duration::from_secs(5);

/// QUIC application close codes.
pub const CLOSE_DONE: u32 = 0;
pub const CLOSE_PROTOCOL: u32 = 1;
pub const CLOSE_FORBIDDEN: u32 = 2;
/// The relay could not store what the edge sent (disk full, I/O error): nothing unstored was
/// acknowledged, and the edge resends after its backoff.
pub const CLOSE_UNAVAILABLE: u32 = 3;

/// How often the relay re-checks that the edges connected to it are still enrolled.
const REVOCATION_CHECK: Duration = Duration::from_secs(1);

/// The edges connected to this instance, so one store query a second finds the revoked
/// ones among them (whichever instance or admin command revoked them).
#[derive(Default)]
struct Connected {
    sessions: std::sync::Mutex<HashMap<u64, (EdgeIdentity, quinn::Connection)>>,
    next: std::sync::atomic::AtomicU64,
}

/// Keeps a session in [`Connected`] while it lives.
struct Registered<'a> {
    connected: &'a Connected,
    key: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.connected.lock().remove(&self.key);
    }
}

impl Connected {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (EdgeIdentity, quinn::Connection)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, edge: &EdgeIdentity, conn: &quinn::Connection) -> Registered<'_> {
        let key = self.next.fetch_add(1, Relaxed);
        self.lock().insert(key, (edge.clone(), conn.clone()));
        Registered {
            connected: self,
            key,
        }
    }

    /// Every second: closes the sessions of edges revoked since. Never returns.
    async fn watch_revocations(&self, store: Arc<dyn RelayStore>) {
        loop {
            tokio::time::sleep(REVOCATION_CHECK).await;
            let mut edges: Vec<EdgeIdentity> =
                self.lock().values().map(|(id, _)| id.clone()).collect();
            if edges.is_empty() {
                continue;
            }
            edges.sort_by(|a, b| (&a.org, &a.edge).cmp(&(&b.org, &b.edge)));
            edges.dedup();
            let inactive = match blocking(&store, move |s| s.inactive_among(&edges)).await {
                Ok(inactive) => inactive,
                Err(e) => {
                    tracing::warn!("checking for revoked edges: {e:#}");
                    continue;
                }
            };
            for edge in inactive {
                for (id, conn) in self.lock().values().filter(|(id, _)| *id == edge) {
                    tracing::warn!(org = %id.org, edge = %id.edge, "edge revoked: closing its session");
                    conn.close(CLOSE_FORBIDDEN.into(), b"edge revoked");
                }
            }
        }
    }
}

/// Serves edges on `endpoint` until it is closed.
pub async fn run(endpoint: quinn::Endpoint, store: Arc<dyn RelayStore>, live: Arc<LiveView>) {
    let connected = Arc::new(Connected::default());
    tokio::select! {
        () = accept(endpoint, store.clone(), live, connected.clone()) => {}
        () = connected.watch_revocations(store) => {}
    }
}

async fn accept(
    endpoint: quinn::Endpoint,
    store: Arc<dyn RelayStore>,
    live: Arc<LiveView>,
    connected: Arc<Connected>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let store = store.clone();
        let live = live.clone();
        let connected = connected.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("handshake failed: {e}");
                    return;
                }
            };
            let edge = match peer_identity(&conn) {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(peer = %conn.remote_address(), "refused: {e}");
                    live.metrics.refused.fetch_add(1, Relaxed);
                    conn.close(CLOSE_FORBIDDEN.into(), b"no edge identity");
                    return;
                }
            };
            let span = tracing::info_span!("edge", org = %edge.org, edge = %edge.edge);
            async move {
                let _registered = connected.register(&edge, &conn);
                let result = session(&conn, &edge, store, &live).await;
                match result {
                    Ok(()) => tracing::info!("session ended"),
                    Err(e) if conn.close_reason().is_some() => {
                        tracing::info!("session ended: {e:#}");
                    }
                    Err(e) => close_failed(&conn, &live, &e),
                }
            }
            .instrument(span)
            .await;
        });
    }
}

/// Closes a live session that failed: as "relay storage unavailable" when the relay's own
/// storage failed (not the edge's fault: it comes back and resends), else as the edge's
/// protocol error.
fn close_failed(conn: &quinn::Connection, live: &LiveView, e: &anyhow::Error) {
    if e.downcast_ref::<StoreError>()
        .is_some_and(StoreError::is_storage_failure)
    {
        tracing::error!("storage failed, closing the session: {e:#}");
        live.metrics.store_failures.fetch_add(1, Relaxed);
        conn.close(CLOSE_UNAVAILABLE.into(), b"relay storage unavailable");
    } else {
        tracing::warn!("closing the session: {e:#}");
        live.metrics.protocol_errors.fetch_add(1, Relaxed);
        conn.close(CLOSE_PROTOCOL.into(), b"protocol error");
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn RelayStore>,
    f: impl FnOnce(&dyn RelayStore) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || f(store.as_ref())).await??)
}

/// The session's protocol state, shared by its lanes' tasks; held for microseconds, never
/// across an await.
type Core = Arc<std::sync::Mutex<RelaySession>>;

fn lock(core: &Core) -> std::sync::MutexGuard<'_, RelaySession> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

async fn session(
    conn: &quinn::Connection,
    edge: &EdgeIdentity,
    store: Arc<dyn RelayStore>,
    live: &Arc<LiveView>,
) -> anyhow::Result<()> {
    let id = edge.clone();
    if blocking(&store, move |s| s.edge_status(&id)).await? != EdgeStatus::Active {
        tracing::warn!("refused: not enrolled, or revoked");
        live.metrics.refused.fetch_add(1, Relaxed);
        conn.close(CLOSE_FORBIDDEN.into(), b"edge not enrolled or revoked");
        return Ok(());
    }
    let (mut control_tx, mut control_rx) = conn.accept_bi().await?;
    control_tx.set_priority(Lane::Control.priority())?;
    let Some(hello) = read_message(&mut control_rx).await? else {
        bail!("the edge closed the control stream before its Hello");
    };
    let greeting = Greeting::read(hello)?;
    let mut marks = Vec::new();
    for stream in Stream::UPSTREAM.into_iter().chain([Stream::Downsync]) {
        let id = edge.clone();
        marks.push((
            stream,
            blocking(&store, move |s| s.acked(&id, stream)).await?,
        ));
    }
    let mark = |stream| marks.iter().find(|(s, _)| *s == stream).map_or(0, |m| m.1);
    tracing::info!(?marks, software = %greeting.software(), "edge connected");
    let software = format!("cloud-relay {}", env!("CARGO_PKG_VERSION"));
    let (core, welcome, lost) = greeting.welcome(&software, mark);
    for Lost { stream, range } in lost {
        // The relay lost data it had acknowledged (restored from an older backup, a new
        // disk). Say so on both sides; the edge resends what it still holds.
        tracing::error!(
            %stream,
            acked = range.first - 1,
            believed = range.last,
            "relay no longer holds records it acknowledged"
        );
        let id = edge.clone();
        blocking(&store, move |s| {
            s.record_gap(&id, stream, range.first, range.last)
        })
        .await?;
    }
    let mut welcome = welcome;
    if let Some(Body::Welcome(w)) = &mut welcome.body {
        w.relay_time_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
    }
    write_message(&mut control_tx, &welcome).await?;
    let _open = live.session_opened(&edge.org, &edge.edge);
    let core: Core = Arc::new(std::sync::Mutex::new(core));

    // Lanes send acknowledgements here; one task owns the control stream's send side.
    let (ack_tx, mut ack_rx) = mpsc::channel::<Envelope>(64);
    let acks = async move {
        while let Some(ack) = ack_rx.recv().await {
            write_message(&mut control_tx, &ack).await?;
        }
        anyhow::Ok(())
    };
    // The edge acknowledges downsync on the control stream once it has merged a change.
    let control = async {
        while let Some(message) = read_message(&mut control_rx).await? {
            let rev = lock(&core).control(message)?;
            let id = edge.clone();
            blocking(&store, move |s| {
                s.advance_cursor(&id, Stream::Downsync, rev)
            })
            .await?;
        }
        anyhow::Ok(())
    };
    let lanes = async {
        for n in 0.. {
            let recv = match conn.accept_uni().await {
                Ok(r) => r,
                Err(quinn::ConnectionError::ApplicationClosed(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let (store, edge, ack_tx) = (store.clone(), edge.clone(), ack_tx.clone());
            let (conn, live, core) = (conn.clone(), live.clone(), core.clone());
            tokio::spawn(
                async move {
                    let result = lane(recv, LaneId(n), &core, &edge, store, &live, ack_tx).await;
                    // A connection that already ended (the station stopped, the link died)
                    // fails its lanes too; only a live connection's failure is the peer's fault.
                    match result {
                        Ok(()) => {}
                        Err(e) if conn.close_reason().is_some() => {
                            tracing::debug!("lane ended with its connection: {e:#}");
                        }
                        Err(e) => close_failed(&conn, &live, &e),
                    }
                }
                .in_current_span(),
            );
        }
        Ok(())
    };
    let datagrams = async {
        loop {
            let datagram = match conn.read_datagram().await {
                Ok(d) => d,
                Err(quinn::ConnectionError::ApplicationClosed(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            // A datagram is best effort either way: a malformed one is dropped, not fatal.
            match sync_protocol::proto::Live::decode(datagram) {
                Ok(l) => {
                    live.metrics.datagrams.fetch_add(1, Relaxed);
                    live.observe(
                        Sighting {
                            org: edge.org.clone(),
                            edge: edge.edge.clone(),
                            sysid: l.vehicle,
                        },
                        State::from_live(&l),
                    )
                }
                Err(e) => {
                    live.metrics.datagrams_dropped.fetch_add(1, Relaxed);
                    tracing::debug!("undecodable live datagram dropped: {e}");
                }
            }
        }
    };
    tokio::select! {
        r = acks => r,
        r = control => r,
        r = lanes => r,
        r = datagrams => r,
        r = downsync(conn, edge, &core, &store, live) => r,
    }
}

/// Sends the org's record changes the edge has not acknowledged, then each new one as it is
/// made (HQ's edits, other stations'), on a stream the relay opens.
async fn downsync(
    conn: &quinn::Connection,
    edge: &EdgeIdentity,
    core: &Core,
    store: &Arc<dyn RelayStore>,
    live: &LiveView,
) -> anyhow::Result<()> {
    let mut updates = live.subscribe();
    let mut stream = conn.open_uni().await?;
    stream.set_priority(Lane::Downsync.priority())?;
    loop {
        let (org, after) = (edge.org.clone(), lock(core).downsync_sent());
        let changes =
            blocking(store, move |s| s.changes_since(&org, after, DOWNSYNC_BATCH)).await?;
        for (rev, change) in &changes {
            // Recorded first: the edge's acknowledgement may come before the write returns.
            lock(core).sending(*rev);
            write_message(
                &mut stream,
                &Envelope {
                    body: Some(Body::Change(change.to_proto(*rev))),
                },
            )
            .await?;
        }
        if changes.len() == DOWNSYNC_BATCH as usize {
            continue;
        }
        let wait = tokio::time::sleep(DOWNSYNC_POLL);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                update = updates.recv() => match update {
                    Ok(u) if matches!(u.as_ref(), Update::Records { org } if *org == edge.org) => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}

/// Batches of one lane queued for the store's writer behind the one whose commit the lane
/// is awaiting: the next batch is read and decoded while the previous one is written, and a
/// lane never has more than `LANE_QUEUED + 1` batches in the writer's queue.
const LANE_QUEUED: usize = 1;

/// Batches of at most this many rows are decoded on the session's own task.
const DECODE_INLINE_ROWS: u32 = 1_024;

/// One unidirectional stream of batches. Reading and decoding run ahead of the commits (see
/// [`LANE_QUEUED`]); Acks go out in order, each after its batch's group commit.
async fn lane(
    mut recv: quinn::RecvStream,
    lane: LaneId,
    core: &Core,
    edge: &EdgeIdentity,
    store: Arc<dyn RelayStore>,
    live: &LiveView,
    acks: mpsc::Sender<Envelope>,
) -> anyhow::Result<()> {
    let (queued_tx, mut queued) = mpsc::channel::<Queued>(LANE_QUEUED);
    let read = async move {
        while let Some(message) = read_message(&mut recv).await? {
            let Ok(slot) = queued_tx.reserve().await else {
                break; // the session is ending
            };
            let incoming = lock(core).receive(lane, message)?;
            let (range, rows, payload) = match incoming {
                Incoming::Change { seq, change } => {
                    apply_change(seq, change, edge, &store, live).await?;
                    slot.send(Queued::Stored(Stream::Changes, seq));
                    continue;
                }
                Incoming::Batch {
                    stream: Stream::Events,
                    range,
                    rows,
                    payload,
                } => {
                    let acked = apply_events(range, rows, &payload, edge, &store, live).await?;
                    slot.send(Queued::Stored(Stream::Events, acked));
                    continue;
                }
                Incoming::Batch {
                    range,
                    rows,
                    payload,
                    ..
                } => (range, rows, payload),
            };
            // Decoding checks the payload whole before it is kept as the chunk it is. A live
            // batch decodes in microseconds, less than handing it to another thread costs; a
            // catch-up batch takes milliseconds, too long for an async worker. (A batch
            // understating its rows costs one such stall, then closes its session.)
            let chunk = if rows <= DECODE_INLINE_ROWS {
                Chunk::decode(payload)
            } else {
                tokio::task::spawn_blocking(move || Chunk::decode(payload)).await?
            }
            .context("telemetry payload")?;
            if chunk.rows != rows {
                bail!("batch says {rows} rows, holds {}", chunk.rows);
            }
            // Each vehicle's newest row, for the live picture once the batch is stored.
            let newest: Vec<codec::TelemetryRow> =
                chunk.vehicles.iter().map(|v| v.newest).collect();
            let pending = store.submit_telemetry(TelemetryBatch {
                edge: edge.clone(),
                first: range.first,
                last: range.last,
                chunk,
            });
            slot.send(Queued::Telemetry {
                range,
                rows,
                newest,
                pending,
            });
        }
        anyhow::Ok(())
    };
    let ack = async move {
        while let Some(item) = queued.recv().await {
            let (stream, acked) = match item {
                Queued::Stored(stream, acked) => (stream, acked),
                Queued::Telemetry {
                    range,
                    rows,
                    newest,
                    pending,
                } => {
                    let acked = match pending.durable().await {
                        Err(StoreError::NotActive(_)) => bail!("edge revoked"),
                        other => other?,
                    };
                    tracing::debug!(range.first, range.last, acked, "batch stored");
                    telemetry_stored(edge, live, rows, &newest);
                    (Stream::Telemetry, acked)
                }
            };
            let ack = lock(core).stored(stream, acked)?;
            if acks.send(ack).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::try_join!(read, ack)?;
    Ok(())
}

/// What a lane has read, in order: a telemetry batch awaiting its group commit, or the
/// durable mark of something already stored (events, a record change).
enum Queued {
    Telemetry {
        range: Range,
        rows: u32,
        newest: Vec<codec::TelemetryRow>,
        pending: Pending,
    },
    Stored(Stream, u64),
}

/// Metrics and the live picture, once a telemetry batch is durable.
fn telemetry_stored(
    edge: &EdgeIdentity,
    live: &LiveView,
    rows: u32,
    newest: &[codec::TelemetryRow],
) {
    live.metrics.telemetry_batches.fetch_add(1, Relaxed);
    live.metrics
        .telemetry_rows
        .fetch_add(u64::from(rows), Relaxed);
    live.batch_stored(&edge.org, &edge.edge);
    for r in newest {
        live.observe(
            Sighting {
                org: edge.org.clone(),
                edge: edge.edge.clone(),
                sysid: r.vehicle,
            },
            State::from_row(r),
        );
    }
}

/// An edit made at the edge, its change number `seq`: merged into the org's records.
async fn apply_change(
    seq: u64,
    change: FieldChange,
    edge: &EdgeIdentity,
    store: &Arc<dyn RelayStore>,
    live: &LiveView,
) -> anyhow::Result<()> {
    let (id, org) = (edge.clone(), edge.org.clone());
    let won = blocking(store, move |s| {
        let won = s.apply_changes(&org, &[change])?;
        s.advance_cursor(&id, Stream::Changes, seq)?;
        Ok(won)
    })
    .await?;
    if won > 0 {
        live.notify(Update::Records {
            org: edge.org.clone(),
        });
    }
    Ok(())
}

/// A batch of events: stored with the edge's mark; returns the new mark.
async fn apply_events(
    range: Range,
    rows: u32,
    payload: &[u8],
    edge: &EdgeIdentity,
    store: &Arc<dyn RelayStore>,
    live: &LiveView,
) -> anyhow::Result<u64> {
    let events = EventList::decode(payload).context("events payload")?.events;
    if events.len() != rows as usize {
        bail!("batch says {rows} events, holds {}", events.len());
    }
    let id = edge.clone();
    let acked = blocking(store, move |s| {
        if s.edge_status(&id)? != EdgeStatus::Active {
            return Ok(None);
        }
        s.apply_events(&id, range.first, range.last, &events)
            .map(Some)
    })
    .await?;
    let Some(acked) = acked else {
        bail!("edge revoked");
    };
    tracing::debug!(range.first, range.last, acked, "events stored");
    live.metrics.event_batches.fetch_add(1, Relaxed);
    live.metrics.events.fetch_add(u64::from(rows), Relaxed);
    live.batch_stored(&edge.org, &edge.edge);
    live.notify(Update::Event {
        org: edge.org.clone(),
        edge: edge.edge.clone(),
        seq: acked,
    });
    Ok(acked)
}
