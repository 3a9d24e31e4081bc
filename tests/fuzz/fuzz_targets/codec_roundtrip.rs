//! The telemetry batch codec's round trip (`sync-protocol/src/codec.rs`): any batch a station
//! may encode decodes to exactly the rows it was made from, at any compression level the
//! edge may use.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sync_protocol::codec::{self, TelemetryRow};

#[derive(Debug, Arbitrary)]
struct Batch {
    first_seq: u64,
    level: u8,
    rows: Vec<Row>,
}

#[derive(Debug, Arbitrary)]
struct Row {
    /// The distance to the previous row's seq, at least 1 (the outbox's order).
    gap: u32,
    vehicle: u32,
    t_us: i64,
    time_source: u8,
    lat_e7: i32,
    lon_e7: i32,
    alt_mm: i32,
    rel_alt_mm: i32,
    vx: i16,
    vy: i16,
    vz: i16,
    heading_cdeg: u16,
    battery_mv: u16,
    battery_ca: i16,
    battery_pct: i8,
    gps_fix: u8,
    satellites: u8,
    custom_mode: u32,
    armed: bool,
    mission_seq: u16,
}

fuzz_target!(|batch: Batch| {
    let mut seq = batch.first_seq;
    let mut rows = Vec::with_capacity(batch.rows.len());
    for (i, r) in batch.rows.iter().enumerate() {
        if i > 0 {
            let Some(next) = seq.checked_add(u64::from(r.gap.max(1))) else {
                break;
            };
            seq = next;
        }
        rows.push(TelemetryRow {
            seq,
            vehicle: r.vehicle,
            t_us: r.t_us,
            time_source: r.time_source,
            lat_e7: r.lat_e7,
            lon_e7: r.lon_e7,
            alt_mm: r.alt_mm,
            rel_alt_mm: r.rel_alt_mm,
            vx: r.vx,
            vy: r.vy,
            vz: r.vz,
            heading_cdeg: r.heading_cdeg,
            battery_mv: r.battery_mv,
            battery_ca: r.battery_ca,
            battery_pct: r.battery_pct,
            gps_fix: r.gps_fix,
            satellites: r.satellites,
            custom_mode: r.custom_mode,
            armed: r.armed,
            mission_seq: r.mission_seq,
        });
    }
    // zstd levels 1..=9 (the edge encodes at 3 to 6); higher ones only cost fuzzing time.
    let level = i32::from(batch.level % 9) + 1;
    let payload = codec::encode(&rows, level).expect("an ordered batch encodes");
    assert_eq!(codec::decode(&payload).expect("decodes"), rows);
});
