//! `catchup`: rows/s draining a 1,000,000-row telemetry backlog from an edge store into the
//! relay's store over loopback QUIC (SPEC §8 target ≥ 1,000,000). See `common/mod.rs`.
//! `BENCH_STORE=postgres` runs the relay on PostgreSQL.

// Shared with fanin and relay_restart, which use other parts of it.
#[allow(dead_code)]
mod common;

fn main() {
    let d = common::drain();
    println!(
        "{} rows from {} vehicles in {:.2} s, {} batches, {:.2} payload bytes/row",
        d.rows,
        common::VEHICLES,
        d.seconds,
        d.batches,
        d.payload_bytes as f64 / d.rows as f64
    );
    let per_row = |cpu: f64| cpu * 1e6 / d.rows as f64;
    println!(
        "CPU during the drain: relay {:.2} s ({:.2} µs/row: writer thread {:.2}, sessions {:.2}), edge {:.2} s ({:.2} µs/row){}",
        d.writer_cpu + d.relay_cpu,
        per_row(d.writer_cpu + d.relay_cpu),
        per_row(d.writer_cpu),
        per_row(d.relay_cpu),
        d.edge_cpu,
        per_row(d.edge_cpu),
        match d.postgres_cpu {
            Some(pg) => format!(
                "; the PostgreSQL server {pg:.2} s ({:.2} µs/row)",
                per_row(pg)
            ),
            None => String::new(),
        }
    );
    println!("relay store: {}", common::store_kind());
    println!("FIGURE catchup {:.0} rows/s", d.rows as f64 / d.seconds);
}
