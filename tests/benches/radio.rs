//! `radio`: five vehicles on one 57600-baud SiK radio with a chatty ground station routed
//! through the station (`trellis_tests::radio`): the pilot's commands' loss and latency, what
//! the radio dropped, and the vehicles' telemetry rate, with the ground radio reporting its
//! buffer (RADIO_STATUS, so the station paces itself) and without (the station writes as fast
//! as the serial line takes it, as before the pacing).
//!
//! `cargo build --release --workspace --bins && cargo bench -p trellis-tests --bench radio`
//! (`RADIO_COMMANDS`, default 20, one a second; `RADIO_CHATTY_HZ`, default 200).

use trellis_tests::radio::{percentiles, run, Setup};

fn main() {
    let commands: usize = env("RADIO_COMMANDS", 20.0) as usize;
    let chatty_hz = env("RADIO_CHATTY_HZ", 200.0);
    for report in [true, false] {
        let r = run(Setup {
            report,
            chatty_hz,
            commands,
        });
        let list = r["commands"].as_array().cloned().unwrap_or_default();
        let mut latencies: Vec<f64> = list
            .iter()
            .filter(|c| c["outcome"] == "accepted")
            .filter_map(|c| c["latency_ms"].as_f64())
            .collect();
        let accepted = latencies.len();
        let sends: u64 = list.iter().filter_map(|c| c["sends"].as_u64()).sum();
        let (p50, p95, max) = percentiles(&mut latencies);
        let radio = &r["radio"];
        let rates: Vec<String> = r["positions_per_s"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| format!("{x:.1}"))
                    .collect()
            })
            .unwrap_or_default();
        let name = if report { "paced" } else { "unpaced" };
        println!(
            "{name}: {accepted}/{commands} commands accepted, {sends} sends; stored→answered \
             p50 {p50:.0} ms, p95 {p95:.0} ms, max {max:.0} ms; the ground radio dropped {} of {} \
             frames ({} commands); positions/s per vehicle [{}]; pace at the end {} B/s",
            radio["up_dropped"],
            radio["up_in"],
            radio["up_dropped_commands"],
            rates.join(", "),
            r["link"]["radio_pace_bytes_per_s"]
        );
        println!(
            "FIGURE radio_{name}_command_loss {:.1} % of sends unanswered",
            100.0 * (sends as f64 - accepted as f64) / sends.max(1) as f64
        );
        println!("FIGURE radio_{name}_command_p50 {p50:.0} ms");
        println!("FIGURE radio_{name}_command_p95 {p95:.0} ms");
    }
}

fn env(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
