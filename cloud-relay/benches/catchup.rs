//! `catchup`: rows/s draining a 1,000,000-row telemetry backlog from an edge store into the
//! relay's store over loopback QUIC (SPEC §8 target ≥ 1,000,000). See `common/mod.rs`.
//! `BENCH_STORE=postgres` runs the relay on PostgreSQL.

// Shared with fanin and relay_restart, which use other parts of it; the .tlog export in
// `drain` served the old wire_bytes bench (now tests/benches/wire_bytes.rs).
#[allow(dead_code)]
mod common;

fn main() {
    let d = common::drain(false);
    println!(
        "{} rows from {} vehicles in {:.2} s, {} batches, {:.2} payload bytes/row",
        d.rows,
        common::VEHICLES,
        d.seconds,
        d.batches,
        d.payload_bytes as f64 / d.rows as f64
    );
    println!(
        "CPU during the drain: relay writer thread {:.2} s ({:.2} µs/row), all other threads {:.2} s ({:.2} µs/row)",
        d.writer_cpu,
        d.writer_cpu * 1e6 / d.rows as f64,
        d.rest_cpu,
        d.rest_cpu * 1e6 / d.rows as f64
    );
    println!("relay store: {}", common::store_kind());
    println!("FIGURE catchup {:.0} rows/s", d.rows as f64 / d.seconds);
}
