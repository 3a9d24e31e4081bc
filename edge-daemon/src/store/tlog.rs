//! `.tlog` export: the telemetry-log format MAVProxy, MAVExplorer and QGroundControl read.
//! Each record is an 8-byte big-endian timestamp in microseconds followed by the raw frame,
//! which is exactly how frames are kept (compressed) in the `frames` table.

use std::io::Write;

use rusqlite::params;

use super::{Reader, StoreError};
use crate::frame;

/// Export range. `vehicle: None` exports every system, merged in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlogQuery {
    pub vehicle: Option<u8>,
    pub from_us: i64,
    pub to_us: i64,
}

/// Writes the matching frames to `out`; returns how many were written.
pub fn export(reader: &Reader, q: &TlogQuery, out: &mut impl Write) -> Result<u64, StoreError> {
    let conn = reader.connect()?;
    let mut stmt = conn.prepare(
        "SELECT data, t_shift_us FROM frames
         WHERE (?1 IS NULL OR sysid = ?1) AND t_last_us >= ?2 AND t_first_us < ?3
         ORDER BY t_first_us, id",
    )?;
    let mut rows = stmt.query(params![q.vehicle, q.from_us, q.to_us])?;
    // Chunks of different systems overlap in time; a small merge window restores global order.
    let mut pending: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut written = 0u64;
    while let Some(row) = rows.next()? {
        let data: Vec<u8> = row.get(0)?;
        // A chunk stored before the station knew the time was moved as a whole.
        let shift: i64 = row.get(1)?;
        let raw = zstd::stream::decode_all(data.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("chunk does not decompress: {e}")))?;
        for (t, record) in records(&raw)? {
            let t = t + shift;
            if t >= q.from_us && t < q.to_us {
                let mut record = record.to_vec();
                record[..8].copy_from_slice(&t.to_be_bytes());
                pending.push((t, record));
            }
        }
        if pending.len() > 100_000 {
            written += drain(&mut pending, out, false)?;
        }
    }
    written += drain(&mut pending, out, true)?;
    out.flush()?;
    Ok(written)
}

fn drain(
    pending: &mut Vec<(i64, Vec<u8>)>,
    out: &mut impl Write,
    all: bool,
) -> Result<u64, StoreError> {
    pending.sort_by_key(|(t, _)| *t);
    // Keep the newest half back: a later chunk may still hold frames that sort before it.
    let keep = if all { 0 } else { pending.len() / 2 };
    let n = pending.len() - keep;
    for (_, record) in pending.drain(..n) {
        out.write_all(&record)?;
    }
    Ok(n as u64)
}

/// Splits a chunk into (timestamp, whole tlog record) pairs.
fn records(raw: &[u8]) -> Result<Vec<(i64, &[u8])>, StoreError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let stamp: [u8; 8] = raw
            .get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt("truncated timestamp".into()))?;
        let frame_len = match frame::extent(&raw[i + 8..]) {
            frame::Extent::Complete { len, .. } => len,
            other => return Err(StoreError::Corrupt(format!("bad frame: {other:?}"))),
        };
        let end = i + 8 + frame_len;
        out.push((i64::from_be_bytes(stamp), &raw[i..end]));
        i = end;
    }
    Ok(out)
}
