//! The telemetry batch codec (`TELEMETRY_COLUMNAR_V1`): how a backlog of samples crosses a
//! metered satellite link in a few bytes each.
//!
//! Rows are grouped by vehicle (then put back in sequence order on decode), turned into
//! columns, and each column is coded as zigzag varints of differences: a vehicle's position,
//! time and sequence change at a steady rate, so the difference of differences (`Delta2`) is
//! near zero; slowly changing values (battery, mode) use plain differences (`Delta`). The
//! varint columns are compressed with zstd, and a CRC-32 over the whole payload makes any
//! corruption an error rather than wrong telemetry.
//!
//! ```text
//! payload = version:u8 | rows:varint | zstd(columns) | crc32(everything before):u32le
//! ```

use std::cell::RefCell;

pub use crate::telemetry::TelemetryRow;
use crate::telemetry::{COLUMNS, FIELDS};

/// Format version, the payload's first byte.
pub const VERSION: u8 = 1;
/// Rows one batch may hold: bounds the memory a hostile payload can make a decoder allocate.
pub const MAX_ROWS: usize = 1 << 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Difference from the previous value.
    Delta,
    /// Difference of differences: near zero for values changing at a steady rate.
    Delta2,
}

const N: usize = FIELDS;

/// How each column is coded, in [`COLUMNS`] order. Changing this is a new format version.
pub const CODINGS: [Coding; N] = [
    Coding::Delta,  // vehicle
    Coding::Delta2, // seq
    Coding::Delta2, // t_us
    Coding::Delta,  // time_source
    Coding::Delta2, // lat_e7
    Coding::Delta2, // lon_e7
    Coding::Delta2, // alt_mm
    Coding::Delta2, // rel_alt_mm
    Coding::Delta,  // vx
    Coding::Delta,  // vy
    Coding::Delta,  // vz
    Coding::Delta,  // heading_cdeg
    Coding::Delta,  // battery_mv
    Coding::Delta,  // battery_ca
    Coding::Delta,  // battery_pct
    Coding::Delta,  // gps_fix
    Coding::Delta,  // satellites
    Coding::Delta,  // custom_mode
    Coding::Delta,  // armed
    Coding::Delta,  // mission_seq
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("rows must be in strictly increasing sequence order")]
    Unordered,
    #[error("batch of {0} rows is over the limit of {MAX_ROWS}")]
    TooLarge(usize),
    #[error("payload too short")]
    Truncated,
    #[error("payload checksum does not match: corrupted in transit")]
    Checksum,
    #[error("unknown payload version {0}")]
    Version(u8),
    #[error("payload does not decompress: {0}")]
    Decompress(String),
    #[error("zstd cannot compress: {0}")]
    Compress(String),
    #[error("column {column}: {problem}")]
    Column {
        column: &'static str,
        problem: &'static str,
    },
}

/// Encodes rows (in strictly increasing `seq` order) at the given zstd level.
pub fn encode(rows: &[TelemetryRow], level: i32) -> Result<Vec<u8>, CodecError> {
    if rows.len() > MAX_ROWS {
        return Err(CodecError::TooLarge(rows.len()));
    }
    if rows.windows(2).any(|w| w[0].seq >= w[1].seq) {
        return Err(CodecError::Unordered);
    }
    let mut grouped: Vec<&TelemetryRow> = rows.iter().collect();
    // Keys are unique (seq is), so an unstable sort gives the same order, faster.
    grouped.sort_unstable_by_key(|r| (r.vehicle, r.seq));
    let table: Vec<[i64; N]> = grouped.iter().map(|r| r.values()).collect();

    let mut columns = Vec::with_capacity(rows.len() * N * 2);
    for (c, coding) in CODINGS.iter().enumerate() {
        let (mut prev, mut prev_delta) = (0i64, 0i64);
        for row in &table {
            let delta = row[c].wrapping_sub(prev);
            let value = match coding {
                Coding::Delta => delta,
                Coding::Delta2 => delta.wrapping_sub(prev_delta),
            };
            put_varint(&mut columns, zigzag(value));
            prev = row[c];
            prev_delta = delta;
        }
    }
    let compressed = compress(&columns, level).map_err(|e| CodecError::Compress(e.to_string()))?;

    let mut out = Vec::with_capacity(compressed.len() + 16);
    out.push(VERSION);
    put_varint(&mut out, rows.len() as u64);
    out.extend_from_slice(&compressed);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

thread_local! {
    /// One zstd context per thread and direction, kept between batches: a fresh level-6
    /// compression context is megabytes of tables, and setting them up and faulting them in
    /// cost as much as compressing a 16,384-row batch (catch-up profile); a relay holding a
    /// thousand edges spent a tenth of its session CPU creating decompression contexts.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match &mut *cell {
            Some((l, c)) if *l == level => c,
            slot => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress(data)
    })
}

fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match &mut *cell {
            Some(d) => d,
            slot => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(data, capacity)
    })
}

/// Decodes a payload back into rows in sequence order. Any damage is an error.
pub fn decode(payload: &[u8]) -> Result<Vec<TelemetryRow>, CodecError> {
    let mut out = decode_table(payload)?;
    out.sort_by_key(|r| r.seq);
    if out.windows(2).any(|w| w[0].seq == w[1].seq) {
        return Err(CodecError::Column {
            column: "seq",
            problem: "repeats",
        });
    }
    Ok(out)
}

/// Decodes a payload into rows as the wire holds them: grouped by vehicle, each vehicle's in
/// sequence order. Checked as fully as [`decode`] (no sequence number twice), without
/// putting the rows back in sequence order: for a reader that wants each vehicle's rows
/// (the relay summarising a batch), that sort is most of the work.
pub fn decode_grouped(payload: &[u8]) -> Result<Vec<TelemetryRow>, CodecError> {
    let rows = decode_table(payload)?;
    let grouped = rows
        .windows(2)
        .all(|w| (w[0].vehicle, w[0].seq) < (w[1].vehicle, w[1].seq));
    if !grouped {
        return Err(CodecError::Column {
            column: "seq",
            problem: "not grouped by vehicle in sequence order",
        });
    }
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    if seqs.windows(2).any(|w| w[0] == w[1]) {
        return Err(CodecError::Column {
            column: "seq",
            problem: "repeats",
        });
    }
    Ok(rows)
}

fn decode_table(payload: &[u8]) -> Result<Vec<TelemetryRow>, CodecError> {
    let body_len = payload.len().checked_sub(4).ok_or(CodecError::Truncated)?;
    let (body, crc) = payload.split_at(body_len);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err(CodecError::Checksum);
    }
    let (&version, mut rest) = body.split_first().ok_or(CodecError::Truncated)?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let rows = get_varint(&mut rest).ok_or(CodecError::Truncated)? as usize;
    if rows > MAX_ROWS {
        return Err(CodecError::TooLarge(rows));
    }
    // Each value is at most a 10-byte varint: that bounds the decompressed size.
    let columns =
        decompress(rest, rows * N * 10).map_err(|e| CodecError::Decompress(e.to_string()))?;

    let mut table = vec![[0i64; N]; rows];
    let mut input = columns.as_slice();
    for (c, (name, coding)) in COLUMNS.iter().zip(CODINGS).enumerate() {
        let (mut prev, mut prev_delta) = (0i64, 0i64);
        for row in &mut table {
            let value = unzigzag(get_varint(&mut input).ok_or(CodecError::Column {
                column: name,
                problem: "ends early",
            })?);
            let delta = match coding {
                Coding::Delta => value,
                Coding::Delta2 => value.wrapping_add(prev_delta),
            };
            row[c] = prev.wrapping_add(delta);
            prev = row[c];
            prev_delta = delta;
        }
    }
    if !input.is_empty() {
        return Err(CodecError::Column {
            column: "(end)",
            problem: "trailing bytes",
        });
    }
    table
        .iter()
        .map(|values| {
            TelemetryRow::from_values(values).map_err(|e| CodecError::Column {
                column: e.column,
                problem: "value out of range",
            })
        })
        .collect()
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row() -> impl Strategy<Value = TelemetryRow> {
        (
            (
                any::<u32>(),
                any::<i64>(),
                any::<u8>(),
                any::<i32>(),
                any::<i32>(),
            ),
            (
                any::<i32>(),
                any::<i32>(),
                any::<i16>(),
                any::<i16>(),
                any::<i16>(),
            ),
            (
                any::<u16>(),
                any::<u16>(),
                any::<i16>(),
                any::<i8>(),
                any::<u8>(),
            ),
            (any::<u8>(), any::<u32>(), any::<bool>(), any::<u16>()),
        )
            .prop_map(|(a, b, c, d)| TelemetryRow {
                seq: 0,
                vehicle: a.0,
                t_us: a.1,
                time_source: a.2,
                lat_e7: a.3,
                lon_e7: a.4,
                alt_mm: b.0,
                rel_alt_mm: b.1,
                vx: b.2,
                vy: b.3,
                vz: b.4,
                heading_cdeg: c.0,
                battery_mv: c.1,
                battery_ca: c.2,
                battery_pct: c.3,
                gps_fix: c.4,
                satellites: d.0,
                custom_mode: d.1,
                armed: d.2,
                mission_seq: d.3,
            })
    }

    fn batch() -> impl Strategy<Value = Vec<TelemetryRow>> {
        (
            any::<u64>(),
            prop::collection::vec((row(), 1u64..1000), 0..200),
        )
            .prop_map(|(start, rows)| {
                let mut seq = start % (u64::MAX / 2);
                rows.into_iter()
                    .map(|(mut r, gap)| {
                        seq += gap;
                        r.seq = seq;
                        r
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(rows in batch()) {
            let payload = encode(&rows, 3).unwrap();
            prop_assert_eq!(decode(&payload).unwrap(), rows);
        }

        #[test]
        fn grouped_decoding_holds_the_same_rows(rows in batch()) {
            let payload = encode(&rows, 3).unwrap();
            let mut grouped = decode_grouped(&payload).unwrap();
            prop_assert!(grouped.windows(2).all(|w| (w[0].vehicle, w[0].seq) < (w[1].vehicle, w[1].seq)));
            grouped.sort_by_key(|r| r.seq);
            prop_assert_eq!(grouped, rows);
        }

        #[test]
        fn any_flipped_bit_is_an_error(rows in batch(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut payload = encode(&rows, 3).unwrap();
            let i = at.index(payload.len());
            payload[i] ^= 1 << bit;
            prop_assert!(decode(&payload).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn garbage_with_a_valid_checksum_is_still_an_error_not_a_panic(
            body in prop::collection::vec(any::<u8>(), 0..256)
        ) {
            let mut payload = vec![VERSION];
            payload.extend_from_slice(&body);
            let crc = crc32fast::hash(&payload);
            payload.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(&payload);
        }
    }

    #[test]
    fn unordered_rows_are_refused() {
        let rows = [
            TelemetryRow {
                seq: 2,
                ..Default::default()
            },
            TelemetryRow {
                seq: 1,
                ..Default::default()
            },
        ];
        assert_eq!(encode(&rows, 3), Err(CodecError::Unordered));
    }

    /// Smooth telemetry from several vehicles, interleaved as the outbox holds it.
    #[test]
    fn steady_flight_costs_a_few_bytes_per_sample() {
        let mut rows = Vec::new();
        let mut seq = 1;
        for step in 0..2_000i64 {
            for v in 0..20u32 {
                rows.push(TelemetryRow {
                    seq,
                    vehicle: v,
                    t_us: 1_790_000_000_000_000 + step * 100_000 + i64::from(v) * 1_713,
                    time_source: 1,
                    lat_e7: 382_919_000 + (step * 54) as i32 + v as i32 * 10_000,
                    lon_e7: -1_224_580_000 + (step * 3) as i32,
                    alt_mm: 78_000,
                    rel_alt_mm: 30_000,
                    vx: 600,
                    vy: 30,
                    heading_cdeg: 900,
                    battery_mv: 24_000 - (step / 50) as u16,
                    battery_ca: 1_800,
                    battery_pct: 90 - (step / 100) as i8,
                    gps_fix: 3,
                    satellites: 16,
                    custom_mode: 3,
                    armed: true,
                    mission_seq: (step / 200) as u16,
                    ..Default::default()
                });
                seq += 1;
            }
        }
        let payload = encode(&rows, 6).unwrap();
        let per_row = payload.len() as f64 / rows.len() as f64;
        assert!(per_row < 1.0, "{per_row:.2} bytes per sample");
        assert_eq!(decode(&payload).unwrap(), rows);
    }
}
