//! The QUIC side of the relay: one session per connected ground station.
//!
//! A session learns who the edge is from its certificate (never from a message), greets it
//! with the durable high-water mark of each stream, applies every batch idempotently and
//! acknowledges only after the store has committed it. A revoked edge is refused at connect,
//! and an open session of an edge revoked meanwhile is closed within a second.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use sync_protocol::codec;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{envelope::Body, Ack, Acked, Encoding, Envelope, Welcome};
use sync_protocol::transport::peer_identity;
use sync_protocol::wire::{read_message, write_message};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::store::{EdgeStatus, Pending, RelayStore, StoreError, TelemetryBatch};

/// QUIC application close codes.
pub const CLOSE_DONE: u32 = 0;
pub const CLOSE_PROTOCOL: u32 = 1;
pub const CLOSE_FORBIDDEN: u32 = 2;

/// How often an open session re-checks that its edge is still enrolled.
const REVOCATION_CHECK: Duration = Duration::from_secs(1);

pub async fn run(endpoint: quinn::Endpoint, store: Arc<dyn RelayStore>) {
    while let Some(incoming) = endpoint.accept().await {
        let store = store.clone();
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
                    conn.close(CLOSE_FORBIDDEN.into(), b"no edge identity");
                    return;
                }
            };
            let span = tracing::info_span!("edge", org = %edge.org, edge = %edge.edge);
            async move {
                match session(&conn, &edge, store).await {
                    Ok(()) => tracing::info!("session ended"),
                    Err(e) => {
                        tracing::warn!("session closed: {e:#}");
                        conn.close(CLOSE_PROTOCOL.into(), b"protocol error");
                    }
                }
            }
            .instrument(span)
            .await;
        });
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

async fn session(
    conn: &quinn::Connection,
    edge: &EdgeIdentity,
    store: Arc<dyn RelayStore>,
) -> anyhow::Result<()> {
    let id = edge.clone();
    if blocking(&store, move |s| s.edge_status(&id)).await? != EdgeStatus::Active {
        tracing::warn!("refused: not enrolled, or revoked");
        conn.close(CLOSE_FORBIDDEN.into(), b"edge not enrolled or revoked");
        return Ok(());
    }
    let (mut control_tx, mut control_rx) = conn.accept_bi().await?;
    let hello = match read_message(&mut control_rx).await? {
        Some(Envelope {
            body: Some(Body::Hello(h)),
        }) => h,
        other => bail!("expected Hello, got {other:?}"),
    };
    let id = edge.clone();
    let acked = blocking(&store, move |s| s.acked(&id, "telemetry")).await?;
    for state in &hello.streams {
        if state.stream == "telemetry" && state.believed_acked > acked {
            // The relay lost data it had acknowledged (restored from an older backup, a new
            // disk). Say so on both sides; the edge resends what it still holds.
            tracing::error!(
                acked,
                believed = state.believed_acked,
                "relay no longer holds telemetry it acknowledged"
            );
            let (id, to) = (edge.clone(), state.believed_acked);
            blocking(&store, move |s| {
                s.record_gap(&id, "telemetry", acked + 1, to)
            })
            .await?;
        }
    }
    tracing::info!(acked, software = %hello.software, "edge connected");
    let welcome = Envelope {
        body: Some(Body::Welcome(Welcome {
            protocol_version: hello.protocol_version.min(sync_protocol::PROTOCOL_VERSION),
            software: format!("cloud-relay {}", env!("CARGO_PKG_VERSION")),
            acked: vec![Acked {
                stream: "telemetry".into(),
                seq: acked,
            }],
        })),
    };
    write_message(&mut control_tx, &welcome).await?;

    // Lanes send acknowledgements here; one task owns the control stream's send side.
    let (ack_tx, mut ack_rx) = mpsc::channel::<Ack>(64);
    let acks = async move {
        while let Some(ack) = ack_rx.recv().await {
            write_message(
                &mut control_tx,
                &Envelope {
                    body: Some(Body::Ack(ack)),
                },
            )
            .await?;
        }
        anyhow::Ok(())
    };
    let lanes = async {
        loop {
            let recv = match conn.accept_uni().await {
                Ok(r) => r,
                Err(quinn::ConnectionError::ApplicationClosed(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let (store, edge, ack_tx) = (store.clone(), edge.clone(), ack_tx.clone());
            let conn = conn.clone();
            tokio::spawn(
                async move {
                    if let Err(e) = lane(recv, &edge, store, ack_tx).await {
                        tracing::warn!("lane closed the session: {e:#}");
                        conn.close(CLOSE_PROTOCOL.into(), b"protocol error");
                    }
                }
                .in_current_span(),
            );
        }
    };
    let revocation = async {
        loop {
            tokio::time::sleep(REVOCATION_CHECK).await;
            let id = edge.clone();
            if blocking(&store, move |s| s.edge_status(&id)).await? != EdgeStatus::Active {
                tracing::warn!("edge revoked: closing its session");
                conn.close(CLOSE_FORBIDDEN.into(), b"edge revoked");
                return anyhow::Ok(());
            }
        }
    };
    tokio::select! {
        r = acks => r,
        r = lanes => r,
        r = revocation => r,
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
    edge: &EdgeIdentity,
    store: Arc<dyn RelayStore>,
    acks: mpsc::Sender<Ack>,
) -> anyhow::Result<()> {
    let (queued_tx, mut queued) = mpsc::channel::<(u64, u64, Pending)>(LANE_QUEUED);
    let read = async move {
        while let Some(message) = read_message(&mut recv).await? {
            let Ok(slot) = queued_tx.reserve().await else {
                break; // the session is ending
            };
            let batch = match message.body {
                Some(Body::Batch(b)) => b,
                other => bail!("expected Batch on a data lane, got {other:?}"),
            };
            if batch.stream != "telemetry" || batch.encoding() != Encoding::TelemetryColumnarV1 {
                bail!(
                    "unsupported stream {:?} / encoding {}",
                    batch.stream,
                    batch.encoding
                );
            }
            let payload = batch.payload;
            // A live batch decodes in microseconds, less than handing it to another thread
            // costs; a catch-up batch takes milliseconds, too long for an async worker. (A
            // batch understating its rows costs one such stall, then closes its session.)
            let rows = if batch.rows <= DECODE_INLINE_ROWS {
                codec::decode(&payload)
            } else {
                tokio::task::spawn_blocking(move || codec::decode(&payload)).await?
            }
            .context("telemetry payload")?;
            if rows.len() != batch.rows as usize {
                bail!("batch says {} rows, holds {}", batch.rows, rows.len());
            }
            let (first, last) = (batch.first_seq, batch.last_seq);
            let pending = store.submit_telemetry(TelemetryBatch {
                edge: edge.clone(),
                first,
                last,
                rows,
            });
            slot.send((first, last, pending));
        }
        anyhow::Ok(())
    };
    let ack = async move {
        while let Some((first, last, pending)) = queued.recv().await {
            let acked = match pending.durable().await {
                Err(StoreError::NotActive(_)) => bail!("edge revoked"),
                other => other?,
            };
            tracing::debug!(first, last, acked, "batch stored");
            let ack = Ack {
                stream: "telemetry".into(),
                seq: acked,
            };
            if acks.send(ack).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::try_join!(read, ack)?;
    Ok(())
}
