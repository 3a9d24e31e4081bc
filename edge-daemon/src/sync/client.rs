//! The sync client: one QUIC connection to the relay at a time, reconnecting with backoff.
//!
//! Per session: Hello with what the outbox holds and what the relay last acknowledged;
//! Welcome with the relay's durable mark; then batches from right after that mark, at most
//! [`WINDOW`] unacknowledged at once, each covering a contiguous sequence range (rows the
//! edge no longer has, or never wrote, are simply absent from the range). The edge's cursor
//! moves only on the relay's Ack, which comes after the relay's commit.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sync_protocol::codec;
use sync_protocol::enrollment::Bundle;
use sync_protocol::proto::{envelope::Body, Batch, Encoding, Envelope, Hello, StreamState};
use sync_protocol::wire::{read_message, write_message};

use super::pacer::Pacer;
use super::SyncStatus;
use crate::store::{Reader, StoreSender, StoreStatus};

/// Rows per batch: large enough to compress well, small enough to retransmit cheaply.
const BATCH_ROWS: u32 = 16_384;
/// Unacknowledged batches in flight.
const WINDOW: usize = 4;
/// How often a caught-up client looks for new rows.
const IDLE_POLL: Duration = Duration::from_millis(100);
const ZSTD_LEVEL: i32 = 6;

/// Runs sync for as long as the task lives. `bytes_per_s` caps the payload rate (0: no cap).
pub async fn run(
    bundle: Bundle,
    reader: Reader,
    store: StoreSender,
    committed: Arc<StoreStatus>,
    status: Arc<SyncStatus>,
    bytes_per_s: u64,
) {
    use tracing::Instrument as _;
    let span = tracing::info_span!("sync", org = %bundle.org, edge = %bundle.edge);
    async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = std::time::Instant::now();
            let mut pacer = (bytes_per_s > 0).then(|| Pacer::new(bytes_per_s, Instant::now()));
            let result = session(&bundle, &reader, &store, &committed, &status, &mut pacer).await;
            status.connected.store(false, Relaxed);
            if let Err(e) = &result {
                tracing::warn!("sync session ended: {e:#}");
                *status.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("{e:#}"));
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(500);
            }
            tokio::time::sleep(backoff).await;
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

async fn session(
    bundle: &Bundle,
    reader: &Reader,
    store: &StoreSender,
    committed: &StoreStatus,
    status: &SyncStatus,
    pacer: &mut Option<Pacer>,
) -> anyhow::Result<()> {
    let addr = tokio::net::lookup_host(&bundle.relay)
        .await
        .with_context(|| format!("resolving {}", bundle.relay))?
        .next()
        .with_context(|| format!("{} resolves to nothing", bundle.relay))?;
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
    status.connects.fetch_add(1, Relaxed);

    let (mut control_tx, mut control_rx) = conn.open_bi().await?;
    let r = reader.clone();
    let believed = blocking(move || r.acked("telemetry")).await?.max(0) as u64;
    let r = reader.clone();
    let (oldest, newest) = blocking(move || r.outbox_bounds()).await?;
    write_message(
        &mut control_tx,
        &Envelope {
            body: Some(Body::Hello(Hello {
                protocol_version: sync_protocol::PROTOCOL_VERSION,
                software: format!("edge-daemon {}", env!("CARGO_PKG_VERSION")),
                streams: vec![StreamState {
                    stream: "telemetry".into(),
                    oldest_held: oldest,
                    newest,
                    believed_acked: believed,
                }],
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
    let relay_acked = welcome
        .acked
        .iter()
        .find(|a| a.stream == "telemetry")
        .map_or(0, |a| a.seq);
    if relay_acked < believed {
        let lost = believed - relay_acked;
        let resend_from = oldest.max(relay_acked + 1);
        tracing::error!(
            relay_acked,
            believed,
            "the relay lost {lost} rows it had acknowledged; resending from {resend_from}, \
             rows before that are gone here too"
        );
        status
            .relay_lost_rows
            .fetch_add(resend_from.saturating_sub(relay_acked + 1), Relaxed);
    }
    let high_water = committed.committed_seq.load(Relaxed).max(0) as u64;
    if relay_acked > high_water {
        // This station's database is newer than the relay's record of it (a replaced SD
        // card, a re-flash): continue above the relay's mark so no sequence is reused.
        tracing::warn!(
            relay_acked,
            high_water,
            "the relay is ahead of this outbox; renumbering"
        );
        let s = store.clone();
        blocking(move || s.rebase(relay_acked)).await?;
    }
    status.relay_acked.store(relay_acked, Relaxed);
    status.connected.store(true, Relaxed);
    tracing::info!(
        relay_acked,
        backlog = newest.saturating_sub(relay_acked),
        "syncing"
    );

    let mut lane = conn.open_uni().await?;
    let mut next = relay_acked + 1;
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    loop {
        let behind = committed.committed_seq.load(Relaxed).max(0) as u64 >= next;
        let paced = pacer
            .as_mut()
            .map_or(Duration::ZERO, |p| p.wait(Instant::now()));
        let wait = if behind { paced } else { IDLE_POLL.max(paced) };
        tokio::select! {
            message = read_message(&mut control_rx) => {
                match message? {
                    Some(Envelope { body: Some(Body::Ack(ack)) }) if ack.stream == "telemetry" => {
                        store.ack("telemetry", ack.seq as i64)?;
                        status.relay_acked.store(ack.seq, Relaxed);
                        status.last_ack_unix_ms.store(crate::clock::system_now_us() / 1000, Relaxed);
                        while in_flight.front().is_some_and(|&last| last <= ack.seq) {
                            in_flight.pop_front();
                        }
                    }
                    Some(other) => bail!("unexpected message from the relay: {other:?}"),
                    None => return Ok(()),
                }
            }
            () = tokio::time::sleep(wait), if in_flight.len() < WINDOW => {
                // Everything up to this mark is committed, so the read below sees all of it.
                let mark = committed.committed_seq.load(Relaxed).max(0) as u64;
                if mark < next {
                    continue;
                }
                let r = reader.clone();
                let rows = blocking(move || r.outbox(next - 1, BATCH_ROWS)).await?;
                let last = match rows.last() {
                    Some(row) if rows.len() == BATCH_ROWS as usize => row.seq,
                    Some(row) => row.seq.max(mark),
                    None => mark,
                };
                let count = rows.len();
                let payload = tokio::task::spawn_blocking(move || codec::encode(&rows, ZSTD_LEVEL))
                    .await??;
                let bytes = payload.len();
                let batch = Envelope {
                    body: Some(Body::Batch(Batch {
                        stream: "telemetry".into(),
                        first_seq: next,
                        last_seq: last,
                        rows: count as u32,
                        encoding: Encoding::TelemetryColumnarV1 as i32,
                        payload,
                    })),
                };
                write_message(&mut lane, &batch).await?;
                if let Some(p) = pacer.as_mut() {
                    p.spend(bytes, Instant::now());
                }
                status.batches_sent.fetch_add(1, Relaxed);
                status.rows_sent.fetch_add(count as u64, Relaxed);
                status.bytes_sent.fetch_add(bytes as u64, Relaxed);
                in_flight.push_back(last);
                next = last + 1;
            }
        }
    }
}
