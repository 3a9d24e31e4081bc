//! A fleet vehicle's history, read from the chunks of every station that heard it.
//!
//! A vehicle heard by two stations has two sightings (edge, system id), each with its own
//! chunks. The history of a time range is their rows in that range, in time order, with a
//! sample the other station also delivered kept once. A backend supplies chunks per
//! sighting in order of their start time ([`ChunkSource`]); this file merges them, decodes
//! only what it needs, and stops as soon as the first `limit` samples are settled: every
//! chunk still unread starts at or after the next one's start time, so rows before it can no
//! longer change.

use std::collections::VecDeque;

use sync_protocol::codec::{self, TelemetryRow};

use super::StoreError;

/// Samples of one vehicle from two edges closer in time than this, at the same position,
/// are the same MAVLink message heard twice.
pub const DUPLICATE_WINDOW_US: i64 = 200_000;

/// Chunks fetched per sighting and round trip to the database.
pub const PAGE: u32 = 64;

/// One station's view of a vehicle: its edge id at the relay and the vehicle's system id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub edge_id: i64,
    pub sysid: u32,
}

/// A chunk holding samples of a sighting, with where its samples of that vehicle start.
#[derive(Debug, Clone)]
pub struct ChunkRef {
    pub chunk_id: i64,
    pub t_min_us: i64,
    pub payload: Vec<u8>,
}

/// Where a backend's chunks come from.
pub trait ChunkSource {
    /// Up to `limit` chunks of `sighting` holding samples of it in `from_us..to_us`, ordered
    /// by (their start for that vehicle, chunk id), after `after` in that order.
    fn chunks(
        &mut self,
        sighting: Sighting,
        from_us: i64,
        to_us: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<ChunkRef>, StoreError>;
}

struct Cursor {
    sighting: Sighting,
    page: VecDeque<ChunkRef>,
    /// The last chunk taken, for the next page; `None` before the first.
    after: Option<(i64, i64)>,
    done: bool,
}

/// A sample and the key that orders the merge: time, then edge, then sequence, so that ties
/// between stations come out the same way every time.
type Keyed = ((i64, i64, u64), TelemetryRow);

/// The vehicle's samples in `from_us..to_us` from all its sightings, in time order, each
/// sample heard by several stations once, at most `limit`.
pub fn merged(
    source: &mut dyn ChunkSource,
    sightings: &[Sighting],
    from_us: i64,
    to_us: i64,
    limit: usize,
) -> Result<Vec<TelemetryRow>, StoreError> {
    let mut cursors: Vec<Cursor> = sightings
        .iter()
        .map(|&sighting| Cursor {
            sighting,
            page: VecDeque::new(),
            after: None,
            done: false,
        })
        .collect();
    let mut rows: Vec<Keyed> = Vec::new();
    // When to look again whether the first `limit` samples are settled.
    let mut next_check = limit;
    loop {
        for c in cursors.iter_mut().filter(|c| c.page.is_empty() && !c.done) {
            let page = source.chunks(c.sighting, from_us, to_us, c.after, PAGE)?;
            c.done = page.len() < PAGE as usize;
            c.page.extend(page);
        }
        let Some(next) = cursors
            .iter_mut()
            .filter(|c| !c.page.is_empty())
            .min_by_key(|c| c.page.front().map(|r| (r.t_min_us, r.chunk_id)))
        else {
            break;
        };
        let bound = next.page.front().map_or(i64::MAX, |r| r.t_min_us);
        if rows.len() >= next_check {
            let settled = settle(&mut rows, bound, limit);
            if settled.len() >= limit {
                return Ok(settled);
            }
            next_check = rows.len() * 2;
        }
        let Some(chunk) = next.page.pop_front() else {
            break;
        };
        next.after = Some((chunk.t_min_us, chunk.chunk_id));
        let Sighting { edge_id, sysid } = next.sighting;
        rows.extend(
            codec::decode(&chunk.payload)
                .map_err(|e| StoreError::Corrupt(format!("chunk {}: {e}", chunk.chunk_id)))?
                .into_iter()
                .filter(|r| r.vehicle == sysid && r.t_us >= from_us && r.t_us < to_us)
                .map(|r| ((r.t_us, edge_id, r.seq), r)),
        );
    }
    Ok(settle(&mut rows, i64::MAX, limit))
}

/// Sorts the rows and returns the first `limit` samples strictly before `bound`, duplicates
/// dropped (if there are fewer, all of those before `bound`).
fn settle(rows: &mut [Keyed], bound: i64, limit: usize) -> Vec<TelemetryRow> {
    rows.sort_unstable_by_key(|(key, _)| *key);
    let before = rows.partition_point(|((t, _, _), _)| *t < bound);
    dedupe(&rows[..before], limit)
}

/// Keeps one of each sample heard by several edges: rows in time order, and a row from a
/// different edge than one already kept, within [`DUPLICATE_WINDOW_US`] and at the same
/// position, is that sample again.
fn dedupe(rows: &[Keyed], limit: usize) -> Vec<TelemetryRow> {
    let mut kept: Vec<(i64, TelemetryRow)> = Vec::with_capacity(rows.len().min(limit));
    for &((_, edge, _), row) in rows {
        if kept.len() == limit {
            break;
        }
        let duplicate = kept
            .iter()
            .rev()
            .take_while(|(_, k)| row.t_us - k.t_us < DUPLICATE_WINDOW_US)
            .any(|(e, k)| {
                *e != edge
                    && k.lat_e7 == row.lat_e7
                    && k.lon_e7 == row.lon_e7
                    && k.alt_mm == row.alt_mm
            });
        if !duplicate {
            kept.push((edge, row));
        }
    }
    kept.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t_us: i64, lat_e7: i32) -> TelemetryRow {
        TelemetryRow {
            t_us,
            lat_e7,
            ..Default::default()
        }
    }

    fn keyed(rows: Vec<(i64, TelemetryRow)>) -> Vec<Keyed> {
        rows.into_iter()
            .map(|(edge, r)| ((r.t_us, edge, r.seq), r))
            .collect()
    }

    #[test]
    fn a_sample_heard_by_two_edges_is_kept_once() {
        let rows = keyed(vec![
            (1, row(1_000_000, 10)),
            (2, row(1_030_000, 10)), // edge 2 heard the same message 30 ms later
            (1, row(1_100_000, 11)),
            (2, row(1_120_000, 11)),
            (2, row(1_200_000, 12)), // only edge 2 heard this one
            (1, row(1_500_000, 12)), // same position, but outside the window: a hover
        ]);
        let kept: Vec<i64> = dedupe(&rows, 100).iter().map(|r| r.t_us).collect();
        assert_eq!(kept, vec![1_000_000, 1_100_000, 1_200_000, 1_500_000]);
    }

    #[test]
    fn a_hovering_vehicle_seen_by_one_edge_keeps_every_sample() {
        let rows = keyed((0..5).map(|i| (1, row(i * 100_000, 10))).collect());
        assert_eq!(dedupe(&rows, 100).len(), 5);
    }
}
