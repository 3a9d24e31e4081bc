//! `GET /metrics`: Prometheus text, no token (scrapers on the station's own network).
//!
//! Per link: frames and bytes in and out, line errors, drops; the fleet; the store's commits
//! and a histogram of their time, its size and losses; sync's backlog and round trip; stream clients and
//! what was coalesced or dropped for them.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

/// Prometheus metrics: per-link frames, bytes and errors, vehicles, store commits and
/// commit time, sync backlog and RTT, stream clients. Needs no token.
#[utoipa::path(get, path = "/metrics", tag = "station", security(()),
    responses((status = 200, description = "Prometheus text exposition format",
        content_type = "text/plain", body = String)))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&s),
    )
}

/// Writes one metric family: its HELP and TYPE lines, then each labelled sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// Reads one counter of a link.
type LinkCounter = fn(&crate::link::LinkStats) -> u64;

fn one(value: impl Into<f64>) -> Vec<(String, f64)> {
    vec![(String::new(), value.into())]
}

fn render(s: &AppState) -> String {
    let mut out = String::with_capacity(4096);
    let links = s.links.snapshot();
    let per_link = |f: LinkCounter| -> Vec<(String, f64)> {
        links
            .iter()
            .map(|l| {
                let name = l.name.replace('\\', "\\\\").replace('"', "\\\"");
                (
                    format!("{{link=\"{}\",name=\"{name}\"}}", l.id),
                    f(&l.stats) as f64,
                )
            })
            .collect()
    };
    let link_families: [(&str, &str, LinkCounter); 9] = [
        ("rx_frames_total", "Frames received", |st| {
            st.rx_frames.load(Relaxed)
        }),
        ("rx_bytes_total", "Bytes received", |st| {
            st.rx_bytes.load(Relaxed)
        }),
        ("tx_frames_total", "Frames sent", |st| {
            st.tx_frames.load(Relaxed)
        }),
        ("tx_bytes_total", "Bytes sent", |st| {
            st.tx_bytes.load(Relaxed)
        }),
        (
            "tx_coalesced_total",
            "Telemetry frames replaced by newer ones in a slow link's queue",
            |st| st.tx_coalesced.load(Relaxed),
        ),
        (
            "tx_dropped_total",
            "Frames dropped: queue full or link down",
            |st| st.tx_dropped.load(Relaxed),
        ),
        (
            "bad_bytes_total",
            "Bytes that were not part of a frame",
            |st| st.bad_bytes.load(Relaxed),
        ),
        ("crc_errors_total", "Frames with a bad checksum", |st| {
            st.crc_errors.load(Relaxed)
        }),
        ("truncated_total", "Frames cut short", |st| {
            st.truncated.load(Relaxed)
        }),
    ];
    for (name, help, f) in link_families {
        family(
            &mut out,
            &format!("trellis_link_{name}"),
            "counter",
            help,
            &per_link(f),
        );
    }
    family(
        &mut out,
        "trellis_link_connected",
        "gauge",
        "1 while the link is up",
        &per_link(|st| u64::from(st.connected.load(Relaxed))),
    );

    let snapshot = s.snapshots.borrow().clone();
    family(
        &mut out,
        "trellis_vehicles",
        "gauge",
        "Vehicles heard",
        &one(snapshot.vehicles.len() as f64),
    );
    let lost = snapshot
        .vehicles
        .iter()
        .filter(|v| v.link.state == "lost")
        .count();
    family(
        &mut out,
        "trellis_vehicles_link_lost",
        "gauge",
        "Vehicles not heard for the link-lost time",
        &one(lost as f64),
    );

    let mut dropped = Vec::new();
    for v in snapshot.vehicles.iter().filter(|v| v.signing.on) {
        for (reason, n) in [
            ("unsigned", v.signing.rejected_unsigned),
            ("bad", v.signing.rejected_bad),
            ("replayed", v.signing.rejected_replayed),
        ] {
            dropped.push((
                format!("{{vehicle=\"{}\",reason=\"{reason}\"}}", v.sysid),
                n as f64,
            ));
        }
    }
    family(
        &mut out,
        "trellis_signing_dropped_total",
        "counter",
        "Frames to or from a signing vehicle dropped for their signature",
        &dropped,
    );

    let st = &s.store_status;
    let counter = |v: &std::sync::atomic::AtomicU64| one(v.load(Relaxed) as f64);
    family(
        &mut out,
        "trellis_store_commits_total",
        "counter",
        "Store transactions committed",
        &counter(&st.commits),
    );
    let (buckets, sum) = st.commit_times.cumulative();
    let _ = writeln!(
        out,
        "# HELP trellis_store_commit_seconds How long store commits took\n\
         # TYPE trellis_store_commit_seconds histogram"
    );
    for (bound, n) in &buckets {
        let le = bound.map_or("+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "trellis_store_commit_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let count = buckets.last().map_or(0, |(_, n)| *n);
    let _ = writeln!(out, "trellis_store_commit_seconds_sum {sum}");
    let _ = writeln!(out, "trellis_store_commit_seconds_count {count}");
    family(
        &mut out,
        "trellis_store_samples_total",
        "counter",
        "Samples committed",
        &counter(&st.committed_samples),
    );
    family(
        &mut out,
        "trellis_store_frames_total",
        "counter",
        "Raw frames committed",
        &counter(&st.committed_frames),
    );
    family(
        &mut out,
        "trellis_store_bytes",
        "gauge",
        "Database size",
        &counter(&st.db_bytes),
    );
    family(
        &mut out,
        "trellis_store_quota_bytes",
        "gauge",
        "Configured quota",
        &one(s.quota_bytes as f64),
    );
    family(
        &mut out,
        "trellis_store_write_errors_total",
        "counter",
        "Failed transactions",
        &counter(&st.write_errors),
    );
    family(
        &mut out,
        "trellis_store_lost_samples_total",
        "counter",
        "Samples that could not be stored",
        &counter(&st.lost_samples),
    );

    let sync = s.sync_view();
    family(
        &mut out,
        "trellis_sync_connected",
        "gauge",
        "1 while connected to the relay",
        &one(u8::from(sync.connected)),
    );
    family(
        &mut out,
        "trellis_sync_backlog_rows",
        "gauge",
        "Telemetry rows the relay has not acknowledged",
        &one(sync.backlog_rows as f64),
    );
    family(
        &mut out,
        "trellis_sync_events_backlog",
        "gauge",
        "Events the relay has not acknowledged",
        &one(sync.events_backlog as f64),
    );
    family(
        &mut out,
        "trellis_sync_rtt_seconds",
        "gauge",
        "Round trip to the relay at the last ack",
        &one(sync.rtt_ms.unwrap_or(0.0) / 1e3),
    );
    family(
        &mut out,
        "trellis_sync_bytes_total",
        "counter",
        "Telemetry payload bytes sent",
        &one(sync.bytes_sent as f64),
    );

    let ws = &s.stream;
    family(
        &mut out,
        "trellis_stream_clients",
        "gauge",
        "Open WebSocket streams",
        &counter(&ws.clients),
    );
    family(
        &mut out,
        "trellis_stream_state_sent_total",
        "counter",
        "Vehicle state messages sent",
        &counter(&ws.state_sent),
    );
    family(
        &mut out,
        "trellis_stream_state_coalesced_total",
        "counter",
        "State messages replaced by a newer one before a slow client read them",
        &counter(&ws.state_coalesced),
    );
    family(
        &mut out,
        "trellis_stream_events_sent_total",
        "counter",
        "Event and record messages sent",
        &counter(&ws.events_sent),
    );
    family(
        &mut out,
        "trellis_stream_dropped_slow_total",
        "counter",
        "Clients closed for falling behind on events",
        &counter(&ws.dropped_slow),
    );
    family(
        &mut out,
        "trellis_stream_dropped_revoked_total",
        "counter",
        "Clients closed because their token was revoked",
        &counter(&ws.dropped_revoked),
    );
    out
}
