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
use trellis_web::page::parse_int;

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

/// One page of a vehicle's merged history, and where the next one starts (`None`: this was
/// the last).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub rows: Vec<TelemetryRow>,
    pub next: Option<HistoryCursor>,
}

/// Where a page of merged history ended, and what the next page needs to go on exactly as
/// one long read would: the samples kept in the last [`DUPLICATE_WINDOW_US`] before it,
/// which decide whether the next ones are copies of them heard by another station. (Which
/// copy was kept can depend on samples long before, when the vehicle holds one position, so
/// reading a little of the page before again would not do.) A full page ends before the
/// microsecond of its last sample, so nothing at one microsecond is split across pages,
/// unless one microsecond holds more samples than a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor {
    pub after_us: i64,
    recent: Vec<Kept>,
}

/// A kept sample, as much of it as deciding duplicates needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    edge_id: i64,
    t_us: i64,
    lat_e7: i32,
    lon_e7: i32,
    alt_mm: i32,
}

impl Kept {
    fn of(edge_id: i64, r: &TelemetryRow) -> Kept {
        Kept {
            edge_id,
            t_us: r.t_us,
            lat_e7: r.lat_e7,
            lon_e7: r.lon_e7,
            alt_mm: r.alt_mm,
        }
    }

    /// Whether `row`, heard by `edge_id`, is this sample heard again.
    fn heard_again(&self, edge_id: i64, row: &TelemetryRow) -> bool {
        self.edge_id != edge_id
            && (self.lat_e7, self.lon_e7, self.alt_mm) == (row.lat_e7, row.lon_e7, row.alt_mm)
    }
}

/// A cursor holds at most this many kept samples (the newest, when a window held more):
/// a window of a vehicle sampled at 10 Hz holds 2, of one at 50 Hz 10. Written out, such a
/// cursor is at most [`CURSOR_MAX_LEN`] long, which even percent-encoded character by
/// character stays a URL every HTTP server takes.
const CURSOR_MAX_KEPT: usize = 40;

/// The longest cursor: a time, and per kept sample five numbers of at most 20 characters.
pub const CURSOR_MAX_LEN: usize = 20 + CURSOR_MAX_KEPT * (1 + 5 * 21);

/// `{after_us}` then `~{edge}.{t}.{lat}.{lon}.{alt}` per kept sample: opaque to clients,
/// safe in a URL as it is.
impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.after_us)?;
        for k in &self.recent {
            write!(
                f,
                "~{}.{}.{}.{}.{}",
                k.edge_id, k.t_us, k.lat_e7, k.lon_e7, k.alt_mm
            )?;
        }
        Ok(())
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<HistoryCursor, ()> {
        if s.len() > CURSOR_MAX_LEN {
            return Err(());
        }
        fn int<T: std::str::FromStr>(field: Option<&str>) -> Result<T, ()> {
            field.and_then(parse_int).ok_or(())
        }
        let mut parts = s.split('~');
        let after_us: i64 = int(parts.next())?;
        let recent = parts
            .map(|k| {
                let mut f = k.split('.');
                let kept = Kept {
                    edge_id: int(f.next())?,
                    t_us: int(f.next())?,
                    lat_e7: int(f.next())?,
                    lon_e7: int(f.next())?,
                    alt_mm: int(f.next())?,
                };
                // Only what a page keeps: the samples of the window before its end.
                let age = after_us.checked_sub(kept.t_us);
                let in_window = age.is_some_and(|a| (0..DUPLICATE_WINDOW_US).contains(&a));
                if f.next().is_some() || !in_window {
                    return Err(());
                }
                Ok(kept)
            })
            .take(CURSOR_MAX_KEPT + 1)
            .collect::<Result<Vec<Kept>, ()>>()?;
        if recent.len() > CURSOR_MAX_KEPT || !recent.is_sorted_by_key(|k| k.t_us) {
            return Err(());
        }
        Ok(HistoryCursor { after_us, recent })
    }
}

/// The vehicle's samples in `from_us..to_us` from all its sightings, in time order, each
/// sample heard by several stations once: a page of at most `limit`, after `after` when
/// this is the page after another.
pub fn merged(
    source: &mut dyn ChunkSource,
    sightings: &[Sighting],
    from_us: i64,
    to_us: i64,
    after: Option<&HistoryCursor>,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let from_us = after.map_or(from_us, |a| from_us.max(a.after_us.saturating_add(1)));
    let seed = after.map_or(&[][..], |a| &a.recent[..]);
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
            // One more than the page: whether it exists says whether a next page does.
            let settled = settle(&mut rows, bound, seed, limit + 1);
            if settled.len() > limit {
                return Ok(page(settled, seed, limit));
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
    Ok(page(
        settle(&mut rows, i64::MAX, seed, limit + 1),
        seed,
        limit,
    ))
}

/// Sorts the rows and returns the first `limit` samples strictly before `bound`,
/// duplicates dropped (if there are fewer, all of those before `bound`), each with its edge.
fn settle(rows: &mut [Keyed], bound: i64, seed: &[Kept], limit: usize) -> Vec<(i64, TelemetryRow)> {
    rows.sort_unstable_by_key(|(key, _)| *key);
    let before = rows.partition_point(|((t, _, _), _)| *t < bound);
    dedupe(&rows[..before], seed, limit)
}

/// Keeps one of each sample heard by several edges: rows in time order, and a row from a
/// different edge than one already kept (on this page, or in `seed` from the page before),
/// within [`DUPLICATE_WINDOW_US`] and at the same position, is that sample again.
fn dedupe(rows: &[Keyed], seed: &[Kept], limit: usize) -> Vec<(i64, TelemetryRow)> {
    let mut out: Vec<(i64, TelemetryRow)> = Vec::with_capacity(rows.len().min(limit));
    for &((_, edge, _), row) in rows {
        if out.len() == limit {
            break;
        }
        // Kept so far, newest first: this page's, then those the page before ended with.
        let duplicate = out
            .iter()
            .rev()
            .map(|(e, r)| Kept::of(*e, r))
            .chain(seed.iter().rev().copied())
            .take_while(|k| row.t_us.saturating_sub(k.t_us) < DUPLICATE_WINDOW_US)
            .any(|k| k.heard_again(edge, &row));
        if !duplicate {
            out.push((edge, row));
        }
    }
    out
}

/// The page of `limit` that `kept` (up to one more) makes, and its cursor when more follow:
/// it ends before the microsecond of its last sample (unless that is all it holds), and the
/// cursor carries the samples kept in the window before that end.
fn page(mut kept: Vec<(i64, TelemetryRow)>, seed: &[Kept], limit: usize) -> HistoryPage {
    let more = kept.len() > limit;
    kept.truncate(limit);
    if let (true, Some(last)) = (more, kept.last().map(|(_, r)| r.t_us)) {
        let keep = kept.partition_point(|(_, r)| r.t_us < last);
        if keep > 0 {
            kept.truncate(keep);
        }
    }
    let next = match kept.last() {
        Some(&(_, last)) if more => {
            let after_us = last.t_us;
            let mut recent: Vec<Kept> = seed
                .iter()
                .copied()
                .chain(kept.iter().map(|(edge, r)| Kept::of(*edge, r)))
                .filter(|k| after_us.saturating_sub(k.t_us) < DUPLICATE_WINDOW_US)
                .collect();
            recent.drain(..recent.len().saturating_sub(CURSOR_MAX_KEPT));
            Some(HistoryCursor { after_us, recent })
        }
        _ => None,
    };
    HistoryPage {
        rows: kept.into_iter().map(|(_, r)| r).collect(),
        next,
    }
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
        let kept: Vec<i64> = dedupe(&rows, &[], 100)
            .iter()
            .map(|(_, r)| r.t_us)
            .collect();
        assert_eq!(kept, vec![1_000_000, 1_100_000, 1_200_000, 1_500_000]);
    }

    #[test]
    fn a_hovering_vehicle_seen_by_one_edge_keeps_every_sample() {
        let rows = keyed((0..5).map(|i| (1, row(i * 100_000, 10))).collect());
        assert_eq!(dedupe(&rows, &[], 100).len(), 5);
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote_and_refuses_what_it_did_not() {
        let cursor = HistoryCursor {
            after_us: 1_500_000,
            recent: vec![
                Kept::of(3, &row(1_400_000, -10)),
                Kept::of(4, &row(1_450_000, 12)),
            ],
        };
        let text = cursor.to_string();
        assert_eq!(text, "1500000~3.1400000.-10.0.0~4.1450000.12.0.0");
        assert_eq!(text.parse::<HistoryCursor>(), Ok(cursor));
        assert_eq!(
            "77".parse(),
            Ok(HistoryCursor {
                after_us: 77,
                recent: vec![]
            })
        );
        for bad in [
            "",
            "x",
            "5~1.2.3.4",
            "5~1.2.3.4.5.6",
            "5~1.9.0.0.0",
            "9~1.5.0.0.0~1.4.0.0.0",
            "+77",
            // Older than the window before the page's end, or far enough to overflow.
            "1500000~3.1000000.0.0.0",
            "0~1.-9223372036854775808.0.0.0",
        ] {
            assert!(bad.parse::<HistoryCursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pages_go_on_deduplicating_where_the_page_before_ended() {
        // A vehicle holding one position, heard by edges 1 and 2: edge 1's copies are kept
        // all along (each of edge 2's is within the window of one of them).
        let rows = keyed(
            (0..20)
                .flat_map(|i| [(1, row(i * 100_000, 7)), (2, row(i * 100_000 + 150_000, 7))])
                .collect(),
        );
        let whole: Vec<(i64, i64)> = dedupe(&rows, &[], 1000)
            .iter()
            .map(|(e, r)| (*e, r.t_us))
            .collect();
        let mut walked = Vec::new();
        let mut after: Option<HistoryCursor> = None;
        loop {
            let first = after.as_ref().map_or(i64::MIN, |a| a.after_us + 1);
            let rest: Vec<Keyed> = rows
                .iter()
                .filter(|((t, _, _), _)| *t >= first)
                .copied()
                .collect();
            let seed = after.as_ref().map_or(&[][..], |a| &a.recent[..]);
            let p = page(dedupe(&rest, seed, 4), seed, 3);
            walked.extend(p.rows.iter().map(|r| r.t_us));
            match p.next {
                Some(next) => after = Some(next.to_string().parse().unwrap()),
                None => break,
            }
        }
        let whole_t: Vec<i64> = whole.iter().map(|(_, t)| *t).collect();
        assert_eq!(walked, whole_t);
        assert!(whole.iter().all(|(e, _)| *e == 1), "{whole:?}");
    }
}
