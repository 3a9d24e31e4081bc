//! The edge side of sync: enrollment and the client that drains the outbox to the relay.
//! The protocol is `sync-protocol/PROTOCOL.md`; this module only decides what to send when.

mod client;
mod pacer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;
use sync_protocol::enrollment::{Bundle, BundleError};

pub use client::{run, Client};

/// Where an enrolled edge keeps its bundle, inside the data directory.
pub fn bundle_path(data_dir: &Path) -> PathBuf {
    data_dir.join("sync").join("bundle.toml")
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Checks a bundle and installs it in the data directory (0600: it holds a private key).
pub fn enroll(bundle_file: &Path, data_dir: &Path) -> Result<Bundle, EnrollError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = std::fs::read_to_string(bundle_file)
        .map_err(|e| EnrollError::Read(bundle_file.into(), e))?;
    let bundle = Bundle::parse(&text)?;
    let path = bundle_path(data_dir);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(data_dir))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(text.as_bytes())
    };
    write().map_err(|e| EnrollError::Write(path.clone(), e))?;
    Ok(bundle)
}

/// The installed bundle, if this edge is enrolled.
pub fn installed(data_dir: &Path) -> Result<Option<Bundle>, EnrollError> {
    let path = bundle_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(Bundle::parse(&text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EnrollError::Read(path, e)),
    }
}

/// What sync is doing; read by `GET /api/v1/sync` and `edge-daemon sync status`.
#[derive(Debug, Default)]
pub struct SyncStatus {
    pub enrolled_as: String,
    pub relay: String,
    pub connected: AtomicBool,
    pub relay_acked: AtomicU64,
    pub events_acked: AtomicU64,
    pub events_sent: AtomicU64,
    pub live_sent: AtomicU64,
    /// Record edits made here and sent; record changes from the relay merged here.
    pub changes_sent: AtomicU64,
    pub changes_received: AtomicU64,
    /// The connection's smoothed round-trip time, as of the last acknowledgement.
    pub rtt_us: AtomicU64,
    pub batches_sent: AtomicU64,
    pub rows_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub last_ack_unix_ms: AtomicI64,
    /// Rows the relay had acknowledged but no longer holds (reported, never silent).
    pub relay_lost_rows: AtomicU64,
    pub connects: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncView {
    pub enrolled: bool,
    pub enrolled_as: String,
    pub relay: String,
    pub connected: bool,
    pub relay_acked: u64,
    pub backlog_rows: u64,
    pub events_acked: u64,
    pub events_backlog: u64,
    pub events_sent: u64,
    pub live_datagrams_sent: u64,
    pub changes_sent: u64,
    pub changes_received: u64,
    pub rtt_ms: Option<f64>,
    pub batches_sent: u64,
    pub rows_sent: u64,
    pub bytes_sent: u64,
    pub bytes_per_row: Option<f64>,
    pub last_ack_unix_ms: i64,
    pub relay_lost_rows: u64,
    pub connects: u64,
    pub last_error: Option<String>,
}

impl SyncStatus {
    /// `committed`: the newest outbox record per stream (telemetry, events); the backlog is
    /// what the relay has not acknowledged.
    pub fn view(&self, committed: (u64, u64)) -> SyncView {
        let acked = self.relay_acked.load(Relaxed);
        let events_acked = self.events_acked.load(Relaxed);
        let rtt_us = self.rtt_us.load(Relaxed);
        let rows = self.rows_sent.load(Relaxed);
        let bytes = self.bytes_sent.load(Relaxed);
        SyncView {
            enrolled: !self.enrolled_as.is_empty(),
            enrolled_as: self.enrolled_as.clone(),
            relay: self.relay.clone(),
            connected: self.connected.load(Relaxed),
            relay_acked: acked,
            backlog_rows: committed.0.saturating_sub(acked),
            events_acked,
            events_backlog: committed.1.saturating_sub(events_acked),
            events_sent: self.events_sent.load(Relaxed),
            live_datagrams_sent: self.live_sent.load(Relaxed),
            changes_sent: self.changes_sent.load(Relaxed),
            changes_received: self.changes_received.load(Relaxed),
            rtt_ms: (rtt_us > 0).then(|| rtt_us as f64 / 1e3),
            batches_sent: self.batches_sent.load(Relaxed),
            rows_sent: rows,
            bytes_sent: bytes,
            bytes_per_row: (rows > 0).then(|| bytes as f64 / rows as f64),
            last_ack_unix_ms: self.last_ack_unix_ms.load(Relaxed),
            relay_lost_rows: self.relay_lost_rows.load(Relaxed),
            connects: self.connects.load(Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
