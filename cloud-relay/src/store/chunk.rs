//! Telemetry as the relay keeps it: the chunks stations send.
//!
//! A station sends its samples as columnar, compressed batches (`sync_protocol::codec`, a
//! byte or two a sample). The relay keeps each acknowledged batch as it arrived: its payload,
//! checked by decoding it once on arrival, and beside it what a query seeks on: the edge, the
//! sequence and time range, and each vehicle's time range inside it. Writing a batch is then
//! one row and a few index entries, not thousands of B-tree inserts, and reading decodes
//! only the chunks a query overlaps (`history.rs`), as time-series engines do with their
//! compressed chunks.

use sync_protocol::codec::{self, CodecError, TelemetryRow};

/// zstd level for the chunks the relay encodes itself (a resend's new part, compaction):
/// a tenth of level 6's CPU for a few per cent more bytes.
pub const RELAY_LEVEL: i32 = 3;

/// A chunk's `level` in the store: small (few rows per vehicle: a connected station's batch
/// a second, a catch-up batch of many vehicles), to be compacted once old enough; compact (a
/// compaction's output, or a batch with many rows per vehicle), left as it is; unreadable
/// (damaged at rest), set aside for an operator.
pub const LEVEL_SMALL: i64 = 0;
pub const LEVEL_COMPACT: i64 = 1;
pub const LEVEL_UNREADABLE: i64 = 2;
/// Chunks holding fewer rows per vehicle than this are compacted.
const COMPACT_PER_VEHICLE: u32 = 4_096;
/// A compaction's output chunk holds one vehicle, at most this many rows over at most this
/// much time: an hour's query then decodes a handful of chunks of that vehicle alone, and no
/// chunk widens the index range every query of the vehicle must scan.
const OUT_ROWS: usize = 16_384;
const OUT_SPAN_US: i64 = 3_600_000_000;

/// The level a chunk is stored at as it arrives.
pub fn level_of(chunk: &Chunk) -> i64 {
    if chunk.rows / (chunk.vehicles.len() as u32).max(1) < COMPACT_PER_VEHICLE {
        LEVEL_SMALL
    } else {
        LEVEL_COMPACT
    }
}

/// What compaction writes for the rows of the chunks it merges: per vehicle, in sequence
/// order, cut into chunks of at most [`OUT_ROWS`] rows and [`OUT_SPAN_US`] of time.
pub fn compacted(rows: impl IntoIterator<Item = TelemetryRow>) -> Result<Vec<Chunk>, CodecError> {
    let mut by_vehicle: std::collections::BTreeMap<u32, Vec<TelemetryRow>> = Default::default();
    for r in rows {
        by_vehicle.entry(r.vehicle).or_default().push(r);
    }
    let mut out = Vec::new();
    for (_, mut rows) in by_vehicle {
        rows.sort_unstable_by_key(|r| r.seq);
        for piece in pieces(&rows) {
            out.push(Chunk::encode(piece)?);
        }
    }
    Ok(out)
}

/// One vehicle's rows (in sequence order) cut at [`OUT_ROWS`] rows and [`OUT_SPAN_US`] of
/// time (a clock step starts a new piece).
fn pieces(rows: &[TelemetryRow]) -> Vec<&[TelemetryRow]> {
    let mut out = Vec::new();
    let mut start = 0;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (i, r) in rows.iter().enumerate() {
        let (l, h) = (lo.min(r.t_us), hi.max(r.t_us));
        if i > start && (i - start == OUT_ROWS || h.saturating_sub(l) > OUT_SPAN_US) {
            out.push(&rows[start..i]);
            start = i;
            (lo, hi) = (r.t_us, r.t_us);
        } else {
            (lo, hi) = (l, h);
        }
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// A codec payload and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub payload: Vec<u8>,
    /// Sequence numbers of the first and last row (0 and 0 when empty).
    pub first_seq: u64,
    pub last_seq: u64,
    pub rows: u32,
    pub t_min_us: i64,
    pub t_max_us: i64,
    /// One entry per vehicle in the chunk, by system id.
    pub vehicles: Vec<VehicleSpan>,
}

/// One vehicle's samples inside a chunk: what a history query of that vehicle seeks on, and
/// its last sample (by sequence), which the live picture takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VehicleSpan {
    pub vehicle: u32,
    pub t_min_us: i64,
    pub t_max_us: i64,
    pub rows: u32,
    pub newest: TelemetryRow,
}

impl Chunk {
    /// A payload as it arrived: decoded (which checks it whole, checksum to last column) and
    /// summarised. Its rows are not kept, nor put back in sequence order: the summary is all
    /// the relay needs of them until a query decodes the chunk again.
    pub fn decode(payload: Vec<u8>) -> Result<Chunk, CodecError> {
        let rows = codec::decode_grouped(&payload)?;
        Ok(Chunk::summarise(payload, &rows))
    }

    /// The same, keeping the rows: grouped by vehicle, each vehicle's in sequence order.
    pub fn decode_with_rows(payload: Vec<u8>) -> Result<(Chunk, Vec<TelemetryRow>), CodecError> {
        let rows = codec::decode_grouped(&payload)?;
        Ok((Chunk::summarise(payload, &rows), rows))
    }

    /// Encodes rows (strictly increasing `seq`) at [`RELAY_LEVEL`].
    pub fn encode(rows: &[TelemetryRow]) -> Result<Chunk, CodecError> {
        let payload = codec::encode(rows, RELAY_LEVEL)?;
        Ok(Chunk::summarise(payload, rows))
    }

    /// The rows, in sequence order.
    pub fn rows(&self) -> Result<Vec<TelemetryRow>, CodecError> {
        codec::decode(&self.payload)
    }

    /// The part of this chunk after sequence `acked` (what a resend overlapping rows already
    /// held adds), re-encoded; itself when every row is new.
    pub fn after(self, acked: u64) -> Result<Chunk, CodecError> {
        if self.rows == 0 || self.first_seq > acked {
            return Ok(self);
        }
        let fresh: Vec<TelemetryRow> = self.rows()?.into_iter().filter(|r| r.seq > acked).collect();
        Chunk::encode(&fresh)
    }

    /// The summary of `rows`, in any order; rows grouped by vehicle (as decoded from the
    /// wire) cost one step each.
    fn summarise(payload: Vec<u8>, rows: &[TelemetryRow]) -> Chunk {
        let mut vehicles: Vec<VehicleSpan> = Vec::new();
        let mut current = usize::MAX;
        for r in rows {
            if vehicles.get(current).is_none_or(|v| v.vehicle != r.vehicle) {
                // A batch holds a handful of vehicles: a linear search beats hashing.
                current = match vehicles.iter().position(|v| v.vehicle == r.vehicle) {
                    Some(i) => i,
                    None => {
                        vehicles.push(VehicleSpan {
                            vehicle: r.vehicle,
                            t_min_us: r.t_us,
                            t_max_us: r.t_us,
                            rows: 0,
                            newest: *r,
                        });
                        vehicles.len() - 1
                    }
                };
            }
            let v = &mut vehicles[current];
            v.t_min_us = v.t_min_us.min(r.t_us);
            v.t_max_us = v.t_max_us.max(r.t_us);
            v.rows += 1;
            if r.seq >= v.newest.seq {
                v.newest = *r;
            }
        }
        vehicles.sort_by_key(|v| v.vehicle);
        Chunk {
            payload,
            first_seq: rows.iter().map(|r| r.seq).min().unwrap_or(0),
            last_seq: rows.iter().map(|r| r.seq).max().unwrap_or(0),
            rows: rows.len() as u32,
            t_min_us: vehicles.iter().map(|v| v.t_min_us).min().unwrap_or(0),
            t_max_us: vehicles.iter().map(|v| v.t_max_us).max().unwrap_or(0),
            vehicles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, vehicle: u32, t_us: i64) -> TelemetryRow {
        TelemetryRow {
            seq,
            vehicle,
            t_us,
            ..Default::default()
        }
    }

    #[test]
    fn a_chunk_indexes_each_vehicle_it_holds() {
        let rows = [
            row(4, 2, 500),
            row(5, 1, 100),
            row(6, 2, 300),
            row(7, 1, 900),
        ];
        let chunk = Chunk::encode(&rows).unwrap();
        assert_eq!((chunk.first_seq, chunk.last_seq, chunk.rows), (4, 7, 4));
        assert_eq!((chunk.t_min_us, chunk.t_max_us), (100, 900));
        assert_eq!(
            chunk.vehicles,
            vec![
                VehicleSpan {
                    vehicle: 1,
                    t_min_us: 100,
                    t_max_us: 900,
                    rows: 2,
                    newest: rows[3],
                },
                VehicleSpan {
                    vehicle: 2,
                    t_min_us: 300,
                    t_max_us: 500,
                    rows: 2,
                    newest: rows[2],
                },
            ]
        );
        // Decoded from the wire (grouped by vehicle), the same summary.
        assert_eq!(Chunk::decode(chunk.payload.clone()).unwrap(), chunk);
        assert_eq!(chunk.rows().unwrap(), rows);
    }

    #[test]
    fn the_part_after_a_mark_keeps_only_newer_rows() {
        let rows: Vec<_> = (1..=10).map(|s| row(s, 1, s as i64)).collect();
        let chunk = Chunk::encode(&rows).unwrap();
        assert_eq!(chunk.clone().after(0).unwrap(), chunk, "all new: as it was");
        let tail = chunk.after(6).unwrap();
        assert_eq!((tail.first_seq, tail.last_seq, tail.rows), (7, 10, 4));
        assert_eq!(tail.rows().unwrap(), rows[6..]);
    }

    #[test]
    fn damage_is_an_error() {
        let mut payload = Chunk::encode(&[row(1, 1, 1)]).unwrap().payload;
        payload[2] ^= 1;
        assert!(Chunk::decode(payload).is_err());
    }

    fn at(seq: u64, t_us: i64) -> TelemetryRow {
        row(seq, 1, t_us)
    }

    #[test]
    fn compaction_outputs_are_bounded_in_rows_and_time() {
        let steady: Vec<_> = (0..40_000).map(|i| at(i, i as i64 * 100_000)).collect();
        let sizes: Vec<usize> = pieces(&steady).iter().map(|p| p.len()).collect();
        // 16,384 rows at 10 Hz is 27 minutes: the row cap cuts first.
        assert_eq!(sizes, vec![16_384, 16_384, 40_000 - 2 * 16_384]);
        let hour = OUT_SPAN_US;
        let stepped = [at(1, 0), at(2, hour), at(3, hour + 1), at(4, 0), at(5, 1)];
        let cuts: Vec<Vec<u64>> = pieces(&stepped)
            .iter()
            .map(|p| p.iter().map(|r| r.seq).collect())
            .collect();
        // An hour exactly fits; past it a new chunk starts, and a clock stepping back
        // by an hour starts another.
        assert_eq!(cuts, vec![vec![1, 2], vec![3], vec![4, 5]]);
        assert!(pieces(&[]).is_empty());
    }
}
