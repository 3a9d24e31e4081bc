//! `wire_bytes`: bytes per telemetry sample on the wire when a backlog is synced in bulk
//! (SPEC §8 target ≤ 6), beside the same telemetry as a zstd-compressed .tlog — every frame the
//! 50 vehicles sent, as MAVExplorer would read it. See `common/mod.rs`.

// Shared with catchup, which reads the timing this bench does not.
#[allow(dead_code)]
mod common;

fn main() {
    let d = common::drain(true);
    let per = |bytes: u64| bytes as f64 / d.rows as f64;
    println!(
        "{} samples ({} frames in the .tlog): .tlog {:.1} B/sample, .tlog.zst level 3 {:.2} B/sample, level 19 {:.2} B/sample",
        d.rows,
        d.tlog_frames,
        per(d.tlog_bytes),
        per(d.tlog_zstd3_bytes),
        per(d.tlog_zstd19_bytes)
    );
    println!(
        "sync payload {:.3} B/sample in {} batches (envelope and QUIC framing add ~30 bytes per batch: {:.4} B/sample)",
        per(d.payload_bytes),
        d.batches,
        30.0 * d.batches as f64 / d.rows as f64
    );
    println!("FIGURE wire_bytes {:.3} B/sample", per(d.payload_bytes));
}
